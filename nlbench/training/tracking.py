"""Weights & Biases through Lightning's WandbLogger: online when the user is logged in, offline otherwise.

``wandb.mode: auto`` (default) decides, in this order:

- ``WANDB_MODE`` when set (``offline``, ``online``, ``disabled``);
- online when a W&B agent launched the process (``WANDB_SWEEP_ID``): the sweep only sees runs that reach
  the server;
- online when the user is logged in: ``WANDB_API_KEY`` is set, or ``~/.netrc`` (``$NETRC``) has an entry for
  the W&B host (what ``wandb login`` writes);
- offline otherwise: no account, no network, no prompt. Offline runs are folders that ``wandb sync``
  uploads later.

The first line of every run (on stderr) says which mode and why. nlbench never reads, prints or stores the
key: it checks that the variable is non-empty or that the netrc entry exists, and wandb itself reads the key.
"""
from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from nlbench.training.config import RunConfig

DEFAULT_HOST = "https://api.wandb.ai"


def _netrc_path() -> Path:
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"])
    return Path.home() / ("_netrc" if sys.platform == "win32" else ".netrc")


def netrc_login(host: str | None = None) -> Path | None:
    """The netrc file holding a login for the W&B host (``WANDB_BASE_URL``, default api.wandb.ai), else None.

    Hand-written over the standard library: wandb's own reader is private and has moved between versions.
    Only the entry's presence is looked at, never its password.
    """
    host = host or os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST
    machine = urlsplit(host if "//" in host else f"https://{host}").hostname
    path = _netrc_path()
    if not machine or not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(machine)
    except (netrc.NetrcParseError, OSError):
        return None
    return path if entry is not None else None


def resolve_mode(configured: str = "auto") -> tuple[str, str]:
    """(mode, why): the W&B mode a run uses and the reason, for the run's first line."""
    if configured != "auto":
        return configured, f"wandb.mode={configured}"
    env = os.environ.get("WANDB_MODE")
    if env:
        return env, f"WANDB_MODE={env}"
    if os.environ.get("WANDB_SWEEP_ID"):
        return "online", "launched by a W&B sweep agent (WANDB_SWEEP_ID is set)"
    if os.environ.get("WANDB_API_KEY"):
        return "online", "logged in (WANDB_API_KEY is set)"
    found = netrc_login()
    if found is not None:
        return "online", f"logged in ({found} has an entry for the W&B host)"
    return "offline", ("not logged in (no WANDB_API_KEY, no W&B entry in ~/.netrc); `wandb sync` the run's "
                       "offline-run-* folder later")


def wandb_mode(configured: str = "auto") -> str:
    return resolve_mode(configured)[0]


def describe(config: RunConfig) -> str:
    """The run's first line: where its W&B logging goes and why."""
    w = config.wandb
    if not w.enabled:
        return f"W&B: disabled (wandb.enabled=false) for run {config.run_id}"
    mode, why = resolve_mode(w.mode)
    return f"W&B: {mode} for run {config.run_id}: {why}"


def run_summary(record: dict) -> dict:
    """What of a run's record goes into its W&B summary: all of it but the config (that is the run's W&B
    config) and the fields without a value. ``nlbench report --from-wandb`` reads records back from this."""
    return {k: v for k, v in record.items() if k != "config" and v is not None}


def wandb_config(config: RunConfig, extra: dict | None = None) -> dict:
    """The W&B config of a run: its run config, its run_id, and (sweeps) the table / row / profile it is."""
    return config.to_dict() | {"run_id": config.run_id} | dict(extra or {})


def wandb_init_kwargs(config: RunConfig, run_dir: Path, group: str | None = None, tags=(),
                      extra_config: dict | None = None) -> dict:
    """The ``wandb.init`` arguments of a run (also what WandbLogger passes on), or {} when W&B is off."""
    w = config.wandb
    mode = wandb_mode(w.mode)
    if not w.enabled or mode == "disabled":
        return {}
    os.environ.setdefault("WANDB_SILENT", "true")  # the run's first line already says where it logs
    save_dir = Path(w.dir) if w.dir else Path(run_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    return dict(
        project=w.project,
        entity=w.entity,
        group=group or w.group,
        tags=list(tags or w.tags) or None,
        name=config.name or config.run_id,
        # A fresh id per attempt: a redone interrupted run is a new W&B run, the finished one stays unique.
        dir=str(save_dir),
        mode=mode,
        config=wandb_config(config, extra_config),
        job_type="train",
    )


def make_wandb_logger(config: RunConfig, run_dir: Path, group: str | None = None, tags=()):
    """A WandbLogger for the run (reusing ``wandb.run`` when one is active, as under a sweep agent), or None
    when W&B is disabled. Prints the run's W&B line first (unless a run is active: who started it did)."""
    active = getattr(sys.modules.get("wandb"), "run", None)
    if active is None:
        print(describe(config), file=sys.stderr, flush=True)  # stderr: `nlbench train --json` owns stdout
    kwargs = wandb_init_kwargs(config, run_dir, group, tags)
    if not kwargs:
        return None
    from pytorch_lightning.loggers import WandbLogger

    kwargs["save_dir"] = kwargs.pop("dir")
    logger = WandbLogger(**kwargs)
    # Lightning 2.6 always passes anonymous=None, which wandb 0.31 answers with a deprecation warning on
    # every run of a sweep; the setting does nothing, so it is left out.
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger
