"""The embedded long-range video benchmark: clips drawn procedurally from a seed, no download.

Every clip shows a few coloured sprites on a dark, noisy background. Its class is decided by a
relation between two *cue* sprites (whose shape names the family) that are far apart in space, in
time, or in both, while filled squares of the same colours wander around as distractors. The design
and what each class needs are in docs/synthetic_data.md; the short version:

* ``local_*``      two plus marks side by side in every frame: same colour or not (a control that
                   any conv net solves, so a failure elsewhere is about range, not about colour).
* ``space_*``      two rings at opposite corners of every frame: same colour or not.
* ``time_*``       a diamond at the same place in frame 0 and frame T-2: same colour or not.
* ``spacetime_*``  an X in one corner in frame 0 and in the opposite corner in frame T-2.
* ``motion_*``     a bar crossing the whole frame downwards or upwards (order in time: the one
                   family that needs temporal convolutions, not non-local blocks).

Item ``index`` of ``split`` is drawn from ``numpy.random.default_rng([seed, split, index])``, so any
clip is generated on its own, in any order, by any DataLoader worker, bit for bit the same (for a
given numpy version: numpy may change its Generator streams across releases). Labels cycle through
the classes (``label = index % num_classes``), which makes class balance exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SPLITS = ("train", "val", "test")

# Saturated and far apart in RGB and in chroma, so that H.264's 4:2:0 chroma subsampling and the
# background noise never turn one into another.
PALETTE = np.array(
    [[220, 40, 40], [40, 190, 60], [50, 90, 230], [230, 210, 50], [200, 60, 210], [50, 200, 210]], dtype=np.uint8
)
COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
BACKGROUND = 40

# The cue shape of each family: seeing which family a clip belongs to is easy for every network
# (one shape detector), so accuracy differences come from the relation alone.
FAMILY_SHAPE = {"local": "plus", "space": "ring", "time": "diamond", "spacetime": "x", "motion": "bar"}
DISTRACTOR_SHAPE = "square"
FAMILIES = tuple(FAMILY_SHAPE)


@dataclass(frozen=True)
class ClassSpec:
    name: str
    family: str
    relation: str  # "same" / "different" colour of the two cues, or "down" / "up" for motion
    needs: str  # what a network has to relate, for tables and docs


CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("local_same", "local", "same", "two neighbouring marks in one frame (a conv's reach)"),
    ClassSpec("local_different", "local", "different", "two neighbouring marks in one frame (a conv's reach)"),
    ClassSpec("space_same", "space", "same", "opposite corners of one frame: space"),
    ClassSpec("space_different", "space", "different", "opposite corners of one frame: space"),
    ClassSpec("time_same", "time", "same", "one place in the first and the last frames: time"),
    ClassSpec("time_different", "time", "different", "one place in the first and the last frames: time"),
    ClassSpec("spacetime_same", "spacetime", "same", "opposite corners of the first and last frames: spacetime"),
    ClassSpec("spacetime_different", "spacetime", "different",
              "opposite corners of the first and last frames: spacetime"),
    ClassSpec("motion_down", "motion", "down", "temporal order (temporal convolutions, not non-local)"),
    ClassSpec("motion_up", "motion", "up", "temporal order (temporal convolutions, not non-local)"),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)
_SPEC = {c.name: c for c in CLASSES}


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: ``frames`` x ``size`` x ``size`` RGB clips, ``split_sizes`` (train, val, test).

    ``classes`` picks a subset (in this order it sets the labels); ``distractors`` is the (min, max)
    number of distracting squares per clip; ``noise`` the std of the per-pixel Gaussian noise.
    """

    frames: int = 8
    size: int = 32
    # 10000 training clips: with 2400 a small non-local net memorises them before it finds the
    # relations (measured, docs/synthetic_data.md); 5000 gets part of the way.
    split_sizes: tuple[int, int, int] = (10000, 1000, 1000)
    seed: int = 0
    classes: tuple[str, ...] = CLASS_NAMES
    distractors: tuple[int, int] = (2, 4)
    noise: float = 4.0

    def __post_init__(self) -> None:
        for name in ("split_sizes", "classes", "distractors"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        # Even T puts the second temporal cue (frame T-2) on a frame that a conv1 with temporal
        # stride 2 (the paper's C2D) still samples; even size is what H.264 in yuv420p needs.
        if not isinstance(self.frames, int) or self.frames < 4 or self.frames % 2:
            raise ValueError(f"SyntheticConfig: frames={self.frames!r} is not allowed; expected an even int >= 4")
        if not isinstance(self.size, int) or self.size < 24 or self.size % 2:
            raise ValueError(f"SyntheticConfig: size={self.size!r} is not allowed; expected an even int >= 24")
        unknown = [c for c in self.classes if c not in _SPEC]
        if unknown or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(
                f"SyntheticConfig: classes={self.classes!r} is not allowed; expected distinct names from {CLASS_NAMES}"
            )
        n = len(self.classes)
        if len(self.split_sizes) != 3 or any(not isinstance(s, int) or s < n or s % n for s in self.split_sizes):
            raise ValueError(
                f"SyntheticConfig: split_sizes={self.split_sizes!r} is not allowed; expected three positive "
                f"multiples of the {n} classes (train, val, test), so that every class has the same count"
            )
        lo, hi = self.distractors
        if len(self.distractors) != 2 or not 0 <= lo <= hi:
            raise ValueError(f"SyntheticConfig: distractors={self.distractors!r} is not allowed; expected (min, max)")
        if not 0 <= self.noise <= 64:
            raise ValueError(f"SyntheticConfig: noise={self.noise!r} is not allowed; expected 0 to 64")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SyntheticConfig: seed={self.seed!r} is not allowed; expected an int >= 0")

    @property
    def class_specs(self) -> tuple[ClassSpec, ...]:
        return tuple(_SPEC[c] for c in self.classes)

    @property
    def sprite_size(self) -> int:
        return sprite_size(self.size)

    @property
    def cue_frames(self) -> tuple[int, int]:
        """The two frames that carry the temporal cues (time and spacetime families)."""
        return 0, self.frames - 2

    def split_size(self, split: str) -> int:
        return self.split_sizes[_split_id(split)]

    def label(self, index: int) -> int:
        return index % len(self.classes)


@dataclass(frozen=True)
class Sprite:
    """One object of a clip: shape, palette colour and its top-left corner in each frame (None: absent)."""

    shape: str
    colour: int
    tops: tuple[tuple[int, int] | None, ...]
    role: str  # "cue" or "distractor"


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    label: int
    sprites: tuple[Sprite, ...]  # ground truth of the scene, cues first


def sprite_size(size: int) -> int:
    """Odd (so plus, X and diamond have a centre pixel), about 7/32 of the frame."""
    return (size * 7 // 32) | 1


@lru_cache(maxsize=None)
def glyph(shape: str, s: int) -> np.ndarray:
    """Boolean s x s mask of a shape, drawn from pixel-centre coordinates in [-1, 1]."""
    c = (np.arange(s) + 0.5) / s * 2 - 1
    v, u = np.meshgrid(c, c, indexing="ij")
    a, b = np.abs(u), np.abs(v)
    masks = {
        "square": np.ones((s, s), bool),
        "ring": np.maximum(a, b) > 0.4,
        "plus": np.minimum(a, b) < 0.3,
        "x": np.abs(a - b) < 0.3,
        "diamond": a + b <= 1.0,
        "bar": b < 0.45,
    }
    mask = masks[shape]
    mask.setflags(write=False)
    return mask


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"synthetic split={split!r} is not allowed; expected one of {SPLITS}")
    return SPLITS.index(split)


def _colours(rng: np.random.Generator, relation: str) -> tuple[int, int]:
    k = len(PALETTE)
    a = int(rng.integers(k))
    # Each cue alone is uniform over the palette in both relations, so one colour says nothing.
    return (a, a) if relation == "same" else (a, (a + int(rng.integers(1, k))) % k)


def _opposite_corners(rng: np.random.Generator, size: int, s: int) -> tuple[tuple[int, int], tuple[int, int]]:
    margin = max(1, size // 16)
    y1, x1, y2, x2 = (int(v) for v in rng.integers(margin, 2 * margin + 1, size=4))
    far = size - s
    if rng.integers(2):  # main diagonal
        pair = ((y1, x1), (far - y2, far - x2))
    else:  # anti-diagonal
        pair = ((y1, far - x1), (far - y2, x2))
    return pair if rng.integers(2) else pair[::-1]


def _cues(config: SyntheticConfig, spec: ClassSpec, rng: np.random.Generator) -> list[Sprite]:
    T, size, s = config.frames, config.size, config.sprite_size
    shape = FAMILY_SHAPE[spec.family]
    always = lambda top: (top,) * T  # noqa: E731
    only = lambda t, top: tuple(top if i == t else None for i in range(T))  # noqa: E731

    if spec.family == "motion":
        margin = max(1, size // 16)
        x = int(rng.integers(0, size - s + 1))
        ys = np.linspace(margin, size - s - margin, T).round().astype(int)
        ys = ys if spec.relation == "down" else ys[::-1]
        return [Sprite(shape, int(rng.integers(len(PALETTE))), tuple((int(y), x) for y in ys), "cue")]

    ca, cb = _colours(rng, spec.relation)
    first, last = config.cue_frames
    if spec.family == "local":
        gap = int(rng.integers(1, 3))
        if rng.integers(2):  # side by side
            y, x = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - 2 * s - gap + 1))
            a, b = (y, x), (y, x + s + gap)
        else:  # one above the other
            y, x = int(rng.integers(0, size - 2 * s - gap + 1)), int(rng.integers(0, size - s + 1))
            a, b = (y, x), (y + s + gap, x)
        return [Sprite(shape, ca, always(a), "cue"), Sprite(shape, cb, always(b), "cue")]
    if spec.family == "space":
        a, b = _opposite_corners(rng, size, s)
        return [Sprite(shape, ca, always(a), "cue"), Sprite(shape, cb, always(b), "cue")]
    if spec.family == "time":
        top = (int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1)))
        return [Sprite(shape, ca, only(first, top), "cue"), Sprite(shape, cb, only(last, top), "cue")]
    a, b = _opposite_corners(rng, size, s)  # spacetime
    return [Sprite(shape, ca, only(first, a), "cue"), Sprite(shape, cb, only(last, b), "cue")]


