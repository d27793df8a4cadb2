"""Run ablation tables' grids (rows x seeds) resumably, on one machine or many, whatever the moment of a kill.

State. The optuna storage (default ``sqlite:///results/<profile>/sweeps.db``; any SQLAlchemy URL, e.g.
PostgreSQL to span machines) is the one owner of a cell's state; a cell (a row at one seed) of table T is a
trial of the study ``<profile>/<T>``:

    done     a COMPLETE trial of the cell exists; it holds the run's record (machines that did not train it
             write their CSV rows and record.json from it)
    running  a RUNNING trial of the cell, taken to be alive while its heartbeat is younger than the grace period
    todo     anything else: no trial yet, or only FAIL / PRUNED ones

Claiming a cell is one insert of a RUNNING trial that names it (no sampler and no queue: the WAITING copy that
optuna's retry callback queued for a killed trial was counted as someone else's and never run). Of two claims
of one cell, the lower trial number wins; a finished run completes its trial unless the cell completed
meanwhile (then it is PRUNED as a duplicate), so a cell is done once.

Kills. A process may die at any moment (kill -9, out of memory, power cut): the storage commits atomically and
every file is written atomically, so what survives is consistent; the dead process's RUNNING trials stop
beating and are failed after the grace period (``--grace``, ``NLBENCH_GRACE_S``; default 60 s), and their cells
are todo again. Ctrl-C and SIGTERM (SLURM's time limit) fail the running trial at once.

Runs. A run is its config's run_id, in ``results/<profile>/runs/<run_id>/``; its ``record.json`` (written last,
atomically, by train_run) means finished. For a claimed cell a worker reuses the local record, else a record
of the same run_id completed in any table of the profile in the storage (trained on another machine), else it
trains the run. A file lock per run_id keeps the processes of a machine from training one run twice; a cell
whose run another trial is training (here or on another machine) waits, and then reuses it.

Workers. ``--workers K`` processes take cells from every table given, in order, so K runs go on until the last
cell of the last table. The parent writes ``results/<profile>/<table>.csv`` whenever a cell of the table is
done, and ``last_sweep.json`` (elapsed and busy time) at the end of a call that trained a run.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import optuna
import pandas as pd
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from nlbench.io import atomic_write_text
from nlbench.numerics import NotPinned, pin
from nlbench.sweep.results import to_frame, write_csv
from nlbench.sweep.spec import Cell, Sweep, build_sweep
from nlbench.training import ConfigError, read_record, train_run

GRACE_S = 60  # a RUNNING trial whose heartbeat is older than this belongs to a dead process
GRACE_ENV = "NLBENCH_GRACE_S"  # the default's override (tests kill sweeps and do not wait a minute each time)
FAILED_VALUE = -1.0  # the trial value of a run whose status is failed (top1 otherwise)
LAST_SWEEP = "last_sweep.json"  # results/<profile>/: workers, elapsed and busy seconds of the last sweep call

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class Timing:
    """How long a silent trial is given (grace_s), how often a live one beats, how often a waiting worker looks."""

    grace_s: int = GRACE_S

    @property
    def heartbeat_s(self) -> int:  # optuna takes whole seconds
        return max(1, self.grace_s // 6)

    @property
    def poll_s(self) -> float:  # a look at the storage is a few small queries: a waiting worker may look often
        return min(2.0, max(0.2, self.grace_s / 10))


def timing(grace_s: int | None = None) -> Timing:
    """--grace, else NLBENCH_GRACE_S, else GRACE_S; fewer than 2 s cannot tell a dead process from a busy one."""
    where = "--grace"
    if grace_s is None and os.environ.get(GRACE_ENV):
        where, grace_s = GRACE_ENV, os.environ[GRACE_ENV]
    if grace_s is None:
        return Timing()
    try:
        value = int(grace_s)
    except ValueError:
        value = 0
    if value < 2:
        raise ConfigError(f"{where}={grace_s!r}: expected a whole number of seconds >= 2")
    return Timing(value)


def default_storage(results_dir: str | Path, profile: str) -> str:
    return f"sqlite:///{Path(results_dir) / profile / 'sweeps.db'}"


def _masked(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str, grace_s: int | None = None) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats; an URL that cannot be used is a one-line ConfigError naming it."""
    t = timing(grace_s)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat_interval is "experimental"
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=t.heartbeat_s, grace_period=t.grace_s,
                )
        except Exception as e:  # sqlalchemy's errors, a missing driver, a bad URL
            # N processes started at once on an empty database all create optuna's tables: the losers see
            # "already exists" / a duplicate key (PostgreSQL) or a UNIQUE constraint failure (SQLite), and find
            # the tables there when they try again.
            text = str(e)
            if attempt < 4 and any(m in text for m in ("already exists", "duplicate key", "UniqueViolation",
                                                       "UNIQUE constraint failed")):
                time.sleep(0.5 * (attempt + 1))
                continue
            first = text.strip().splitlines()[0] if text.strip() else ""
            raise ConfigError(f"storage {_masked(url)} cannot be used: {type(e).__name__}: {first}") from None


