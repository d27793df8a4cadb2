"""Decoded video frames to RGB: 8-bit 4:2:0 YUV converted for a whole clip at once, from the standard's equations.

Why not swscale (PyAV's ``reformat``) for every frame: on the small frames of a CPU benchmark its per-call cost
(context checks, frame allocation, a Python object per frame) is most of the conversion, about 70 us a
32x32 frame. Copying the three planes out and converting the clip in a few numpy passes costs a third to
a half of that per clip (docs/synthetic_data.md, "Where a video clip's time goes"). Its default (unscaled,
table-based) converter also truncates: a flat Y=100 reads as 97 where BT.601 gives 97.8; this one rounds.

The equations (ITU-R BT.601 / BT.709 / BT.2020, limited or full range), with Kr, Kb the luma weights:

    Y' = (Y - 16) * 255/219,   Cb' = (U - 128) * 255/224,   Cr' = (V - 128) * 255/224     (limited range)
    R = Y' + 2 (1 - Kr) Cr',   B = Y' + 2 (1 - Kb) Cb',   G = (Y' - Kr R - Kb B) / (1 - Kr - Kb)

Full range drops the offsets of Y and the 255/219, 255/224 scales. Chroma is upsampled by repeating each
sample over its 2x2 luma block (what swscale's unscaled converter does). Frames in any other pixel format
or colour matrix go to swscale: ``converter(frame)`` returns None for them.
"""
from __future__ import annotations

import functools

import av
import numpy as np

# (Kr, Kb) by FFmpeg's AVColorSpace code (frame.colorspace). Unspecified (2) is BT.601, as FFmpeg assumes;
# 5 (BT.470BG) and 6 (SMPTE 170M) are BT.601 under two names.
LUMA_WEIGHTS = {1: (0.2126, 0.0722), 2: (0.299, 0.114), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
                7: (0.212, 0.087), 9: (0.2627, 0.0593)}
_PLANAR_420 = {"yuv420p": False, "yuvj420p": True}  # pixel format -> full range by definition
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def yuv_to_rgb_matrix(kr: float, kb: float, full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(M, offset) with RGB = M @ ([Y, U, V] - offset), float64, from the equations above."""
    kg = 1.0 - kr - kb
    ys, cs = (1.0, 1.0) if full_range else (255.0 / 219.0, 255.0 / 224.0)
    m = np.array([
        [ys, 0.0, 2.0 * (1.0 - kr) * cs],
        [ys, -2.0 * (1.0 - kb) * kb / kg * cs, -2.0 * (1.0 - kr) * kr / kg * cs],
        [ys, 2.0 * (1.0 - kb) * cs, 0.0],
    ])
    return m, np.array([0.0 if full_range else 16.0, 128.0, 128.0])


class Yuv420Converter:
    """RGB of 8-bit planar 4:2:0 frames, a whole clip in a few float32 passes, rounded to the nearest level
    and clipped to [0, 255]."""

    def __init__(self, kr: float, kb: float, full_range: bool):
        self.kr, self.kb, self.full_range = kr, kb, full_range
        m, offset = yuv_to_rgb_matrix(kr, kb, full_range)
        self._m = m.astype(np.float32)
        # The luma offset and the 0.5 of rounding in one constant (chroma's offset is 128 in both ranges).
        self._luma_shift = np.float32(0.5 - offset[0] * m[0, 0])

    def planes(self, frames: list[av.VideoFrame]) -> tuple[np.ndarray, np.ndarray]:
        """The frames' planes copied out: Y (T, H, W) and U, V (T, 2, ceil(H/2), ceil(W/2)) uint8."""
        h, w = frames[0].height, frames[0].width
        ch, cw = (h + 1) // 2, (w + 1) // 2
        y = np.empty((len(frames), h, w), np.uint8)
        uv = np.empty((len(frames), 2, ch, cw), np.uint8)
        for k, frame in enumerate(frames):
            p = frame.planes  # rows are padded to line_size bytes
            y[k] = np.frombuffer(p[0], np.uint8).reshape(-1, p[0].line_size)[:h, :w]
            uv[k, 0] = np.frombuffer(p[1], np.uint8).reshape(-1, p[1].line_size)[:ch, :cw]
            uv[k, 1] = np.frombuffer(p[2], np.uint8).reshape(-1, p[2].line_size)[:ch, :cw]
        return y, uv

    def rgb(self, y: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB of Y (T, H, W) and U, V (T, 2, ceil(H/2), ceil(W/2)) planes."""
        t, h, w = y.shape
        m = self._m
        # The chroma terms at chroma resolution (a quarter of the pixels), then repeated over each 2x2 block
        # and added to luma as whole contiguous planes (broadcasting into an interleaved RGB array directly
        # costs numpy twice as much).
        u, v = (plane.astype(np.float32) - np.float32(128.0) for plane in (uv[:, 0], uv[:, 1]))
        terms = np.stack([m[0, 2] * v, m[1, 1] * u + m[1, 2] * v, m[2, 1] * u])  # (3, T, ch, cw)
        out = terms.repeat(2, axis=2).repeat(2, axis=3)[:, :, :h, :w]
        luma = y.astype(np.float32)
        luma *= m[0, 0]
        luma += self._luma_shift
        out += luma
        np.clip(out, 0.0, 255.0, out=out)
        # The cast truncates x + 0.5 >= 0: rounding to the nearest level.
        return np.ascontiguousarray(out.astype(np.uint8).transpose(1, 2, 3, 0))

    def __call__(self, frames: list[av.VideoFrame]) -> np.ndarray:
        return self.rgb(*self.planes(frames))


def converter(frame: av.VideoFrame) -> Yuv420Converter | None:
    """The clip converter for frames like ``frame``; None when its format or colour matrix is not one of the
    above (swscale converts those)."""
    full = _PLANAR_420.get(frame.format.name)
    weights = LUMA_WEIGHTS.get(int(frame.colorspace))
    if full is None or weights is None:
        return None
    return _converter(*weights, full or int(frame.color_range) == _FULL_RANGE)


@functools.cache
def _converter(kr: float, kb: float, full_range: bool) -> Yuv420Converter:
    return Yuv420Converter(kr, kb, full_range)
