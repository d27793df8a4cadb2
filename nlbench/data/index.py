"""Which videos a split holds and their labels: the Kinetics folder layout or CSV manifests.

    ROOT/{train,val,test}/<class name>/<video file>        (folder layout)
    ROOT/{train,val,test}.csv  with columns path,label      (manifest: path relative to ROOT)

A manifest wins over a folder of the same split. The class list is ``ROOT/classes.txt`` (one name a
line) when present, else the sorted class names of the train split. Mistakes in the layout (missing
ROOT or split, an empty split, a manifest row naming a missing file, a label outside the class list)
raise FileNotFoundError / ValueError naming the file and line.

Unreadable videos are dropped here, up front: ``build_index(probe=True)`` opens every file, decodes its
first frame and the frames near its declared end (``video.probe``), and leaves out each one that fails,
with one UnreadableVideoWarning each; ``VideoIndex.unreadable`` keeps them with the reason. Dropping a
file never moves a label: each record keeps the label of its own file. Probes are cached per file
(``probes``): a root is opened once, not once per run, split or scan.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nlbench.data import probes
from nlbench.data.splits import SPLITS
from nlbench.data.video import VIDEO_EXTENSIONS, VideoMeta



class UnreadableVideoWarning(UserWarning):
    """A video left out of its split because it cannot be opened or decoded."""


@dataclass(frozen=True)
class VideoRecord:
    path: Path
    label: int
    meta: VideoMeta | None = None  # from the probe; None when the index was built without one


@dataclass(frozen=True)
class VideoIndex:
    root: Path
    split: str
    source: Path  # the split's folder or manifest
    class_names: tuple[str, ...]
    records: tuple[VideoRecord, ...]
    unreadable: tuple[tuple[Path, str], ...] = ()  # (file, reason) of every video left out

    def __len__(self) -> int:
        return len(self.records)


def split_source(root: Path | str, split: str) -> Path | None:
    """The manifest or folder that defines ``split`` under ``root``, or None."""
    root = Path(root)
    for candidate in (root / f"{split}.csv", root / split):
        if candidate.is_file() if candidate.suffix == ".csv" else candidate.is_dir():
            return candidate
    return None


def available_splits(root: Path | str) -> list[str]:
    root = _existing_root(root)
    return [s for s in SPLITS if split_source(root, s) is not None]


def _existing_root(root: Path | str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video root {root} does not exist or is not a directory")
    return root


def list_split(root: Path | str, split: str) -> tuple[Path, list[tuple[Path, str]]]:
    """(source, [(video file, class name)]) of a split, with the layout checked."""
    root = _existing_root(root)
    source = split_source(root, split)
    if source is None:
        raise FileNotFoundError(f"split {split!r}: neither {root / split}/ nor {root / split}.csv exists")
    items = _read_manifest(root, source) if source.suffix == ".csv" else _read_folder(source)
    if not items:
        raise ValueError(f"split {split!r} is empty: {source} lists no video files")
    return source, items


def _read_folder(folder: Path) -> list[tuple[Path, str]]:
    items = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and not f.name.startswith("."):
                items.append((f, class_dir.name))
    return items


def _read_manifest(root: Path, manifest: Path) -> list[tuple[Path, str]]:
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{manifest}: not a readable CSV manifest ({str(err).splitlines()[0]})") from None
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise ValueError(f"{manifest}: the header must have columns path,label; missing {', '.join(sorted(missing))}")
    items = []
    for row, (path, label) in enumerate(zip(table["path"], table["label"]), start=2):  # line 1 is the header
        if not path.strip() or not label.strip():
            raise ValueError(f"{manifest} line {row}: empty path or label")
        file = root / path.strip()
        if not file.is_file():
            raise FileNotFoundError(f"{manifest} line {row}: video {path.strip()!r} does not exist under {root}")
        items.append((file, label.strip()))
    return items


def class_names(root: Path | str) -> tuple[str, ...]:
    """``ROOT/classes.txt`` if present, else the sorted class names of the train split."""
    root = _existing_root(root)
    listed = root / "classes.txt"
    if listed.is_file():
        names = tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
        if not names or len(set(names)) != len(names):
            raise ValueError(f"{listed}: expected one distinct class name a line")
        return names
    source = split_source(root, "train")
    if source is None:
        raise FileNotFoundError(f"no class list: neither {root / 'classes.txt'} nor a train split under {root}")
    if source.suffix == ".csv":
        return tuple(sorted({label for _, label in _read_manifest(root, source)}))
    return tuple(sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")))


def build_index(
    root: Path | str,
    split: str,
    classes: tuple[str, ...] | None = None,
    probe_files: bool = True,
    workers: int | None = None,
    require_readable: bool = True,
    cache_dir: Path | str | None = "auto",
    processes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> VideoIndex:
    """The records of ``split``, labelled by position in ``classes`` (default: ``class_names(root)``).

    With ``probe_files`` every video is probed (in ``workers`` threads, or processes; see
    ``probes.probe_files``), or read from the probe cache in ``cache_dir`` ("auto":
    ``probes.default_cache_dir()``; None: no cache), and unreadable ones are left out, one
    UnreadableVideoWarning each; a split left with no video is an error unless ``require_readable`` is
    False (a scan reports it instead).
    """
    root = _existing_root(root)
    source, items = list_split(root, split)
    classes = tuple(classes) if classes is not None else class_names(root)
    label_of = {name: i for i, name in enumerate(classes)}
    for n, (file, label) in enumerate(items):
        if label not in label_of:
            where = (f"{source} line {n + 2}" if source.suffix == ".csv" else str(file.parent))
            raise ValueError(f"{where}: label {label!r} is not in the class list ({len(classes)} classes, "
                             f"from {'classes.txt' if (root / 'classes.txt').is_file() else 'the train split'})")
    if not probe_files:
        records = tuple(VideoRecord(f, label_of[c]) for f, c in items)
        return VideoIndex(root, split, source, classes, records)

    cache = probes.ProbeCache(root, probes.default_cache_dir() if cache_dir == "auto" else cache_dir)
    metas = probes.probe_files([f for f, _ in items], cache, workers=workers, processes=processes, progress=progress)
    records, unreadable = [], []
    for (file, label), meta in zip(items, metas):
        if isinstance(meta, VideoMeta):
            records.append(VideoRecord(file, label_of[label], meta))
        else:
            unreadable.append((file, meta))
            warnings.warn(f"skipping unreadable video {file}: {meta}", UnreadableVideoWarning, stacklevel=2)
    if not records and require_readable:
        raise ValueError(f"split {split!r} has no readable video: all {len(items)} in {source} failed to decode")
    return VideoIndex(root, split, source, classes, tuple(records), tuple(unreadable))

