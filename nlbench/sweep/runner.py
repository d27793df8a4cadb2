"""Run ablation tables' grids (rows x seeds) resumably, on one machine or many, whatever the moment of a kill.

One sweep call, ``run_sweeps``: check every input, open the ledger, let the workers take the cells, follow the
storage meanwhile, and say what it cost. Each job lives in its own module:

    ledger     the optuna storage as the one owner of a cell's state (todo, running, done): claims of cells,
               completions, each cell done once, the trials of dead processes failed
    heartbeat  how a dead process is told from a live one (the grace period, --grace, NLBENCH_GRACE_S)
    runs       a run's folder, its per-machine lock, and its record reused (here, or from the storage) or trained
    pool       the workers' loop, in this process or in --workers K spawned ones; Ctrl-C and SIGTERM
    progress   each table's results CSV, records of runs trained elsewhere, the progress bar

Kills. A process may die at any moment (kill -9, out of memory, power cut): the storage commits atomically and
every file is written atomically, so what survives is consistent; the dead process's RUNNING trials stop
beating and are failed after the grace period, and their cells are todo again. The parent writes
``results/<profile>/<table>.csv`` whenever a cell of the table is done, and ``last_sweep.json`` (elapsed and
busy time) at the end of a call that trained a run, or where it is stopped (marked interrupted).
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from nlbench.io import atomic_write_text
from nlbench.numerics import NotPinned, pin
from nlbench.sweep.heartbeat import timing
from nlbench.sweep.ledger import Ledger, default_storage, masked, open_storage
from nlbench.sweep.pool import interrupt, run_processes, work
from nlbench.sweep.progress import Watch, quiet
from nlbench.sweep.spec import Sweep, build_sweep
from nlbench.training.config import ConfigError

log = logging.getLogger(__name__)

LAST_SWEEP = "last_sweep.json"  # results/<profile>/: workers, elapsed and busy seconds of the last sweep call


def prepare(table_path, profile: str = "tiny", storage: str | None = None, data=None,
            results_dir: str | Path = "results", profiles_path=None) -> tuple[Sweep, str]:
    """Everything that can be checked before a file is written: the table, the profile, the data."""
    sweep = build_sweep(table_path, profile, data, profiles_path)
    return sweep, storage or default_storage(results_dir, profile)


@dataclass
class Outcome:
    """What a sweep call did: each table's results, and how busy its workers were."""

    sweeps: list[Sweep]
    frames: dict[str, pd.DataFrame]  # sweep name -> its results (the CSV's rows)
    workers: int
    elapsed_s: float
    busy_s: float  # seconds the workers spent in runs (training, or fetching a reused record)
    trained: int
    reused: int
    extra: dict = field(default_factory=dict)

    @property
    def utilisation(self) -> float:
        return self.busy_s / (self.workers * self.elapsed_s) if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.trained} runs trained, {self.reused} reused; workers busy {self.busy_s:.0f} s of "
                f"{self.workers} x {self.elapsed_s:.0f} s elapsed ({100 * self.utilisation:.0f} %)")


def run_sweeps(
    table_paths: list[str | Path],
    profile: str = "tiny",
    storage: str | None = None,
    workers: int = 1,
    data: str | Path | None = None,
    progress: bool = True,
    *,
    results_dir: str | Path = "results",
    profiles_path: str | Path | None = None,
    grace_s: int | None = None,
) -> Outcome:
    """Run (or resume) every row x seed of every table with one pool of ``workers``; CSVs in results/<profile>/.

    Bad input (a table, the profile, the data, the storage, --grace) raises ConfigError before a file is written.
    """
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected an int >= 1")
    t = timing(grace_s)
    prepared = [prepare(p, profile, storage, data, results_dir, profiles_path) for p in table_paths]
    sweeps, url = [s for s, _ in prepared], prepared[0][1]
    results_dir = Path(results_dir)
    if storage is None:
        (results_dir / profile).mkdir(parents=True, exist_ok=True)
    quiet()
    extra = {}
    if sweeps[0].data is not None:
        from nlbench.data import kinetics

        if kinetics.is_annotated(sweeps[0].data):  # the label index and the missing videos, beside the results
            try:
                extra["kinetics"] = kinetics.prepare(sweeps[0].data, results_dir / profile / "kinetics")
            except (OSError, ValueError) as e:
                raise ConfigError(f"--data {sweeps[0].data}: {e}") from None
    session = uuid.uuid4().hex
    ledger = Ledger(open_storage(url, t.grace_s), sweeps, t, session)
    started = time.perf_counter()
    previous = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, interrupt)
    try:
        here = _pinned_here(sweeps[0].profile.isa)  # and the variables are set for the workers to inherit
        with Watch(ledger, results_dir, progress) as watch:
            if workers == 1 and here:
                work(ledger, results_dir, on_start=watch.started, on_done=watch.update)
            else:
                run_processes(ledger, url, results_dir, workers, watch.update, [str(p) for p in table_paths],
                              profiles_path)
            watch.update()
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM (interrupt), Lightning's exit on Ctrl-C in fit
        # A call stopped part-way trained runs too: the file says so, rather than keeping the call before it.
        try:
            _write_last_sweep(results_dir / profile, _outcome(sweeps, {}, workers, started, ledger, extra), url,
                              interrupted=True)
        except Exception as e:  # never in place of the stop itself
            log.warning("last_sweep.json not written: %s", e)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    outcome = _outcome(sweeps, watch.frames, workers, started, ledger, extra)
    _write_last_sweep(results_dir / profile, outcome, url)
    return outcome


def _outcome(sweeps, frames, workers: int, started: float, ledger, extra: dict) -> Outcome:
    busy, trained, reused = ledger.busy()
    return Outcome(sweeps, frames, workers, time.perf_counter() - started, busy, trained, reused, extra)


def _write_last_sweep(folder: Path, outcome: Outcome, url: str, interrupted: bool = False) -> None:
    """``last_sweep.json``: the call's workers, elapsed and busy seconds, runs trained and reused."""
    if not outcome.trained:
        # A call that only re-read finished runs says nothing of what the results cost: the file keeps the
        # sweep that made them (on a fresh clone, the committed one).
        return
    atomic_write_text(folder / LAST_SWEEP, json.dumps({
        "tables": [s.table.name for s in outcome.sweeps], "workers": outcome.workers,
        "elapsed_s": round(outcome.elapsed_s, 1), "busy_s": round(outcome.busy_s, 1),
        "utilisation": round(outcome.utilisation, 3), "trained": outcome.trained, "reused": outcome.reused,
        "interrupted": interrupted, "storage": masked(url),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
    }, indent=2) + "\n")


def _pinned_here(isa: str | None) -> bool:
    """Whether this process runs the profile's kernels (else its runs go to a spawned worker, which starts
    with the pin's variables: ``pin`` sets them here, and a spawned process inherits them)."""
    try:
        pin(isa)
    except NotPinned:
        return False
    return True


def run_sweep(table_path: str | Path, *args, **kwargs) -> pd.DataFrame:
    """Run (or resume) every row x seed of one table (run_sweeps' other arguments); returns the results (also
    in results/<profile>/<table>.csv)."""
    outcome = run_sweeps([table_path], *args, **kwargs)
    return next(iter(outcome.frames.values()))


# open_storage and timing: what `nlbench sweep` checks before anything runs (with prepare).
__all__ = ["LAST_SWEEP", "Outcome", "open_storage", "prepare", "run_sweep", "run_sweeps", "timing"]
