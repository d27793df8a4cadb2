"""Recipe search for one row of a table: random or TPE over recipe.lr and recipe.weight_decay, with pruning.

``nlbench sweep ablations/2a_instantiation.yaml --search tpe --trials 20 [--row C2D]``. The objective is the
validation top-1 (never the test set); a Lightning callback reports it after every validation and stops
a trial the MedianPruner gives up on. Runs are deduplicated by run_id like the grid's; results go to
``results/<profile>/<table>_search_<row>.csv``. (optuna-integration's PyTorchLightningPruningCallback is not
used: it targets the ``lightning`` package, not ``pytorch_lightning`` 2.6.)
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytorch_lightning as pl

from nlbench.sweep.ledger import FAILED_VALUE, default_storage, open_storage
from nlbench.sweep.progress import quiet
from nlbench.sweep.results import write_csv
from nlbench.sweep.runs import backbone_first, obtain, run_dir_of, run_lock
from nlbench.sweep.spec import build_sweep
from nlbench.training.config import ConfigError


class PruningCallback(pl.Callback):
    """Reports ``monitor`` to the optuna trial after each validation of fit, at its global step (runs that
    validate several times an epoch, ``recipe.val_points``, report each point); raises TrialPruned if told."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val/top1"):
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        step = trainer.global_step
        self.trial.report(float(value), step=step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: {self.monitor}={float(value):.2f}")


def run_search(
    table_path: str | Path,
    row: str | None = None,
    *,
    profile: str = "tiny",
    method: str = "tpe",
    trials: int = 10,
    storage: str | None = None,
    data: str | Path | None = None,
    results_dir: str | Path = "results",
    progress: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    sweep = build_sweep(table_path, profile, data)
    row = row or sweep.table.baseline
    cells = [c for c in sweep.cells if c.row == row]
    if not cells:
        raise ConfigError(f"{table_path}: --row {row!r} is not a row label; rows: "
                          f"{', '.join(r.label for r in sweep.table.rows)}")
    if method not in ("random", "tpe"):
        raise ConfigError(f"--search {method!r}: expected random or tpe")
    if trials < 1:
        raise ConfigError(f"--trials {trials}: expected an int >= 1")
    cell = cells[0]
    results_dir = Path(results_dir)
    if storage is None:
        (results_dir / profile).mkdir(parents=True, exist_ok=True)
    quiet()
    store = open_storage(storage or default_storage(results_dir, profile))
    sampler = optuna.samplers.RandomSampler(seed=seed) if method == "random" else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(
        # "/steps": trials report at global steps (studies before that reported at epochs: not comparable)
        study_name=f"{sweep.name}/search/{row}/{method}/steps", storage=store, sampler=sampler, direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0), load_if_exists=True,
    )
    base = cell.config.recipe
    slug = re.sub(r"[^A-Za-z0-9]+", "_", row).strip("_")
    csv_path = results_dir / profile / f"{sweep.table.name}_search_{slug}.csv"

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", base.lr / 10, base.lr * 10, log=True)
        wd = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        config = cell.config.replace(recipe={"lr": lr, "weight_decay": wd})
        trial.set_user_attr("run_id", config.run_id)
        run_dir = run_dir_of(results_dir, profile, config.run_id)
        with run_lock(run_dir):
            try:  # the row's backbone (profile pretrain:) first where the trial trains, as a sweep's
                record, _ = obtain(
                    config, run_dir, before_training=backbone_first(cell, run_dir.parent, profile),
                    wandb_group=f"{sweep.name}/search", callbacks=[PruningCallback(trial)],
                    wandb_tags=(sweep.table.name, row, f"seed={cell.seed}", f"search={method}"),
                )
            except optuna.TrialPruned:
                shutil.rmtree(run_dir, ignore_errors=True)  # a pruned run has no record: nothing to reuse
                raise
        for key in ("status", "reason", "val_top1", "top1"):
            trial.set_user_attr(key, record.get(key))
        if record.get("status") != "ok" or record.get("val_top1") is None:
            return FAILED_VALUE
        return float(record["val_top1"])

    def write(study: optuna.Study, _trial=None) -> None:
        rows = [
            {"table": sweep.table.name, "row": row, "trial": t.number, "state": t.state.name,
             "lr": t.params.get("lr"), "weight_decay": t.params.get("weight_decay"),
             "val_top1": t.user_attrs.get("val_top1"), "top1": t.user_attrs.get("top1"),
             "status": t.user_attrs.get("status"), "reason": t.user_attrs.get("reason"),
             "run_id": t.user_attrs.get("run_id")}
            for t in study.get_trials(deepcopy=False) if t.state.is_finished()
        ]
        if rows:
            write_csv(pd.DataFrame(rows), csv_path)

    study.optimize(objective, n_trials=trials, callbacks=[write], catch=(Exception,), gc_after_trial=False,
                   show_progress_bar=progress)
    write(study)
    return pd.read_csv(csv_path) if csv_path.exists() else pd.DataFrame()


__all__ = ["PruningCallback", "run_search"]
