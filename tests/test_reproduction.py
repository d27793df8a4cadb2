"""nlbench compare: a reproduction's results beside the reference's (runs, rows, claims)."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nlbench.cli import main
from nlbench.report.build import profile_score
from nlbench.report.reproduction import compare_results
from nlbench.sweep.spec import load_table

REPO = Path(__file__).resolve().parents[1]
AVX2 = {"cpu_capability": "AVX2", "onednn_isa": "AVX2", "threads": 1}
SCORE = profile_score("tiny", REPO / "ablations")


def _copy(dst: Path) -> Path:
    shutil.copytree(REPO / "results" / "tiny", dst / "tiny", ignore=shutil.ignore_patterns(".locks", ".costs"))
    return dst


def _edit(folder: Path, run_id: str, **changes) -> None:
    path = folder / "tiny" / "runs" / run_id / "record.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, **changes}, indent=2) + "\n")


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """The committed tiny results as the reference (with kernels said), and a reproduction of them in which one
    run's figures differ, one was made by other kernels, one row's score is 40 points off in every seed, and the
    last table was not run. Whatever the committed grid holds: the runs and rows are picked from its files."""
    ref, rep = _copy(tmp_path_factory.mktemp("ref")), _copy(tmp_path_factory.mktemp("rep"))
    tables = sorted((ref / "tiny").glob("*.csv"))
    if len(tables) < 3:
        pytest.skip("the committed tiny results hold fewer than three tables")
    frames = {t.stem: pd.read_csv(t) for t in tables}
    first = frames[tables[0].stem]
    c2d = first[first.row == load_table(REPO / "ablations" / f"{tables[0].stem}.yaml").baseline].run_id.tolist()
    for run_id in c2d:
        _edit(ref, run_id, kernels=AVX2)
        _edit(rep, run_id, kernels=AVX2)
    _edit(rep, c2d[0], top1=-1.0)  # not the profile's score (group top-1): the run differs, its row does not
    _edit(rep, c2d[1], top1=-2.0, kernels={**AVX2, "cpu_capability": "AVX512"})
    # A row of the second table whose runs no other table shares
    name = tables[1].stem
    elsewhere = {i for t, f in frames.items() if t != name for i in f.run_id}
    second = frames[name]
    row = next((r for r, g in second.groupby("row", sort=False)
                if not set(g.run_id) & elsewhere and len(g) > 1 and (g.status == "ok").all()), None)
    if row is None or len(c2d) < 2:
        pytest.skip(f"the committed {name} has no row of its own with two finished seeds, or too few C2D runs")
    shifted = second[second.row == row].run_id.tolist()
    for run_id in shifted:
        record = json.loads((rep / "tiny" / "runs" / run_id / "record.json").read_text())
        _edit(rep, run_id, **{SCORE: record[SCORE] - 40 if record[SCORE] >= 50 else record[SCORE] + 40})
    missing = tables[-1].stem
    (rep / "tiny" / f"{missing}.csv").unlink()
    runs = sum(1 for p in (rep / "tiny" / "runs").glob("*/record.json"))
    return ref, rep, c2d, (name, row, shifted), missing, runs


def test_runs_rows_and_claims_are_compared(two):
    ref, rep, c2d, (name, row, shifted), missing, runs = two
    c = compare_results(ref, rep, "tiny", REPO / "ablations")
    verdicts = c.runs.set_index("run_id").verdict
    assert verdicts[c2d[0]] == "mismatch" and verdicts[c2d[1]] == "other kernels"
    assert (verdicts[shifted] == "mismatch").all()
    assert (verdicts.drop([c2d[0], c2d[1], *shifted]) == "reproduced").all() and len(verdicts) == runs
    rows = c.rows.set_index(["table", "row"]).agrees
    assert not rows[(name, row)] and rows.drop((name, row)).dropna().all()
    assert missing in c.tables_missing and missing not in set(c.rows.table)
    # Only the shifted row's table can change a verdict
    assert c.claims[c.claims.table != name].agrees.all()


def test_the_cli_writes_the_comparison_and_says_its_headline(two, capsys):
    ref, rep, c2d, (name, row, shifted), missing, runs = two
    assert main(["compare", str(ref), str(rep)]) == 0
    out = capsys.readouterr().out
    assert "1 other kernels" in out and f"{1 + len(shifted)} mismatch" in out
    assert f"{runs - 2 - len(shifted)} reproduced" in out
    text = (rep / "tiny" / "reproduction.md").read_text()
    assert f"| `{c2d[0]}` | mismatch | top1: record" in text and f"| {row} |" in text and "**no**" in text


def test_a_missing_results_folder_is_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
