"""torch Datasets over the two sources: the synthetic clips in memory, and video files on disk.

Both return ``(clip, label)`` for train and val, and ``(clip, label, video)`` for test, where ``clip``
is a normalised float (3, T, H, W) and ``video`` the index of the video a test view comes from (so
that scores can be averaged per video with ``analysis.average_views``).

Unreadable videos: the index leaves out every file its probe cannot decode (see ``index``). A file
that passes the probe but fails later, part-way through (a corruption in its middle), is returned as
an *invalid* sample, label -1, that ``collate_clips`` removes from its batch, with one warning per
file and process. No sample is ever replaced by another, so no label ever moves to another clip.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from nlbench.data.analysis import per_class_accuracy
from nlbench.data.index import UnreadableVideoWarning, VideoIndex
from nlbench.data.splits import SPLITS
from nlbench.data.synthetic import Clip, SyntheticConfig, generate
from nlbench.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipTransformConfig,
    EvalTransform,
    TrainTransform,
    frames_to_tensor,
    normalize,
)
from nlbench.data.sampling import ClipSampling
from nlbench.data.video import STAGES, VideoReader, VideoReadError
from nlbench.io import atomic_file
from nlbench.seeds import generator



class SyntheticClips(Dataset):
    """One split of the synthetic benchmark, generated on access (about 1 ms a default clip).

    ``return_index`` adds the clip's index as its video index (one view per video), which is what the
    test loader returns for every source.
    """

    def __init__(
        self,
        config: SyntheticConfig | None = None,
        split: str = "train",
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        return_index: bool = False,
        cache_dir: str | Path | None = None,
        convert_once: bool = False,
    ):
        self.config = config or SyntheticConfig()
        self.split = split
        self.mean, self.std = tuple(mean), tuple(std)
        self.return_index = return_index
        self._len = self.config.split_size(split)  # also checks the split name
        # Generating a 16x32x32 clip takes ~4 ms, as long as a training step of a small model on it: a
        # sweep of many runs over the same split generates it once and memory-maps the uint8 frames.
        self._frames = cached_frames(self.config, split, Path(cache_dir)) if cache_dir else None
        # A split read many times (validation: val_points times a run) is converted to float once and kept
        # (the tiny profile's val split: 315 MB); the same bytes as converting each batch.
        self.convert_once = convert_once
        self._converted: torch.Tensor | None = None

    def __len__(self) -> int:
        return self._len

    def clip(self, index: int) -> Clip:
        """The raw clip: uint8 frames, label and the scene's sprites (ground truth)."""
        return generate(self.config, self.split, index)

    def __getitem__(self, index: int):
        if self._frames is not None:
            return self.__getitems__([index])[0]
        clip = self.clip(index)
        x = normalize(frames_to_tensor(clip.frames).float().div_(255), self.mean, self.std)
        return (x, clip.label, index) if self.return_index else (x, clip.label)

    def __getitems__(self, indices: list[int]) -> list:
        """A batch from the cache in one conversion (DataLoader calls this when it exists): clip by clip,
        the float conversion and normalisation cost a small model about 5% of its training step. The same
        bytes as normalising generated clips one by one."""
        if self._frames is None or not indices:
            return [self[i] for i in indices]
        if not all(0 <= i < self._len for i in indices):
            raise IndexError(indices)
        if self.convert_once:
            if self._converted is None:
                self._converted = self._convert(np.arange(self._len))
            first, last = indices[0], indices[-1]
            run = last - first + 1 == len(indices) and indices == list(range(first, last + 1))
            x = self._converted[first:last + 1] if run else self._converted[torch.as_tensor(indices)]
        else:
            x = self._convert(np.asarray(indices))
        x = x.permute(0, 4, 1, 2, 3)
        out = []
        for i, clip in zip(indices, x.unbind(0)):
            label = self.config.label(i)
            out.append((clip, label, i) if self.return_index else (clip, label))
        return out

    def _convert(self, indices: np.ndarray) -> torch.Tensor:
        frames = torch.from_numpy(self._frames[indices])  # (B, T, H, W, 3) uint8, a copy
        # Element-wise work in the stored layout, which is the channels-last layout the models train in: each
        # clip is a (C, T, H, W) view with channels innermost, which collate_clips batches without transposing.
        return frames.float().div_(255).sub_(torch.tensor(self.mean)).div_(torch.tensor(self.std))

    # Per-class view, for error analysis.
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.classes

    @property
    def families(self) -> np.ndarray:
        """The family (layout of the cue pair) of every clip, in index order."""
        return self.config.families_of(self.split)

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.config.label(i) for i in range(len(self))])

    def indices_per_class(self) -> dict[str, np.ndarray]:
        labels = self.labels
        return {name: np.flatnonzero(labels == i) for i, name in enumerate(self.class_names)}

    def per_class_accuracy(self, predictions):
        """Accuracy of ``predictions`` (one per clip, in index order) per class. Families are per clip, not
        per class (both classes occur in every family): ``self.families`` selects a family's clips."""
        return per_class_accuracy(predictions, self.labels, self.class_names)


