"""Decoded frames to RGB (nlbench.data.colour) and clips to the model's input (transforms.ToModel), against
float64 references written from the equations, and against swscale (FFmpeg's converter) on real decodes."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import VideoReformatter

from nlbench.data.colour import LUMA_WEIGHTS, Yuv420Converter, converter
from nlbench.data.transforms import KINETICS_MEAN, KINETICS_STD, ToModel
from nlbench.data.video import VideoReader, write_video

BT601, BT709, BT2020 = (0.299, 0.114), (0.2126, 0.0722), (0.2627, 0.0593)


def reference_rgb(y, u, v, kr, kb, full_range):
    """Per pixel, in float64, from BT.601/709/2020 as written: scale Y' and the colour differences, then
    R and B from their own difference and G from the luma equation Y' = Kr R + Kg G + Kb B. Chroma sample
    (i // 2, j // 2) belongs to pixel (i, j). Rounded half up, clipped to [0, 255]."""
    y, u, v = (np.asarray(a, dtype=np.float64) for a in (y, u, v))
    u = u.repeat(2, -2).repeat(2, -1)[..., : y.shape[-2], : y.shape[-1]]
    v = v.repeat(2, -2).repeat(2, -1)[..., : y.shape[-2], : y.shape[-1]]
    if full_range:
        luma, cb, cr = y, u - 128, v - 128
    else:
        luma, cb, cr = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    r = luma + 2 * (1 - kr) * cr
    b = luma + 2 * (1 - kb) * cb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    rgb = np.stack([r, g, b], -1)
    return np.clip(np.floor(rgb + 0.5), 0, 255), rgb


@pytest.mark.parametrize("weights", [BT601, BT709, BT2020])
@pytest.mark.parametrize("full_range", [False, True])
@pytest.mark.parametrize("size", [(6, 32, 32), (3, 7, 9), (2, 1, 1)])
def test_clip_conversion_is_the_standards_equations(weights, full_range, size):
    t, h, w = size
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (t, h, w), dtype=np.uint8)
    uv = rng.integers(0, 256, (t, 2, (h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
    got = Yuv420Converter(*weights, full_range).rgb(y, uv)
    want, exact = reference_rgb(y, uv[:, 0], uv[:, 1], *weights, full_range)
    assert got.shape == (t, h, w, 3) and got.dtype == np.uint8
    # float32 sums may land on the other side of a .5 only where the exact value is (nearly) a tie
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    assert np.array_equal(got[~tie], want[~tie])
    assert np.abs(got.astype(int) - want)[tie].max(initial=0) <= 1


def _planes_frame(y, u, v, fmt="yuv420p", colorspace=None, color_range=None):
    frame = av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(-1, y.shape[1]), v.reshape(-1, y.shape[1])]),
                                       format=fmt)
    if colorspace is not None:
        frame.colorspace = colorspace
    if color_range is not None:
        frame.color_range = color_range
    return frame


@pytest.mark.parametrize("colorspace,range_,weights,full", [
    (None, None, BT601, False),  # untagged: FFmpeg's BT.601, limited range
    (1, None, BT709, False),
    (1, 2, BT709, True),  # BT.709 tag, full (JPEG) range
    (9, 1, BT2020, False),
])
def test_frame_tags_choose_the_matrix_and_agree_with_swscale(colorspace, range_, weights, full):
    rng = np.random.default_rng(1)
    y = rng.integers(16, 236, (32, 32), dtype=np.uint8)
    u, v = (rng.integers(16, 241, (16, 16), dtype=np.uint8) for _ in range(2))
    frame = _planes_frame(y, u, v, colorspace=colorspace, color_range=range_)
    convert = converter(frame)
    assert (convert.kr, convert.kb, convert.full_range) == (*weights, full)
    got = convert([frame])[0].astype(int)
    assert np.array_equal(got, reference_rgb(y, u, v, *weights, full)[0])
    # swscale's default (table-based, truncating) converter: within 3 levels of the equations, never more
    sws = VideoReformatter().reformat(frame, format="rgb24").to_ndarray().astype(int)
    assert np.abs(got - sws).max() <= 3


def test_yuvj420p_is_full_range_and_other_formats_are_left_to_swscale():
    frame = av.VideoFrame.from_ndarray(np.full((48, 32), 128, np.uint8), format="yuvj420p")
    assert converter(frame).full_range
    assert converter(av.VideoFrame.from_ndarray(np.zeros((4, 4, 3), np.uint8), format="rgb24")) is None
    assert converter(av.VideoFrame(4, 4, "yuv444p")) is None
    assert converter(_planes_frame(np.zeros((4, 4), np.uint8), *np.zeros((2, 2, 2), np.uint8), colorspace=8)) is None  # YCgCo
    assert set(LUMA_WEIGHTS) >= {1, 2, 5, 6}


def _decoded(path):
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _yuv(frame):
    """A decoded 4:2:0 frame's Y, U and V planes without their row padding."""
    h, w = frame.height, frame.width
    sizes = [(h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2)]
    return [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:r, :c] for p, (r, c) in zip(frame.planes, sizes)]


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p"])
def test_reader_converts_decoded_clips_by_the_equations(tmp_path, pix_fmt):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (8, 18, 26, 3), dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, fps=8, pix_fmt=pix_fmt)
    with VideoReader(path) as reader:
        got = reader.read(np.arange(8) / 8).astype(int)
    decoded = _decoded(path)
    want = np.stack([reference_rgb(*_yuv(f), *BT601, pix_fmt == "yuvj420p")[0] for f in decoded])
    assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.999  # float32 ties only
    sws = np.stack([f.to_ndarray(format="rgb24") for f in decoded]).astype(int)
    assert np.abs(got - sws).max() <= 3


def test_reader_falls_back_to_swscale_for_other_pixel_formats(tmp_path):
    frames = np.random.default_rng(3).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, fps=8, pix_fmt="yuv444p")
    with VideoReader(path) as reader:
        got = reader.read(np.arange(4) / 8)
    want = np.stack([f.to_ndarray(format="rgb24") for f in _decoded(path)])
    assert np.array_equal(got, want)


def test_repeated_times_share_one_converted_frame(tmp_path):
    frames = np.random.default_rng(4).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, fps=8)
    with VideoReader(path) as reader:
        once = reader.read(np.arange(4) / 8)
    with VideoReader(path) as reader:
        twice = reader.read(np.array([3, 0, 0, 2, 3, 1]) / 8)
    assert np.array_equal(twice, once[[3, 0, 0, 2, 3, 1]])


@pytest.mark.parametrize("view", ["whole", "flipped", "cropped_float"])
def test_to_model_normalises_into_channels_innermost_memory(view):
    frames = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (4, 10, 12, 3), dtype=np.uint8))
    clip = frames.permute(0, 3, 1, 2)  # (T, 3, H, W), as the transforms hand it over
    if view == "flipped":
        clip = clip.flip(-1)
    elif view == "cropped_float":
        clip = clip[..., 2:8, 3:9].double()
    out = ToModel(KINETICS_MEAN, KINETICS_STD)(clip)
    x = clip.double().permute(1, 0, 2, 3) / 255
    want = (x - torch.tensor(KINETICS_MEAN, dtype=torch.float64).view(3, 1, 1, 1)) / torch.tensor(
        KINETICS_STD, dtype=torch.float64).view(3, 1, 1, 1)
    assert out.dtype == torch.float32 and out.shape == want.shape
    assert torch.allclose(out.double(), want, atol=1e-5, rtol=0)
    assert out.stride(0) == 1  # channels innermost: collate_clips batches it as channels_last_3d
