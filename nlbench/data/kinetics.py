"""A Kinetics copy as downloaded: the official annotation CSVs matched to the video files -> path,label manifests.

    ROOT/annotations/train.csv, validate.csv     label,youtube_id,time_start,time_end,split[,is_cc]
    ROOT/train/..., ROOT/val/... (or validate/)  <youtube_id>_<start:06d>_<end:06d>.<ext>, flat or in
                                                 <label>/ folders, as the usual downloaders name them

``prepare(ROOT, OUT)`` writes what the manifest path of ``nlbench.data.index`` reads: ``OUT/train.csv`` and
``OUT/val.csv`` (columns path,label; absolute paths), ``OUT/classes.txt`` (the label index: the sorted class
names of the train annotations, so it is the same on every copy whatever is missing), and beside them
``missing_<split>.csv`` (annotated clips with no file: counted and listed, never silently dropped),
``extra_<split>.csv`` (video files no annotation names: not used) and ``summary.json``. A clip's label is
its annotation's, never the name of the folder its file is in.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nlbench.data.video import VIDEO_EXTENSIONS
from nlbench.io import atomic_write_text

COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
# our split -> (the annotation file's stem, the video folders the downloaders use for it)
SPLITS = {"train": ("train", ("train",)), "val": ("validate", ("val", "validate", "valid"))}


def video_stem(youtube_id: str, start: int, end: int) -> str:
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def annotations_dir(root: Path | str, annotations: Path | str | None = None) -> Path:
    return Path(annotations) if annotations is not None else Path(root) / "annotations"


def is_annotated(root: Path | str, annotations: Path | str | None = None) -> bool:
    """Does ``root`` (or ``annotations``) hold an official train annotation file?"""
    path = annotations_dir(root, annotations) / "train.csv"
    if not path.is_file():
        return False
    with open(path, newline="") as f:
        header = f.readline().strip().split(",")
    return set(COLUMNS) <= set(header)


def read_annotations(path: Path) -> pd.DataFrame:
    """The rows of an official annotation file, checked (one-line ValueError naming the file, line and column)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable annotation CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: the header must have {','.join(COLUMNS)}; missing {', '.join(missing)}")
    for column in ("time_start", "time_end"):
        bad = ~table[column].str.fullmatch(r"\d+(\.0*)?")
        if bad.any():
            line = int(bad.to_numpy().argmax()) + 2
            raise ValueError(f"{path} line {line}: {column}={table[column][bad].iloc[0]!r} is not a whole number of "
                             f"seconds")
        table[column] = table[column].astype(float).astype(int)
    for column in ("label", "youtube_id"):
        empty = table[column].str.strip() == ""
        if empty.any():
            raise ValueError(f"{path} line {int(empty.to_numpy().argmax()) + 2}: empty {column}")
    return table


@dataclass
class SplitMatch:
    split: str
    annotation: Path
    items: list[tuple[Path, str]] = field(default_factory=list)  # (video file, label), in annotation order
    missing: pd.DataFrame | None = None  # annotation rows without a file (+ the expected file name)
    extra: list[Path] = field(default_factory=list)  # video files that no annotation row names
    duplicates: int = 0  # annotated clips found more than once (the file in the label's folder is used)


def _videos(root: Path, folders: tuple[str, ...]) -> dict[str, list[Path]]:
    """stem -> video files anywhere under ROOT/<folder> (flat or per label), sorted for a stable choice."""
    found: dict[str, list[Path]] = {}
    for name in folders:
        base = root / name
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if p.suffix.lower() in VIDEO_EXTENSIONS and not f.startswith("."):
                    found.setdefault(p.stem, []).append(p)
    return found


def match_split(root: Path | str, split: str, annotations: Path | str | None = None) -> SplitMatch:
    root = Path(root)
    stem, folders = SPLITS[split]
    path = annotations_dir(root, annotations) / f"{stem}.csv"
    table = read_annotations(path)
    videos = _videos(root, folders)
    match = SplitMatch(split, path)
    found, used = [], set()
    for row in table.itertuples(index=False):
        name = video_stem(row.youtube_id, row.time_start, row.time_end)
        files = videos.get(name)
        found.append(bool(files))
        if not files:
            continue
        if len(files) > 1:
            match.duplicates += 1
            in_label = [f for f in files if f.parent.name in (row.label, row.label.replace(" ", "_"))]
            files = in_label or files
        match.items.append((files[0], row.label))
        used.add(name)
    absent = table[[not f for f in found]].reset_index(drop=True)
    absent["expected_file"] = [video_stem(r.youtube_id, r.time_start, r.time_end) + ".mp4"
                               for r in absent.itertuples(index=False)]
    match.missing = absent
    match.extra = sorted(f for name, files in videos.items() if name not in used for f in files)
    return match


def _csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def prepare(root: Path | str, out: Path | str, annotations: Path | str | None = None) -> dict:
    """Write the manifests, the label index and the lists of missing and extra videos to ``out``; the summary."""
    root, out = Path(root).resolve(), Path(out)
    matches = {split: match_split(root, split, annotations) for split in SPLITS}
    classes = sorted({label for _, label in matches["train"].items}
                     | set(read_annotations(matches["train"].annotation)["label"]))
    for split, m in matches.items():
        unknown = sorted({label for _, label in m.items} - set(classes))
        if unknown:
            raise ValueError(f"{m.annotation}: label {unknown[0]!r} is not a class of the train annotations")
        if not m.items:
            raise ValueError(f"{m.annotation}: none of its {len(m.missing)} clips has a video under "
                             f"{' or '.join(str(root / f) for f in SPLITS[split][1])}/")
    summary = {"root": str(root), "annotations": str(annotations_dir(root, annotations)), "classes": len(classes)}
    for split, m in matches.items():
        atomic_write_text(out / f"{split}.csv",
                          _csv(pd.DataFrame({"path": [str(f) for f, _ in m.items], "label": [l for _, l in m.items]})))
        atomic_write_text(out / f"missing_{split}.csv", _csv(m.missing))
        atomic_write_text(out / f"extra_{split}.csv", _csv(pd.DataFrame({"path": [str(f) for f in m.extra]})))
        summary[split] = {"annotated": len(m.items) + len(m.missing), "found": len(m.items),
                          "missing": len(m.missing), "extra": len(m.extra), "duplicates": m.duplicates}
    atomic_write_text(out / "classes.txt", "".join(f"{c}\n" for c in classes))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def resolve_root(root: Path | str, cache: Path | str | None = None) -> Path:
    """``root`` itself, or for an annotated Kinetics copy the folder of its manifests (prepared once, under
    ``cache`` or $NLBENCH_CACHE or ``results/.cache``, keyed by the root and its annotation files)."""
    root = Path(root)
    if not is_annotated(root):
        return root
    ann = annotations_dir(root)
    key = hashlib.sha256(str(root.resolve()).encode())
    for f in sorted(ann.glob("*.csv")):
        key.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    base = Path(cache or os.environ.get("NLBENCH_CACHE") or "results/.cache")
    out = base / "kinetics" / key.hexdigest()[:16]
    if not (out / "summary.json").is_file():
        prepare(root, out)
    return out


__all__ = ["COLUMNS", "SPLITS", "SplitMatch", "is_annotated", "match_split", "prepare", "read_annotations",
           "resolve_root", "video_stem"]
