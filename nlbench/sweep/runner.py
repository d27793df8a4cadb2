"""Run a table's grid (rows x seeds) through optuna, resumably, results written after every run.

- One optuna study per (profile, table) named ``<profile>/<table>``, in RDB storage (default
  ``sqlite:///results/<profile>/sweeps.db``; any SQLAlchemy URL). A GridSampler over a categorical ``cell``
  (``"<row> | seed=<n> | <run_id>"``) hands out the cells; several ``nlbench sweep`` processes against one
  storage share the grid.
- A run is identified by its config's ``run_id`` and lives in ``results/<profile>/runs/<run_id>/``: a
  ``record.json`` there is reused (the same run in several tables is trained once); a run dir without one is
  a run that was interrupted, wiped and redone. A file lock per run_id keeps two processes on one machine
  from training the same run at once.
- Resuming: trials of a killed process stay RUNNING; their heartbeat stops, and after ``GRACE_S`` they are
  failed and retried. A Ctrl-C fails the running trial at once. A cell is done when a trial of it completed;
  every other cell is (re)done.
- A run that fails while training (NaN, out of memory, a bad video) is a finished cell with status failed
  and its reason; an unexpected error in one cell is recorded the same way (and retried by the next sweep).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import optuna
import pandas as pd
from optuna.trial import TrialState

from nlbench.sweep.results import compact_record, to_frame, write_csv
from nlbench.sweep.spec import Cell, Sweep, build_sweep
from nlbench.training import ConfigError, read_record, train_run

HEARTBEAT_S = 10  # a running trial writes its heartbeat this often
GRACE_S = 60  # a RUNNING trial whose heartbeat is older than this belongs to a dead process
POLL_S = 5.0  # waiting for cells other processes are running
MP_CONTEXT = "spawn"  # --workers processes (tests use fork to keep their fake train_run)
FAILED_VALUE = -1.0  # the trial value of a run whose status is failed (top1 otherwise)


# --------------------------------------------------------------------------------------------- storage


def default_storage(results_dir: str | Path, profile: str) -> str:
    return f"sqlite:///{Path(results_dir) / profile / 'sweeps.db'}"


def _masked(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats; an URL that cannot be used is a one-line ConfigError naming it."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat_interval is "experimental"
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
            )
    except Exception as e:  # sqlalchemy's errors, a missing driver, a bad URL
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"storage {_masked(url)} cannot be used: {type(e).__name__}: {first}") from None


def open_study(sweep: Sweep, storage) -> optuna.Study:
    keys = [c.key for c in sweep.cells]
    return optuna.create_study(
        study_name=sweep.name,
        storage=storage,
        sampler=optuna.samplers.GridSampler({"cell": keys}),
        direction="maximize",
        load_if_exists=True,
    )


# ------------------------------------------------------------------------------------------------ runs


def run_dir_of(results_dir: str | Path, profile: str, run_id: str) -> Path:
    return Path(results_dir) / profile / "runs" / run_id


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """An exclusive lock on this run_id among the processes of this machine (released when one dies)."""
    lock = run_dir.parent / ".locks" / f"{run_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_cell(sweep: Sweep, cell: Cell, results_dir: str | Path) -> tuple[dict, bool]:
    """(record, reused): the run's finished record if there is one, else train it now."""
    run_dir = run_dir_of(results_dir, sweep.profile.name, cell.run_id)
    with _run_lock(run_dir):
        record = read_record(run_dir)
        if record is not None and record.get("run_id") == cell.run_id:
            return record, True
        if run_dir.exists():
            shutil.rmtree(run_dir)  # half-finished: redo from scratch
        record = train_run(
            cell.config,
            run_dir,
            wandb_group=sweep.name,
            wandb_tags=(sweep.table.name, cell.row, f"seed={cell.seed}"),
            progress=False,
        )
        return record, False


# ------------------------------------------------------------------------------------------ the study


def _cell_of(trial: optuna.trial.FrozenTrial) -> str | None:
    return trial.params.get("cell") or trial.system_attrs.get("fixed_params", {}).get("cell")


def cell_states(study: optuna.Study, sweep: Sweep) -> dict[str, str]:
    """cell key -> done (a trial completed) | pending (running or queued) | todo."""
    states = {c.key: "todo" for c in sweep.cells}
    for t in study.get_trials(deepcopy=False):
        key = _cell_of(t)
        if key not in states or states[key] == "done":
            continue
        if t.state == TrialState.COMPLETE:
            states[key] = "done"
        elif t.state in (TrialState.RUNNING, TrialState.WAITING):
            states[key] = "pending"
    return states


def collect(sweep: Sweep, study: optuna.Study, results_dir: str | Path) -> dict[str, dict]:
    """cell key -> record of every finished cell: the local record.json, else the trial's copy."""
    kept: dict[str, dict] = {}
    for t in study.get_trials(deepcopy=False):
        key = _cell_of(t)
        if key and "record" in t.user_attrs and (t.state == TrialState.COMPLETE or key not in kept):
            kept[key] = t.user_attrs["record"]
    records = {}
    for cell in sweep.cells:
        local = read_record(run_dir_of(results_dir, sweep.profile.name, cell.run_id))
        if local is not None and local.get("run_id") == cell.run_id:
            records[cell.key] = local
        elif cell.key in kept:
            records[cell.key] = kept[cell.key]
    return records


