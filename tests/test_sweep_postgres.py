"""One sweep on two "machines" sharing a real PostgreSQL (tests/postgres.py): two ``nlbench sweep --storage
postgresql+psycopg://...`` processes, each with its own folder (results, run locks, caches: nothing shared but
the database); machine A is SIGKILLed in the middle of a run and restarted."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlbench.sweep.heartbeat import Timing
from nlbench.sweep.ledger import Ledger, cell_states, open_storage, stored_record
from nlbench.sweep.runs import run_dir_of
from nlbench.sweep.spec import build_sweep
from tests.test_sweep_crash import REPO, TABLES, _env, completions, start_sweep, sweeps, trainings, wait

pytestmark = pytest.mark.integration  # real sweeps: every test here trains or runs the sweep machinery


def _report(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nlbench.cli", "report", "--profile", "smoke", "--skip-measure", "--no-attention",
         "--ablations", str(REPO / "ablations")],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_machines_one_postgres(tmp_path, postgres_url):
    a, b = tmp_path / "machine_a", tmp_path / "machine_b"
    a.mkdir(), b.mkdir()
    t0 = time.perf_counter()
    proc_a = start_sweep(a, workers=1, kill_at="train:2", storage=postgres_url)  # dies in its first run
    proc_b = start_sweep(b, workers=1, storage=postgres_url)
    code_a, out_a = wait(proc_a, timeout=300)
    assert code_a == -9, out_a
    killed_after = time.perf_counter() - t0
    proc_a = start_sweep(a, workers=1, storage=postgres_url)
    (code_a, out_a), (code_b, out_b) = wait(proc_a, timeout=400), wait(proc_b, timeout=400)
    elapsed = time.perf_counter() - t0
    print(f"\nA killed after {killed_after:.0f} s; both machines done after {elapsed:.0f} s\nA: {out_a}\nB: {out_b}")
    assert code_a == 0, out_a
    assert code_b == 0, out_b

    counts = completions(postgres_url)
    assert set(counts.values()) == {1}, counts  # every cell done once
    runs = {c.run_id for s in sweeps() for c in s.cells}
    assert sorted(trainings(postgres_url)) == sorted(runs)  # every run trained once, on one machine or the other
    for sweep in sweeps():  # each machine's CSV holds every row, the same bytes on both
        csv_a = (a / "results" / "smoke" / f"{sweep.table.name}.csv").read_text()
        csv_b = (b / "results" / "smoke" / f"{sweep.table.name}.csv").read_text()
        assert csv_a == csv_b
        assert len(csv_a.splitlines()) == 1 + len(sweep.cells)
    elsewhere = 0
    for run_id in runs:  # the records of runs trained elsewhere are kept on each machine, whole
        rec_a = json.loads((run_dir_of(a / "results", "smoke", run_id) / "record.json").read_text())
        rec_b = json.loads((run_dir_of(b / "results", "smoke", run_id) / "record.json").read_text())
        assert rec_a == rec_b and rec_a["status"] == "ok"
        local = [m for m in (a, b) if (run_dir_of(m / "results", "smoke", run_id) / "model.pt").exists()]
        assert len(local) == 1  # the weights stay where the run was trained
        elsewhere += local == [b]
    assert elsewhere > 0  # A, killed in its first run, holds records of runs only B trained (how many: timing)

    for machine in (a, b):
        done = _report(machine)
        assert done.returncode == 0, done.stderr
    for table in TABLES:
        for suffix in (".md", ".csv"):
            name = f"{table.stem}{suffix}"
            assert (a / "reports" / "smoke" / name).read_text() == (b / "reports" / "smoke" / name).read_text(), name


def test_claims_on_postgres(postgres_url):
    """The storage side on PostgreSQL, quickly: one claim of a cell wins, a dead claim is failed after the
    grace period, a completed cell is not completed again, a record is found from another "machine"."""
    sweep = build_sweep(TABLES[0], "smoke")
    cell = sweep.cells[0]
    storage = open_storage(postgres_url, 2)
    a = Ledger(storage, [sweep], Timing(2), session="a")
    b = Ledger(open_storage(postgres_url, 2), [sweep], Timing(2), session="b")
    first = a.claim(sweep, cell)
    assert first is not None and b.claim(sweep, cell) is None
    time.sleep(3.5)  # a dies: no beat
    b.reap()
    assert cell_states(sweep, b.trials(sweep))[cell.key] == "todo"
    again = b.claim(sweep, cell)
    record = {"run_id": cell.run_id, "status": "ok", "top1": 12.5, "config": {}}
    assert b.complete(sweep, cell, again, record, False)
    late = a.claim(sweep, sweep.cells[1])
    assert late is not None and b.claim(sweep, cell) is None  # done: not claimed again
    assert stored_record(storage, "smoke", cell.run_id) == record
    assert not a.complete(sweep, cell, first, record, False)  # the dead claim cannot complete it
