"""LightningDataModules over both sources, with one interface: ``setup``, ``train_dataloader``,
``val_dataloader``, ``test_dataloader``, ``num_classes`` and ``class_names`` (known right after
construction, so a model can be built before ``setup``).

Train and val batches are ``(clips, labels)``; test batches are ``(clips, labels, video)`` with one
item per test view. A batch from which every sample was dropped as unreadable is None.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nlbench.data.datasets import SyntheticClips, VideoClips, collate_clips
from nlbench.data.index import VideoIndex, build_index, class_names, split_source
from nlbench.data.kinetics import resolve_root
from nlbench.data.sampling import ClipSampling
from nlbench.data.synthetic import SyntheticConfig
from nlbench.data.transforms import KINETICS_MEAN, KINETICS_STD, ClipTransformConfig
from nlbench.seeds import generator


@dataclass(frozen=True)
class LoaderConfig:
    """DataLoader settings. Workers persist across epochs (re-forking them and re-opening nothing is
    pure overhead once an epoch is short); memory is pinned only when there is a GPU to copy to."""

    batch_size: int = 8
    eval_batch_size: int | None = None  # default: batch_size
    num_workers: int = 2
    persistent_workers: bool = True
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        for name in ("batch_size", "prefetch_factor"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LoaderConfig: {name}={value!r} is not allowed; expected a positive int")
        if self.eval_batch_size is not None and (not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1):
            raise ValueError(f"LoaderConfig: eval_batch_size={self.eval_batch_size!r} is not allowed")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"LoaderConfig: num_workers={self.num_workers!r} is not allowed; expected an int >= 0")


class SeededShuffle(Sampler):
    """The training order: epoch e is the permutation drawn from the stream ``(seed, "data_order", e)``.

    torch's RandomSampler draws its permutation from the global generator (or continues one generator
    across epochs), so anything else that draws from it (a logger, a validation loader) or an extra
    iteration of the loader would move the order. Here the order depends on the seed and the epoch only;
    Lightning calls ``set_epoch`` at the start of every epoch, as it does for DistributedSampler.

    ``with_epoch`` yields ``(epoch, index)`` instead of ``index``, for data sets that key their augmentation
    by the epoch too (``VideoClips`` in train mode): the key travels with the item, so the worker that
    happens to load it cannot change what it draws.
    """

    def __init__(self, size: int, seed: int, with_epoch: bool = False):
        self.size, self.seed, self.with_epoch = size, seed, with_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        order = torch.randperm(self.size, generator=generator(self.seed, "data_order", self.epoch)).tolist()
        return iter([(self.epoch, i) for i in order] if self.with_epoch else order)


class _ClipDataModule(pl.LightningDataModule):
    def __init__(self, loader: LoaderConfig | None, seed: int = 0):
        super().__init__()
        self.loader = loader or LoaderConfig()
        self.seed = seed  # the run's seed: the training order, the loader workers' seeds (and video augmentation)
        self.datasets: dict[str, Dataset] = {}

    @property
    def class_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def test_families(self):
        """The family of every test video, by video index, where the data set has families (the synthetic
        benchmark's cue layouts), else None."""
        return None

    def test_groups(self):
        """The group of every test video, by video index, where the data set's test clips come in groups
        that a model must get right together (the synthetic benchmark's quadruples), else None."""
        return None

    def val_groups(self):
        """The group of every validation clip, in loader order (see ``test_groups``), else None."""
        return None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _make(self, split: str) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self._make(split)

    def _dataloader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self._make(split)
        cfg = self.loader
        workers = cfg.num_workers
        extra = dict(persistent_workers=cfg.persistent_workers and split != "test", prefetch_factor=cfg.prefetch_factor)
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size if train else (cfg.eval_batch_size or cfg.batch_size),
            sampler=SeededShuffle(len(dataset), self.seed, getattr(dataset, "keyed_by_epoch", False)) if train else None,
            # Each iterator draws its workers' base seed from this generator (else from the global one).
            generator=generator(self.seed, "loader", split),
            drop_last=train,  # a last batch of one clip would make BatchNorm's statistics meaningless
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_clips,
            **(extra if workers > 0 else {}),
        )

    def train_dataloader(self) -> DataLoader:
        return self._dataloader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader("test", train=False)


class SyntheticDataModule(_ClipDataModule):
    """The synthetic benchmark generated in memory (no files)."""

    def __init__(
        self,
        config: SyntheticConfig | None = None,
        loader: LoaderConfig | None = None,
        cache_dir: str | Path | None = None,
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        seed: int = 0,
        test_split: str = "test",
    ):
        super().__init__(loader, seed)  # seed: the run's (order); config.seed generates the data set
        self.config = config or SyntheticConfig()
        self.test_split = test_split  # the split the multi-view test reads (nlbench eval --split val)
        self.cache_dir = cache_dir  # see SyntheticClips: splits generated once, memory-mapped
        self.mean, self.std = tuple(mean), tuple(std)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.classes

    def test_families(self):
        return self.config.families_of(self.test_split)

    def test_groups(self):
        return self.config.groups_of(self.test_split)

    def val_groups(self):
        return self.config.groups_of("val")

    def _make(self, split: str) -> Dataset:
        source = self.test_split if split == "test" else split
        return SyntheticClips(self.config, source, self.mean, self.std, return_index=split == "test",
                              cache_dir=self.cache_dir, convert_once=split == "val")


class VideoDataModule(_ClipDataModule):
    """Video files under ``root`` (Kinetics folders or CSV manifests, see ``index``).

    ``test_split`` defaults to ``test`` when the root has one, else ``val`` (Kinetics reports on val).
    ``probe`` decodes every file at setup to leave out unreadable ones (see ``index.build_index``), once
    per file: cached in ``index_cache`` across runs ("auto": ``probes.default_cache_dir()``), and a split
    read twice (val as the test split) is indexed once.
    """

    def __init__(
        self,
        root: Path | str,
        sampling: ClipSampling | None = None,
        transform: ClipTransformConfig | None = None,
        loader: LoaderConfig | None = None,
        test_split: str | None = None,
        probe: bool = True,
        seed: int = 0,
        index_cache: str | Path | None = "auto",
    ):
        super().__init__(loader, seed)
        self.index_cache = index_cache
        self.root = resolve_root(root)  # an annotated Kinetics copy: its path,label manifests (data/kinetics.py)
        self.sampling = sampling or ClipSampling()
        self.transform = transform or ClipTransformConfig()
        self.probe = probe
        self._classes = class_names(self.root)  # checks the root exists; cheap (no video is opened)
        self.test_split = test_split or ("test" if split_source(self.root, "test") else "val")
        self.indexes: dict[str, VideoIndex] = {}
        self._by_source: dict[str, VideoIndex] = {}

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._classes

    @property
    def unreadable(self) -> dict[str, tuple]:
        """Per split, the (file, reason) of each video the index left out."""
        return {split: index.unreadable for split, index in self.indexes.items()}

    @property
    def short_clips(self) -> dict[str, dict]:
        """Per split set up so far, the videos shorter than one clip and what the policy did with them."""
        return {split: ds.short_clips for split, ds in self.datasets.items()}

    def describe(self) -> dict:
        """What the run's record states about its data: the resolved transform, clip sampling, views."""
        return {"transform": self.transform.to_dict(), "sampling": self.sampling.to_dict(),
                "test_views": {"clips": self.sampling.num_clips, "crops": self.transform.num_crops,
                               "split": self.test_split}}

    def _make(self, split: str) -> Dataset:
        source = self.test_split if split == "test" else split
        if source not in self._by_source:
            self._by_source[source] = build_index(self.root, source, self._classes, probe_files=self.probe,
                                                  cache_dir=self.index_cache)
        index = self.indexes[split] = self._by_source[source]
        return VideoClips(index, self.sampling, self.transform, mode=split, seed=self.seed)
