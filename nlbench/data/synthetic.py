"""The embedded long-range video benchmark: clips drawn procedurally from a seed, no download.

Every clip shows two *cue* squares on a dark, noisy background, and its class is whether they have the same
colour (``same``) or not (``different``). What changes from clip to clip is where and when the two cues are:
the clip's *family*, cycled through so that every family has exactly the same number of clips of each class.
A network gets no label for the family; it has to find the pair wherever and whenever it is. The design and
the evidence for it are in docs/synthetic_data.md; the short version:

* ``local``      side by side, 1-2 px apart, in every frame: within one conv's reach (the control: a C2D solves it,
                 so a failure elsewhere is about range, not about comparing colours).
* ``space``      opposite corners of every frame.
* ``time``       one place; the first cue in the first half of the frames, the second in the second half, which the
                 paper's C2D never pools into one temporal slot.
* ``spacetime``  opposite corners, the first in the first half of the frames, the second in the second half.

A C2D (per-frame convs, disjoint temporal pools, average pool, linear classifier) scores a time or spacetime
clip as a sum of one term per cue, and no such sum tells "same" from "different" better than 3/4 with two
colours (2/3 with three); a non-local block that attends over time does.

A C2D's score of a time or spacetime clip is additive over the two halves, and some additive rule is right
on at least 5/8 of any "same or not" relation (3/4 here: "same when both are green"). So from design 3 on,
the validation and test clips come in *quadruples*: one layout, one timing, one noise, and the four colour
assignments (c, c), (c, c'), (c', c'), (c', c). Scores that add up over the halves sum to the same total on
the two "same" clips as on the two "different" ones, so no additive model gets all four right: the group
accuracy (a quadruple counts when all four are right) is exactly 0 for a C2D on a temporal family, where a
network that relates the halves reaches 100 % (docs/synthetic_data.md).

Item ``index`` of a training split is drawn from ``numpy.random.default_rng([seed, split, index])``, a
quadruple ``g`` of val or test from ``default_rng([seed, split, g])``, so any clip is generated on its own,
in any order, by any DataLoader worker, bit for bit the same (for a given numpy version: numpy may change its
Generator streams across releases). ``label = index % 2`` and the family cycling over pairs (train) or
quadruples (val, test) make the balance exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nlbench.data.splits import SPLITS

# A new design draws different clips for the same config; a config names the design it was made with
# (``SyntheticConfig.design``, which caches are keyed by too), and every design stays reproducible.
DESIGNS = (2, 3)
# Design 3: val and test clips in quadruples, one per colour assignment (c, c), (c, c'), (c', c'), (c', c).
GROUP = 4
GROUPED_SPLITS = ("val", "test")

# Saturated and far apart in RGB and in chroma, so that H.264's 4:2:0 chroma subsampling and the
# background noise never turn one into another. Cues use the first ``colours`` of them.
PALETTE = np.array(
    [[220, 40, 40], [40, 190, 60], [50, 90, 230], [230, 210, 50], [200, 60, 210], [50, 200, 210]], dtype=np.uint8
)
COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
BACKGROUND = 40
CUE_SHAPE, DISTRACTOR_SHAPE = "square", "ring"  # told apart by shape when distractors are on

CLASS_NAMES = ("same", "different")


@dataclass(frozen=True)
class Family:
    name: str
    needs: str  # what a network has to relate, for tables and docs
    across_time: bool = False  # the cues are in different halves: a C2D is additive over them (no relation)


FAMILY_SPECS: tuple[Family, ...] = (
    Family("local", "two neighbouring cues in one frame (a conv's reach): the control"),
    Family("space", "opposite corners of one frame: space"),
    Family("time", "one place, first and second half of the clip: time", across_time=True),
    Family("spacetime", "opposite corners, first and second half of the clip: spacetime", across_time=True),
)
FAMILIES = tuple(f.name for f in FAMILY_SPECS)
CONTROL = FAMILIES[0]  # what every network, a C2D included, must solve
ACROSS_TIME = tuple(f.name for f in FAMILY_SPECS if f.across_time)  # what a C2D cannot
_FAMILY = {f.name: f for f in FAMILY_SPECS}


def valid_families(families) -> bool:
    """A non-empty selection of distinct family names (a run config's data.families checks the same)."""
    return bool(families) and len(set(families)) == len(families) and all(f in _FAMILY for f in families)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: ``frames`` x ``size`` x ``size`` RGB clips, ``split_sizes`` (train, val, test).

    ``families`` picks a subset of the layouts; ``distractors`` is the (min, max) number of distracting
    rings per clip; ``noise`` the std of the per-pixel Gaussian noise; ``colours`` how many palette colours
    the cues take; ``design`` 3 draws val and test in quadruples (the module's docstring), 2 clip by clip.
    """

    frames: int = 16
    size: int = 64
    split_sizes: tuple[int, int, int] = (8000, 1000, 1000)
    seed: int = 0
    families: tuple[str, ...] = FAMILIES
    distractors: tuple[int, int] = (0, 0)
    noise: float = 4.0
    # Two (red and green: one RGB channel each) make "same colour" a feature one conv computes and the small
    # nets learn in a few hundred steps; a readout without interactions still cannot pass 3/4 within a family,
    # and C2D stays near 1/2 (docs/synthetic_data.md).
    colours: int = 2
    design: int = 2  # what every config written before design 3 means; the profiles set 3

    def __post_init__(self) -> None:
        for name in ("split_sizes", "families", "distractors"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        # Even T: two halves of equal length; even size is what H.264 in yuv420p needs.
        if not isinstance(self.frames, int) or self.frames < 4 or self.frames % 2:
            raise ValueError(f"SyntheticConfig: frames={self.frames!r} is not allowed; expected an even int >= 4")
        if not isinstance(self.size, int) or self.size < 24 or self.size % 2:
            raise ValueError(f"SyntheticConfig: size={self.size!r} is not allowed; expected an even int >= 24")
        if not valid_families(self.families):
            raise ValueError(
                f"SyntheticConfig: families={self.families!r} is not allowed; expected distinct names from {FAMILIES}"
            )
        if self.design not in DESIGNS:
            raise ValueError(f"SyntheticConfig: design={self.design!r} is not allowed; expected one of {DESIGNS}")
        units = [self._unit(split) * len(self.families) for split in SPLITS]
        if len(self.split_sizes) != 3 or any(not isinstance(s, int) or s < n or s % n
                                             for s, n in zip(self.split_sizes, units)):
            expected = (f"three positive multiples of {units[0]} (2 classes x {len(self.families)} families: train, "
                        f"val, test)" if len(set(units)) == 1 else
                        f"positive multiples of {units[0]}, {units[1]} and {units[2]} (train: 2 classes, val and "
                        f"test: quadruples of 4 clips, x {len(self.families)} families)")
            raise ValueError(f"SyntheticConfig: split_sizes={self.split_sizes!r} is not allowed; expected "
                             f"{expected}, so that every class of every family has the same count")
        lo, hi = self.distractors
        if len(self.distractors) != 2 or not 0 <= lo <= hi:
            raise ValueError(f"SyntheticConfig: distractors={self.distractors!r} is not allowed; expected (min, max)")
        if not 0 <= self.noise <= 64:
            raise ValueError(f"SyntheticConfig: noise={self.noise!r} is not allowed; expected 0 to 64")
        if not isinstance(self.colours, int) or not 2 <= self.colours <= len(PALETTE):
            raise ValueError(f"SyntheticConfig: colours={self.colours!r} is not allowed; expected 2 to {len(PALETTE)}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SyntheticConfig: seed={self.seed!r} is not allowed; expected an int >= 0")

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASS_NAMES

    @property
    def sprite_size(self) -> int:
        return sprite_size(self.size)

    @property
    def cue_spans(self) -> tuple[range, range]:
        """The frames that show the first and the second temporal cue (time and spacetime families)."""
        half = self.frames // 2
        return range(0, half), range(half, self.frames)

    def split_size(self, split: str) -> int:
        return self.split_sizes[_split_id(split)]

    def grouped(self, split: str) -> bool:
        """Whether ``split``'s clips come in quadruples (design 3: val and test)."""
        return self.design >= 3 and split in GROUPED_SPLITS

    def _unit(self, split: str) -> int:
        """Consecutive clips that share a family: a pair (one per class) or a quadruple."""
        return GROUP if self.grouped(split) else len(CLASS_NAMES)

    def label(self, index: int) -> int:
        return index % len(CLASS_NAMES)

    def family(self, index: int, split: str = "train") -> str:
        return self.families[index // self._unit(split) % len(self.families)]

    def families_of(self, split: str) -> np.ndarray:
        """The family of every clip of ``split``, in index order."""
        return np.array([self.family(i, split) for i in range(self.split_size(split))])

    def groups_of(self, split: str) -> np.ndarray | None:
        """The quadruple of every clip of ``split`` (None: its clips are drawn one by one)."""
        return np.arange(self.split_size(split)) // GROUP if self.grouped(split) else None


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
    family: str
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
    }
    mask = masks[shape]
    mask.setflags(write=False)
    return mask


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"synthetic split={split!r} is not allowed; expected one of {SPLITS}")
    return SPLITS.index(split)


def _colours(rng: np.random.Generator, relation: str, k: int) -> tuple[int, int]:
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


def _quadruple_colours(rng: np.random.Generator, member: int, k: int) -> tuple[int, int]:
    """Member 0-3 of a quadruple: (c, c), (c, c'), (c', c'), (c', c), labels same, different, same, different."""
    c = int(rng.integers(k))
    d = (c + int(rng.integers(1, k))) % k
    return ((c, c), (c, d), (d, d), (d, c))[member]


def _cues(config: SyntheticConfig, family: str, colours: tuple[int, int], rng: np.random.Generator) -> list[Sprite]:
    T, size, s = config.frames, config.size, config.sprite_size
    always = lambda top: (top,) * T  # noqa: E731
    during = lambda span, top: tuple(top if i in span else None for i in range(T))  # noqa: E731
    ca, cb = colours
    first, second = config.cue_spans
    if family == "local":
        gap = int(rng.integers(1, 3))
        if rng.integers(2):  # side by side
            y, x = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - 2 * s - gap + 1))
            a, b = (y, x), (y, x + s + gap)
        else:  # one above the other
            y, x = int(rng.integers(0, size - 2 * s - gap + 1)), int(rng.integers(0, size - s + 1))
            a, b = (y, x), (y + s + gap, x)
        return [Sprite(CUE_SHAPE, ca, always(a), "cue"), Sprite(CUE_SHAPE, cb, always(b), "cue")]
    if family == "space":
        a, b = _opposite_corners(rng, size, s)
        return [Sprite(CUE_SHAPE, ca, always(a), "cue"), Sprite(CUE_SHAPE, cb, always(b), "cue")]
    if family == "time":
        top = (int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1)))
        return [Sprite(CUE_SHAPE, ca, during(first, top), "cue"), Sprite(CUE_SHAPE, cb, during(second, top), "cue")]
    a, b = _opposite_corners(rng, size, s)  # spacetime
    return [Sprite(CUE_SHAPE, ca, during(first, a), "cue"), Sprite(CUE_SHAPE, cb, during(second, b), "cue")]


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
        colour = int(rng.integers(config.colours))
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
    label, family = config.label(index), config.family(index, split)
    if config.grouped(split):  # the quadruple's stream: its members differ in the cue colours only
        group, member = divmod(index, GROUP)
        rng = np.random.default_rng([config.seed, _split_id(split), group])
        colours = _quadruple_colours(rng, member, config.colours)
    else:
        rng = np.random.default_rng([config.seed, _split_id(split), index])
        colours = _colours(rng, CLASS_NAMES[label], config.colours)
    cues = _cues(config, family, colours, rng)
    sprites = tuple(cues + _distractors(config, cues, rng))
    return Clip(render(config, sprites, rng), label, family, sprites)
