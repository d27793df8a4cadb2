"""Loader throughput: training clips per second out of a DataLoader, for each number of workers, and
where a video clip's time goes (open, seek, decode, convert, transform).

The training loader is what bounds an epoch: it decodes (or generates) every clip and augments it.
The first ``warmup`` batches, which include starting the workers, are timed separately. Stage times
are CPU time of the reading thread, which a machine busy with other work does not inflate.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from nlbench.data.datamodule import LoaderConfig, SyntheticDataModule, VideoDataModule
from nlbench.data.datasets import VideoClips
from nlbench.data.index import build_index
from nlbench.data.export import read_export_config
from nlbench.data.sampling import ClipSampling
from nlbench.data.synthetic import SyntheticConfig
from nlbench.data.transforms import ClipTransformConfig


def loader_throughput(loader, batches: int = 20, warmup: int = 2) -> dict:
    """Clips per second over ``batches`` batches after ``warmup`` ones (the loader is restarted when
    it runs out)."""
    if batches < 1 or warmup < 0:
        raise ValueError(f"loader_throughput: batches={batches} / warmup={warmup}: expected >= 1 / >= 0")
    it = iter(loader)

    def take():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    t0 = time.perf_counter()
    for _ in range(warmup):
        take()
    t1 = time.perf_counter()
    clips = 0
    shape = None
    for _ in range(batches):
        batch = take()
        if batch is not None:
            clips += len(batch[0])
            shape = tuple(batch[0].shape[1:])
    seconds = time.perf_counter() - t1
    return {
        "clips_per_s": clips / seconds, "clips": clips, "seconds": seconds, "warmup_s": t1 - t0, "clip_shape": shape
    }


def bench_loader(
    root: Path | str | None = None,
    synthetic: SyntheticConfig | None = None,
    workers: tuple[int, ...] = (0, 2),
    batch_size: int = 16,
    batches: int = 20,
    sampling: ClipSampling | None = None,
    transform: ClipTransformConfig | None = None,
) -> list[dict]:
    """Training-loader throughput of a video root (or of the in-memory synthetic set when ``root``
    is None) for each worker count. An exported synthetic root is read whole, one clip per video at
    its own size, with no scale jitter; other roots at the paper's 32x2, 224 unless told."""
    sampling, transform = _reading(root, sampling, transform)
    results = []
    for n in workers:
        loader = LoaderConfig(batch_size=batch_size, num_workers=n)
        if root is None:
            train = SyntheticDataModule(synthetic or SyntheticConfig(), loader).train_dataloader()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unreadable or short files: `scan` reports them
                train = VideoDataModule(root, sampling, transform, loader, probe=False).train_dataloader()
        result = loader_throughput(train, batches=batches)
        source = "synthetic in memory" if root is None else str(root)
        results.append({"source": source, "workers": n, "batch_size": batch_size, **result})
    return results


def _reading(root, sampling: ClipSampling | None, transform: ClipTransformConfig | None):
    """An exported synthetic root is read whole, one clip per video at its own size, with no scale jitter
    (as configs/tiny.yaml reads it); other roots at the paper's 32x2, 224 unless told."""
    export = read_export_config(root) if root is not None else None
    if export is not None:
        cfg = export["config"]
        sampling = sampling or ClipSampling(cfg["frames"], 1, 1)
        transform = transform or ClipTransformConfig.scaled(cfg["size"], jitter=False, num_crops=1)
    return sampling, transform


def stage_times(
    root: Path | str,
    sampling: ClipSampling | None = None,
    transform: ClipTransformConfig | None = None,
    clips: int = 200,
    seed: int = 0,
) -> dict:
    """Milliseconds of CPU per training clip in each stage of the video path (``video.STAGES`` and the
    transform), over ``clips`` clips of random training videos read in this process; ``total_ms`` adds
    what no stage holds (the dataset's own work), and ``clips_per_s`` is what one core can deliver."""
    sampling, transform = _reading(root, sampling, transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable or short files: `scan` reports them
        dataset = VideoClips(build_index(root, "train"), sampling, transform, mode="train")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    n = min(clips, len(dataset))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker: on a busy machine, idle OpenMP threads spin on CPU time
    try:
        cpu = time.thread_time()
        for i in order[:n].tolist():
            dataset[i]
        total = (time.thread_time() - cpu) / n * 1e3
    finally:
        torch.set_num_threads(threads)
    stages = {k: v / n * 1e3 for k, v in dataset.seconds.items()}
    return {"source": str(root), "clips": n, "clip": f"{sampling} at {transform.crop}", **stages,
            "total_ms": total, "clips_per_s": 1e3 / total}
