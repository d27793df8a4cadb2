"""Weights & Biases through Lightning's WandbLogger: offline unless the user configures otherwise.

``wandb.mode: auto`` (default) follows WANDB_MODE when set, goes online when WANDB_API_KEY is set, and is
offline otherwise: no account, no network, no prompt. Offline runs are folders that ``wandb sync`` uploads
later. The API key is read by wandb itself from the environment or ~/.netrc; nlbench never reads, logs or
stores it.
"""
from __future__ import annotations

import os
from pathlib import Path

from nlbench.training.config import RunConfig


def wandb_mode(configured: str = "auto") -> str:
    if configured != "auto":
        return configured
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def make_wandb_logger(config: RunConfig, run_dir: Path, group: str | None = None, tags=()):
    """A WandbLogger for the run, or None when W&B is disabled."""
    w = config.wandb
    mode = wandb_mode(w.mode)
    if not w.enabled or mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    save_dir = Path(w.dir) if w.dir else run_dir
    save_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = WandbLogger(
        project=w.project,
        entity=w.entity,
        group=group or w.group,
        tags=list(tags or w.tags) or None,
        name=config.name or config.run_id,
        # A fresh id per attempt: a redone interrupted run is a new W&B run, the finished one stays unique.
        save_dir=str(save_dir),
        mode=mode,
        config=config.to_dict() | {"run_id": config.run_id},
        job_type="train",
    )
    # Lightning 2.6 always passes anonymous=None, which wandb 0.31 answers with a deprecation warning on
    # every run of a sweep; the setting does nothing, so it is left out.
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger
