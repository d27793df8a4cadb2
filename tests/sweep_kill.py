"""``nlbench`` with kill points, for the kill-anywhere tests: ``python tests/sweep_kill.py sweep ...``.

``NLBENCH_KILL_AT=<point>[:<n>]`` SIGKILLs the sweep's whole process group (the parent and its workers, as a
power cut or the out-of-memory killer would) the n-th time (default 1) one of its processes reaches <point>.
The points wrap library functions from outside; production code knows nothing of them. Spawned workers
re-import this script as ``__mp_main__``, so they get the same points.
"""
from __future__ import annotations

import os
import signal
import sys

POINTS = {
    "claimed": "a cell's RUNNING trial is committed, before its first heartbeat",
    "build": "train_run builds the model",
    "measure": "train_run measures the model's cost",
    "train": "a training step",
    "evaluate": "a test step (evaluation)",
    "record-write": "record.json is written to its temporary file, not yet renamed",
    "recorded": "record.json is in place; the storage does not know yet",
    "completing": "the trial is about to be marked COMPLETE",
    "completed": "a trial is COMPLETE (between two runs)",
    "csv-write": "a results CSV is written to its temporary file, not yet renamed",
    "commit": "an SQL flush has run inside a storage transaction that is not committed",
}


def _install(spec: str) -> None:
    point, _, nth = spec.partition(":")
    if point not in POINTS:
        raise SystemExit(f"NLBENCH_KILL_AT={spec!r}: unknown point; points: {', '.join(POINTS)}")
    nth = int(nth or 1)
    seen = [0]

    def reached(name: str) -> None:
        if name == point:
            seen[0] += 1
            if seen[0] == nth:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    def before(name, fn):
        def wrapped(*args, **kwargs):
            reached(name)
            return fn(*args, **kwargs)
        return wrapped

    import optuna
    import sqlalchemy.event
    import sqlalchemy.orm

    from nlbench.training import module, run

    run.build_model = before("build", run.build_model)
    run._measure = before("measure", run._measure)
    module.VideoClassifier.training_step = before("train", module.VideoClassifier.training_step)
    module.VideoClassifier.test_step = before("evaluate", module.VideoClassifier.test_step)

    storage = optuna.storages.RDBStorage
    create, set_state = storage.create_new_trial, storage.set_trial_state_values

    def create_new_trial(self, study_id, template_trial=None):
        trial_id = create(self, study_id, template_trial)
        if template_trial is not None and "worker" in template_trial.system_attrs:
            reached("claimed")
        return trial_id

    def set_trial_state_values(self, trial_id, state, values=None):
        if state == optuna.trial.TrialState.COMPLETE:
            reached("completing")
        done = set_state(self, trial_id, state, values)
        if state == optuna.trial.TrialState.COMPLETE:
            reached("completed")
        return done

    storage.create_new_trial, storage.set_trial_state_values = create_new_trial, set_trial_state_values

    replace = os.replace

    def os_replace(src, dst, *args, **kwargs):
        name = os.fspath(dst)
        if name.endswith("record.json"):
            reached("record-write")
        if name.endswith(".csv"):
            reached("csv-write")
        replace(src, dst, *args, **kwargs)
        if name.endswith("record.json"):
            reached("recorded")

    os.replace = os_replace
    sqlalchemy.event.listen(sqlalchemy.orm.Session, "after_flush", lambda *a: reached("commit"))


if os.environ.get("NLBENCH_KILL_AT"):
    _install(os.environ["NLBENCH_KILL_AT"])

if __name__ == "__main__":
    from nlbench.cli import main

    sys.exit(main())
