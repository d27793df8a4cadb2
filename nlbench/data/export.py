"""Write the synthetic benchmark as real video files in the Kinetics layout.

    DIR/{train,val,test}/<class name>/<split>_<index>.mp4    H.264, yuv420p
    DIR/classes.txt                                          the class list, in label order
    DIR/families.csv                                         path,family,group: each video's cue layout, for
                                                             per-family accuracy (the classes do not say it),
                                                             and its quadruple (design 3's val and test; else
                                                             empty), for the group score
    DIR/synthetic.json                                       the config, fps and codec it was made with

so that the video path (decode, sample, augment, load) can be run end to end on any machine.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from nlbench.data.splits import SPLITS
from nlbench.data.synthetic import SyntheticConfig, generate
from nlbench.data.video import write_video
from nlbench.io import atomic_write_text

# Near-lossless: compression noise should not decide a colour. One encoder thread: left to x264 (threads=0)
# the count follows the CPUs the process may use (its affinity), and frame threads encode differently (at
# 128x128, threads 1 and 2 give other bytes; at 32x32 x264 takes one thread whatever it is offered), so an
# export was not the same file on another machine or under another CPU set; the export's parallelism is its
# processes (--workers).
DEFAULT_OPTIONS = {"crf": "12", "preset": "veryfast", "threads": "1"}
METADATA = "synthetic.json"
FAMILIES_CSV = "families.csv"


def export_synthetic(
    root: Path | str,
    config: SyntheticConfig | None = None,
    fps: int = 8,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    workers: int = 1,
) -> dict:
    """Encode every clip of every split; returns a summary (counts, bytes, seconds). ``root`` must not
    exist yet or be empty, so that an export is never mixed with an older one."""
    config = config or SyntheticConfig()
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"export directory {root} is not empty; give a new or empty directory")
    if not isinstance(fps, int) or fps < 1:
        raise ValueError(f"export_synthetic: fps={fps!r} is not allowed; expected a positive int")
    options = DEFAULT_OPTIONS if options is None else options
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for name in config.classes:
            (root / split / name).mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in config.classes))
    rows = []
    for split in SPLITS:
        groups = config.groups_of(split)
        rows += [f"{_video_path(config, split, i).as_posix()},{config.family(i, split)},"
                 f"{'' if groups is None else groups[i]}\n" for i in range(config.split_size(split))]
    atomic_write_text(root / FAMILIES_CSV, "path,family,group\n" + "".join(rows))
    jobs = [(root, config, split, i, fps, codec, options) for split in SPLITS for i in range(config.split_size(split))]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            sizes = list(pool.map(_write_one, jobs, chunksize=64))
    else:
        sizes = [_write_one(job) for job in jobs]
    summary = {
        "root": str(root),
        "videos": {split: config.split_size(split) for split in SPLITS},
        "classes": len(config.classes),
        "frames": config.frames,
        "size": config.size,
        "fps": fps,
        "codec": codec,
        "bytes": sum(sizes),
        "seconds": round(time.perf_counter() - started, 2),
    }
    meta = {"config": asdict(config), "fps": fps, "codec": codec, "options": options, "pix_fmt": "yuv420p"}
    (root / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    return summary


def _write_one(job) -> int:
    root, config, split, index, fps, codec, options = job
    clip = generate(config, split, index)
    path = root / _video_path(config, split, index)
    write_video(path, clip.frames, fps, codec=codec, options=options)
    return path.stat().st_size


def _video_path(config: SyntheticConfig, split: str, index: int) -> Path:
    """Where clip ``index`` of ``split`` goes, relative to the export root."""
    return Path(split) / config.classes[config.label(index)] / f"{split}_{index:05d}.mp4"


def read_export_config(root: Path | str) -> dict | None:
    """The ``synthetic.json`` of an export (config, fps, codec), or None for other roots."""
    path = Path(root) / METADATA
    return json.loads(path.read_text()) if path.is_file() else None
