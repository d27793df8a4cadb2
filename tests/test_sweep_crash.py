"""Kill the sweep anywhere, start it again: it finishes by itself, every cell done once, finished rows untouched.

The real ``nlbench sweep`` on the smoke profile (real train_run, 2 workers) is SIGKILLed as a whole process
group, at named points inside it (tests/sweep_kill.py) and from outside at random times drawn from a seed, and
restarted after each kill. Also: two sweeps started at once on one table and storage share the grid.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from nlbench.sweep.spec import build_sweep

pytestmark = pytest.mark.integration  # real sweeps: every test here trains or runs the sweep machinery

REPO = Path(__file__).resolve().parents[1]
KILLER = REPO / "tests" / "sweep_kill.py"
# Three tables (14 distinct smoke runs, R101 among them): on a fast, quiet machine two (8 runs) finished in
# 19 s, before the kills below had run out (4 kills, seen 2026-12-07).
TABLES = [REPO / "ablations" / "2a_instantiation.yaml", REPO / "ablations" / "2b_stage.yaml",
          REPO / "ablations" / "2c_blocks.yaml"]
GRACE_S = 4
# Named points (tests/sweep_kill.py) and random times, the rounds that let the sweep progress last: a sweep that
# ends before the last kills still had at least 10. Random times are drawn from SEED, counted from the start
# ("time": startup, before the first trial, or a run, depending on the machine's speed) or from the moment a
# run of the round starts, its config.yaml appearing ("run+": measuring, training, evaluating, writing).
KILLS = ["claimed", ("time", 0), "build", ("run+", 0), "measure", "train:2", ("time", 1), "evaluate",
         ("run+", 1), "record-write", "recorded", ("run+", 2), "completing", "csv-write", "completed", "commit:25",
         "train:3"]
SEED = 12


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", **extra}
    env.pop("NLBENCH_KILL_AT", None)
    env.update(extra)
    return env


def start_sweep(cwd: Path, tables=TABLES, *, workers: int = 2, kill_at: str | None = None, storage: str | None = None,
                results: str = "results") -> subprocess.Popen:
    """``nlbench sweep`` in a process group of its own (what kill -9 of the group hits)."""
    argv = [sys.executable, str(KILLER), "sweep", *map(str, tables), "--profile", "smoke", "--workers", str(workers),
            "--grace", str(GRACE_S), "--quiet", "--results", results]
    if storage:
        argv += ["--storage", storage]
    extra = {"NLBENCH_KILL_AT": kill_at} if kill_at else {}
    return subprocess.Popen(argv, cwd=cwd, env=_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, str]:
    """(exit code, output); the code is None (and the group killed) when it ran past ``timeout``."""
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        return None, out


def kill_once_a_run_runs(proc: subprocess.Popen, runs: Path, since: float, delay: float) -> None:
    """SIGKILL the group ``delay`` s after a run of this round starts (a config.yaml newer than ``since``)."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(p.stat().st_mtime > since for p in runs.glob("*/config.yaml")):
            time.sleep(delay)
            break
        time.sleep(0.1)
    kill_group(proc)


def sweeps():
    return [build_sweep(t, "smoke") for t in TABLES]


def completions(storage: str) -> dict[tuple[str, str], int]:
    """(study, cell) -> COMPLETE trials, over the tables' studies."""
    counts = {}
    for sweep in sweeps():
        counts.update({(sweep.name, c.key): 0 for c in sweep.cells})
        try:
            study = optuna.load_study(study_name=sweep.name, storage=storage)
        except KeyError:
            continue
        for t in study.get_trials(deepcopy=False):
            key = t.user_attrs.get("cell")
            if t.state == optuna.trial.TrialState.COMPLETE and (sweep.name, key) in counts:
                counts[sweep.name, key] += 1
    return counts


def trainings(storage: str) -> list[str]:
    """run_id of every trial that trained its run (not reused), whatever its state."""
    out = []
    for sweep in sweeps():
        for t in optuna.load_study(study_name=sweep.name, storage=storage).get_trials(deepcopy=False):
            if t.user_attrs.get("reused") is False:
                out.append(t.user_attrs["run_id"])
    return out


def check_files(results: Path, kept: dict[tuple[str, str], str]) -> None:
    """Every CSV parses, no row twice, rows seen before unchanged byte for byte; every record.json whole."""
    for sweep in sweeps():
        path = results / "smoke" / f"{sweep.table.name}.csv"
        if not path.exists():
            continue
        text = path.read_text()
        frame = pd.read_csv(path)
        assert not frame.duplicated(["row", "seed"]).any(), text
        assert set(frame["status"]) <= {"ok"}, text
        header, *lines = text.splitlines()
        for line, (_, r) in zip(lines, frame.iterrows()):
            key = (sweep.table.name, f"{r['row']} | seed={r['seed']}")
            assert kept.setdefault(key, line) == line, (key, kept[key], line)
    for record in (results / "smoke" / "runs").glob("*/record.json"):
        data = json.loads(record.read_text())  # a half-written record would not parse
        assert data["run_id"] == record.parent.name and data["status"] == "ok"


@pytest.mark.slow
def test_kill_anywhere_then_resume(tmp_path):
    rng = random.Random(SEED)
    draws = {"time": [round(rng.uniform(2, 12), 1) for _ in range(2)], "run+": [round(rng.uniform(0, 8), 1)
                                                                               for _ in range(3)]}
    kills = [("point", k) if isinstance(k, str) else (k[0], draws[k[0]][k[1]]) for k in KILLS]
    storage = f"sqlite:///{tmp_path / 'results' / 'smoke' / 'sweeps.db'}"
    total = sum(len(s.cells) for s in sweeps())
    kept: dict[tuple[str, str], str] = {}
    log = []
    for how, where in kills:
        t0 = time.perf_counter()
        if how == "point":
            code, out = wait(start_sweep(tmp_path, kill_at=where), timeout=240)
            assert code is not None, f"round killed at {where}: hung\n{out}"
        elif how == "time":
            code, out = wait(start_sweep(tmp_path), timeout=where)
            code = -signal.SIGKILL if code is None else code
        else:
            since = time.time()
            proc = start_sweep(tmp_path)
            kill_once_a_run_runs(proc, tmp_path / "results" / "smoke" / "runs", since, where)
            code, out = wait(proc, timeout=60)
        done = sum(n == 1 for n in completions(storage).values()) if (tmp_path / "results").exists() else 0
        log.append({"kill": f"{how} {where}", "exit": code, "s": round(time.perf_counter() - t0, 1), "done": done})
        assert code in (-signal.SIGKILL, 0), out
        assert all(n <= 1 for n in completions(storage).values()) if done else True
        check_files(tmp_path / "results", kept)
        if code == 0:
            break  # the sweep finished before this kill point was reached
    killed = sum(e["exit"] == -signal.SIGKILL for e in log)  # rounds that ended normally: the sweep was done
    remaining = total - log[-1]["done"]
    t0 = time.perf_counter()
    code, out = wait(start_sweep(tmp_path), timeout=120 + GRACE_S + 30 * remaining)
    elapsed = time.perf_counter() - t0
    log.append({"kill": "none (resume to the end)", "exit": code, "s": round(elapsed, 1), "remaining": remaining})
    print("\n" + "\n".join(json.dumps(e) for e in log))
    assert code == 0, f"final resume: exit {code} after {elapsed:.0f} s\n{out}"
    assert killed >= 10, log
    counts = completions(storage)
    assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n != 1}
    check_files(tmp_path / "results", kept)
    for sweep in sweeps():
        frame = pd.read_csv(tmp_path / "results" / "smoke" / f"{sweep.table.name}.csv")
        assert len(frame) == len(sweep.cells) and set(frame["status"]) == {"ok"}
    assert "runs trained" in out and "busy" in out


@pytest.mark.slow
def test_two_sweeps_at_once_share_the_grid(tmp_path):
    storage = f"sqlite:///{tmp_path / 'results' / 'smoke' / 'sweeps.db'}"
    # The same tables in the other order: both start with a C2D cell, one run shared by the two tables.
    procs = [start_sweep(tmp_path, TABLES, workers=1), start_sweep(tmp_path, TABLES[::-1], workers=1)]
    results = [wait(p, timeout=400) for p in procs]
    for code, out in results:
        assert code == 0, out
    counts = completions(storage)
    assert set(counts.values()) == {1}, counts
    runs = {c.run_id for s in sweeps() for c in s.cells}
    trained = trainings(storage)
    assert sorted(trained) == sorted(runs), "a run was trained twice, or not at all"
    # (which process took how many cells depends on their start-up times: not asserted)
