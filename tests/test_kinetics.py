"""Official Kinetics annotations matched to downloaded files (nlbench/data/kinetics.py), on generated videos."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nlbench.data import kinetics
from nlbench.data.index import build_index
from nlbench.data.video import write_video

HEADER = "label,youtube_id,time_start,time_end,split\n"
TRAIN = [  # label, youtube_id, start, end, where the file is (None: not downloaded)
    ("abseiling", "aaaaaaaaaaa", 10, 20, "train/abseiling"),
    ("abseiling", "bbbbbbbbbbb", 0, 10, "train"),  # flat
    ("air drumming", "ccccccccccc", 5, 15, "train/air_drumming"),  # the downloader's folder name
    ("air drumming", "ddddddddddd", 100, 110, "train/abseiling"),  # in another label's folder: keeps its label
    ("air drumming", "eeeeeeeeeee", 7, 17, None),  # missing
    ("zumba", "fffffffffff", 30, 40, None),  # a class whose only video is missing: still in the label index
    ("yoga", "ggggggggggg", 1, 11, "train/yoga"),
]
VAL = [
    ("abseiling", "hhhhhhhhhhh", 0, 10, "val"),
    ("yoga", "iiiiiiiiiii", 20, 30, "val/yoga"),
    ("air drumming", "jjjjjjjjjjj", 3, 13, None),
]


def _video(path):
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    write_video(path, rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8), 8)


def _layout(root, train=TRAIN, val=VAL, extra=True):
    (root / "annotations").mkdir(parents=True)
    for name, rows, split in (("train.csv", train, "train"), ("validate.csv", val, "validate")):
        text = HEADER + "".join(f'"{l}",{y},{s},{e},{split}\n' for l, y, s, e, _ in rows)
        (root / "annotations" / name).write_text(text)
        for l, y, s, e, where in rows:
            if where:
                _video(root / where / f"{y}_{s:06d}_{e:06d}.mp4")
    if extra:
        _video(root / "train" / "abseiling" / "zzzzzzzzzzz_000000_000010.mp4")  # no annotation names it
    return root


def test_prepare_matches_files_counts_missing_and_keeps_labels(tmp_path):
    root = _layout(tmp_path / "k400")
    out = tmp_path / "out"
    summary = kinetics.prepare(root, out)
    assert summary["train"] == {"annotated": 7, "found": 5, "missing": 2, "extra": 1, "duplicates": 0}
    assert summary["val"] == {"annotated": 3, "found": 2, "missing": 1, "extra": 0, "duplicates": 0}
    # the label index: every class of the train annotations, sorted, whatever was downloaded
    assert (out / "classes.txt").read_text().splitlines() == ["abseiling", "air drumming", "yoga", "zumba"]
    train = pd.read_csv(out / "train.csv")
    labels = {p.split("/")[-1][:11]: l for p, l in zip(train["path"], train["label"])}
    assert labels == {"aaaaaaaaaaa": "abseiling", "bbbbbbbbbbb": "abseiling", "ccccccccccc": "air drumming",
                      "ddddddddddd": "air drumming", "ggggggggggg": "yoga"}
    missing = pd.read_csv(out / "missing_train.csv")
    assert list(missing["youtube_id"]) == ["eeeeeeeeeee", "fffffffffff"]
    assert list(missing["expected_file"]) == ["eeeeeeeeeee_000007_000017.mp4", "fffffffffff_000030_000040.mp4"]
    assert list(pd.read_csv(out / "missing_val.csv")["youtube_id"]) == ["jjjjjjjjjjj"]
    assert [p.split("/")[-1] for p in pd.read_csv(out / "extra_train.csv")["path"]] == ["zzzzzzzzzzz_000000_000010.mp4"]
    assert json.loads((out / "summary.json").read_text())["classes"] == 4
    # what the manifest path of the index reads: labels by position in the label index
    index = build_index(out, "train", probe_files=True)
    assert index.class_names == ("abseiling", "air drumming", "yoga", "zumba")
    assert sorted(r.label for r in index.records) == [0, 0, 1, 1, 2] and not index.unreadable
    assert len(build_index(out, "val", probe_files=False)) == 2


def test_label_index_is_stable_across_copies(tmp_path):
    full = kinetics.prepare(_layout(tmp_path / "a"), tmp_path / "out_a")
    fewer = [(l, y, s, e, None if l == "yoga" else w) for l, y, s, e, w in TRAIN]  # no yoga video downloaded
    kinetics.prepare(_layout(tmp_path / "b", train=fewer, extra=False), tmp_path / "out_b")
    assert (tmp_path / "out_a" / "classes.txt").read_text() == (tmp_path / "out_b" / "classes.txt").read_text()
    assert full["classes"] == 4


def test_datamodule_and_sweep_take_an_annotated_root(tmp_path, monkeypatch):
    from nlbench.data import VideoDataModule
    from nlbench.sweep.spec import check_data_root

    monkeypatch.chdir(tmp_path)
    root = _layout(tmp_path / "k400")
    assert check_data_root(root) == root
    dm = VideoDataModule(root, probe=False)
    assert dm.class_names == ("abseiling", "air drumming", "yoga", "zumba")
    assert dm.root.resolve().parent == tmp_path / "results" / ".cache" / "kinetics" and (dm.root / "train.csv").is_file()
    assert VideoDataModule(root, probe=False).root == dm.root  # prepared once
    assert not kinetics.is_annotated(tmp_path / "results")


@pytest.mark.parametrize("text, message", [
    ("label,youtube_id,time_start\nx,y,1\n", "missing time_end"),
    (HEADER + "x,y,ten,20,train\n", "line 2: time_start='ten'"),
    (HEADER + "x,,0,10,train\n", "line 2: empty youtube_id"),
])
def test_bad_annotation_file_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        kinetics.read_annotations(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_no_video_found_is_an_error(tmp_path):
    root = _layout(tmp_path / "k400", val=[(l, y, s, e, None) for l, y, s, e, _ in VAL])
    with pytest.raises(ValueError, match="validate.csv: none of its 3 clips has a video"):
        kinetics.prepare(root, tmp_path / "out")
