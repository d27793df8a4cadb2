"""How a sweep tells a dead process from a live one: the heartbeat of a RUNNING trial.

A process may die at any moment (kill -9, out of memory, power cut) and say nothing. While its run goes on,
a worker's trial beats every ``heartbeat_s``; a trial silent for longer than the grace period (``--grace``,
``NLBENCH_GRACE_S``; default 60 s) belongs to a dead process, and the next process that looks fails it
(``Ledger.reap``), so its cell is todo again.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from nlbench.training.config import ConfigError

GRACE_S = 60  # a RUNNING trial whose heartbeat is older than this belongs to a dead process
GRACE_ENV = "NLBENCH_GRACE_S"  # the default's override (tests kill sweeps and do not wait a minute each time)

log = logging.getLogger(__name__)


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


class Heartbeat:
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


__all__ = ["GRACE_ENV", "GRACE_S", "Heartbeat", "Timing", "timing"]