class _Worker:
    """Takes cells from the study until none is left to do (waiting for cells other processes run)."""

    def __init__(self, sweep: Sweep, study: optuna.Study, results_dir: Path,
                 on_start: Callable[[Cell], None] | None = None,
                 on_done: Callable[[Cell, dict, bool], None] | None = None):
        self.sweep, self.study, self.results_dir = sweep, study, results_dir
        self.on_start, self.on_done = on_start, on_done
        self.errored: set[str] = set()  # cells that raised here: not retried by this process
        self.last: tuple[Cell, dict, bool] | None = None

    def objective(self, trial: optuna.Trial) -> float:
        key = trial.suggest_categorical("cell", [c.key for c in self.sweep.cells])
        cell = self.sweep.cell(key)
        if cell is None:
            raise optuna.TrialPruned(f"cell {key!r} is not in the table any more")
        for other in self.study.get_trials(deepcopy=False):
            if other.number == trial.number or _cell_of(other) != key:
                continue
            if other.state == TrialState.COMPLETE or (
                other.state == TrialState.RUNNING and other.number < trial.number
            ):
                raise optuna.TrialPruned(f"cell {key!r} is done or running in trial {other.number}")
        for name, value in (("table", self.sweep.table.name), ("row", cell.row), ("seed", cell.seed),
                            ("run_id", cell.run_id)):
            trial.set_user_attr(name, value)
        if self.on_start:
            self.on_start(cell)
        try:
            record, reused = run_cell(self.sweep, cell, self.results_dir)
        except Exception as e:
            self.errored.add(key)
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            record, reused = {"run_id": cell.run_id, "status": "failed", "reason": reason}, False
            trial.set_user_attr("record", record)
            self.last = (cell, record, reused)
            raise
        trial.set_user_attr("record", compact_record(record))
        trial.set_user_attr("reused", reused)
        self.last = (cell, record, reused)
        top1 = record.get("top1")
        return float(top1) if record.get("status") == "ok" and top1 is not None else FAILED_VALUE

    def run(self) -> None:
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(self.study)
            states = cell_states(self.study, self.sweep)
            todo = [c for c in self.sweep.cells if states[c.key] == "todo" and c.key not in self.errored]
            if not todo:
                if any(s == "pending" for s in states.values()):
                    time.sleep(POLL_S)  # another process runs them, or a dead one's heartbeat goes stale
                    continue
                return
            tried = {_cell_of(t) for t in self.study.get_trials(deepcopy=False)}
            if all(c.key in tried for c in todo):
                # Interrupted or failed before: the GridSampler counts them as visited; queue one again.
                self.study.enqueue_trial({"cell": todo[0].key})
            self.last = None
            self.study.optimize(self.objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
            if self.last is not None and self.on_done:
                self.on_done(*self.last)


def _worker_process(table_path: str, profile: str, storage_url: str, data: str | None, results_dir: str,
                    profiles_path: str | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _quiet()
    sweep = build_sweep(table_path, profile, data, profiles_path)
    study = open_study(sweep, open_storage(storage_url))
    _Worker(sweep, study, Path(results_dir)).run()


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------------ the sweep


def prepare(table_path, profile: str = "tiny", storage: str | None = None, data=None,
            results_dir: str | Path = "results", profiles_path=None) -> tuple[Sweep, str]:
    """Everything that can be checked before a file is written: the table, the profile, the data."""
    sweep = build_sweep(table_path, profile, data, profiles_path)
    return sweep, storage or default_storage(results_dir, profile)


def run_sweep(
    table_path: str | Path,
    profile: str = "tiny",
    storage: str | None = None,
    workers: int = 1,
    data: str | Path | None = None,
    progress: bool = True,
    *,
    results_dir: str | Path = "results",
    profiles_path: str | Path | None = None,
) -> pd.DataFrame:
    """Run (or resume) every row x seed of a table; returns the results (also in results/<profile>/<table>.csv).

    Bad input (table, profile, data, storage) raises ConfigError before any file is written.
    """
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected an int >= 1")
    sweep, url = prepare(table_path, profile, storage, data, results_dir, profiles_path)
    results_dir = Path(results_dir)
    if storage is None:
        (results_dir / profile).mkdir(parents=True, exist_ok=True)
    _quiet()
    study = open_study(sweep, open_storage(url))
    csv_path = results_dir / profile / f"{sweep.table.name}.csv"

    def write() -> pd.DataFrame:
        frame = to_frame(sweep, collect(sweep, study, results_dir))
        if len(frame):
            write_csv(frame, csv_path)
        return frame

    with _Progress(sweep, progress) as bar:
        bar.set_done(_done(study, sweep))
        if workers == 1:
            def on_done(cell: Cell, record: dict, reused: bool) -> None:
                write()
                bar.finished(cell, record, reused, _done(study, sweep))

            _Worker(sweep, study, results_dir, on_start=bar.started, on_done=on_done).run()
        else:
            _run_processes(sweep, study, url, results_dir, workers, write, bar, str(table_path), profiles_path)
    return write()


def _done(study: optuna.Study, sweep: Sweep) -> int:
    return sum(s == "done" for s in cell_states(study, sweep).values())


def _run_processes(sweep, study, url, results_dir, workers, write, bar, table_path, profiles_path) -> None:
    ctx = multiprocessing.get_context(MP_CONTEXT)
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [
        ctx.Process(
            target=_worker_process,
            args=(table_path, sweep.profile.name, url, sweep.data, str(results_dir),
                  None if profiles_path is None else str(profiles_path), threads),
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        done = -1
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            now = _done(study, sweep)
            if now != done:
                done = now
                write()
                bar.set_done(done)
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    bar.set_done(_done(study, sweep))


class _Progress:
    """A rich bar over the table's cells (runs done / total, ETA) and a line per finished run."""

    def __init__(self, sweep: Sweep, enabled: bool):
        self.sweep, self.enabled, self.bar, self.task = sweep, enabled, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(
                TextColumn("[bold]{task.fields[table]}[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=len(self.sweep.cells), table=self.sweep.name)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def set_done(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)

    def started(self, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"{cell.row} seed={cell.seed}")

    def finished(self, cell: Cell, record: dict, reused: bool, done: int) -> None:
        if self.bar is None:
            return
        if record.get("status") == "ok":
            what = f"top1 {record.get('top1')}"
        else:
            what = f"[red]failed[/]: {record.get('reason')}"
        how = "reused" if reused else f"{record.get('wall_s') or 0:.0f} s"
        self.bar.console.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] {self.sweep.table.name}: {cell.row} seed={cell.seed} "
            f"({cell.run_id}, {how}): {what}")
        self.bar.update(self.task, completed=done, description="")


__all__ = ["cell_states", "collect", "default_storage", "open_storage", "open_study", "prepare", "run_cell",
           "run_dir_of", "run_sweep"]
