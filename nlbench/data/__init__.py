"""Data: the embedded synthetic long-range benchmark and the real video pipeline (Kinetics layout).

    synthetic   the procedural benchmark: classes, config, generator (docs/synthetic_data.md)
    export      the synthetic benchmark written as H.264 files in the Kinetics layout
    video       PyAV reading (seek, time-based sampling) and writing; ClipSampling, short-clip policies
    probes      every file probed once (duration, fps, frames, size, codec, readable), cached per root
    index       split folders / CSV manifests -> labelled records, unreadable files left out
    scan        what a video root holds, per split
    transforms  scale jitter, crops, flip, normalisation in plain torch
    datasets    torch Datasets over both sources, and the collate function
    datamodule  LightningDataModules over both sources, one interface
    analysis    per-class accuracy tables, test-view averaging
    bench       loader throughput
"""
from nlbench.data.analysis import accuracy_by_group, average_views, per_class_accuracy
from nlbench.data.datamodule import LoaderConfig, SyntheticDataModule, VideoDataModule
from nlbench.data.datasets import SyntheticClips, VideoClips, collate_clips
from nlbench.data.export import export_synthetic
from nlbench.data.index import UnreadableVideoWarning, VideoIndex, build_index, class_names
from nlbench.data.scan import scan_root
from nlbench.data.synthetic import CLASS_NAMES, FAMILIES, SyntheticConfig, generate
from nlbench.data.transforms import ClipTransformConfig
from nlbench.data.video import ClipSampling, VideoMeta, VideoReader, VideoReadError, probe, write_video

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