def _clear(a: Sprite, b: Sprite, s: int) -> bool:
    """True when the two sprites never touch: at least one background pixel between their boxes."""
    for ta, tb in zip(a.tops, b.tops):
        if ta is not None and tb is not None and abs(ta[0] - tb[0]) <= s and abs(ta[1] - tb[1]) <= s:
            return False
    return True


def _distractors(config: SyntheticConfig, placed: list[Sprite], rng: np.random.Generator) -> list[Sprite]:
    T, s, far = config.frames, config.sprite_size, config.size - config.sprite_size
    out: list[Sprite] = []
    for _ in range(int(rng.integers(config.distractors[0], config.distractors[1] + 1))):
        colour = int(rng.integers(len(PALETTE)))
        for _attempt in range(30):  # a crowded clip gets fewer distractors, never overlapping ones
            length = int(rng.integers((T + 1) // 2, T + 1))
            t0 = int(rng.integers(0, T - length + 1))
            start = rng.integers(0, far + 1, size=2)
            end = start if rng.integers(2) else rng.integers(0, far + 1, size=2)
            path = np.linspace(start, end, length).round().astype(int)
            tops = [None] * T
            for i, (y, x) in enumerate(path):
                tops[t0 + i] = (int(y), int(x))
            candidate = Sprite(DISTRACTOR_SHAPE, colour, tuple(tops), "distractor")
            if all(_clear(candidate, other, s) for other in placed + out):
                out.append(candidate)
                break
    return out


def render(config: SyntheticConfig, sprites: tuple[Sprite, ...], rng: np.random.Generator) -> np.ndarray:
    T, size, s = config.frames, config.size, config.sprite_size
    frames = np.full((T, size, size, 3), BACKGROUND, dtype=np.float32)
    for sprite in sprites:
        mask = glyph(sprite.shape, s)
        for t, top in enumerate(sprite.tops):
            if top is not None:
                y, x = top
                frames[t, y : y + s, x : x + s][mask] = PALETTE[sprite.colour]
    if config.noise:
        frames += rng.normal(0.0, config.noise, size=frames.shape).astype(np.float32)
    return np.clip(frames.round(), 0, 255).astype(np.uint8)


def generate(config: SyntheticConfig, split: str, index: int) -> Clip:
    """Clip ``index`` of ``split``: the same bytes every time, independent of every other clip."""
    n = config.split_size(split)
    if not 0 <= index < n:
        raise IndexError(f"synthetic {split} index {index} is out of range 0..{n - 1}")
    rng = np.random.default_rng([config.seed, _split_id(split), index])
    label = config.label(index)
    cues = _cues(config, config.class_specs[label], rng)
    sprites = tuple(cues + _distractors(config, cues, rng))
    return Clip(render(config, sprites, rng), label, sprites)
