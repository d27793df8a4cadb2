"""Ablation reports: mean and Student-t CI, claims (one holding, one not, with margins), files written atomically,
PNG plots (accuracy vs GFLOPs, block scaling, Figure 3 from a saved model), README, the CLI's bad input.

Everything runs on fixture tables and results written here (no sweep, no training): a few seconds.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from nlbench.cli import main
from nlbench.report import ablation, attention, build
from nlbench.report.ablation import FAILS, HOLDS, UNKNOWN, evaluate_claims, summarise
from nlbench.report.stats import mean_ci, t_critical
from nlbench.sweep.spec import load_table

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

TABLE = {
    "table": "t_fixture",
    "title": "Fixture table",
    "baseline": "C2D",
    "defaults": {"model": {"depth": 50, "arch": "c2d"}},
    "rows": [
        {"row": "C2D", "model": {"nl_blocks": 0}, "paper": {"top1": 71.8, "top5": 89.7}},
        {"row": "NL", "model": {"nl_blocks": 1, "nl_stage": "res3"}, "paper": {"top1": 72.7, "top5": 90.5}},
        {"row": "Worse", "model": {"nl_blocks": 1, "nl_stage": "res4"}, "paper": {"top1": 72.3, "top5": 90.1}},
        {"row": "Deep", "model": {"depth": 101, "nl_blocks": 0}, "paper": None},
    ],
    "claims": [
        {"text": "NL beats the baseline", "kind": "above", "rows": ["NL"], "than": "C2D"},
        {"text": "Worse beats the baseline", "kind": "above", "rows": ["Worse"], "than": "C2D"},
        {"text": "C2D <= NL", "kind": "order", "rows": ["C2D", "NL"]},
        {"text": "NL cheaper and better than Deep", "kind": "cheaper_and_better", "row": "NL", "than": "Deep"},
        {"text": "NL and Worse similar", "kind": "similar", "rows": ["NL", "Worse"], "within": 0.5},
        {"text": "Worse gains less than NL", "kind": "smaller_gain", "row": "Worse", "than": ["NL"]},
    ],
}
# (row, seed) -> top1; C2D 50/51/52 (mean 51), NL 60/61/62 (61), Worse 49/50/51 (50), Deep 55 + a failed seed.
TOP1 = {("C2D", 0): 50.0, ("C2D", 1): 51.0, ("C2D", 2): 52.0, ("NL", 0): 60.0, ("NL", 1): 61.0, ("NL", 2): 62.0,
        ("Worse", 0): 49.0, ("Worse", 1): 50.0, ("Worse", 2): 51.0, ("Deep", 0): 55.0, ("Deep", 1): None}
GFLOPS = {"C2D": 0.10, "NL": 0.12, "Worse": 0.11, "Deep": 0.20}
MACHINE = {"cpu": "Fixture CPU", "cores": "2", "torch": "2.x", "device": "cpu"}


def _frame() -> pd.DataFrame:
    rows = []
    for (row, seed), top1 in TOP1.items():
        failed = top1 is None
        rows.append({
            "table": "t_fixture", "row": row, "depth": 101 if row == "Deep" else 50, "arch": "c2d",
            "nl_blocks": 0 if row in ("C2D", "Deep") else 1, "seed": seed, "run_id": f"{row.lower()}{seed}",
            "params": 1.5e6, "gflops": GFLOPS[row], "latency_ms": 10.0, "train_clips_per_s": 100.0,
            "peak_mem_mb": 50.0, "top1": top1, "top5": None if failed else 90.0, "val_top1": None if failed else 60.0,
            "status": "failed" if failed else "ok", "reason": "non-finite loss nan at step 7" if failed else None,
            "wall_s": 30.0, "machine": "Fixture CPU, 2 threads, torch 2.x",
        })
    return pd.DataFrame(rows)


@pytest.fixture
def setup(tmp_path):
    """ablations/t_fixture.yaml, results/test/t_fixture.csv, run records; the NL seed-0 run has a model.pt."""
    abl = tmp_path / "ablations"
    abl.mkdir()
    (abl / "t_fixture.yaml").write_text(yaml.safe_dump(TABLE, sort_keys=False))
    (abl / "t_unrun.yaml").write_text(yaml.safe_dump({**TABLE, "table": "t_unrun", "claims": []}, sort_keys=False))
    res = tmp_path / "results" / "test"
    frame = _frame()
    res.mkdir(parents=True)
    frame.to_csv(res / "t_fixture.csv", index=False)
    for _, r in frame.iterrows():
        d = res / "runs" / r["run_id"]
        d.mkdir(parents=True)
        per_class = {"space_same": 40.0, "space_different": 60.0, "time_same": 70.0, "time_different": 90.0}
        (d / "record.json").write_text(json.dumps({"run_id": r["run_id"], "machine": MACHINE, "per_class": per_class,
                                                   "wall_s": 30.0}))
    from nlbench.training.config import RunConfig

    config = RunConfig.load(REPO / "configs" / "smoke.yaml", ["model.nl_blocks=1", "model.nl_stage=res3"])
    model = config.model.model_config(num_classes=10).build()
    run = res / "runs" / "nl0"
    (run / "config.yaml").write_text(config.to_yaml())
    torch.save(model.state_dict(), run / "model.pt")
    return tmp_path


# ------------------------------------------------------------------------------------------------ stats


def test_mean_ci_matches_hand_computed_student_t():
    # [70, 72, 74]: mean 72, s = 2, t_{0.975, 2} = 4.303 -> 4.303 * 2 / sqrt(3) = 4.9687
    mean, half, n = mean_ci([70.0, 72.0, 74.0])
    assert (mean, n) == (72.0, 3)
    assert half == pytest.approx(4.303 * 2 / math.sqrt(3), abs=1e-9)
    assert half == pytest.approx(4.9687, abs=1e-4)
    # five values, s = sqrt(2.5), t_{0.975, 4} = 2.776
    mean, half, n = mean_ci([1, 2, 3, 4, 5])
    assert mean == 3 and half == pytest.approx(2.776 * math.sqrt(2.5) / math.sqrt(5))
    mean, half, n = mean_ci([71.5, None, float("nan")])  # one finite value: no interval
    assert (mean, n) == (71.5, 1) and math.isnan(half)
    assert math.isnan(mean_ci([])[0])
    assert t_critical(1) == 12.706 and t_critical(30) == 2.042
    assert t_critical(60) == pytest.approx(2.000) and 1.96 < t_critical(1000) < 1.963
    with pytest.raises(ValueError):
        t_critical(0)


# ----------------------------------------------------------------------------------------------- claims


def test_claims_one_holds_one_fails_with_margins(setup):
    table = load_table(setup / "ablations" / "t_fixture.yaml")
    summary = summarise(table, _frame())
    s = summary.set_index("row")
    assert s.loc["C2D", "top1_mean"] == 51.0 and s.loc["C2D", "n_ok"] == 3
    assert s.loc["Deep", "n_ok"] == 1 and s.loc["Deep", "n_failed"] == 1 and math.isnan(s.loc["Deep", "top1_ci95"])
    assert s.loc["NL", "delta_top1"] == pytest.approx(10.0)
    assert s.loc["NL", "paper_delta_top1"] == pytest.approx(0.9)
    assert s.loc["NL", "params_m"] == pytest.approx(1.5)

    claims = {c.text: c for c in evaluate_claims(table, summary)}
    nl = claims["NL beats the baseline"]
    assert nl.status == HOLDS and nl.margin == pytest.approx(10.0)
    assert nl.beyond_ci is True  # 10 > 2 * 4.303 / sqrt(3) = 4.97
    assert nl.paper_margin == pytest.approx(0.9)
    worse = claims["Worse beats the baseline"]
    assert worse.status == FAILS and worse.margin == pytest.approx(-1.0) and worse.beyond_ci is False
    assert claims["C2D <= NL"].status == HOLDS
    cheap = claims["NL cheaper and better than Deep"]  # 61 > 55 at 0.12 < 0.20 GFLOPs; Deep has one seed: no CI
    assert cheap.status == HOLDS and cheap.margin == pytest.approx(6.0) and cheap.beyond_ci is None
    similar = claims["NL and Worse similar"]  # spread 11 > 0.5
    assert similar.status == FAILS and similar.margin == pytest.approx(0.5 - 11.0)
    gain = claims["Worse gains less than NL"]  # gain -1 vs +10
    assert gain.status == HOLDS and gain.margin == pytest.approx(11.0)

    line = ablation.claim_line(worse)
    assert line.startswith("- **does not hold**: Worse beats the baseline: margin -1.00 top-1 points")
    assert "within the 95% CIs" in line and "paper +0.50" in line

    # a row without results: the claim is not evaluated, and says why
    no_nl = summarise(table, _frame()[lambda f: f["row"] != "NL"])
    status = {c.text: c.status for c in evaluate_claims(table, no_nl)}
    assert status["NL beats the baseline"] == UNKNOWN


# --------------------------------------------------------------------------------------- files and CLI


def test_report_writes_tables_plots_and_readme_atomically(setup, monkeypatch, capsys):
    written = []
    original = ablation.atomic_write_text

    def spy(path, text):
        written.append(Path(path).name)
        original(path, text)

    for module in (ablation, build, attention):
        monkeypatch.setattr(module, "atomic_write_text", spy)
    readme = build.build_reports("test", setup / "results", setup / "reports", setup / "ablations",
                                 measure=False, attention=True)
    out = setup / "reports" / "test"
    assert readme == out / "README.md"
    assert {"t_fixture.md", "t_fixture.csv", "README.md", "attention.json"} <= set(written)
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind

    csv = pd.read_csv(out / "t_fixture.csv")
    assert list(csv.columns) == list(ablation.SUMMARY_COLUMNS)
    assert list(csv["row"]) == ["C2D", "NL", "Worse", "Deep"]
    md = (out / "t_fixture.md").read_text()
    assert "| NL " in md and "61.0 ± 2.5" in md and "71.8" in md
    assert "**does not hold**: Worse beats the baseline" in md
    assert "Deep, seed 1 (`deep1`): non-finite loss nan at step 7" in md
    assert "space" in md and "time" in md  # per-family accuracy from the records
    for png in ("t_fixture_acc_vs_gflops.png", "attention.png"):
        assert (out / png).read_bytes()[:8] == PNG
    info = json.loads((out / "attention.json").read_text())
    assert info["class"].startswith("spacetime") and 0 <= info["weight_on_other_cue"] <= 1

    text = readme.read_text()
    assert "Fixture CPU, 2 threads, torch 2.x, device cpu" in text
    assert "seeds: 0, 1, 2" in text
    assert "wall time 5.5 min summed over runs" in text  # 11 distinct runs x 30 s
    assert "4 of 6 hold" in text and "t_unrun" in text  # the table without results is named
    assert "[t_fixture](t_fixture.md) **does not hold**: Worse beats the baseline" in text


def test_report_without_model_skips_attention_with_a_note(setup, capsys):
    (setup / "results" / "test" / "runs" / "nl0" / "model.pt").unlink()
    build.build_reports("test", setup / "results", setup / "reports", setup / "ablations", measure=False)
    assert "attention figure (paper's Figure 3) is skipped" in capsys.readouterr().out
    assert not (setup / "reports" / "test" / "attention.png").exists()
    assert "Figure 3 (attention): skipped" in (setup / "reports" / "test" / "README.md").read_text()


def test_report_keeps_an_earlier_figure_when_the_weights_are_gone(setup, capsys):
    # model.pt is git-ignored: a report regenerated from a fresh checkout keeps the figure drawn earlier.
    args = ("test", setup / "results", setup / "reports", setup / "ablations")
    build.build_reports(*args, measure=False)
    (setup / "results" / "test" / "runs" / "nl0" / "model.pt").unlink()
    capsys.readouterr()
    readme = build.build_reports(*args, measure=False)
    assert "kept" in capsys.readouterr().out
    assert "![attention](attention.png)" in readme.read_text() and "t_fixture / NL, seed 0" in readme.read_text()


def test_block_scaling_csv_and_png(tmp_path):
    from nlbench.report.block_scaling import write_block_scaling

    csv, png = write_block_scaling(tmp_path, sizes=((2, 4, 4), (2, 6, 6)), channels=8, repeats=1)
    frame = pd.read_csv(csv)
    assert len(frame) == 8 and set(frame["instantiation"]) == {"gaussian", "embedded_gaussian", "dot_product",
                                                                 "concatenation"}
    assert (frame["latency_ms"] > 0).all() and (frame["peak_mem_mb"] >= 0).all()
    assert list(frame["positions"].unique()) == [32, 72]
    assert png.read_bytes()[:8] == PNG


def test_cli_report(setup, monkeypatch, capsys):
    monkeypatch.chdir(setup)
    code = main(["report", "--profile", "test", "--skip-measure", "--no-attention"])
    assert code == 0
    assert (setup / "reports" / "test" / "t_fixture.md").is_file()


@pytest.mark.parametrize("args, expect", [
    (["--results", "nowhere"], "nowhere/tiny: no such folder"),
    (["--profile", "other"], "results/other: no such folder"),
    (["--profile", "test", "--ablations", "none"], "none: no such folder"),
])
def test_cli_bad_input_is_one_line_exit_2(setup, monkeypatch, capsys, args, expect):
    monkeypatch.chdir(setup)
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlbench: error: ") and expect in err and err.count("\n") == 1
    assert not (setup / "reports").exists()


def test_cli_results_without_tables_is_an_error(setup, monkeypatch, capsys):
    monkeypatch.chdir(setup)
    (setup / "results" / "empty").mkdir()
    assert main(["report", "--profile", "empty"]) == 2
    assert "no results file of a table" in capsys.readouterr().err


def test_busy_minutes_is_the_union_of_run_spans():
    from nlbench.report.build import busy_minutes

    def run(start, end):
        return {"started": f"2026-01-01T{start}:00+00:00", "finished": f"2026-01-01T{end}:00+00:00"}

    # two overlapping runs (00:00-00:12 busy), a pause, one more run (3 min); a record without times is skipped
    records = {"a": run("00:00", "00:10"), "b": run("00:05", "00:12"), "c": run("01:00", "01:03"), "d": {}}
    assert busy_minutes(records) == 15.0
    assert busy_minutes({"d": {}}) is None
