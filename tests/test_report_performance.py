"""The zoo section of reports/performance.md: its verdicts follow from the timings it is given."""
from __future__ import annotations

import math

import pandas as pd

from nlbench.report.performance import zoo_section, zoo_table


def _case(label, naive_ms, fast_ms, auto_ms, auto_path, naive_fits=True):
    return dict(
        kind="zoo_dispatch", label=label, instantiation="embedded_gaussian", channels=512, inner_channels=256,
        t=4, h=28, w=28, mode="spacetime", subsample=True, pool_kernel=[1, 2, 2], subsample_order="before",
        batch=8, pass_="train", groups=8, n=3136, n_keys=784, fast_path="sdpa", auto_path=auto_path,
        naive_ms=naive_ms, fast_ms=fast_ms, median_ms=auto_ms, rounds=3, naive_bytes=10, budget_bytes=2**30,
        naive_fits=naive_fits, used_by=["2c_blocks: R50 5-block"], batch_run=8, profile_batch=8,
        profile_auto_path=auto_path, profile_naive_bytes=10, profile_naive_fits=naive_fits,
    )


def test_auto_ratio_is_against_the_faster_path():
    table = zoo_table(pd.DataFrame([
        _case("a", 100.0, 80.0, 83.0, "sdpa"),  # 1.0375x the faster (fast): within
        _case("b", 100.0, 120.0, 106.0, "naive"),  # 1.06x the faster (naive): not within
        _case("c", math.nan, 50.0, 50.0, "sdpa", naive_fits=False),  # naive over budget: fast is the faster
    ]))
    assert table["faster_path"].tolist() == ["sdpa", "naive", "sdpa"]
    assert [round(r, 4) for r in table["auto_ratio"]] == [1.0375, 1.06, 1.0]
    assert table["within"].tolist() == [True, False, True]


def test_verdict_missed_when_slow_or_over_budget():
    ok = [_case("a", 100.0, 80.0, 82.0, "sdpa"), _case("c", math.nan, 50.0, 51.0, "sdpa", naive_fits=False)]
    assert zoo_section(pd.DataFrame(ok))[1] is True
    slow = ok + [_case("b", 100.0, 120.0, 110.0, "naive")]
    assert zoo_section(pd.DataFrame(slow))[1] is False
    # Naive would not fit, yet auto ran it: MISSED even though it was fast.
    over = ok + [_case("d", math.nan, 50.0, 40.0, "naive", naive_fits=False)]
    lines, met = zoo_section(pd.DataFrame(over))
    assert met is False and any("MISSED" in line for line in lines)


def test_missing_cases_are_named_and_fail_the_verdict():
    ok = [_case("a", 100.0, 80.0, 82.0, "sdpa")]
    lines, met = zoo_section(pd.DataFrame(ok), expected=[("a", "train"), ("zz", "infer")])
    assert met is False
    assert any(line.startswith("**Not measured** (1 of 2") and "`zz` infer" in line for line in lines)
