"""The splits of a data set, in the order the suite reads them (the synthetic benchmark numbers its clips per
split in this order; a video root has a folder or a manifest per split)."""

SPLITS = ("train", "val", "test")
