"""Similar claims at a margin relative to the measured gain (nlbench.report.claims), beside the absolute one."""
import pandas as pd
import pytest
import yaml

from nlbench.report.claims import CONTRADICTED, HOLDS, UNRESOLVED, claim_line, judge
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
