"""The optuna storage as a sweep's ledger: which cells of a table exist, are running, are done.

The storage (default ``sqlite:///results/<profile>/sweeps.db``; any SQLAlchemy URL, e.g. PostgreSQL to span
machines) is the one owner of a cell's state; a cell (a row at one seed) of table T is a trial of the study
``<profile>/<T>``:

    done     a COMPLETE trial of the cell exists; it holds the run's record (machines that did not train it
             write their CSV rows and record.json from it)
    running  a RUNNING trial of the cell, taken to be alive while its heartbeat is younger than the grace period
             (nlbench.sweep.heartbeat)
    todo     anything else: no trial yet, or only FAIL / PRUNED ones

Claiming a cell is one insert of a RUNNING trial that names it (no sampler and no queue: the WAITING copy that
optuna's retry callback queued for a killed trial was counted as someone else's and never run). Of two claims
of one cell, the lower trial number wins; a finished run completes its trial unless the cell completed
meanwhile (then it is PRUNED as a duplicate), so a cell is done once. The storage commits atomically, so a
kill at any moment leaves it consistent.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from datetime import datetime
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from nlbench.sweep.heartbeat import Timing, timing
from nlbench.sweep.runs import local_record, run_dir_of
from nlbench.sweep.spec import Cell, Sweep
from nlbench.training.config import ConfigError

FAILED_VALUE = -1.0  # the trial value of a run whose status is failed (top1 otherwise)

log = logging.getLogger(__name__)


def default_storage(results_dir: str | Path, profile: str) -> str:
    return f"sqlite:///{Path(results_dir) / profile / 'sweeps.db'}"


def masked(url: str) -> str:
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
            raise ConfigError(f"storage {masked(url)} cannot be used: {type(e).__name__}: {first}") from None


def open_study(sweep: Sweep, storage) -> optuna.Study:
    return optuna.create_study(study_name=sweep.name, storage=storage, direction="maximize", load_if_exists=True)


def cell_of(trial: FrozenTrial) -> str | None:
    # user attr (this runner), param (older nlbench: a GridSampler over cells), fixed param (its queued retries)
    return (trial.user_attrs.get("cell") or trial.params.get("cell")
            or trial.system_attrs.get("fixed_params", {}).get("cell"))


def cell_states(sweep: Sweep, trials: list[FrozenTrial], session: str | None = None) -> dict[str, str]:
    """cell key -> done | running | todo; ``errored`` for a cell whose run raised in ``session`` (not retried by
    the same sweep call: the next one retries it)."""
    states = {c.key: "todo" for c in sweep.cells}
    for t in trials:
        key = cell_of(t)
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


def cell_records(sweep: Sweep, trials: list[FrozenTrial], results_dir: Path) -> dict[str, dict]:
    """cell key -> the record of its completed trial (else of its last failed one that has one)."""
    complete: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    for t in trials:
        key, record = cell_of(t), t.user_attrs.get("record")
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
            if other.number != number and cell_of(other) == cell.key and (
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
                if other.number != number and cell_of(other) == cell.key and other.state == TrialState.COMPLETE:
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


__all__ = ["FAILED_VALUE", "Ledger", "cell_of", "cell_records", "cell_states", "default_storage", "masked",
           "open_storage", "open_study", "stored_record"]
