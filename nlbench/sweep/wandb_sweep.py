"""An ablation table as a W&B sweep: ``nlbench sweep TABLE... --profile P --wandb-sweep DIR`` -> ``DIR/<table>.yaml``.

The sweep is the optuna sweep's grid, for W&B's own controller: ``method: grid`` over the table's ``row``
labels x the profile's ``seed`` s, with ``table`` and ``profile`` (and ``data`` for profiles that need a
data set) as constants. Each run W&B hands out is one cell; the agent launches::

    nlbench agent-run --table=<table> --profile=<profile> --row=<row> --seed=<seed>

(``${args}``: one ``--key=value`` argv element per parameter, a value may contain spaces). The command is
the project's own console script, not ``${interpreter} ${program}``: ``${interpreter}`` is whatever
``python`` comes first on the node's PATH, while ``nlbench`` runs in the environment it was installed in.
``agent-run`` builds the cell with ``build_sweep`` exactly as the optuna sweep does (same config, same
``run_id``), so a run already trained by either path is reused.

Launching (needs a W&B account and the server; nothing here talks to it)::

    wandb login
    wandb sweep sweeps/2a_instantiation.yaml            # prints ENTITY/PROJECT/SWEEP_ID
    wandb agent ENTITY/PROJECT/SWEEP_ID                 # on each node, from the repository root
"""
from __future__ import annotations

from pathlib import Path

import yaml

from nlbench.io import atomic_write_text
from nlbench.sweep.spec import Sweep, build_sweep, without_profiles

# The sweep's metric: the record's final validation top-1, in every run's summary (also when agent-run
# reuses a finished run and trains nothing; the per-epoch ``val/top1`` curve exists only for trained runs).
METRIC = {"name": "val_top1", "goal": "maximize"}
COMMAND = ["nlbench", "agent-run", "${args}"]


def sweep_config(sweep: Sweep) -> dict:
    """The W&B sweep config of one table at one profile (a plain dict, as ``wandb sweep`` reads it)."""
    w = sweep.cells[0].config.wandb
    parameters = {
        "table": {"value": sweep.table.name},
        "profile": {"value": sweep.profile.name},
        "row": {"values": [row.label for row in sweep.table.rows]},
        "seed": {"values": list(sweep.profile.seeds)},
    }
    if sweep.data is not None:
        parameters["data"] = {"value": sweep.data}
    config = {
        "name": sweep.name,
        "description": sweep.table.title,
        # Required by `wandb agent` in a sweep file, unused by the command (it has no ${program}).
        "program": "nlbench",
        "project": w.project,
        "method": "grid",
        "metric": dict(METRIC),
        "parameters": parameters,
        "command": list(COMMAND),
    }
    if w.entity:
        config["entity"] = w.entity
    return config


def write_sweep(sweep: Sweep, out_dir: str | Path) -> Path:
    path = Path(out_dir) / f"{sweep.table.name}.yaml"
    header = (f"# W&B sweep of {sweep.table.title}, profile {sweep.profile.name}: "
              f"{len(sweep.table.rows)} rows x {len(sweep.profile.seeds)} seeds = {len(sweep.cells)} runs.\n"
              f"# Written by `nlbench sweep --wandb-sweep`. Launch: wandb sweep {path}; then on each node, from "
              f"the repository root: wandb agent ENTITY/PROJECT/SWEEP_ID\n")
    atomic_write_text(path, header + yaml.safe_dump(sweep_config(sweep), sort_keys=False, allow_unicode=True))
    return path


def export_sweeps(tables, profile: str, out_dir: str | Path, data=None) -> list[Path]:
    """One sweep file per table; every table is checked (``build_sweep``) before any file is written."""
    tables = without_profiles(tables)
    if not tables:
        raise ValueError("no table files given (e.g. ablations/2a_instantiation.yaml)")
    sweeps = [build_sweep(t, profile, data) for t in tables]
    return [write_sweep(s, out_dir) for s in sweeps]


__all__ = ["COMMAND", "METRIC", "export_sweeps", "sweep_config", "write_sweep"]