def open_study(sweep: Sweep, storage) -> optuna.Study:
    return optuna.create_study(study_name=sweep.name, storage=storage, direction="maximize", load_if_exists=True)


# ------------------------------------------------------------------------------------------------ runs


def run_dir_of(results_dir: str | Path, profile: str, run_id: str) -> Path:
    return Path(results_dir) / profile / "runs" / run_id


@contextlib.contextmanager
def run_lock(run_dir: Path, block: bool = True):
    """An exclusive lock on this run_id among the processes of this machine (released when one dies).

    Yields True when held; with ``block=False``, False at once when another process holds it."""
    lock = run_dir.parent / ".locks" / f"{run_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def local_record(run_dir: Path, run_id: str) -> dict | None:
    record = read_record(run_dir)
    return record if record is not None and record.get("run_id") == run_id else None


def keep_record(run_dir: Path, record: dict) -> None:
    """Write a run's record trained elsewhere into this machine's run dir (what `nlbench report` reads)."""
    if run_dir.exists() and not (run_dir / "record.json").exists():
        shutil.rmtree(run_dir)  # what is there is an interrupted attempt of this run
    atomic_write_text(run_dir / "record.json", json.dumps(record, indent=2) + "\n")


def obtain(config, run_dir: Path, stored: Callable[[str], dict | None] = lambda _: None, **train) -> tuple[dict, bool]:
    """(record, reused) of one run, with its lock held by the caller: the local record, else one in the
    storage (``stored``), else trained now (``train``: train_run's keywords). The one way any cell (grid or
    search) gets its record."""
    record = local_record(run_dir, config.run_id)
    if record is not None:
        return record, True
    record = stored(config.run_id)
    if record is not None:
        keep_record(run_dir, record)
        return record, True
    if run_dir.exists():
        shutil.rmtree(run_dir)  # half-finished: redo from scratch
    record = train_run(config, run_dir, progress=False, **train)
    # The file's copy (JSON, NaN as null) is what the storage keeps: every machine's CSV row is then identical.
    return local_record(run_dir, config.run_id) or record, False


def _obtain(sweep: Sweep, cell: Cell, results_dir: Path, stored: Callable[[str], dict | None]) -> tuple[dict, bool]:
    run_dir = run_dir_of(results_dir, sweep.profile.name, cell.run_id)
    return obtain(cell.config, run_dir, stored, wandb_group=sweep.name,
                  wandb_tags=(sweep.table.name, cell.row, f"seed={cell.seed}"))


# ------------------------------------------------------------------------------------------ the trials


def _cell_of(trial: FrozenTrial) -> str | None:
    # user attr (this runner), param (older nlbench: a GridSampler over cells), fixed param (its queued retries)
    return (trial.user_attrs.get("cell") or trial.params.get("cell")
            or trial.system_attrs.get("fixed_params", {}).get("cell"))


def _states(sweep: Sweep, trials: list[FrozenTrial], session: str | None = None) -> dict[str, str]:
    """cell key -> done | running | todo; ``errored`` for a cell whose run raised in ``session`` (not retried by
    the same sweep call: the next one retries it)."""
    states = {c.key: "todo" for c in sweep.cells}
    for t in trials:
        key = _cell_of(t)
        if key not in states or states[key] == "done":
            continue
        if t.state == TrialState.COMPLETE:
            states[key] = "done"
        elif t.state == TrialState.RUNNING:
            states[key] = "running"
        elif (t.state == TrialState.FAIL and session and states[key] == "todo"
              and t.system_attrs.get("session") == session and t.system_attrs.get("error")):
            states[key] = "errored"
    return states


