"""What the claims can say at a scale where gains are 15-20 points and some rows solve the task: similar claims at a
margin relative to the measured gain, beside the absolute one, and gains over a row at the ceiling not testable."""
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from nlbench.report.claims import CEILING, CONTRADICTED, HOLDS, NOT_TESTABLE, UNRESOLVED, claim_line, counts, judge
from nlbench.sweep.spec import ConfigError, load_table

ROWS = [{"row": "C2D", "model": {"nl_blocks": 0}, "paper": {"top1": 71.8}},
        {"row": "A", "model": {"nl_blocks": 1}, "paper": {"top1": 72.7}},
        {"row": "B", "model": {"nl_blocks": 5}, "paper": {"top1": 72.9}}]


def _table(tmp_path, relative):
    claim = {"text": "A and B are similar", "kind": "similar", "rows": ["A", "B"], "within": 0.5,
             **({} if relative is None else {"relative": relative})}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"table": "t", "title": "t", "baseline": "C2D", "rows": ROWS, "claims": [claim]}))
    return load_table(path)


def _wide(a_minus_b: list[float]) -> pd.DataFrame:
    """Five seeds: C2D about 50, A and B about 70 (a 20-point gain), A - B as given."""
    c2d = [50.0, 52.0, 49.0, 51.0, 50.5]
    b = [x + 20 for x in c2d]
    return pd.DataFrame({"C2D": c2d, "A": [x + d for x, d in zip(b, a_minus_b)], "B": b})


@pytest.mark.parametrize("relative, margin", [("paper", 0.2 / 1.0), (0.1, 0.1)])
def test_rows_within_the_relative_margin_hold_where_the_absolute_one_cannot_say(tmp_path, relative, margin):
    table = _table(tmp_path, relative)
    wide = _wide([1.0, -0.5, 0.8, 0.2, -0.3])  # A - B: mean 0.24, 90% CI about +-0.6: wider than +-0.5
    result = judge(table.claims[0], table, wide, {})
    gain = (wide.A - wide.C2D + wide.B - wide.C2D).mean() / 2
    assert result.parts[0].comparison.margin == pytest.approx(margin * gain)
    assert result.verdict == HOLDS and result.absolute == UNRESOLVED
    line = claim_line(result)
    assert line.startswith("- **holds**") and "at the absolute margin: **unresolved**" in line
    assert f"±{margin * gain:.2f}" in line


def test_rows_far_apart_are_contradicted_at_the_relative_margin(tmp_path):
    table = _table(tmp_path, "paper")
    result = judge(table.claims[0], table, _wide([9.0, 10.0, 8.5, 9.5, 10.5]), {})
    assert result.verdict == CONTRADICTED  # A - B about 9.5, margin 0.2 x 24.75


def test_without_relative_only_the_absolute_margin_judges(tmp_path):
    table = _table(tmp_path, None)
    result = judge(table.claims[0], table, _wide([1.0, -0.5, 0.8, 0.2, -0.3]), {})
    assert result.absolute is None and result.verdict == UNRESOLVED and result.parts[0].comparison.margin == 0.5


@pytest.mark.parametrize("relative", [0, 1.5, "half", True])
def test_a_bad_relative_is_one_line(tmp_path, relative):
    with pytest.raises(ConfigError, match=f"relative={relative!r} is not allowed"):
        _table(tmp_path, relative)


def _ceiling_table(tmp_path, kind: str, **keys):
    claim = {"text": "B over A", "kind": kind, **keys}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"table": "c", "title": "c", "baseline": "C2D", "rows": ROWS, "claims": [claim]}))
    return load_table(path)


def _at(a: float, b_minus_a: list[float]) -> pd.DataFrame:
    c2d = [50.0, 52.0, 49.0, 51.0, 50.5]
    return pd.DataFrame({"C2D": c2d, "A": [a + x / 10 for x in range(5)],
                         "B": [a + x / 10 + d for x, d in zip(range(5), b_minus_a)]})


