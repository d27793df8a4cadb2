"""Where in a video a clip's frames come from: arithmetic on presentation times, no decoding (nlbench.data.video
reads the frames).

Clips are sampled on a time grid, not by counting frames: frame k of a clip starting at ``start`` seconds is
the frame on screen at ``start + k * sampling_rate / fps``. Apart from PyAV's reader, so that a run config
(which names a short-clip policy) can be read without loading PyAV.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# What to do with a video shorter than one clip (README "Short clips"): hold its last frame, wrap around
# to its start, leave it out of its split, or refuse the run.
SHORT_CLIP_POLICIES = ("pad_last", "loop", "skip", "error")


@dataclass(frozen=True)
class ClipSampling:
    """``num_frames`` frames taken every ``sampling_rate`` frames (the paper's 32x2: 32 of 64
    consecutive frames); the test split is read as ``num_clips`` evenly spaced clips per video.
    ``short_clip`` is the policy for videos shorter than one clip (``SHORT_CLIP_POLICIES``)."""

    num_frames: int = 32
    sampling_rate: int = 2
    num_clips: int = 10
    short_clip: str = "pad_last"

    def __post_init__(self) -> None:
        for name in ("num_frames", "sampling_rate", "num_clips"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ClipSampling: {name}={value!r} is not allowed; expected a positive int")
        if self.short_clip not in SHORT_CLIP_POLICIES:
            raise ValueError(f"ClipSampling: short_clip={self.short_clip!r} is not allowed; expected one of "
                             f"{', '.join(SHORT_CLIP_POLICIES)}")

    def span(self, fps: float) -> float:
        """Seconds of video one clip covers."""
        return self.num_frames * self.sampling_rate / fps

    def loops(self, fps: float, duration: float) -> bool:
        """True when the video is shorter than one clip (by more than half a frame)."""
        return self.span(fps) > duration + 0.5 / fps

    def times(self, start: float, fps: float, duration: float) -> np.ndarray:
        """Presentation times (s, from the video's start) of the clip's frames. In a video shorter than
        the clip, ``loop`` wraps the times around its duration; otherwise times past the end are read as
        the last frame (``VideoReader.read`` holds it), which keeps the frames in time order."""
        times = start + np.arange(self.num_frames) * (self.sampling_rate / fps)
        return np.mod(times, duration) if self.short_clip == "loop" and self.loops(fps, duration) else times

    def max_start(self, fps: float, duration: float) -> float:
        return max(0.0, duration - self.span(fps))

    def test_starts(self, fps: float, duration: float) -> np.ndarray:
        """``num_clips`` clip starts evenly spaced from the first frame to the last possible start
        (one clip: the middle one)."""
        last = self.max_start(fps, duration)
        return np.array([last / 2]) if self.num_clips == 1 else np.linspace(0.0, last, self.num_clips)

    def __str__(self) -> str:
        return f"{self.num_frames}x{self.sampling_rate}"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


__all__ = ["SHORT_CLIP_POLICIES", "ClipSampling"]