def _records(sweep: Sweep, trials: list[FrozenTrial], results_dir: Path) -> dict[str, dict]:
    """cell key -> the record of its completed trial (else of its last failed one that has one)."""
    complete: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    for t in trials:
        key, record = _cell_of(t), t.user_attrs.get("record")
        if key is None or not isinstance(record, dict):
            continue
        if t.state == TrialState.COMPLETE:
            complete.setdefault(key, record)
        elif t.state == TrialState.FAIL:
            failed[key] = record
    records = {}
    for cell in sweep.cells:
        record = complete.get(cell.key) or failed.get(cell.key)
        if record is None:
            continue
        if "config" not in record:  # an older nlbench kept only the CSV's columns: the local record is fuller
            record = local_record(run_dir_of(results_dir, sweep.profile.name, cell.run_id), cell.run_id) or record
        records[cell.key] = record
    return records


def stored_record(storage, profile: str, run_id: str) -> dict | None:
    """A full record of ``run_id`` that a completed trial of any table of ``profile`` holds, else None."""
    for study in storage.get_all_studies():
        if not study.study_name.startswith(f"{profile}/") or "/search/" in study.study_name:
            continue
        study_id = storage.get_study_id_from_name(study.study_name)
        for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
            record = t.user_attrs.get("record")
            if t.user_attrs.get("run_id") == run_id and isinstance(record, dict) and "config" in record:
                return record
    return None


