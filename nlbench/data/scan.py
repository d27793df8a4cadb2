"""What a video root holds, split by split: what ``nlbench data scan ROOT`` prints.

The scan probes every file exactly as the loader's index does (``index.build_index``), through the same
probe cache (``probes``), so the unreadable files it lists are the ones training will leave out, and a
scan followed by a run (or a second scan) opens every file once.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from nlbench.data.index import (
    UnreadableVideoWarning,
    VideoIndex,
    available_splits,
    build_index,
    class_names,
    list_split,
)


@dataclass(frozen=True)
class SplitScan:
    split: str
    source: str
    videos: int  # readable ones
    classes: int  # classes with at least one readable video
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {"path" (relative to the root), "reason"}
    duration_s: tuple[float, float] | None = None  # (min, max)
    width: tuple[int, int] | None = None
    height: tuple[int, int] | None = None
    fps: tuple[float, float] | None = None
    portrait: int = 0  # videos taller than wide
    codecs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanReport:
    root: str
    class_names: tuple[str, ...]
    splits: list[SplitScan]

    def to_dict(self) -> dict:
        return asdict(self)


def scan_root(
    root: Path | str,
    workers: int | None = None,
    processes: bool = False,
    cache_dir: Path | str | None = "auto",
    progress: Callable[[str, int, int], None] | None = None,
) -> ScanReport:
    """Every split of ``root`` probed in ``workers`` threads (``processes``: processes), through the probe
    cache in ``cache_dir``; ``progress(split, done, total)`` as probes finish."""
    splits = available_splits(root)
    if not splits:
        raise FileNotFoundError(f"{root} holds no split: expected train/, val/, test/ folders or train.csv, ...")
    # Without a train split or classes.txt, each split is scanned against its own class names.
    classes = class_names(root) if "train" in splits or (Path(root) / "classes.txt").is_file() else None
    scans, seen = [], set()
    for split in splits:
        own = classes or tuple(sorted({c for _, c in list_split(root, split)[1]}))
        with warnings.catch_warnings():  # the report lists them; a warning line each would repeat it
            warnings.simplefilter("ignore", UnreadableVideoWarning)
            report = (lambda done, total, split=split: progress(split, done, total)) if progress else None
            index = build_index(root, split, own, workers=workers, require_readable=False, cache_dir=cache_dir,
                                processes=processes, progress=report)
        seen.update(own)
        scans.append(_summarise(index))
    return ScanReport(str(root), classes or tuple(sorted(seen)), scans)


def _summarise(index: VideoIndex) -> SplitScan:
    unreadable = [{"path": _relative(p, index.root), "reason": reason} for p, reason in index.unreadable]
    if not index.records:
        return SplitScan(index.split, str(index.source), 0, 0, unreadable)
    table = pd.DataFrame([{"label": r.label, **r.meta.to_dict()} for r in index.records])
    kinds = table["codec"] + "/" + table["container"].str.split(",").str[0]
    return SplitScan(
        split=index.split,
        source=str(index.source),
        videos=len(table),
        classes=int(table["label"].nunique()),
        unreadable=unreadable,
        duration_s=(round(float(table["duration"].min()), 3), round(float(table["duration"].max()), 3)),
        width=(int(table["width"].min()), int(table["width"].max())),
        height=(int(table["height"].min()), int(table["height"].max())),
        fps=(round(float(table["fps"].min()), 3), round(float(table["fps"].max()), 3)),
        portrait=int((table["height"] > table["width"]).sum()),
        codecs={k: int(v) for k, v in kinds.value_counts().items()},
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:  # a manifest may name a file outside the root
        return str(path)
