"""Reading and writing video files with PyAV.

A clip's frames are read at the presentation times ``ClipSampling`` (nlbench.data.sampling) gives: frame k
is the frame on screen at that time (the frame with the largest presentation time at or before it). A
variable-frame-rate video is therefore sampled by its timestamps, and a clip that starts late in a long
video costs one seek to the keyframe before it plus the frames from there, not a decode from the start.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from nlbench.data import colour

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv", ".mpg", ".mpeg", ".ogv", ".flv"})
# A broken file can surface as any of these (PyAV maps FFmpeg errors onto builtins, demuxers raise
# IndexError/RuntimeError on garbage); all of them mean "this video cannot be read", never a bug here.
_READ_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError, RuntimeError)


class VideoReadError(Exception):
    """A video that cannot be opened or decoded; ``reason`` says why in a few words."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class VideoMeta:
    duration: float  # seconds of video frames
    fps: float  # average frame rate: the sampling grid of clips
    width: int
    height: int
    frames: int  # from the header; 0 when the container does not say
    codec: str
    container: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


STAGES = ("open", "seek", "decode", "convert")
# Stage times are CPU seconds of the reading thread: on a machine shared with other work (or with the
# training step) wall time says more about the neighbours than about the stage.
_clock = time.thread_time


class VideoReader:
    """One open video file: ``meta`` from its header, ``read(times)`` for the frames shown at those times.

    ``frames_decoded`` counts decoded frames, which shows that a late clip seeks instead of decoding
    the whole video; ``seconds`` the time spent in each of ``STAGES`` (``nlbench data bench``).

    ``threads`` is the decoder's thread count. One by default: a loader reads many small clips in
    parallel workers, and FFmpeg's own threads (started and joined for every file) cost more than they
    save on a clip of a few small frames; give more for a few large videos.

    ``container`` is the demuxer's name as a probe found it (``VideoMeta.container``): FFmpeg then skips
    guessing the format, about a tenth of opening a small file.
    """

    def __init__(self, path: Path | str, threads: int = 1, container: str | None = None):
        self.path = Path(path)
        self.frames_decoded = 0
        self.seconds = dict.fromkeys(STAGES, 0.0)
        t0 = _clock()
        # swscale for the formats colour.py does not convert, one context per file and only when needed
        # (frame.to_ndarray(format=...) builds a new one for every frame, 20x the conversion itself on small
        # frames; one inherited by a forked DataLoader worker deadlocks).
        self._to_rgb: VideoReformatter | None = None
        try:
            self._container = av.open(str(self.path), format=container)
        except _READ_ERRORS as err:
            raise VideoReadError(path, f"cannot open: {_why(err)}") from None
        try:
            if not self._container.streams.video:
                raise VideoReadError(path, "no video stream")
            self._stream = self._container.streams.video[0]
            if threads > 0:
                self._stream.codec_context.thread_count = threads
            self.meta = self._header_meta()
        except BaseException:
            self._container.close()
            raise
        self._at_start = True  # nothing demuxed yet: a clip from the first frame needs no seek
        self.seconds["open"] = _clock() - t0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        t0 = _clock()
        self._container.close()
        self.seconds["open"] += _clock() - t0  # "open" is opening and closing the file

    def _header_meta(self) -> VideoMeta:
        s, c = self._stream, self._container
        rate = s.average_rate or s.guessed_rate or s.base_rate
        start = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        if s.duration:
            duration = float(s.duration * s.time_base)
        elif c.duration:
            duration = c.duration / av.time_base - max(start, 0.0)
        else:
            duration = 0.0
        fps = float(rate) if rate else (s.frames / duration if s.frames and duration else 0.0)
        if fps <= 0:
            raise VideoReadError(self.path, "unknown frame rate")
        if duration <= 0:  # no duration in the header: the demuxer knows where the last packet ends
            duration = self._duration_from_packets(fps)
        self._start = start
        return VideoMeta(duration, fps, s.codec_context.width, s.codec_context.height, s.frames or 0,
                         s.codec_context.name, c.format.name)

    def _duration_from_packets(self, fps: float) -> float:
        end = 0.0
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            self._container.seek(0)
        except _READ_ERRORS as err:
            raise VideoReadError(self.path, f"cannot read packets: {_why(err)}") from None
        if end <= 0:
            raise VideoReadError(self.path, "no video packets")
        return end

    def _decode_from(self, seconds: float):
        """Decoded frames with their times (s from the stream start), from the keyframe at or
        before ``seconds``."""
        s = self._stream
        period, time_base = 1.0 / self.meta.fps, float(s.time_base)  # float: Fraction arithmetic per frame adds up
        if not (self._at_start and seconds < period):  # a fresh container starts at the first frame anyway
            t0 = _clock()
            self._container.seek(max(0, int((seconds + self._start) / s.time_base)), stream=s, backward=True)
            self.seconds["seek"] += _clock() - t0
        self._at_start = False
        last = None
        for frame in self._container.decode(s):
            self.frames_decoded += 1
            if frame.pts is not None:
                t = frame.pts * time_base - self._start
            else:  # no timestamp: the frame after the previous one
                t = 0.0 if last is None else last + period
            last = t
            yield t, frame

    def read(self, times) -> np.ndarray:
        """RGB frames shown at ``times`` (s from the video's start), as (len(times), H, W, 3) uint8.

        Times past the last frame get the last frame; a decode error raises VideoReadError.
        """
        times = np.asarray(times, dtype=np.float64)
        wanted = np.unique(times)  # sorted: one pass of the decoder serves them all
        tol = 0.01 / self.meta.fps  # timestamps are rounded to the time base; 1% of a frame absorbs it
        t0, before = _clock(), self.seconds["seek"]
        try:
            picked = self._pick(wanted, tol, wanted[0])
            if picked is None:  # the seek landed after the first wanted time: decode from the start
                picked = self._pick(wanted, tol, 0.0)
        except _READ_ERRORS as err:
            raise VideoReadError(self.path, f"decode failed: {_why(err)}") from None
        if picked is None:
            raise VideoReadError(self.path, "no frame decodes")
        # Each distinct frame is converted once: the whole clip in one call where the format allows (colour.py),
        # else frame by frame through swscale.
        t1 = _clock()
        distinct = list({id(frame): frame for frame in picked}.values())
        where = {id(frame): k for k, frame in enumerate(distinct)}
        order = [where[id(picked[i])] for i in np.searchsorted(wanted, times)]
        rgb = self._rgb(distinct)
        out = rgb if order == list(range(len(rgb))) else rgb[order]
        t2 = _clock()
        self.seconds["convert"] += t2 - t1
        self.seconds["decode"] += t1 - t0 - (self.seconds["seek"] - before)
        return out

    def _rgb(self, frames: list[av.VideoFrame]) -> np.ndarray:
        convert = colour.converter(frames[0])
        if convert is not None and all(f.format.name == frames[0].format.name for f in frames):
            return convert(frames)
        if self._to_rgb is None:
            self._to_rgb = VideoReformatter()
        return np.stack([self._to_rgb.reformat(frame, format="rgb24").to_ndarray() for frame in frames])

    def _pick(self, wanted: np.ndarray, tol: float, seek_to: float) -> list[av.VideoFrame] | None:
        """The frame shown at each wanted time (the same object for times that share one)."""
        period = 1.0 / self.meta.fps
        out: list[av.VideoFrame] = []
        shown = None  # the frame on screen at the current time
        for t, frame in self._decode_from(seek_to):
            if shown is None and seek_to > 0 and t > wanted[0] + tol + period:
                return None
            while len(out) < len(wanted) and wanted[len(out)] + tol < t:
                out.append(frame if shown is None else shown)  # times before the first frame get the first frame
            shown = frame
            if len(out) == len(wanted):
                break
        if shown is None:
            return None
        while len(out) < len(wanted):  # past the last frame: hold it
            out.append(shown)
        return out

    def decodable_end(self) -> float:
        """Seconds up to which frames really decode: one seek near the declared end, then decode
        to the end. A file cut short says so here while its header still declares the full length."""
        period = 1.0 / self.meta.fps
        end = 0.0
        try:
            for t, _frame in self._decode_from(max(0.0, self.meta.duration - 1.0 - period)):
                end = t + period
        except _READ_ERRORS as err:
            raise VideoReadError(self.path, f"decode failed after {end:.2f} s: {_why(err)}") from None
        return end