class _Heartbeat:
    """Beats for one trial while its run goes on. (optuna's own heartbeat thread lives inside Study.optimize,
    which this runner does not use: it claims cells by name.)"""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # a storage hiccup: the next beat may pass; the grace period allows several
                log.warning("heartbeat of trial %s: %s", self.trial_id, e)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class Ledger:
    """The storage's side of one sweep call: its studies, claims, completions, the trials of dead processes."""

    def __init__(self, storage, sweeps: list[Sweep], t: Timing, session: str):
        self.storage, self.sweeps, self.timing, self.session = storage, sweeps, t, session
        self.studies = {s.name: open_study(s, storage) for s in sweeps}
        self.ids = {name: storage.get_study_id_from_name(name) for name in self.studies}
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def trials(self, sweep: Sweep) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.ids[sweep.name], deepcopy=False)

    def reap(self) -> None:
        """Fail the trials of dead processes: the heartbeat is older than the grace period, or the process died
        between its claim and its first beat (no beat: optuna never calls that stale), or an older nlbench
        queued it (WAITING: nobody takes it)."""
        now = datetime.now()
        for name, study in self.studies.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
            for t in self.storage.get_all_trials(self.ids[name], deepcopy=False,
                                                 states=(TrialState.RUNNING, TrialState.WAITING)):
                unbeaten = ("worker" in t.system_attrs and "beating" not in t.system_attrs
                            and t.datetime_start is not None
                            and (now - t.datetime_start).total_seconds() > self.timing.grace_s)
                if t.state == TrialState.WAITING or unbeaten:
                    self._set(self._trial_id(name, t), TrialState.FAIL)

    def _trial_id(self, name: str, t: FrozenTrial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.ids[name], t.number)

    def _set(self, trial_id: int, state: TrialState, value: float | None = None) -> bool:
        try:
            return self.storage.set_trial_state_values(trial_id, state, None if value is None else [value])
        except UpdateFinishedTrialError:  # another process finished it first (failed it as stale)
            return False

    def claim(self, sweep: Sweep, cell: Cell) -> int | None:
        """A RUNNING trial of ``cell``, beating; None when another claim of it came first or it completed."""
        # The cell is a user attribute, not a parameter: a categorical parameter's choices may not change within
        # a study, and an edited table has other cells.
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            user_attrs={"cell": cell.key, "table": sweep.table.name, "row": cell.row, "seed": cell.seed,
                        "run_id": cell.run_id},
            system_attrs={"worker": self.worker, "session": self.session},
        )
        trial_id = self.storage.create_new_trial(self.ids[sweep.name], template_trial=template)
        self.storage.record_heartbeat(trial_id)
        self.storage.set_trial_system_attr(trial_id, "beating", True)
        number = self.storage.get_trial_number_from_id(trial_id)
        for other in self.trials(sweep):
            if other.number != number and _cell_of(other) == cell.key and (
                    other.state == TrialState.COMPLETE or (other.state == TrialState.RUNNING and other.number < number)):
                self.storage.set_trial_system_attr(trial_id, "duplicate_of", other.number)
                self._set(trial_id, TrialState.PRUNED)
                return None
        return trial_id

    def complete(self, sweep: Sweep, cell: Cell, trial_id: int, record: dict, reused: bool) -> bool:
        """Store the record and complete the trial, unless another trial of the cell completed meanwhile."""
        try:
            self.storage.set_trial_user_attr(trial_id, "record", record)
            self.storage.set_trial_user_attr(trial_id, "reused", reused)
            number = self.storage.get_trial_number_from_id(trial_id)
            for other in self.trials(sweep):
                if other.number != number and _cell_of(other) == cell.key and other.state == TrialState.COMPLETE:
                    self.storage.set_trial_system_attr(trial_id, "duplicate_of", other.number)
                    self._set(trial_id, TrialState.PRUNED)
                    return False
            top1 = record.get("top1")
            value = float(top1) if record.get("status") == "ok" and top1 is not None else FAILED_VALUE
            if self._set(trial_id, TrialState.COMPLETE, value):
                return True
        except UpdateFinishedTrialError:
            pass
        # A process too busy to beat within the grace period was taken for dead: the cell is done again by
        # whoever claims it next, reusing this run's record.
        log.warning("%s: %s finished after its trial was taken for dead (grace %s s); its run is reused",
                    sweep.name, cell.key, self.timing.grace_s)
        return False

    def fail(self, trial_id: int, record: dict | None) -> None:
        try:
            if record is not None:  # the run raised: the CSV shows why; this sweep call does not retry it
                self.storage.set_trial_user_attr(trial_id, "record", record)
                self.storage.set_trial_system_attr(trial_id, "error", True)
            self._set(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # already failed as stale
            pass

    def stored(self, run_id: str) -> dict | None:
        return stored_record(self.storage, self.sweeps[0].profile.name, run_id)

    def busy(self) -> tuple[float, int, int]:
        """(seconds, runs trained, runs reused) of this session's finished trials."""
        seconds, trained, reused = 0.0, 0, 0
        for sweep in self.sweeps:
            for t in self.trials(sweep):
                if t.system_attrs.get("session") != self.session or t.datetime_complete is None:
                    continue
                seconds += (t.datetime_complete - t.datetime_start).total_seconds()
                if t.state == TrialState.COMPLETE:
                    trained, reused = trained + (not t.user_attrs.get("reused")), reused + bool(t.user_attrs.get("reused"))
        return seconds, trained, reused


def work(ledger: Ledger, results_dir: Path, on_start: Callable[[Sweep, Cell], None] | None = None,
         on_done: Callable[[], None] | None = None) -> None:
    """Take todo cells of every sweep of the ledger, in order, until none is todo or running."""
    while True:
        ledger.reap()
        todo, running, busy_runs = [], False, set()
        for sweep in ledger.sweeps:
            trials = ledger.trials(sweep)
            busy_runs |= {t.user_attrs.get("run_id") for t in trials if t.state == TrialState.RUNNING}
            states = _states(sweep, trials, ledger.session)
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


def _execute(ledger: Ledger, sweep: Sweep, cell: Cell, trial_id: int, results_dir: Path) -> None:
    with _Heartbeat(ledger.storage, trial_id, ledger.timing.heartbeat_s):
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


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _worker_process(table_paths: list[str], profile: str, storage_url: str, data: str | None, results_dir: str,
                    profiles_path: str | None, threads: int, grace_s: int, session: str) -> None:
    import torch

    signal.signal(signal.SIGTERM, _interrupt)
    torch.set_num_threads(threads)
    _quiet()
    sweeps = [build_sweep(t, profile, data, profiles_path) for t in table_paths]
    ledger = Ledger(open_storage(storage_url, grace_s), sweeps, Timing(grace_s), session)
    try:
        work(ledger, Path(results_dir))
    except KeyboardInterrupt:
        pass


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
    _quiet()
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
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        here = _pinned_here(sweeps[0].profile.isa)  # and the variables are set for the workers to inherit
        with _Watch(ledger, results_dir, progress) as watch:
            if workers == 1 and here:
                work(ledger, results_dir, on_start=watch.started, on_done=watch.update)
            else:
                _run_processes(ledger, url, results_dir, workers, watch, [str(p) for p in table_paths],
                               profiles_path)
            watch.update()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    busy, trained, reused = ledger.busy()
    outcome = Outcome(sweeps, watch.frames, workers, time.perf_counter() - started, busy, trained, reused, extra)
    if not trained:
        # A call that only re-read finished runs says nothing of what the results cost: the file keeps the
        # sweep that made them (on a fresh clone, the committed one).
        return outcome
    atomic_write_text(results_dir / profile / LAST_SWEEP, json.dumps({
        "tables": [s.table.name for s in sweeps], "workers": workers, "elapsed_s": round(outcome.elapsed_s, 1),
        "busy_s": round(busy, 1), "utilisation": round(outcome.utilisation, 3), "trained": trained,
        "reused": reused, "storage": _masked(url), "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
    }, indent=2) + "\n")
    return outcome


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


def _run_processes(ledger: Ledger, url: str, results_dir: Path, workers: int, watch: _Watch, table_paths: list[str],
                   profiles_path) -> None:
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
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            watch.update()
    except BaseException:
        for p in procs:
            p.terminate()  # SIGTERM: each worker fails its running trial before it exits
        raise
    finally:
        for p in procs:
            p.join()


class _Watch:
    """Follows the storage: writes a table's CSV when one of its cells is done, keeps the records of runs
    trained elsewhere, shows a progress bar per table and a line per finished run."""

    def __init__(self, ledger: Ledger, results_dir: Path, enabled: bool):
        self.ledger, self.results_dir, self.enabled = ledger, results_dir, enabled
        self.frames: dict[str, pd.DataFrame] = {}
        self.seen: dict[str, set[str] | None] = {s.name: None for s in ledger.sweeps}
        self.bar, self.tasks = None, {}

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(
                TextColumn("[bold]{task.fields[table]}[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False,
            )
            self.bar.__enter__()
            self.tasks = {s.name: self.bar.add_task("", total=len(s.cells), table=s.name) for s in self.ledger.sweeps}
        self.update()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def started(self, sweep: Sweep, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.update(self.tasks[sweep.name], description=f"{cell.row} seed={cell.seed}")

    def update(self) -> None:
        for sweep in self.ledger.sweeps:
            trials = self.ledger.trials(sweep)
            done = {k for k, s in _states(sweep, trials).items() if s == "done"}
            records = _records(sweep, trials, self.results_dir)
            first = self.seen[sweep.name] is None
            new = done - (self.seen[sweep.name] or set())
            frame = to_frame(sweep, records)
            previous = self.frames.get(sweep.name)
            if len(frame) and (first or previous is None or not frame.equals(previous)):
                write_csv(frame, self.results_dir / sweep.profile.name / f"{sweep.table.name}.csv")
            self.frames[sweep.name] = frame
            for key in new:
                self._keep(sweep, sweep.cell(key), records.get(key))
            if not first:
                for cell in (c for c in sweep.cells if c.key in new):
                    self._line(sweep, cell, records.get(cell.key) or {}, trials)
            self.seen[sweep.name] = done
            if self.bar is not None:
                self.bar.update(self.tasks[sweep.name], completed=len(done), description="")

    def _keep(self, sweep: Sweep, cell: Cell | None, record: dict | None) -> None:
        """The record of a run trained on another machine, written here for `nlbench report` (the lock: not
        while a process of this machine is at that run)."""
        if cell is None or record is None or "config" not in record:
            return
        run_dir = run_dir_of(self.results_dir, sweep.profile.name, cell.run_id)
        if (run_dir / "record.json").exists():
            return
        with run_lock(run_dir, block=False) as held:
            if held and not (run_dir / "record.json").exists():
                keep_record(run_dir, record)

    def _line(self, sweep: Sweep, cell: Cell, record: dict, trials: list[FrozenTrial]) -> None:
        if self.bar is None:
            return
        reused = any(t.state == TrialState.COMPLETE and _cell_of(t) == cell.key and t.user_attrs.get("reused")
                     for t in trials)
        what = f"top1 {record.get('top1')}" if record.get("status") == "ok" else f"[red]failed[/]: {record.get('reason')}"
        how = "reused" if reused else f"{record.get('wall_s') or 0:.0f} s"
        self.bar.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {sweep.table.name}: {cell.row} seed={cell.seed} "
                               f"({cell.run_id}, {how}): {what}")


__all__ = ["GRACE_S", "Ledger", "Outcome", "Timing", "default_storage", "keep_record",
           "obtain", "open_storage", "open_study", "prepare", "run_dir_of", "run_sweep", "run_sweeps",
           "stored_record", "timing", "work"]
