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


def test_model_zoo_ratios_are_to_r101_c2d_at_32_frames():
    from nlbench.report.model_zoo import render

    def row(model, frames, params, gflops):
        return dict(model=model, frames=frames, tables="2c", params_M=params, GFLOPs=gflops, fwd_ms_b1=10.4,
                    fwd_bwd_ms_b1=30.6, peak_mem_MiB_fwd_bwd_b1=100.2, unsupported_ops="none")

    text = render(pd.DataFrame([row("R50 C2D", 32, 24.0, 20.0), row("R101 C2D", 128, 43.0, 140.0),
                                row("R101 C2D", 32, 40.0, 35.0), row("R101 NL C2D 5-block", 32, 50.0, 42.0),
                                row("R101 NL C2D 5-block", 128, 50.0, 168.0)]),
                  {"cpu": "test cpu", "cores": "2", "torch": "x", "device": "cpu"})
    lines = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in text.splitlines()
             if line.startswith("| R")}
    cells = lambda key: [c.strip() for c in lines[key].strip("|").split("|")]  # noqa: E731
    assert cells(("R101 C2D", "32"))[-3:] == ["1", "1", ""]  # the base: itself
    assert cells(("R50 C2D", "32"))[-3:] == ["0.6", "0.57", ""]  # 24/40, 20/35
    assert cells(("R101 NL C2D 5-block", "32"))[-3:] == ["1.25", "1.2", "1.2 / 1.2"]  # the paper's 2e ratios beside
    assert cells(("R101 NL C2D 5-block", "128"))[-1] == ""  # the paper's ratios are for 32 frames
    assert "R101 C2D here: 40.00 M params, 35.00 GFLOPs" in text and "Machine: test cpu, 2 threads" in text


def test_auto_ratio_pairs_the_rounds_when_they_are_kept():
    # Round 2 ran under load for all three calls: paired, auto is 1.0x the faster path in every round; the
    # medians alone (auto's load hit a different middle round than sdpa's) would say 1.2x.
    case = _case("a", 200.0, 100.0, 120.0, "sdpa")
    case.update(naive_rounds=[0.2, 0.4, 0.2], fast_rounds=[0.1, 0.2, 0.1], auto_rounds=[0.1, 0.2, 0.12])
    table = zoo_table(pd.DataFrame([case]))
    assert round(table["auto_ratio"].iloc[0], 4) == 1.0
    case.update(auto_rounds=[0.11, 0.22, 0.132])  # auto 10 % slower than sdpa in every round
    assert round(zoo_table(pd.DataFrame([case]))["auto_ratio"].iloc[0], 4) == 1.1


def test_missing_cases_come_from_the_tests_the_run_selected():
    from nlbench.report.performance import selected_zoo_cases

    label = "embedded_gaussian-C512-d256-4x28x28-spacetime-sub1x2x2-before-b8"
    data = {
        "benchmarks": [{"name": f"test_zoo_block[{label}-train]", "extra_info": {"kind": "zoo_dispatch"}}],
        "selected": [f"test_zoo_block[{label}-train]", f"test_zoo_block[{label}-infer]", "test_matmul[cpu]"],
    }
    assert selected_zoo_cases(data) == [(label, "train"), (label, "infer")]
    assert selected_zoo_cases({"benchmarks": data["benchmarks"]}) is None  # a JSON from before `selected`