def cached_frames(config: SyntheticConfig, split: str, cache_dir: Path) -> np.ndarray:
    """The uint8 frames (N, T, H, W, 3) of a whole split, generated once into ``cache_dir`` (a file named
    by a hash of the config and the numpy version, written atomically) and memory-mapped."""
    key = hashlib.sha256(repr((config, split, np.__version__)).encode()).hexdigest()[:16]  # config: its design too
    path = cache_dir / f"synthetic-{split}-{key}.npy"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        first = generate(config, split, 0).frames
        frames = np.empty((config.split_size(split), *first.shape), dtype=np.uint8)
        frames[0] = first
        for i in range(1, len(frames)):
            frames[i] = generate(config, split, i).frames
        with atomic_file(path) as f:  # runs in parallel may fill the same cache: the last rename wins
            np.save(f, frames)
    return np.load(path, mmap_mode="r")


class VideoClips(Dataset):
    """Clips of the videos of an index, sampled as the paper does for ``mode``:

    * ``train``: a random temporal position; scale jitter, random crop, flip (``TrainTransform``), all
      drawn from the stream ``(seed, "augment", epoch, item)`` (nlbench.seeds), so neither the number of
      loader workers nor which one loads the clip changes them. An item is ``(epoch, item)`` as
      ``SeededShuffle(with_epoch=True)`` yields it, or a plain index (epoch 0).
    * ``val``: one random clip per video (the paper's validation during training), drawn from a
      generator seeded by ``seed`` and the video so that it is the same clip every epoch; a centre
      ``crop`` at ``test_short_side``.
    * ``test``: ``num_clips`` evenly spaced clips x ``num_crops`` crops per video, one item per view.
    """

    def __init__(
        self,
        index: VideoIndex,
        sampling: ClipSampling | None = None,
        transform: ClipTransformConfig | None = None,
        mode: str = "train",
        seed: int = 0,
    ):
        if mode not in SPLITS:  # the split whose sampling and transform the clips get
            raise ValueError(f"VideoClips: mode={mode!r} is not allowed; expected one of {SPLITS}")
        self.index, self.mode, self.seed = index, mode, seed
        self.sampling = sampling or ClipSampling()
        self.transform = transform or ClipTransformConfig()
        c = self.transform
        self._views = self.sampling.num_clips * c.num_crops if mode == "test" else 1
        if mode == "train":
            self._transforms = [TrainTransform(c)]
        elif mode == "val":
            self._transforms = [EvalTransform(c, c.crop)]
        else:
            self._transforms = [EvalTransform(c, c.test_crop, c.num_crops, k) for k in range(c.num_crops)]
        self.failures: dict[Path, str] = {}  # videos that failed while loading, in this process
        # CPU seconds per stage in this process (``nlbench data bench``): the reader's, then the transform.
        self.seconds = dict.fromkeys((*STAGES, "transform"), 0.0)
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None
        self.records, self.short_clips = self._apply_short_clip_policy()
        self.keyed_by_epoch = mode == "train"  # the training sampler passes the epoch with each item

    def _apply_short_clip_policy(self):
        """The records this dataset reads, and the counts of videos shorter than one clip (``short``) with
        what the policy did to them, for the run's record."""
        s, records = self.sampling, self.index.records
        short = [r for r in records if r.meta and s.loops(r.meta.fps, r.meta.duration)]
        counts = {"videos": len(records), "short": len(short), "policy": s.short_clip,
                  "skipped": len(short) if s.short_clip == "skip" else 0,
                  "shortest_s": round(min(r.meta.duration for r in short), 3) if short else None}
        if short and s.short_clip == "error":
            r = min(short, key=lambda r: r.meta.duration)
            raise ValueError(
                f"sampling_rate={s.sampling_rate}: a {s} clip spans {s.num_frames * s.sampling_rate} frames "
                f"({s.span(r.meta.fps):.2f} s at {r.meta.fps:g} fps) but {len(short)} of {len(records)} videos "
                f"in {self.index.source} are shorter (shortest {r.path.name}, {r.meta.duration:.2f} s); lower "
                f"sampling_rate or frames, or set short_clip to pad_last, loop or skip"
            )
        if s.short_clip == "skip" and short:
            records = tuple(r for r in records if not (r.meta and s.loops(r.meta.fps, r.meta.duration)))
            if not records:
                raise ValueError(f"short_clip=skip leaves no video in {self.index.source}: all {len(short)} are "
                                 f"shorter than a {s} clip")
        return records, counts

    def __len__(self) -> int:
        return len(self.records) * self._views

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.index.class_names

    @property
    def labels(self) -> np.ndarray:
        """The label of every item (every view, for test)."""
        return np.repeat([r.label for r in self.records], self._views)

    def view(self, item: int) -> tuple[int, int, int]:
        """(video, clip, crop) of an item."""
        video, view = divmod(item, self._views)
        clip, crop = divmod(view, self.transform.num_crops) if self.mode == "test" else (0, 0)
        return video, clip, crop

    def __getitem__(self, item: int | tuple[int, int]):
        epoch, item = item if isinstance(item, tuple) else (0, item)
        rng = generator(self.seed, "augment", epoch, item) if self.mode == "train" else None
        video, clip, crop = self.view(item)
        record = self.records[video]
        try:
            frames = self._frames(video, clip, rng)
        except VideoReadError as err:
            if record.path not in self.failures:
                self.failures[record.path] = err.reason
                warnings.warn(f"dropping unreadable video {record.path}: {err.reason}", UnreadableVideoWarning)
            x, label = torch.empty(0), -1
        else:
            t0 = time.thread_time()
            x = self._transforms[crop](frames, rng) if rng is not None else self._transforms[crop](frames)
            label = record.label
            self.seconds["transform"] += time.thread_time() - t0
        return (x, label, video) if self.mode == "test" else (x, label)

    def _frames(self, video: int, clip: int, rng: torch.Generator | None = None) -> np.ndarray:
        # The crops of one test clip are consecutive items: decode the clip once for all of them.
        if self.mode != "train" and self._cache is not None and self._cache[0] == (video, clip):
            return self._cache[1]
        record = self.records[video]
        with VideoReader(record.path, container=record.meta.container if record.meta else None) as reader:
            meta = record.meta or reader.meta
            s = self.sampling
            if self.mode == "train":
                start = float(torch.rand((), generator=rng)) * s.max_start(meta.fps, meta.duration)
            elif self.mode == "val":
                start = np.random.default_rng([self.seed, video]).uniform() * s.max_start(meta.fps, meta.duration)
            else:
                start = float(s.test_starts(meta.fps, meta.duration)[clip])
            frames = reader.read(s.times(start, meta.fps, meta.duration))
        for stage, seconds in reader.seconds.items():  # after the file is closed: closing counts as "open"
            self.seconds[stage] += seconds
        self._cache = ((video, clip), frames)
        return frames


def collate_clips(batch: list[tuple]):
    """default_collate without the invalid samples (label -1) of videos that failed to decode;
    None when none is left, which a training step should skip."""
    valid = [sample for sample in batch if sample[1] >= 0]
    if not valid:
        return None
    if not _channels_innermost(valid[0][0]):
        return default_collate(valid)
    # Channels-last clips (the cached synthetic reader's) stay channels-last: default_collate would stack them
    # into (B, C, T, H, W)-contiguous memory and the model's channels_last_3d input would transpose it back,
    # two copies that cost a small model ~15 % of its run. Same values, same batch.
    clips = torch.empty((len(valid), *valid[0][0].shape), dtype=valid[0][0].dtype, memory_format=torch.channels_last_3d)
    for out, sample in zip(clips.unbind(0), valid):
        out.copy_(sample[0])
    return [clips, *default_collate([sample[1:] for sample in valid])]


def _channels_innermost(clip) -> bool:
    return isinstance(clip, torch.Tensor) and clip.dim() == 4 and clip.stride(0) == 1 and clip.shape[0] > 1
