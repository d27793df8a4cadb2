"""A long-range video task that is not the embedded benchmark, written as mp4 files: a check that a recipe is
not fitted to the synthetic generator it was tuned on (docs/tiny_recipe.md, "Not fitted to one data set").

Two flashes: a bright square flashes for three frames near the start of the clip at a random place, and a
second one for three frames near the end. Class ``same``: the second lies in the same quadrant of the frame
as the first; ``other``: in another quadrant. Everything else is noise: a grey background with per-pixel
noise, square sizes and grey levels drawn per flash, a few dim distractor squares in the middle frames. The
cue is a position, not a colour, and the two flashes are half a clip apart, so a C2D, which relates no
frames before its global pool, is additive over the halves and at chance (the argument of
docs/synthetic_data.md with quadrants for colours), while a spacetime non-local block can relate them.

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


def quadrant(y: int, x: int, size: int) -> int:
    return 2 * (y >= size // 2) + (x >= size // 2)


def _place(rng: np.random.Generator, size: int, side: int, quad: int) -> tuple[int, int]:
    """A top-left corner whose square lies wholly inside quadrant ``quad``."""
    half = size // 2
    y0, x0 = (quad // 2) * half, (quad % 2) * half
    return y0 + int(rng.integers(0, half - side + 1)), x0 + int(rng.integers(0, half - side + 1))


def clip(rng: np.random.Generator, label: int, frames: int, size: int) -> np.ndarray:
    video = rng.normal(110, 12, (frames, size, size, 1)).clip(0, 255).repeat(3, axis=3)
    first = int(rng.integers(4))
    second = first if label == 0 else int((first + rng.integers(1, 4)) % 4)
    span = max(1, frames // 5)
    starts = (int(rng.integers(0, frames // 4 - span + 1)), frames - frames // 4 + int(rng.integers(0, frames // 4 - span + 1)))
    for quad, start in zip((first, second), starts):
        side = int(rng.integers(size // 8, size // 5 + 1))
        y, x = _place(rng, size, side, quad)
        level = rng.uniform(200, 255, 3)
        video[start:start + span, y:y + side, x:x + side] = level
    for _ in range(int(rng.integers(1, 4))):  # dim distractors in the middle of the clip, anywhere
        side = int(rng.integers(size // 10, size // 6 + 1))
        y, x = (int(v) for v in rng.integers(0, size - side, 2))
        t = int(rng.integers(frames // 4, frames - frames // 4))
        video[t:t + span, y:y + side, x:x + side] = rng.uniform(130, 170, 3)
    return video.round().astype(np.uint8)


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
            write_video(root / split / CLASSES[label] / f"{split}_{i:05d}.mp4", clip(rng, label, frames, size), fps=8,
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
