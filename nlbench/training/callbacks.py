"""Training throughput, measured inside the Lightning loop on the run's own batches."""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytorch_lightning as pl
import torch


class TrainThroughput(pl.Callback):
    """Step time (forward, backward, optimiser: batch start to batch end) and training throughput (clips
    per second between consecutive batch ends, so data loading counts), skipping each epoch's first
    ``skip`` steps (warm-up, worker start).

    Not Lightning's ``ThroughputMonitor``: that one logs rolling rates to the logger, while the record wants
    the median step and the mean rate over the whole run, with validation pauses left out."""

    def __init__(self, batch_size: int, skip: int = 3):
        self.batch_size, self.skip = batch_size, skip
        self.step_s: list[float] = []
        self.interval_s: list[float] = []
        self._start = self._last_end = None
        self._index = 0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last_end, self._index = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        now = time.perf_counter()
        if self._index >= self.skip:
            self.step_s.append(now - self._start)
            if self._last_end is not None:
                self.interval_s.append(now - self._last_end)
        self._last_end, self._index = now, self._index + 1

    def on_validation_start(self, trainer, pl_module) -> None:
        self._last_end = None  # the pause for validation is not training time

    def summary(self) -> dict:
        if not self.step_s:
            return {"step_ms": None, "train_clips_per_s": None}
        interval = sum(self.interval_s) / len(self.interval_s) if self.interval_s else statistics.mean(self.step_s)
        return {
            "step_ms": statistics.median(self.step_s) * 1e3,
            "train_clips_per_s": self.batch_size / interval,  # this process's clips: per rank under DDP
        }


def all_right(hit: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, index): whether every clip of each group is right (groups in sorted order), and each clip's
    group's position in it."""
    ids, index = np.unique(groups, return_inverse=True)
    right = np.ones(len(ids), bool)
    np.logical_and.at(right, index, hit)
    return right, index


class ValidationCurve(pl.Callback):
    """Validation top-1 through training: one ``{"step", "epoch", "val_top1"}`` point per validation that
    ``fit`` runs (not the sanity check), ``epoch`` in fractional epochs. Where the validation clips come in
    groups a model must get right together (``groups``: each val clip's group, loader order; the synthetic
    benchmark's quadruples), a point also holds ``val_group_top1``, the share of groups all right: the score
    a profile judges by, so its curve is the one whose flatness says a run converged."""

    def __init__(self, groups=None):
        self.points: list[dict] = []
        self.groups = groups

    def add(self, trainer, top1, pl_module=None) -> None:
        per_epoch = trainer.num_training_batches
        epoch = trainer.global_step / per_epoch if per_epoch and per_epoch != float("inf") else None
        point = {"step": int(trainer.global_step), "epoch": None if epoch is None else round(epoch, 4),
                 "val_top1": round(float(top1), 4)}
        group = self._group_top1(trainer, pl_module)
        if group is not None:
            point["val_group_top1"] = group
        self.points.append(point)

    def _group_top1(self, trainer, pl_module) -> float | None:
        hits = getattr(pl_module, "val_hits", None)
        # One process sees every val clip in order; under DDP each rank sees a share (no group score).
        if self.groups is None or not hits or trainer.world_size > 1:
            return None
        hit = torch.cat(hits).numpy()
        if len(hit) != len(self.groups):
            return None
        right, _ = all_right(hit, self.groups)
        return round(float(right.mean() * 100), 4)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or "val/top1" not in trainer.callback_metrics:
            return
        self.add(trainer, trainer.callback_metrics["val/top1"], pl_module)
