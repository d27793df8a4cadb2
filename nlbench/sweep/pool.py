"""The workers of a sweep call: the loop each runs (take a todo cell, claim it, obtain its run, complete it),
in this process or in ``--workers K`` spawned processes.

Workers take cells from every table given, in order, so K runs go on until the last cell of the last table.
Ctrl-C and SIGTERM (SLURM's time limit) fail the running trial at once; a killed worker's trial stops
beating and is failed after the grace period (nlbench.sweep.heartbeat).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Callable

from optuna.trial import TrialState

from nlbench.sweep.heartbeat import Heartbeat, Timing
from nlbench.sweep.ledger import Ledger, cell_states, open_storage
from nlbench.sweep.progress import quiet
from nlbench.sweep.runs import backbone_first, obtain, run_dir_of, run_lock
from nlbench.sweep.spec import Cell, Sweep, build_sweep

log = logging.getLogger(__name__)
TICK_S = 5.0  # the least seconds between two looks of the parent at the storage (progress lines, CSVs)


def work(ledger: Ledger, results_dir: Path, on_start: Callable[[Sweep, Cell], None] | None = None,
         on_done: Callable[[], None] | None = None) -> None:
    """Take todo cells of every sweep of the ledger, in order, until none is todo or running."""
    while True:
        ledger.reap()
        todo, running, busy_runs = [], False, set()
        for sweep in ledger.sweeps:
            trials = ledger.trials(sweep)
            busy_runs |= {t.user_attrs.get("run_id") for t in trials if t.state == TrialState.RUNNING}
            states = cell_states(sweep, trials, ledger.session)
            running |= "running" in states.values()
            todo += [(sweep, c) for c in sweep.cells if states[c.key] == "todo"]
        if not todo and not running:
            return
        for sweep, cell in todo:
            if cell.run_id in busy_runs:
                continue  # being trained for another cell: reused once it is done
            with run_lock(run_dir_of(results_dir, sweep.profile.name, cell.run_id), block=False) as held:
                if not held:
                    continue
                trial_id = ledger.claim(sweep, cell)
                if trial_id is None:
                    continue
                if on_start:
                    on_start(sweep, cell)
                _execute(ledger, sweep, cell, trial_id, results_dir)
            if on_done:
                on_done()
            break
        else:
            time.sleep(ledger.timing.poll_s)  # other processes run what is left, or a dead one's trial goes stale


def _obtain(sweep: Sweep, cell: Cell, results_dir: Path, stored: Callable[[str], dict | None]) -> tuple[dict, bool]:
    run_dir = run_dir_of(results_dir, sweep.profile.name, cell.run_id)
    # its backbone (profile pretrain:) first, where the cell is trained here: no CSV row, not counted
    return obtain(cell.config, run_dir, stored, backbone_first(cell, run_dir.parent, sweep.profile.name, stored),
                  wandb_group=sweep.name, wandb_tags=(sweep.table.name, cell.row, f"seed={cell.seed}"))


def _execute(ledger: Ledger, sweep: Sweep, cell: Cell, trial_id: int, results_dir: Path) -> None:
    with Heartbeat(ledger.storage, trial_id, ledger.timing.heartbeat_s):
        try:
            record, reused = _obtain(sweep, cell, results_dir, ledger.stored)
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("%s: %s raised %s", sweep.name, cell.key, reason)
            ledger.fail(trial_id, {"run_id": cell.run_id, "status": "failed", "reason": reason})
            return
        except BaseException:  # Ctrl-C, SIGTERM: the cell is todo again at once
            ledger.fail(trial_id, None)
            raise
        ledger.complete(sweep, cell, trial_id, record, reused)


def interrupt(signum, frame):
    """SIGTERM's handler: raise what Ctrl-C raises, so that the running trial is failed before the process exits."""
    raise KeyboardInterrupt(f"signal {signum}")


def _worker_process(table_paths: list[str], profile: str, storage_url: str, data: str | None, results_dir: str,
                    profiles_path: str | None, threads: int, grace_s: int, session: str) -> None:
    import torch

    signal.signal(signal.SIGTERM, interrupt)
    torch.set_num_threads(threads)
    quiet()
    sweeps = [build_sweep(t, profile, data, profiles_path) for t in table_paths]
    ledger = Ledger(open_storage(storage_url, grace_s), sweeps, Timing(grace_s), session)
    try:
        work(ledger, Path(results_dir))
    except KeyboardInterrupt:
        pass


def run_processes(ledger: Ledger, url: str, results_dir: Path, workers: int, on_tick: Callable[[], None],
                  table_paths: list[str], profiles_path) -> None:
    """``workers`` spawned processes that each ``work`` on the ledger's tables; ``on_tick`` every TICK_S seconds
    or more until all have ended (the parent follows the storage meanwhile)."""
    ctx = multiprocessing.get_context("spawn")  # not fork: torch's thread pools do not survive a fork
    threads = max(1, (os.cpu_count() or 1) // workers)
    sweep = ledger.sweeps[0]
    procs = [
        ctx.Process(
            target=_worker_process,
            args=(table_paths, sweep.profile.name, url, sweep.data, str(results_dir),
                  None if profiles_path is None else str(profiles_path), threads, ledger.timing.grace_s,
                  ledger.session),
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        due = 0.0
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            now = time.monotonic()
            if now >= due:
                # Following the storage reads every trial of every table (optuna has no cheaper query): once a
                # second that took 22 % of a core from the workers of a 200-run grid on 2 cores. Spaced so the
                # parent spends at most about 5 % of a core on it.
                on_tick()
                due = now + max(TICK_S, 20 * (time.monotonic() - now))
    except BaseException:
        for p in procs:
            p.terminate()  # SIGTERM: each worker fails its running trial before it exits
        raise
    finally:
        for p in procs:
            p.join()


__all__ = ["interrupt", "run_processes", "work"]
