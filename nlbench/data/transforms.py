"""Spatial transforms of a clip in plain torch: the paper's scale jitter, crops, flip and normalisation.

A clip enters as decoded frames (T, H, W, 3) uint8 and leaves as the model's (3, T, h, w) float.
Every spatial choice (scale, crop position, flip) is drawn once per clip and applied to all its
frames alike, so motion inside a clip is never distorted. Crop windows are cut in source pixels
first and only the window is resized: the same result as resizing the whole frame and then cropping,
at a fraction of the cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nlbench.data.analysis import ENSEMBLES

# The released code's Kinetics statistics (114.75 / 57.375 of 255), the same for every channel.
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

Box = tuple[int, int, int, int]  # top, left, height, width in source pixels


# The paper's geometry (section 4): training short side random in [256, 320], random 224 crop; test
# short side 256, crops of 256. "auto" in a run config means these ratios at the configured crop size.
PAPER_CROP, PAPER_TRAIN_SHORT_SIDE, PAPER_TEST_SHORT_SIDE = 224, (256, 320), 256


@dataclass(frozen=True)
class ClipTransformConfig:
    """Every spatial choice of the video path. Paper defaults (section 4): training short side random in
    [256, 320], random 224 crop, flip; evaluation short side 256, validation one centre ``crop``, test
    ``num_crops`` crops of ``test_crop``; softmax scores of the test views averaged per video.

    ``train_short_side=None`` is no scale jitter: the short side is scaled to ``crop``, so a square frame
    is kept whole (nothing is cut away). ``resolve`` turns a run config's "auto" values into numbers."""

    train_short_side: tuple[int, int] | None = PAPER_TRAIN_SHORT_SIDE
    crop: int = PAPER_CROP
    flip: bool = True
    test_short_side: int = PAPER_TEST_SHORT_SIDE
    test_crop: int = PAPER_TEST_SHORT_SIDE
    num_crops: int = 3
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    ensemble: str = "mean_softmax"

    def __post_init__(self) -> None:
        for name in ("train_short_side", "mean", "std"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("crop", "test_short_side", "test_crop", "num_crops"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ClipTransformConfig: {name}={value!r} is not allowed; expected a positive int")
        if self.train_short_side is not None:
            if len(self.train_short_side) != 2 or not self.crop <= self.train_short_side[0] <= self.train_short_side[1]:
                raise ValueError(
                    f"ClipTransformConfig: train_short_side={self.train_short_side!r} is not allowed; "
                    f"expected (min, max) with crop={self.crop} <= min <= max, or None (no scale jitter)"
                )
        if not self.crop <= self.test_short_side or not self.test_crop <= self.test_short_side:
            raise ValueError(
                f"ClipTransformConfig: test_short_side={self.test_short_side} is smaller than "
                f"crop={self.crop} or test_crop={self.test_crop}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"ClipTransformConfig: mean={self.mean!r} / std={self.std!r}: expected 3 values, std > 0")
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ClipTransformConfig: ensemble={self.ensemble!r} is not allowed; "
                             f"expected one of {ENSEMBLES}")

    @property
    def train_short_range(self) -> tuple[int, int]:
        return self.train_short_side or (self.crop, self.crop)

    @classmethod
    def resolve(cls, crop: int, train_short_side="auto", test_short_side="auto", test_crop="auto", **rest):
        """The transform of a run config: "auto" is the paper's ratio at ``crop`` (256/224 and 320/224 of
        it); a test short side of None is ``crop`` (no rescaling past the crop); a test crop of "auto" is
        the test short side (the paper's 256 crops at 256)."""
        def r(v: int) -> int:
            return max(crop, round(v * crop / PAPER_CROP))

        if train_short_side == "auto":
            train_short_side = (r(PAPER_TRAIN_SHORT_SIDE[0]), r(PAPER_TRAIN_SHORT_SIDE[1]))
        if test_short_side == "auto":
            test_short_side = r(PAPER_TEST_SHORT_SIDE)
        elif test_short_side is None:
            test_short_side = crop
        if test_crop == "auto":
            test_crop = test_short_side
        return cls(crop=crop, train_short_side=train_short_side, test_short_side=test_short_side,
                   test_crop=test_crop, **rest)

    @classmethod
    def scaled(cls, crop: int, *, jitter: bool = True, **overrides) -> ClipTransformConfig:
        """The paper's geometry for a ``crop`` other than 224 (``resolve`` with "auto"); ``jitter=False``
        keeps every short side at ``crop`` (a square frame is read whole)."""
        if jitter:
            return cls.resolve(crop, **overrides)
        return cls.resolve(crop, **{"train_short_side": None, "test_short_side": None, **overrides})

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) uint8, without copying."""
    return torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2)


def resized_crop(clip: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """Cut ``box`` out of a (T, 3, H, W) uint8 clip and resize it to size x size: the window itself (a
    uint8 view, no copy) when it already has that size, else float in [0, 255]."""
    top, left, h, w = box
    window = clip[..., top : top + h, left : left + w]
    if (h, w) == (size, size):
        return window
    return F.interpolate(window.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class ToModel:
    """(T, 3, H, W) in [0, 255] (uint8 or float, any strides) -> normalised float (3, T, H, W), ``(x / 255 - mean)
    / std``: one converting copy into channels-innermost memory and one fused multiply-add.

    Channels innermost (a (T, H, W, 3) array seen as (3, T, H, W)) is the frames' own layout, so the copy
    reads them in order, and the layout the models train in: ``collate_clips`` batches such clips as
    channels_last_3d, which the model takes without transposing (as the cached synthetic clips)."""

    def __init__(self, mean, std):
        std = torch.tensor(std, dtype=torch.float32)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -torch.tensor(mean, dtype=torch.float32) / std

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        out = torch.empty((clip.shape[0], *clip.shape[2:], 3), dtype=torch.float32)
        out.copy_(clip.permute(0, 2, 3, 1))
        return torch.addcmul(self.shift, out, self.scale, out=out).permute(3, 0, 1, 2)


def random_box(height: int, width: int, short_range: tuple[int, int], crop: int, generator=None) -> Box:
    """The source window of a ``crop`` crop at a random position after scaling the short side to a
    random integer in ``short_range``."""
    short = int(torch.randint(short_range[0], short_range[1] + 1, (1,), generator=generator))
    side = min(round(crop * min(height, width) / short), height, width)
    top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
    return top, left, side, side


def view_boxes(height: int, width: int, short_side: int, crop: int, num_crops: int) -> list[Box]:
    """Source windows of ``num_crops`` crops evenly spaced along the long side (3: the two ends and the
    centre, as the released code's test views), centred on the short side, after scaling the short side
    to ``short_side``. Portrait videos get top/centre/bottom."""
    side = min(round(crop * min(height, width) / short_side), height, width)
    along = np.linspace(0, max(height, width) - side, num_crops) if num_crops > 1 else [(max(height, width) - side) / 2]
    across = (min(height, width) - side) // 2
    if width >= height:
        return [(across, int(round(a)), side, side) for a in along]
    return [(int(round(a)), across, side, side) for a in along]


def normalize(clip: torch.Tensor, mean, std) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1] -> normalised (3, T, H, W), the layout of the models (the synthetic source's
    path; the video path's ``ToModel`` gives the same values to float rounding in fewer passes)."""
    m = torch.tensor(mean, dtype=clip.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=clip.dtype).view(1, 3, 1, 1)
    return clip.sub_(m).div_(s).permute(1, 0, 2, 3).contiguous()


class TrainTransform:
    """Scale jitter, random crop, random horizontal flip, normalisation; randomness from ``generator``
    (the training set passes one keyed by the run's seed, the epoch and the clip: nlbench.seeds), else from
    torch's global generator."""

    def __init__(self, config: ClipTransformConfig):
        self.config = config
        self.to_model = ToModel(config.mean, config.std)

    def __call__(self, frames: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        clip = frames_to_tensor(frames)
        out = resized_crop(clip, random_box(*clip.shape[-2:], c.train_short_range, c.crop, generator), c.crop)
        if c.flip and torch.rand((), generator=generator) < 0.5:
            out = out.flip(-1)
        return self.to_model(out)


class EvalTransform:
    """View ``index`` of ``num_crops`` crops of ``crop`` after scaling the short side to ``short_side``."""

    def __init__(self, config: ClipTransformConfig, crop: int, num_crops: int = 1, index: int = 0):
        if not 0 <= index < num_crops:
            raise ValueError(f"EvalTransform: crop index {index} is out of range 0..{num_crops - 1}")
        self.config, self.crop, self.num_crops, self.index = config, crop, num_crops, index
        self.to_model = ToModel(config.mean, config.std)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        c = self.config
        clip = frames_to_tensor(frames)
        box = view_boxes(*clip.shape[-2:], c.test_short_side, self.crop, self.num_crops)[self.index]
        return self.to_model(resized_crop(clip, box, self.crop))
