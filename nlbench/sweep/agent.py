"""One cell of an ablation table, launched by a W&B sweep agent.

``nlbench agent-run --table T --profile P --row R --seed S``.

The agent starts this process with the sweep's parameters as argv (``--row=Embedded Gaussian --seed=0 ...``,
built by ``wandb.sdk.launch.sweeps.utils``) and its environment (``WANDB_SWEEP_ID``, ``WANDB_RUN_ID``,
``WANDB_SWEEP_PARAM_PATH``, ``WANDB_PROJECT`` / ``WANDB_ENTITY``). The cell is built by ``build_sweep`` as in
the optuna sweep, so its config and ``run_id`` are the same and its record lands in the same
``results/<profile>/runs/<run_id>/``:

- a finished record there is reused: the agent's W&B run gets that record as its summary (the sweep sees
  its metric) and nothing is trained;
- otherwise the run is trained by ``train_run`` attached to the agent's run (``wandb.init`` here with the
  agent's run id; Lightning's WandbLogger reuses ``wandb.run``).

The exit status is 0 when the run's status is ok and 1 when it failed, so the agent counts failures. Every
input is checked before anything is trained or W&B is called: a wrong table, row, profile or seed is a
one-line ``ConfigError`` (exit 2).
"""
from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

from nlbench.sweep.runs import backbone_first, local_record, run_lock
from nlbench.sweep.spec import ABLATIONS, Cell, Sweep, build_sweep, table_files
from nlbench.training import ConfigError, train_run
from nlbench.training.tracking import describe, run_summary, wandb_init_kwargs


def table_path(table: str, ablations: str | Path = "ablations") -> Path:
    """TABLE as given: a YAML path, or a table name looked up in ``ablations/`` here, then in the package's."""
    p = Path(table)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"--table {table}: no such file")
        return p
    for folder in (Path(ablations), ABLATIONS):
        candidate = folder / f"{table}.yaml"
        if candidate in table_files(folder):
            return candidate
    names = [p.stem for p in table_files(ABLATIONS)]
    raise ConfigError(f"--table {table}: unknown table (no {Path(ablations) / (table + '.yaml')}); "
                      f"tables: {', '.join(names)}")


def find_cell(sweep: Sweep, row: str, seed: str | int) -> Cell:
    labels = [r.label for r in sweep.table.rows]
    if row not in labels:
        raise ConfigError(f"--row {row!r}: not a row of {sweep.table.path}; rows: {', '.join(labels)}")
    try:
        number = int(seed)
    except (TypeError, ValueError):
        number = None
    if number not in sweep.profile.seeds:
        raise ConfigError(f"--seed {seed!r}: not a seed of profile {sweep.profile.name}; seeds: "
                          f"{', '.join(map(str, sweep.profile.seeds))}")
    return next(c for c in sweep.cells if c.row == row and c.seed == number)


def agent_run(table: str, profile: str, row: str, seed: str | int, *, data: str | None = None,
              results: str | Path = "results", ablations: str | Path = "ablations") -> tuple[dict, bool]:
    """(record, reused) of the cell; raises ConfigError before any training or W&B call on bad input."""
    sweep = build_sweep(table_path(table, ablations), profile, data)
    cell = find_cell(sweep, row, seed)
    group, tags = sweep.name, (sweep.table.name, cell.row, f"seed={cell.seed}")
    params = {"table": sweep.table.name, "profile": profile, "row": cell.row}  # seed is in the run config
    run_dir = Path(results) / profile / "runs" / cell.run_id
    print(describe(cell.config), file=sys.stderr, flush=True)  # the run's first line, as train_run's
    with run_lock(run_dir):  # the optuna runner's lock: an agent and a sweep never train one run at once
        record = local_record(run_dir, cell.run_id)
        reused = record is not None
        if not reused and run_dir.exists():
            shutil.rmtree(run_dir)  # half-finished: redo from scratch, as the optuna runner does
        if not reused:  # its backbone (profile pretrain:) first, as a sweep's; before wandb.init: its own run
            backbone_first(cell, run_dir.parent, profile)()
        kwargs = wandb_init_kwargs(cell.config, run_dir, group, tags, extra_config=params)
        run = None
        if kwargs:
            import wandb

            run = wandb.init(**kwargs)
        if reused:
            if run is not None:
                run.summary.update(run_summary(record) | {"reused": True})
                run.finish(exit_code=0 if record.get("status") == "ok" else 1)
            return record, True
        with warnings.catch_warnings():
            # WandbLogger says it reuses wandb.run: that is the point.
            warnings.filterwarnings("ignore", message=".*wandb run already in progress.*")
            record = train_run(cell.config, run_dir, wandb_group=group, wandb_tags=tags, progress=False)
        return record, False


def main(args) -> int:
    record, reused = agent_run(args.table, args.profile, args.row, args.seed, data=args.data,
                               results=args.results, ablations=args.ablations)
    how = "reused" if reused else f"trained in {record.get('wall_s') or 0:.0f} s"
    if record.get("status") == "ok":
        print(f"{args.table} / {args.row} / seed {args.seed}: run {record['run_id']} {how}, "
              f"val top-1 {record.get('val_top1')}, top-1 {record.get('top1')}")
        return 0
    print(f"nlbench: error: run {record.get('run_id')} failed ({how}): {record.get('reason')}", file=sys.stderr)
    return 1


__all__ = ["agent_run", "find_cell", "main", "table_path"]