def _why(err: BaseException) -> str:
    text = str(err).split(": '", 1)[0]  # PyAV appends the file name, which the caller already shows
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def probe(path: Path | str) -> VideoMeta:
    """The header of a video after checking that it really decodes: its first frame, and frames up to
    near its declared end. Raises VideoReadError with the reason otherwise. The duration returned is
    the decodable one when that is shorter than the header's."""
    with VideoReader(path) as reader:
        reader.read([0.0])
        meta = reader.meta
        end = reader.decodable_end()
    period = 1.0 / meta.fps
    if end < 0.9 * meta.duration and meta.duration - end > 2 * period:
        raise VideoReadError(path, f"truncated: frames stop at {end:.2f} s of the {meta.duration:.2f} s declared")
    if 0 < end < meta.duration:
        meta = VideoMeta(**{**meta.to_dict(), "duration": end})
    return meta


def write_video(
    path: Path | str,
    frames: np.ndarray,
    fps: float,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames; the container follows the file's extension.

    ``pts`` with ``time_base`` gives each frame its own timestamp (variable frame rate).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_video {path}: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if pts is not None and (time_base is None or len(pts) != len(frames)):
        raise ValueError(f"write_video {path}: pts needs a time_base and one value per frame")
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if options:
            stream.options = options
        if pts is not None:
            stream.codec_context.time_base = time_base
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
