"""nlbench compare: a reproduction's results beside the reference's (runs, rows, claims)."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nlbench.cli import main
from nlbench.report.reproduction import compare_results

REPO = Path(__file__).resolve().parents[1]
AVX2 = {"cpu_capability": "AVX2", "onednn_isa": "AVX2", "threads": 1}


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
    run's figures differ, one was made by other kernels, one table's C2D row is 30 points higher, and the
    bottleneck table was not run."""
    ref, rep = _copy(tmp_path_factory.mktemp("ref")), _copy(tmp_path_factory.mktemp("rep"))
    frame = pd.read_csv(ref / "tiny" / "2a_instantiation.csv")
    c2d = frame[frame.row == "C2D"].run_id.tolist()
    for run_id in c2d:
        _edit(ref, run_id, kernels=AVX2)
        _edit(rep, run_id, kernels=AVX2)
    _edit(rep, c2d[0], top1=1.0)
    _edit(rep, c2d[1], top1=2.0, kernels={**AVX2, "cpu_capability": "AVX512"})
    shifted = pd.read_csv(rep / "tiny" / "2b_stage.csv")
    shifted.loc[shifted.row == "res2", "top1"] += 30
    shifted.to_csv(rep / "tiny" / "2b_stage.csv", index=False)
    (rep / "tiny" / "bottleneck.csv").unlink()
    return ref, rep, c2d


def test_runs_rows_and_claims_are_compared(two):
    ref, rep, c2d = two
    c = compare_results(ref, rep, "tiny", REPO / "ablations")
    verdicts = c.runs.set_index("run_id").verdict
    assert verdicts[c2d[0]] == "mismatch" and verdicts[c2d[1]] == "other kernels"
    assert (verdicts.drop([c2d[0], c2d[1]]) == "reproduced").all() and len(verdicts) == 175
    rows = c.rows.set_index(["table", "row"]).agrees
    assert not rows[("2b_stage", "res2")] and rows.drop(("2b_stage", "res2")).all()
    assert "bottleneck" in c.tables_missing and "bottleneck" not in set(c.rows.table)
    # res2 30 points up: "res2, res3 and res4 give similar gains" turns from unresolved to contradicted, alone
    claims = c.claims.set_index("claim")
    similar = claims.loc[claims.index.str.startswith("res2, res3 and res4 give similar gains")].iloc[0]
    assert (similar.reference, similar.reproduction, similar.agrees) == ("unresolved", "contradicted", False)
    assert claims.agrees.sum() == len(claims) - 1


def test_the_cli_writes_the_comparison_and_says_its_headline(two, capsys):
    ref, rep, c2d = two
    assert main(["compare", str(ref), str(rep)]) == 0
    out = capsys.readouterr().out
    assert "1 other kernels" in out and "1 mismatch" in out and "173 reproduced" in out
    text = (rep / "tiny" / "reproduction.md").read_text()
    assert f"| `{c2d[0]}` | mismatch | top1: record" in text and "| res2 |" in text and "**no**" in text


def test_a_missing_results_folder_is_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
