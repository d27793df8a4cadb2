"""What Lightning costs: the training throughput of one model under the LightningModule vs a bare PyTorch
loop, on the same batches held in memory (so data loading is out of both), same optimiser and schedule.

Rounds alternate bare / Lightning / Lightning + W&B (offline) so that a slow spell of the machine hits
all three; the median over rounds is reported.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from nlbench.training.callbacks import TrainThroughput
from nlbench.training.config import RunConfig
from nlbench.training.module import VideoClassifier
from nlbench.training.run import build_datamodule, build_model
from nlbench.training.tracking import make_wandb_logger


def _bare(model, module: VideoClassifier, batches, skip: int) -> float:
    """Clips per second of a plain loop; the optimiser and schedule come from the module, as in Lightning."""
    cfg = module.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    model.train()
    ends = []
    for clips, labels in batches:
        loss = F.cross_entropy(module(clips), labels)  # forward() only sets the memory format
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ends.append(time.perf_counter())
    ends = ends[skip:]
    return len(batches[0][1]) * (len(ends) - 1) / (ends[-1] - ends[0])


def _lightning(module: VideoClassifier, batches, skip: int, logger) -> float:
    monitor = TrainThroughput(len(batches[0][1]), skip=skip)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=len(batches), max_epochs=1, logger=logger if logger else False,
        callbacks=[monitor], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=10,
    )
    # batch_size=None: the loader hands over the prepared batches as they are.
    trainer.fit(module, DataLoader(batches, batch_size=None, shuffle=False))
    if logger is not None:
        logger.experiment.finish()
    return monitor.summary()["train_clips_per_s"]


def measure_overhead(config: RunConfig, steps: int = 60, rounds: int = 3, skip: int = 5) -> dict:
    """Training clips/s: bare loop, LightningModule, LightningModule + W&B offline logger (medians of
    ``rounds``), and Lightning's overhead in % of the bare loop's time per clip."""
    if steps < skip + 3:
        raise ValueError(f"steps={steps} is not allowed; expected at least {skip + 3} ({skip} are warm-up)")
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    datamodule = build_datamodule(config)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    batches = []
    while len(batches) < steps:  # several epochs if the split is small
        for batch in loader:
            if batch is not None and len(batches) < steps:
                batches.append((batch[0], batch[1]))
    results: dict[str, list[float]] = {"bare": [], "lightning": [], "lightning_wandb": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for kind in results:
                pl.seed_everything(config.seed, verbose=False)
                model = build_model(config, datamodule.num_classes)
                module = VideoClassifier(
                    model, config.recipe, total_steps=steps, channels_last=config.trainer.channels_last
                )
                if kind == "bare":
                    results[kind].append(_bare(model, module, batches, skip))
                else:
                    logger = None
                    if kind == "lightning_wandb":
                        logger = make_wandb_logger(config.replace(wandb={"mode": "offline"}), Path(tmp) / f"{r}")
                    results[kind].append(_lightning(module, batches, skip, logger))
    median = {k: statistics.median(v) for k, v in results.items()}
    return {
        "clips_per_s": median,
        "all_rounds": results,
        "overhead_pct": {k: 100 * (median["bare"] / median[k] - 1) for k in ("lightning", "lightning_wandb")},
        "steps": steps,
        "rounds": rounds,
        "batch_size": config.data.batch_size,
        "model": config.model.as_model_config(datamodule.num_classes).name,
        "input": f"{config.data.frames}x{config.data.size}x{config.data.size}",
        "threads": torch.get_num_threads(),
    }


__all__ = ["measure_overhead"]
