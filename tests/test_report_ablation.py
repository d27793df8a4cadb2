"""Ablation reports: paired per-seed verdicts (superiority, non-inferiority, TOST, conjunctions, GFLOPs), row
stability flags, per-family and per-class accuracy, top-5 left out when no run has it, block geometry, learning
curves, LaTeX, the gain-vs-cost summary, files written atomically, PNG plots (accuracy vs GFLOPs, block
scaling, Figure 3 from a saved model), README, the CLI's bad input.

Everything runs on fixture tables, results and records written here (no sweep, no training): a few seconds.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nlbench.cli import main
from nlbench.report import ablation, attention, build
from nlbench.report.ablation import stability_flags, summarise
from nlbench.report.claims import (COMPARISONS, CONTRADICTED, HOLDS, NOT_EVALUATED, UNRESOLVED, ClaimResult,
                                   Comparison, claims_frame, evaluate_claims, judge_part)
from nlbench.report.plots import curve_bands
from nlbench.report.stats import mean_ci, pairs_for_power, t_critical
from nlbench.sweep.spec import CLAIM_KINDS, load_table
from nlbench.training.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
# Student t quantiles from a printed table (not scipy): two-sided 95% and 90% at 4 degrees of freedom.
T95_4, T90_4 = 2.776445, 2.131847

TABLE = {
    "table": "t_fixture",
    "title": "Fixture table",
    "baseline": "C2D",
    "defaults": {"model": {"depth": 50, "arch": "c2d"}},
    "rows": [
        {"row": "C2D", "model": {"nl_blocks": 0}, "paper": {"top1": 71.8, "top5": 89.7}},
        {"row": "NL", "model": {"nl_blocks": 1, "nl_stage": "res3"}, "paper": {"top1": 72.7, "top5": 90.5}},
        {"row": "Worse", "model": {"nl_blocks": 1, "nl_stage": "res4"}, "paper": {"top1": 72.3, "top5": 90.1}},
        {"row": "Small", "model": {"nl_blocks": 1, "nl_stage": "res2"}, "paper": None},
        {"row": "Noisy", "model": {"nl_blocks": 1, "nl_stage": "res5", "subsample": False}, "paper": None},
        {"row": "Deep", "model": {"depth": 101, "nl_blocks": 0}, "paper": None},
        {"row": "Deep NL", "baseline": "Deep", "model": {"depth": 101, "nl_blocks": 1, "nl_stage": "res3"},
         "paper": None},
    ],
    "claims": [
        {"text": "NL beats the baseline", "kind": "above", "rows": ["NL"], "than": "C2D"},
        {"text": "Worse beats the baseline", "kind": "above", "rows": ["Worse"], "than": "C2D"},
        {"text": "Small beats the baseline", "kind": "above", "rows": ["Small"], "than": "C2D"},
        {"text": "NL and Noisy beat the baseline", "kind": "above", "rows": ["NL", "Noisy"], "than": "C2D"},
        {"text": "NL and Worse beat the baseline", "kind": "above", "rows": ["NL", "Worse"], "than": "C2D"},
        {"text": "C2D <= NL", "kind": "order", "rows": ["C2D", "NL"]},
        {"text": "NL <= Worse", "kind": "order", "rows": ["NL", "Worse"], "within": 0.5},
        {"text": "C2D and Worse similar", "kind": "similar", "rows": ["C2D", "Worse"], "within": 2},
        {"text": "NL and Worse similar", "kind": "similar", "rows": ["NL", "Worse"], "within": 0.5},
        {"text": "Worse gains less than NL", "kind": "smaller_gain", "row": "Worse", "than": ["NL"]},
        {"text": "NL cheaper and better than Deep", "kind": "cheaper_and_better", "row": "NL", "than": "Deep"},
        {"text": "Deep NL cheaper and better than C2D", "kind": "cheaper_and_better", "row": "Deep NL",
         "than": "C2D"},
    ],
}
SEEDS = range(5)
C2D = [50.0, 52.0, 51.0, 53.0, 49.0]
# per-seed differences to C2D: NL +10 (tight), Worse about -1, Small about +1 (tight: resolved only when
# paired; unpaired, C2D's seed spread of 1.6 points swamps it), Noisy +-5
DIFF = {"NL": [10.0, 10.5, 10.0, 10.0, 10.5], "Worse": [-1.0, -1.5, -1.0, -0.5, -1.0],
        "Small": [1.0, 1.2, 0.9, 1.1, 1.0], "Noisy": [5.0, -5.0, 6.0, -4.0, 3.0]}
TOP1 = {("C2D", s): C2D[s] for s in SEEDS}
TOP1.update({(row, s): C2D[s] + d[s] for row, d in DIFF.items() for s in SEEDS})
TOP1.update({("Deep", 0): 55.0, ("Deep", 1): None, ("Deep NL", 0): 56.0, ("Deep NL", 1): 57.0})
GFLOPS = {"C2D": 0.10, "NL": 0.12, "Worse": 0.11, "Small": 0.11, "Noisy": 0.13, "Deep": 0.20, "Deep NL": 0.22}
MACHINE = {"cpu": "Fixture CPU", "cores": "2", "torch": "2.x", "device": "cpu"}


def _frame(top5: float | None = None) -> pd.DataFrame:
    rows = []
    for (row, seed), top1 in TOP1.items():
        failed = top1 is None
        rows.append({
            "table": "t_fixture", "row": row, "depth": 101 if row.startswith("Deep") else 50, "arch": "c2d",
            "nl_blocks": 0 if row in ("C2D", "Deep") else 1, "seed": seed,
            "run_id": f"{row.lower().replace(' ', '')}{seed}", "params": 1.5e6, "gflops": GFLOPS[row],
            "latency_ms": 10.0 + 100 * GFLOPS[row], "train_clips_per_s": 100.0, "peak_mem_mb": 50.0, "top1": top1,
            "top5": None if failed else top5, "val_top1": None if failed else 60.0,
            "status": "failed" if failed else "ok", "reason": "non-finite loss nan at step 7" if failed else None,
            "wall_s": 30.0, "machine": "Fixture CPU, 2 threads, torch 2.x",
        })
    # rows of a results file come in any order: the verdicts pair by seed, not by position
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


def _ci(diffs, t):
    xs = pd.Series(diffs)
    half = t * xs.std(ddof=1) / math.sqrt(len(xs))
    return xs.mean() - half, xs.mean() + half


CURVE = {0: [50.0, 60.0, 70.0], 1: [40.0, 64.0, 80.0]}  # NL seeds 0 and 1 at steps 10, 20, 30


@pytest.fixture
def setup(tmp_path):
    """ablations/t_fixture.yaml, results/test/t_fixture.csv, run records; the NL seed-0 run has a model.pt.
    The C2D and NL records carry per_family, mean_class_top1, curve and nonlocal_blocks; the others per_class
    only (as a video run's, which has no families)."""
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
        record = {"run_id": r["run_id"], "machine": MACHINE, "wall_s": 30.0,
                  "per_class": {"same": 60.0, "different": 70.0}}
        if r["row"] in ("C2D", "NL"):
            record.update({"per_family": {"space": 55.0, "time": 85.0}, "mean_class_top1": 66.0})
        if r["row"] == "NL":
            record["nonlocal_blocks"] = [{"name": "res3.1.nl", "input_thw": [4, 8, 8], "keys": 64},
                                         {"name": "res4.1.nl", "input_thw": [2, 2, 2], "keys": 2}]
            if r["seed"] in CURVE:
                record["curve"] = [{"step": 10 * (i + 1), "epoch": i, "val_top1": v}
                                   for i, v in enumerate(CURVE[r["seed"]])]
        (d / "record.json").write_text(json.dumps(record))
    from nlbench.training.config import RunConfig

    config = RunConfig.load(REPO / "configs" / "smoke.yaml", ["model.nl_blocks=1", "model.nl_stage=res3"])
    model = config.model.as_model_config(num_classes=2).build()
    run = res / "runs" / "nl0"
    (run / "config.yaml").write_text(config.to_yaml())
    torch.save(model.state_dict(), run / "model.pt")
    return tmp_path


# ------------------------------------------------------------------------------------------------ stats


def test_mean_ci_matches_hand_computed_student_t():
    # [70, 72, 74]: mean 72, s = 2, t_{0.975, 2} = 4.303 -> 4.303 * 2 / sqrt(3) = 4.9687
    mean, half, n = mean_ci([70.0, 72.0, 74.0])
    assert (mean, n) == (72.0, 3)
    assert half == pytest.approx(4.30265 * 2 / math.sqrt(3), abs=1e-4)
    mean, half, n = mean_ci([1, 2, 3, 4, 5], level=0.90)  # five values, s = sqrt(2.5)
    assert mean == 3 and half == pytest.approx(T90_4 * math.sqrt(2.5) / math.sqrt(5), abs=1e-5)
    mean, half, n = mean_ci([71.5, None, float("nan")])  # one finite value: no interval
    assert (mean, n) == (71.5, 1) and math.isnan(half)
    assert math.isnan(mean_ci([])[0])
    assert t_critical(1) == pytest.approx(12.706, abs=1e-3) and t_critical(4) == pytest.approx(T95_4, abs=1e-5)
    with pytest.raises(ValueError):
        t_critical(0)


# ----------------------------------------------------------------------------------------------- claims


def test_claims_are_judged_on_paired_seed_differences(setup):
    table = load_table(setup / "ablations" / "t_fixture.yaml")
    frame = _frame()
    summary = summarise(table, frame)
    claims = {c.text: c for c in evaluate_claims(table, frame, summary)}

    nl = claims["NL beats the baseline"]
    assert nl.verdict == HOLDS
    (part,) = nl.parts
    assert part.n == 5 and part.mean == pytest.approx(10.2) and part.paper == pytest.approx(0.9)
    assert (part.low, part.high) == pytest.approx(_ci(DIFF["NL"], T95_4), abs=1e-5)
    assert claims["Worse beats the baseline"].verdict == CONTRADICTED  # CI -1 +- 0.44: below 0
    # Small - C2D is about +1 at every seed: paired it holds, though the two rows' unpaired 95% CIs overlap
    s = summary.set_index("row")
    assert s.loc["Small", "top1_mean"] - s.loc["Small", "top1_ci95"] < s.loc["C2D", "top1_mean"] + s.loc["C2D", "top1_ci95"]
    assert claims["Small beats the baseline"].verdict == HOLDS
    # conjunctions: all parts must hold; one contradicted part contradicts the claim
    both = claims["NL and Noisy beat the baseline"]
    assert both.verdict == UNRESOLVED and [p.verdict for p in both.parts] == [HOLDS, UNRESOLVED]
    assert both.headline.comparison.better == "Noisy"  # the part that decides is reported first
    assert claims["NL and Worse beat the baseline"].verdict == CONTRADICTED
    assert claims["C2D <= NL"].verdict == HOLDS
    assert claims["NL <= Worse"].verdict == CONTRADICTED  # Worse - NL = -11.2 < -0.5
    # similar: TOST, the 90% CI of C2D - Worse is +1 +- 0.34: inside +-2
    similar = claims["C2D and Worse similar"]
    assert similar.verdict == HOLDS and similar.parts[0].level == 0.90
    assert (similar.parts[0].low, similar.parts[0].high) == pytest.approx(_ci([-d for d in DIFF["Worse"]], T90_4),
                                                                          abs=1e-5)
    assert claims["NL and Worse similar"].verdict == CONTRADICTED
    gain = claims["Worse gains less than NL"]  # gain(NL) - gain(Worse) = NL - Worse, on seeds C2D ran too
    assert gain.verdict == HOLDS and gain.parts[0].mean == pytest.approx(11.2) and gain.parts[0].n == 5
    cheap = claims["NL cheaper and better than Deep"]  # one pair (Deep's seed 1 failed): no CI; cheaper
    assert cheap.verdict == UNRESOLVED and cheap.parts[0].n == 1 and cheap.cost_ok is True
    costly = claims["Deep NL cheaper and better than C2D"]  # 0.22 GFLOPs vs 0.10: deterministic contradiction
    assert costly.verdict == CONTRADICTED and costly.cost_ok is False and "not cheaper" in costly.cost

    line = ablation.claim_line(claims["NL and Noisy beat the baseline"])
    assert line.startswith("- **unresolved**: NL and Noisy beat the baseline: Noisy − C2D > 0: +1.00 [95% CI")
    assert "also NL − C2D > 0: +10.20 [95% CI +9.86, +10.54], 5 pairs, paper +0.9: holds" in line

    # a row without results: not evaluated, unless another part already contradicts the claim
    no_nl = frame[frame["row"] != "NL"]
    verdicts = {c.text: c.verdict for c in evaluate_claims(table, no_nl, summarise(table, no_nl))}
    assert verdicts["NL beats the baseline"] == NOT_EVALUATED
    assert verdicts["NL and Worse beat the baseline"] == CONTRADICTED


def test_pairs_are_the_seeds_both_rows_finished():
    table_frame = pd.DataFrame({"row": ["A", "A", "A", "B", "B", "B"], "seed": [0, 1, 2, 2, 1, 3],
                                "status": ["ok", "ok", "failed", "ok", "ok", "ok"],
                                "top1": [10.0, 20.0, 99.0, 25.0, 21.0, 0.0]})
    from nlbench.report.stats import by_seed, paired

    diffs = paired(by_seed(table_frame), "B", "A")
    assert diffs.to_dict() == {1: 1.0}  # seed 0: no B; seed 2: A failed; seed 3: no A


@pytest.mark.parametrize("diffs, test, margin, verdict", [
    ([1.0, 1.2, 0.9, 1.1, 1.0], "superiority", 0.0, HOLDS),
    ([-1.0, -1.2, -0.9, -1.1, -1.0], "superiority", 0.0, CONTRADICTED),
    ([-1.0, 1.2, -0.9, 1.1, -1.0], "superiority", 0.0, UNRESOLVED),
    ([-0.3, -0.2, -0.35, -0.25, -0.3], "noninferiority", 0.5, HOLDS),  # worse, but by less than the margin
    ([-0.3, -0.2, -0.35, -0.25, -0.3], "superiority", 0.0, CONTRADICTED),
    ([-1.0, -1.5, -1.0, -0.5, -1.0], "equivalence", 1.4, HOLDS),  # 90% CI [-1.34, -0.66]; the 95% one is not inside
    ([-1.0, -1.5, -1.0, -0.5, -1.0], "equivalence", 1.2, UNRESOLVED),
    ([-1.0, -1.5, -1.0, -0.5, -1.0], "equivalence", 0.5, CONTRADICTED),
    ([3.0], "superiority", 0.0, UNRESOLVED),  # one pair: no interval
    ([], "superiority", 0.0, NOT_EVALUATED),
])
def test_one_comparison_verdict(diffs, test, margin, verdict):
    part = judge_part(pd.Series(diffs, dtype=float), Comparison("a", "b", test, margin))
    assert part.verdict == verdict and part.n == len(diffs)


@pytest.mark.parametrize("gap, sd, level", [(3.5, 3.1, 0.95), (10.0, 17.9, 0.95), (2.0, 4.0, 0.90)])
def test_pairs_for_power_resolves_at_the_planned_power_by_simulation(gap, sd, level):
    # Draw normal paired differences; at the planned n the interval's near end clears the boundary (0) in at
    # least 80 % of the draws, and at n - 1 in fewer (Monte Carlo, float64, the interval from mean_ci).
    n = int(pairs_for_power(gap, sd, level, 0.8))
    rng = np.random.default_rng(0)

    def rate(k):
        x = rng.normal(gap, sd, size=(20000, k))
        half = t_critical(k - 1, level) * x.std(axis=1, ddof=1) / np.sqrt(k)
        return float(np.mean(x.mean(axis=1) - half > 0))

    assert rate(n) >= 0.79 and rate(n - 1) < 0.81, (n, rate(n), rate(n - 1))
    assert pairs_for_power(0.0, sd) == math.inf and pairs_for_power(0.01, 50.0) == math.inf


def test_only_an_unresolved_comparison_says_how_many_pairs_would_resolve_it():
    unresolved = judge_part(pd.Series([3.0, 8.0, 0.0, 1.0, 6.0]), Comparison("a", "b", "superiority"))
    sd = float(np.std([3.0, 8.0, 0.0, 1.0, 6.0], ddof=1))
    assert unresolved.verdict == UNRESOLVED and unresolved.needed == pairs_for_power(3.6, sd) > 5
    assert f"~{unresolved.needed:.0f} pairs would settle it as holds" in unresolved.text()
    # equivalence: planned toward the margin nearer the mean (|mean| - m past it, or m - |mean| inside it)
    outside = judge_part(pd.Series([2.0, -1.0, 4.0, 3.0, 0.0]), Comparison("a", "b", "equivalence", 0.5))
    assert outside.verdict == UNRESOLVED
    assert outside.needed == pairs_for_power(1.6 - 0.5, float(np.std([2, -1, 4, 3, 0], ddof=1)), 0.90)
    assert outside.heads_for_contradiction and "would settle it as contradicted" in outside.text()
    held = judge_part(pd.Series([3.0, 3.5, 2.5, 3.0, 3.0]), Comparison("a", "b", "superiority"))
    assert held.verdict == HOLDS and math.isnan(held.needed) and "would settle" not in held.text()
    # a claim: one part that heads for contradiction settles it on its own (the fewest); else all must hold
    inside = judge_part(pd.Series([0.2, -0.6, 0.9, 0.1, -0.3]), Comparison("a", "c", "equivalence", 0.5))
    assert inside.verdict == UNRESOLVED and not inside.heads_for_contradiction
    claim = ClaimResult("t", "similar", UNRESOLVED, (inside, outside), "", None)
    assert claim.needed == outside.needed != inside.needed
    assert claims_frame([claim])["pairs_to_resolve"].tolist() == [claim.needed]  # W&B's claims table
    claim = ClaimResult("t", "similar", UNRESOLVED, (inside, unresolved), "", None)
    assert claim.needed == max(inside.needed, unresolved.needed)
    assert math.isnan(ClaimResult("t", "above", HOLDS, (held,), "", None).needed)


def test_every_claim_kind_a_table_may_name_is_judged_by_the_report():
    # The kinds' keys are the table file's (sweep/spec.py), their comparisons the report's (report/claims.py).
    assert set(COMPARISONS) == set(CLAIM_KINDS)


def test_claim_kinds_are_validated_per_kind(tmp_path):
    def load(claims, rows=TABLE["rows"]):
        path = tmp_path / "t_fixture.yaml"
        path.write_text(yaml.safe_dump({**TABLE, "rows": rows, "claims": claims}))
        return load_table(path)

    assert load([{"text": "t", "kind": "order", "rows": ["C2D", "NL"], "within": 0.5}]).claims[0]["within"] == 0.5
    for claim, message in [
        ({"text": "t", "kind": "similar", "rows": ["C2D", "NL"]}, "kind similar needs key 'within'"),
        ({"text": "t", "kind": "order", "rows": ["C2D"]}, "kind order needs at least 2 rows"),
        ({"text": "t", "kind": "order", "rows": ["C2D", "NL"], "within": -1}, "within=-1 must be a number"),
        ({"text": "t", "kind": "above", "rows": ["NL"], "than": "C2D", "within": 1}, "unknown key 'within'"),
        ({"text": "t", "kind": "smaller_gain", "row": "NL", "than": "C2D"}, "than must be a non-empty list"),
        ({"text": "t", "kind": "cheaper_and_better", "row": "NL", "than": "Nope"}, "'Nope' is not a row label"),
        ({"text": "t", "kind": "bigger"}, "kind='bigger' is not allowed"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            load([claim])
    bad_base = [*TABLE["rows"][:-1], {**TABLE["rows"][-1], "baseline": "Nope"}]
    with pytest.raises(ConfigError, match="row 'Deep NL': baseline='Nope' is not a row label"):
        load([], bad_base)
    self_base = [*TABLE["rows"][:-1], {**TABLE["rows"][-1], "baseline": "Deep NL"}]
    with pytest.raises(ConfigError, match="must be the label of another row"):
        load([], self_base)


# ------------------------------------------------------------------------------------- rows and metrics


def test_rows_seed_sd_flags_and_paired_gain_over_the_rows_baseline(setup):
    assert stability_flags(pd.Series([60.0, 61.0, 62.0])) == ""
    assert stability_flags(pd.Series([60.0, 65.0, 68.0])) == "unstable"  # SD 4.0, every seed within 5 of 65
    assert stability_flags(pd.Series([60.0, 61.0, 62.0, 61.0, 75.0])) == "unstable, bimodal"  # 75 is 14 off 61
    assert stability_flags(pd.Series([60.0])) == ""

    table = load_table(setup / "ablations" / "t_fixture.yaml")
    s = summarise(table, _frame()).set_index("row")
    assert s.loc["C2D", "top1_sd"] == pytest.approx(pd.Series(C2D).std(ddof=1))
    assert s.loc["Noisy", "flags"] == "unstable" and s.loc["NL", "flags"] == ""
    assert s.loc["NL", "gain_top1"] == pytest.approx(10.2) and s.loc["NL", "gain_n"] == 5
    assert s.loc["NL", "gain_ci95"] == pytest.approx(T95_4 * pd.Series(DIFF["NL"]).std() / math.sqrt(5), abs=1e-5)
    # Deep NL's own baseline is Deep (one common finished seed: 56 - 55), not the table's C2D
    assert s.loc["Deep NL", "baseline"] == "Deep" and s.loc["Deep NL", "gain_top1"] == 1.0
    assert s.loc["Deep NL", "gain_n"] == 1 and math.isnan(s.loc["Deep NL", "gain_ci95"])
    assert s.loc["Deep", "n_ok"] == 1 and s.loc["Deep", "n_failed"] == 1
    assert s.loc["NL", "paper_delta_top1"] == pytest.approx(0.9)


def test_top5_is_left_out_when_no_run_has_it(setup):
    table = load_table(setup / "ablations" / "t_fixture.yaml")
    without = summarise(table, _frame(top5=None))
    assert "top5_mean" not in without.columns and "top-5 (95% CI)" not in ablation.display_table(without).columns
    with_top5 = summarise(table, _frame(top5=90.0))
    assert with_top5.set_index("row").loc["NL", "top5_mean"] == 90.0
    assert "top-5 (95% CI)" in ablation.display_table(with_top5).columns


def test_per_family_and_mean_class_from_the_records(setup):
    frame = _frame()
    records = {p.parent.name: json.loads(p.read_text())
               for p in (setup / "results" / "test" / "runs").glob("*/record.json")}
    enriched = ablation.enrich(frame, records).set_index("run_id")
    assert enriched.loc["nl0", "family_space"] == 55.0 and enriched.loc["nl0", "mean_class_top1"] == 66.0
    # a record with only per_class: the mean class accuracy is the mean of its classes; no family is made up
    # from class names (a family is a set of clips, not of classes)
    assert enriched.loc["worse0", "mean_class_top1"] == 65.0
    assert enriched.loc["worse0", ["family_space", "family_time"]].isna().all()
    assert [c for c in enriched.columns if c.startswith("family_")] == ["family_space", "family_time"]


def test_results_csv_carries_family_mean_class_and_code_version():
    """A sweep's CSV rows from full records (as the optuna trial keeps them): the record's CSV columns, one
    family column per family the records name (first seen first; empty for a record without families), the
    code version and the machine in words."""
    from types import SimpleNamespace

    from nlbench.sweep import results

    records = {
        "old": {"run_id": "s", "name": "C2D", "status": "ok", "top1": 60.0, "config": {"seed": 0}},
        "new": {"run_id": "r", "name": "NL", "status": "ok", "top1": 70.0, "mean_class_top1": 69.5,
                "per_family": {"local": 91.0, "space": 80.0}, "code_version": {"commit": "abc123", "dirty": False},
                "machine": {"cpu": "AMD EPYC", "cores": "2", "torch": "2.13.0"}, "curve": [], "config": {"seed": 0}},
    }
    cells = [SimpleNamespace(key=key, row=row, seed=0, knobs={"nl_blocks": n}, run_id=records[key]["run_id"])
             for key, row, n in (("old", "C2D", 0), ("new", "NL", 1))]
    sweep = SimpleNamespace(cells=cells, knob_columns=("nl_blocks",), table=SimpleNamespace(name="t"))
    frame = results.to_frame(sweep, records).set_index("run_id")
    assert list(frame.columns[-5:]) == ["family_local", "family_space", "code_commit", "code_dirty", "machine"]
    assert frame.loc["r", "mean_class_top1"] == 69.5 and frame.loc["r", "family_local"] == 91.0
    assert frame.loc["r", "code_commit"] == "abc123" and frame.loc["r", "code_dirty"] is False
    assert frame.loc["r", "machine"] == "AMD EPYC, 2 threads, torch 2.13.0"
    assert pd.isna(frame.loc["s", "family_local"]) and frame.loc["s", "top1"] == 60.0
    assert "curve" not in frame.columns  # a record field that is not a CSV column


def test_block_geometry_flags_small_blocks(setup):
    frame = _frame()
    records = {"nl0": {"nonlocal_blocks": [{"name": "a", "input_thw": [4, 8, 8], "keys": 64},
                                           {"name": "b", "input_thw": [4, 2, 2], "keys": 16},
                                           {"name": "c", "input_thw": [4, 8, 8], "keys": 2}]}}
    g = ablation.block_geometry(frame, records, ["C2D", "NL"])
    assert list(g["block"]) == ["a", "b", "c"] and list(g["keys"]) == [64, 16, 2]
    assert list(g["flag"]) == ["", "< 4x4 positions", "< 4 keys"]
    assert ablation.block_geometry(frame, {}, ["NL"]).empty  # old records: nothing recorded


def test_curve_bands_mean_and_min_max_over_seeds():
    runs = [[{"step": 10, "epoch": 0, "val_top1": 50.0}, {"step": 20, "epoch": 1, "val_top1": 60.0}],
            [{"step": 10, "epoch": 0, "val_top1": 40.0}, {"step": 20, "epoch": 1, "val_top1": 70.0},
             {"step": 30, "epoch": 2, "val_top1": 75.0}]]
    bands = curve_bands(runs).set_index("step")
    assert bands.loc[10].tolist() == [45.0, 40.0, 50.0, 2]
    assert bands.loc[20].tolist() == [65.0, 60.0, 70.0, 2]
    assert bands.loc[30].tolist() == [75.0, 75.0, 75.0, 1]


def test_latex_is_booktabs_and_escaped(setup):
    table = load_table(setup / "ablations" / "t_fixture.yaml")
    text = ablation.latex(ablation.display_table(summarise(table, _frame())), "Fixture_table")
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "top-1 (95\\% CI)" in text and "$\\pm$" in text and "$\\Delta$ top-1" in text
    assert "Fixture\\_table" in text and "±" not in text


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
    assert {"t_fixture.md", "t_fixture.tex", "t_fixture.csv", "README.md", "attention.json", "gains.csv",
            "gains.tex"} <= set(written)
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind

    csv = pd.read_csv(out / "t_fixture.csv")
    top5 = {"top5_mean", "top5_ci95"}  # no run has top-5
    assert list(csv.columns) == [c for c in ablation.SUMMARY_COLUMNS if c not in top5] + ["family_space",
                                                                                          "family_time"]
    assert list(csv["row"]) == ["C2D", "NL", "Worse", "Small", "Noisy", "Deep", "Deep NL"]
    md = (out / "t_fixture.md").read_text()
    assert "| NL " in md and "61.2 ± 1.9" in md and "71.8" in md and "top-5" not in md
    assert "+10.2 ± 0.3 vs C2D (5)" in md  # the paired gain over the row's baseline
    assert "5 hold, 5 contradicted, 2 unresolved (10 of 12 resolved, 83 %)" in md
    assert "**contradicted**: Worse beats the baseline: Worse − C2D > 0: -1.00 [95% CI -1.44, -0.56], 5 pairs" in md
    assert "Deep, seed 1 (`deep1`): non-finite loss nan at step 7" in md
    assert re.search(r"\| res4\.1\.nl \|(\s+2 \|){4}\s+< 4x4 positions, < 4 keys \|", md)  # from NL's records
    assert "1 of 2 blocks attend over fewer than 4x4 positions or 4 keys" in md
    assert "| Noisy " in md and "unstable" in md
    assert "\\bottomrule" in (out / "t_fixture.tex").read_text()
    for png in ("t_fixture_acc_vs_gflops.png", "t_fixture_curves.png", "attention.png", "gains.png"):
        assert (out / png).read_bytes()[:8] == PNG
    gains = pd.read_csv(out / "gains.csv").set_index("row")
    assert list(gains.index) == ["NL", "Worse", "Small", "Noisy", "Deep NL"]  # the rows with non-local blocks
    assert gains.loc["NL", "gain"] == pytest.approx(10.2, abs=1e-4) and gains.loc["NL", "gain_n"] == 5
    assert gains.loc["NL", "added_gflops"] == pytest.approx(0.02) and gains.loc["NL", "added_latency_ms"] == pytest.approx(2.0)
    assert gains.loc["Deep NL", "baseline"] == "Deep" and gains.loc["Deep NL", "added_gflops"] == pytest.approx(0.02)
    info = json.loads((out / "attention.json").read_text())
    # the first spacetime clip of the validation split (families cycle every 2 clips: index 6), its class
    assert (info["clip_index"], info["family"]) == (12, "spacetime") and info["class"] in ("same", "different")  # the first clip of the fourth val quadruple (design 3)
    assert 0 <= info["weight_on_other_cue"] <= 1 and 0 < info["uniform_on_other_cue"] <= 1

    text = readme.read_text()
    assert "Fixture CPU, 2 threads, torch 2.x, device cpu" in text
    assert "seeds: 0, 1, 2, 3, 4" in text
    assert "wall time 14.5 min summed over runs" in text  # 29 distinct runs x 30 s
    assert "5 hold, 5 contradicted, 2 unresolved (10 of 12 resolved, 83 %)" in text
    assert "t_unrun" in text  # the table without results is named
    assert "[t_fixture](t_fixture.md) **contradicted**: Worse beats the baseline" in text
    # the unresolved claim with an interval gets its plan: Noisy's differences, mean 1.0, SD sqrt(27.5)
    noisy = pairs_for_power(1.0, float(np.std(DIFF["Noisy"], ddof=1)))
    assert "resolve each unresolved claim, at 80% power" in text
    assert f"t_fixture: NL and Noisy beat the baseline ~{noisy:.0f}." in text
    # the summary comes first: gain vs cost, then the geometry, then where the numbers come from
    assert text.index("## What a non-local block buys") < text.index(" t_fixture: NL |") < text.index(
        "![gain vs added GFLOPs](gains.png)") < text.index("T x H x W / keys") < text.index("- Machine:")
    assert re.search(r"\| 1 +\| +t_fixture: NL \| +C2D \| +\+10\.2 ± 0\.3 \| +5 \| +\+0\.0200 \|", text)
    assert "| t_fixture: NL | 2 | res3.1.nl 4x8x8/64; res4.1.nl 2x2x2/2 | **1 below 4x4 or 4 keys** |" in text
    assert "Row stability: 1 of 6 rows flagged" in text and "t_fixture Noisy (SD" in text
    assert "numerics version" not in md  # every record of this version (or before the key: 1)


def test_runs_of_another_numerics_version_are_flagged(setup):
    from nlbench.numerics import NUMERICS_VERSION

    runs = setup / "results" / "test" / "runs"
    for run_id, version in (("nl1", NUMERICS_VERSION), ("worse2", NUMERICS_VERSION + 1)):
        record = json.loads((runs / run_id / "record.json").read_text())
        (runs / run_id / "record.json").write_text(json.dumps({**record, "numerics": version}))
    build.build_reports("test", setup / "results", setup / "reports", setup / "ablations", measure=False,
                        attention=False)
    md = (setup / "reports" / "test" / "t_fixture.md").read_text()
    flagged = md.split("## Runs of another numerics version")[1].split("## Failed runs")[0]
    # records without the key predate it: version 1, this code's
    assert flagged.count("\n- ") == 1 and f"- Worse, seed 2 (`worse2`): numerics version {NUMERICS_VERSION + 1}" in flagged


def test_summary_lists_a_variant_shared_by_two_tables_once(setup):
    # t_copy runs the same rows (the same run ids): its variants are the same runs, listed once
    abl, res = setup / "ablations", setup / "results" / "test"
    (abl / "t_copy.yaml").write_text(yaml.safe_dump({**TABLE, "table": "t_copy"}, sort_keys=False))
    _frame().assign(table="t_copy").to_csv(res / "t_copy.csv", index=False)
    build.build_reports("test", setup / "results", setup / "reports", abl, measure=False, attention=False)
    gains = pd.read_csv(setup / "reports" / "test" / "gains.csv")
    assert list(gains["label"]) == [f"t_copy: {r}" for r in ("NL", "Worse", "Small", "Noisy", "Deep NL")]
    assert set(gains["also_in"]) == {"t_fixture"}


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


def test_attention_figure_takes_the_first_clip_of_the_longest_range_family():
    from nlbench.data import SyntheticClips, SyntheticConfig

    # families cycle every 2 clips (same, different): the first spacetime clip of the four is index 6
    cases = [(("local", "space", "time", "spacetime"), 6, "spacetime"), (("local", "space"), 2, "space"),
             (("space", "time"), 2, "time"), (("local",), 0, "local")]  # no relation across frames: the first
    for families, index, family in cases:
        ds = SyntheticClips(SyntheticConfig(frames=4, size=24, split_sizes=(8, 8, 8), families=families), "val")
        assert attention.pick_clip(ds) == index and ds.clip(index).family == family, families


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


def test_completeness_counts_the_profiles_distinct_runs_with_a_record(tmp_path):
    from nlbench.report.build import completeness
    from nlbench.sweep.spec import build_sweep, table_files

    ablations = Path(__file__).resolve().parents[1] / "ablations"
    ids = {c.run_id for p in table_files(ablations) for c in build_sweep(p, "smoke").cells}
    assert completeness(ablations, "smoke", tmp_path) == (0, len(ids))
    first = sorted(ids)[0]
    (tmp_path / first).mkdir()
    assert completeness(ablations, "smoke", tmp_path) == (0, len(ids))  # a run folder without a record: not done
    (tmp_path / first / "record.json").write_text("{}")
    assert completeness(ablations, "smoke", tmp_path) == (1, len(ids))
    assert completeness(ablations, "paper", tmp_path) is None  # needs a data set: no grid here
