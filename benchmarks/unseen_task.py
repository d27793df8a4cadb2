"""A long-range video task that is not the embedded benchmark, written as mp4 files: a check that a recipe is
not fitted to the synthetic generator it was tuned on (docs/tiny_recipe.md, "Not fitted to one data set").

Two flashes: a bright shape flashes for three frames near the start of the clip, and another for three
frames near the end, each at its own random place. Class ``same``: the two are the same shape (a filled
square or a plus); ``other``: not. Everything else is noise: a grey background with per-pixel noise, sizes
and grey levels drawn per flash, dim distractor squares (levels 130-170, below a flash's 200) that start in
the middle half of the clip and may last into the last quarter, drawn over whatever is there. The cue is a shape, not a
colour, in grey, at independent places, and the flashes are half a clip apart: a C2D, which relates no
frames before its global pool, is additive over the halves (at most 3/4 on two shapes, by the argument of
docs/synthetic_data.md), while a non-local block can compare the two.

    python -m benchmarks.unseen_task ROOT [--train 6000 --val 400 --test 1000 --frames 16 --size 32 --seed 7]

writes ROOT/{train,val,test}/{same,other}/*.mp4 and ROOT/classes.txt (the Kinetics folder layout that
``data.source: video`` reads).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nlbench.data.video import write_video

CLASSES = ("same", "other")


SHAPES = ("square", "plus")


def mask(shape: str, side: int) -> np.ndarray:
    """A side x side boolean stencil of ``shape``."""
    m = np.zeros((side, side), bool)
    if shape == "square":
        m[:] = True
    else:  # a plus, arms a third of the side wide
        w = max(1, side // 3)
        lo = (side - w) // 2
        m[lo:lo + w, :] = True
        m[:, lo:lo + w] = True
    return m


def clip(rng: np.random.Generator, label: int, frames: int, size: int) -> tuple[np.ndarray, tuple[str, str]]:
    """(frames (T, H, W, 3) uint8, the two flashes' shapes)."""
    video = rng.normal(110, 12, (frames, size, size, 1)).clip(0, 255).repeat(3, axis=3)
    first = SHAPES[int(rng.integers(2))]
    second = first if label == 0 else SHAPES[1 - SHAPES.index(first)]
    span = max(1, frames // 5)
    quarter = frames // 4
    starts = (int(rng.integers(0, quarter - span + 1)), frames - quarter + int(rng.integers(0, quarter - span + 1)))
    for shape, start in zip((first, second), starts):
        side = int(rng.integers(size // 5, size // 4 + 1)) | 1
        y, x = (int(v) for v in rng.integers(0, size - side + 1, 2))
        m = mask(shape, side)
        video[start:start + span, y:y + side, x:x + side][:, m] = rng.uniform(200, 255)
    for _ in range(int(rng.integers(1, 4))):  # dim distractors from the middle half of the clip on, anywhere
        side = int(rng.integers(size // 10, size // 6 + 1))
        y, x = (int(v) for v in rng.integers(0, size - side, 2))
        t = int(rng.integers(quarter, frames - quarter))
        video[t:t + span, y:y + side, x:x + side] = rng.uniform(130, 170)
    return video.round().astype(np.uint8), (first, second)


def write(root: Path, sizes: dict[str, int], frames: int, size: int, seed: int) -> None:
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root}: not empty")
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    for k, (split, n) in enumerate(sizes.items()):
        rng = np.random.default_rng([seed, k])
        for i in range(n):
            label = i % 2
            write_video(root / split / CLASSES[label] / f"{split}_{i:05d}.mp4", clip(rng, label, frames, size)[0], fps=8,
                        options={"crf": "10", "preset": "veryfast"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--train", type=int, default=6000)
    p.add_argument("--val", type=int, default=400)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    write(a.root, {"train": a.train, "val": a.val, "test": a.test}, a.frames, a.size, a.seed)


if __name__ == "__main__":
    main()
