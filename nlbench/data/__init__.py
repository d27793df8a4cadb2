"""Data: the embedded synthetic long-range benchmark and the real video pipeline (Kinetics layout).

    synthetic   the procedural benchmark: classes, config, generator (docs/synthetic_data.md)
    export      the synthetic benchmark written as H.264 files in the Kinetics layout
    sampling    ClipSampling: where a clip's frames are in time; short-clip policies
    video       PyAV reading (seek, time-based sampling) and writing
    probes      every file probed once (duration, fps, frames, size, codec, readable), cached per root
    index       split folders / CSV manifests -> labelled records, unreadable files left out
    scan        what a video root holds, per split
    transforms  scale jitter, crops, flip, normalisation in plain torch
    datasets    torch Datasets over both sources, and the collate function
    datamodule  LightningDataModules over both sources, one interface
    analysis    per-class accuracy tables, test-view averaging
    bench       loader throughput

The names below are imported from their submodule on first use (nlbench.lazy): a run config (which uses the
synthetic data's and the transforms' settings) can be read without loading Lightning or PyAV.
"""
from nlbench.lazy import lazy_names

__all__ = [
    "FAMILIES",
    "CLASS_NAMES",
    "ClipSampling",
    "ClipTransformConfig",
    "LoaderConfig",
    "SyntheticClips",
    "SyntheticConfig",
    "SyntheticDataModule",
    "UnreadableVideoWarning",
    "VideoClips",
    "VideoDataModule",
    "VideoIndex",
    "VideoMeta",
    "VideoReadError",
    "VideoReader",
    "accuracy_by_group",
    "average_views",
    "build_index",
    "class_names",
    "collate_clips",
    "export_synthetic",
    "generate",
    "per_class_accuracy",
    "probe",
    "scan_root",
    "write_video",
]
__getattr__, __dir__ = lazy_names(__name__, {
    "accuracy_by_group": "analysis", "average_views": "analysis", "per_class_accuracy": "analysis",
    "LoaderConfig": "datamodule", "SyntheticDataModule": "datamodule", "VideoDataModule": "datamodule",
    "SyntheticClips": "datasets", "VideoClips": "datasets", "collate_clips": "datasets",
    "export_synthetic": "export",
    "UnreadableVideoWarning": "index", "VideoIndex": "index", "build_index": "index", "class_names": "index",
    "ClipSampling": "sampling",
    "scan_root": "scan",
    "CLASS_NAMES": "synthetic", "FAMILIES": "synthetic", "SyntheticConfig": "synthetic", "generate": "synthetic",
    "ClipTransformConfig": "transforms",
    "VideoMeta": "video", "VideoReader": "video", "VideoReadError": "video", "probe": "video",
    "write_video": "video",
})