def test_a_gain_over_a_row_at_the_ceiling_is_not_testable(tmp_path):
    table = _ceiling_table(tmp_path, "above", rows=["B"], than="A")
    at_ceiling = judge(table.claims[0], table, _at(CEILING + 1, [0.5, -0.3, 0.2, 0.1, -0.2]), {})
    assert at_ceiling.verdict == NOT_TESTABLE and "A at 98.2 >= 97: at the ceiling" in claim_line(at_ceiling)
    below = judge(table.claims[0], table, _at(CEILING - 10, [0.5, -0.3, 0.2, 0.1, -0.2]), {})
    assert below.verdict == UNRESOLVED
    worse = judge(table.claims[0], table, _at(CEILING + 1, [-5.0, -6.0, -5.5, -4.5, -5.2]), {})
    assert worse.verdict == CONTRADICTED  # a row clearly below one at the ceiling still contradicts the claim
    assert counts([at_ceiling, below, worse]) == (
        "0 hold, 1 contradicted, 1 unresolved, 1 not testable (the row to beat scores 97 % or more) "
        "(1 of 2 testable resolved, 50 %)")


def test_no_worse_than_a_row_at_the_ceiling_stays_testable(tmp_path):
    table = _ceiling_table(tmp_path, "order", rows=["A", "B"], within=1.0)
    result = judge(table.claims[0], table, _at(CEILING + 1, [0.1, -0.1, 0.0, 0.05, -0.05]), {})
    assert result.verdict == HOLDS


def test_a_profile_s_score_is_what_the_tables_and_claims_judge(tmp_path):
    from nlbench.report import ablation

    frame = pd.DataFrame({"run_id": ["a", "b"], "top1": [86.9, 72.6], "row": ["C2D", "C2D"], "seed": [3, 0]})
    records = {"a": {"group_top1": 48.4}, "b": {"group_top1": 49.2}}
    scored = ablation.use_score(frame, records, "group_top1")
    assert list(scored.top1) == [48.4, 49.2] and list(scored.clip_top1) == [86.9, 72.6]
    assert ablation.use_score(frame, records, "top1") is frame
    summary = pd.DataFrame([{"row": "C2D", "baseline": "C2D", "paper_top1": 71.8, "top1_mean": 48.8, "top1_ci95": 1.0,
                             "top1_sd": 0.5, "flags": "", "mean_class_top1": 80.0, "n_ok": 2, "n_failed": 0,
                             "delta_top1": 0.0, "paper_delta_top1": 0.0, "gain_top1": float("nan"),
                             "gain_ci95": float("nan"), "gain_n": 0,
                             **{c.column: 1.0 for c in ablation.COSTS.values()}}])
    assert "group top-1 (95% CI)" in ablation.display_table(summary, "group_top1").columns
    assert "top-1 (95% CI)" in ablation.display_table(summary).columns


def test_the_gains_say_the_profile_s_score():
    from nlbench.report.build import GAIN_COLUMNS, _unstable, gains_display

    gain = pd.DataFrame([{c: 0.0 for c in GAIN_COLUMNS} | {"label": "t: NL", "baseline": "C2D", "gain": 50.0,
                                                          "gain_ci95": 1.0, "gain_n": 5, "blocks": 1, "also_in": ""}])
    assert "paired group top-1 gain (95% CI)" in gains_display(gain, "group_top1").columns
    assert "paired top-1 gain (95% CI)" in gains_display(gain).columns
    rows = pd.DataFrame([{"row": "NL", "top1_sd": 25.0, "flags": "unstable"}])
    (line,) = _unstable([SimpleNamespace(table=SimpleNamespace(name="t"), summary=rows)], "group_top1")
    assert "seed SD of group top-1 > 3 points" in line and "t NL (SD 25.0, unstable)" in line
