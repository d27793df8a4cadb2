"""Markdown performance report of the non-local block, built from pytest-benchmark's JSON alone.

    python -m nlbench.report.performance results/bench/zoo.json results/bench/bench.json reports/performance.md

The JSON comes from ``make bench``: ``zoo.json`` (benchmarks/test_zoo_dispatch.py) holds ``impl="auto"``
against both exact paths at every non-local block of the model zoo; ``bench.json``
(benchmarks/test_nonlocal_block.py) the fast paths against the naive one at three paper shapes, each block
case with its shape, path, pass, peak memory and MACs in ``extra_info``, the matmul case the machine's rate.
``machine_info["nlbench"]`` names the machine and the code that ran, and ``selected`` the tests the run set out
to measure (benchmarks/conftest.py). Every number below is read or derived from those files; the report imports
nothing from benchmarks/.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pandas as pd

from nlbench.io import atomic_write_text
from nlbench.ops import knobs

# The acceptance targets of the fast paths (fwd+bwd, res3 8x28x28, no subsampling, batch 8).
TARGET_SHAPE = "res3_8x28x28"
SPEEDUP_TARGETS = {"embedded_gaussian": 1.2, "dot_product": 4.0, "concatenation": 3.0}
MEMORY_RATIO_TARGET = 0.25
# The default block (embedded gaussian, subsampled) at res3 4x28x28 must run near dense-GEMM speed.
DEFAULT_BLOCK = ("res3_4x28x28", True, "embedded_gaussian")
MATMUL_FRACTION_TARGET = 0.60
# A backward costs about twice the forward's MACs (a gradient for each operand of every product).
FWD_BWD_MAC_FACTOR = 3
# impl="auto" may be at most this much slower than the faster exact path at a zoo shape.
AUTO_TOLERANCE = 0.05

# The default block's instantiation first, then the paper's order.
_DEFAULT_INSTANTIATION = knobs.BY_NAME["instantiation"].default
INSTANTIATION_ORDER = tuple(sorted(knobs.INSTANTIATIONS, key=lambda name: name != _DEFAULT_INSTANTIATION))
SHAPE_ORDER = ("res4_4x14x14", "res3_4x28x28", "res3_8x28x28")


def load(path: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(the raw JSON, one row per block case, one row per matmul case, one row per zoo dispatch case)."""
    data = json.loads(path.read_text())
    blocks, matmuls, zoo = [], [], []
    for bench in data["benchmarks"]:
        info, stats = bench.get("extra_info", {}), bench["stats"]
        row = {**info, "median_ms": stats["median"] * 1e3, "rounds": stats["rounds"]}
        if info.get("kind") == "nonlocal_block":
            blocks.append(row)
        elif info.get("kind") == "matmul":
            row["gflops"] = 2 * info["n"] ** 3 / stats["median"] / 1e9
            matmuls.append(row)
        elif info.get("kind") == "zoo_dispatch":
            row["auto_rounds"] = stats.get("data")  # per round, in order: paired with naive_/fast_rounds
            zoo.append(row)
    return data, pd.DataFrame(blocks), pd.DataFrame(matmuls), pd.DataFrame(zoo)


def case_table(blocks: pd.DataFrame, matmul_rates: dict[str, float]) -> pd.DataFrame:
    """One row per (device, shape, subsample, instantiation, path) with fwd and fwd+bwd side by side,
    plus the ratios to the naive path of the same case and the achieved rate."""
    keys = ["device", "shape", "subsample", "instantiation", "path"]
    wide = blocks.pivot_table(
        index=keys, columns="pass", values=["median_ms", "peak_mb", "rounds"], aggfunc="first"
    )
    wide.columns = [f"{value}_{pass_}" for value, pass_ in wide.columns]
    wide = wide.reset_index()
    macs = blocks.groupby(keys)["macs_fwd"].first().rename("macs_fwd").reset_index()
    wide = wide.merge(macs, on=keys)

    case = ["device", "shape", "subsample", "instantiation"]
    naive = wide[wide["path"] == "naive"].set_index(case)
    base = naive.reindex(pd.MultiIndex.from_frame(wide[case]))
    for pass_ in ("fwd", "fwd_bwd"):
        wide[f"speedup_{pass_}"] = base[f"median_ms_{pass_}"].to_numpy() / wide[f"median_ms_{pass_}"]
        wide[f"mem_ratio_{pass_}"] = wide[f"peak_mb_{pass_}"] / base[f"peak_mb_{pass_}"].to_numpy()
    wide["gflops_fwd"] = 2 * wide["macs_fwd"] / (wide["median_ms_fwd"] * 1e-3) / 1e9
    wide["gflops_fwd_bwd"] = (
        FWD_BWD_MAC_FACTOR * 2 * wide["macs_fwd"] / (wide["median_ms_fwd_bwd"] * 1e-3) / 1e9
    )
    rate = wide["device"].map(matmul_rates)
    wide["matmul_pct_fwd"] = 100 * wide["gflops_fwd"] / rate
    wide["matmul_pct_fwd_bwd"] = 100 * wide["gflops_fwd_bwd"] / rate
    return wide


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:{spec}}{suffix}"


def _shape_label(row) -> str:
    t, h, w = row["thw"]
    return f"{row['shape'].split('_')[0]} (C={row['channels']}, T x H x W = {t}x{h}x{w})"


def machine_section(data: dict, matmuls: pd.DataFrame, source: Path | None = None) -> list[str]:
    info = data.get("machine_info", {})
    ours = info.get("nlbench", {})
    cpu = info.get("cpu", {})
    commit = data.get("commit_info", {})
    rows = [
        ("CPU", ours.get("cpu_model") or cpu.get("brand_raw", "unknown")),
        ("CPU cores", ours.get("cpu_cores", cpu.get("count", "unknown"))),
        ("torch", ours.get("torch_version", "unknown")),
        ("torch intra-op threads", ours.get("torch_threads", "unknown")),
        ("CUDA device", ours.get("cuda_device") or "none"),
        ("Python", info.get("python_version", "unknown")),
        ("OS", f"{info.get('system', '')} {info.get('release', '')}".strip() or "unknown"),
        ("git commit", f"{ours.get('git_commit') or commit.get('id', 'unknown')[:7]}"
                       f"{' (nlbench/ops modified)' if ours.get('ops_dirty') else ''}"),
        ("nlbench/ops sha256", ours.get("ops_sha256", "unknown")),
        ("run at", data.get("datetime", "unknown")),
        ("pytest-benchmark", data.get("version", "unknown")),
    ]
    where = f" (`{source}`)" if source is not None else ""
    lines = [f"## Machine{where}", "", pd.DataFrame(rows, columns=["", "value"]).to_markdown(index=False), ""]
    if source is not None and matmuls.empty:
        return lines  # a suite without the matmul yardstick (the zoo dispatch suite)
    lines += [f"## Matmul rate{where}", ""]
    if matmuls.empty:
        lines += ["No matmul benchmark in the JSON: achieved rates cannot be put in proportion.", ""]
    else:
        table = pd.DataFrame(
            {
                "device": matmuls["device"],
                "op": [f"torch.mm {n}x{n}x{n}, {dt}" for n, dt in zip(matmuls["n"], matmuls["dtype"])],
                "median ms": matmuls["median_ms"].map(lambda v: f"{v:.1f}"),
                "rounds": matmuls["rounds"],
                "GFLOP/s": matmuls["gflops"].map(lambda v: f"{v:.1f}"),
            }
        )
        lines += [table.to_markdown(index=False), "", "2 FLOPs per multiply-add; the median round.", ""]
    return lines


def method_section(blocks: pd.DataFrame) -> list[str]:
    batch = ", ".join(str(b) for b in sorted(blocks["batch"].unique()))
    dtype = ", ".join(sorted(blocks["dtype"].unique()))
    return [
        "## Method",
        "",
        f"- One non-local block (spacetime, the paper's default: bottleneck C/2, max pool 1x2x2 after "
        f"phi and g when subsampled), batch {batch}, {dtype}, train mode (BN on batch statistics, "
        f"autograd recording). `fwd` is the forward of a training step; `fwd+bwd` adds the backward "
        f"of a fixed output gradient, including the input's gradient.",
        "- Paths: `naive` materialises the N x N' pairwise matrix; the fast path, asked for by name, never "
        "does: `sdpa` (fused attention) for the softmax instantiations, `assoc` (q (k^T v)) for "
        "dot product, `sorted` (sort + prefix sums) for concatenation. Which of the two `impl=\"auto\"` "
        "picks is decided per call by `nlbench.ops.dispatch`; it is measured at every zoo shape above.",
        "- Times: median of the timed rounds (pytest-benchmark `pedantic`; the rounds column). "
        "Peak MB: memory allocated during one untimed fwd+bwd call beyond what was allocated before it "
        "(`nlbench.measure.timing.peak_memory_mb`; CPU: profiler allocation records).",
        "- Speed-up and memory ratio are naive / fast and fast / naive of the same case (fwd+bwd). "
        f"GFLOP/s = 2 x MACs / time with fwd+bwd charged {FWD_BWD_MAC_FACTOR}x the forward's MACs. "
        "MACs are eq. (1) as written, with the N x N' matrix products (the paper's convention), "
        "whichever path runs: for `assoc` and `sorted`, which do far fewer operations, the rate is an "
        "effective one and may exceed the matmul rate.",
        "",
    ]


def results_section(table: pd.DataFrame, blocks: pd.DataFrame) -> list[str]:
    lines = ["## Results", ""]
    labels = blocks.groupby(["shape", "subsample"]).first()
    order = {name: i for i, name in enumerate(SHAPE_ORDER)}
    inst_order = {name: i for i, name in enumerate(INSTANTIATION_ORDER)}
    groups = table.groupby(["device", "shape", "subsample"], sort=False)
    keys = sorted(groups.groups, key=lambda k: (k[0], order.get(k[1], len(order)), k[2]))
    for device, shape, subsample in keys:
        rows = groups.get_group((device, shape, subsample))
        rows = rows.sort_values(
            ["instantiation", "path"],
            key=lambda col: col.map(inst_order) if col.name == "instantiation" else col != "naive",
        )
        label = _shape_label({**labels.loc[(shape, subsample)].to_dict(), "shape": shape})
        sub = "subsampled keys (1x2x2 max pool)" if subsample else "no subsampling"
        lines += [f"### {device}: {label}, {sub}", ""]
        out = pd.DataFrame(
            {
                "instantiation": rows["instantiation"],
                "path": rows["path"],
                "GMACs fwd": (rows["macs_fwd"] / 1e9).map(lambda v: f"{v:.1f}"),
                "fwd ms": rows["median_ms_fwd"].map(lambda v: _fmt(v, ".1f")),
                "fwd+bwd ms": rows["median_ms_fwd_bwd"].map(lambda v: _fmt(v, ".1f")),
                "rounds": [
                    f"{_fmt(a, '.0f')}/{_fmt(b, '.0f')}"
                    for a, b in zip(rows["rounds_fwd"], rows["rounds_fwd_bwd"])
                ],
                "peak MB fwd+bwd": rows["peak_mb_fwd_bwd"].map(lambda v: _fmt(v, ".0f")),
                "speed-up fwd": rows["speedup_fwd"].map(lambda v: _fmt(v, ".2f", "x")),
                "speed-up fwd+bwd": rows["speedup_fwd_bwd"].map(lambda v: _fmt(v, ".2f", "x")),
                "memory ratio fwd+bwd": rows["mem_ratio_fwd_bwd"].map(lambda v: _fmt(v, ".3f")),
                "GFLOP/s fwd+bwd": rows["gflops_fwd_bwd"].map(lambda v: _fmt(v, ".1f")),
                "% of matmul": rows["matmul_pct_fwd_bwd"].map(lambda v: _fmt(v, ".0f", "%")),
            }
        )
        lines += [out.to_markdown(index=False), ""]
    return lines


def _one(table: pd.DataFrame, device: str, shape: str, subsample: bool, instantiation: str, fast: bool):
    rows = table[
        (table["device"] == device)
        & (table["shape"] == shape)
        & (table["subsample"] == subsample)
        & (table["instantiation"] == instantiation)
        & ((table["path"] != "naive") if fast else (table["path"] == "naive"))
    ]
    return None if rows.empty else rows.iloc[0]


def targets_section(table: pd.DataFrame, matmul_rates: dict[str, float]) -> tuple[list[str], bool]:
    lines = ["## Targets", ""]
    all_met = True
    for device in sorted(table["device"].unique()):
        lines += [f"### {device}", ""]
        for instantiation, speedup_target in SPEEDUP_TARGETS.items():
            name = f"{instantiation} at {TARGET_SHAPE}, no subsampling, fwd+bwd"
            row = _one(table, device, TARGET_SHAPE, False, instantiation, fast=True)
            if row is None or pd.isna(row["speedup_fwd_bwd"]) or pd.isna(row["mem_ratio_fwd_bwd"]):
                lines.append(f"- **NOT MEASURED** {name}: the fast or the naive case is missing.")
                all_met = False
                continue
            met = row["speedup_fwd_bwd"] >= speedup_target and row["mem_ratio_fwd_bwd"] <= MEMORY_RATIO_TARGET
            all_met &= bool(met)
            lines.append(
                f"- **{'MET' if met else 'MISSED'}** {name} ({row['path']} vs naive): speed-up "
                f"{row['speedup_fwd_bwd']:.2f}x (target >= {speedup_target:g}x), peak memory "
                f"{row['mem_ratio_fwd_bwd']:.3f}x of naive (target <= {MEMORY_RATIO_TARGET:g}x); "
                f"{row['median_ms_fwd_bwd']:.0f} ms vs {row['median_ms_fwd_bwd'] * row['speedup_fwd_bwd']:.0f} ms, "
                f"{row['peak_mb_fwd_bwd']:.0f} MB vs {row['peak_mb_fwd_bwd'] / row['mem_ratio_fwd_bwd']:.0f} MB."
            )
        shape, subsample, instantiation = DEFAULT_BLOCK
        name = f"default block ({instantiation}, subsampled) at {shape}, fwd+bwd, >= {MATMUL_FRACTION_TARGET:.0%} of matmul"
        row = _one(table, device, shape, subsample, instantiation, fast=True)
        if row is None or device not in matmul_rates or pd.isna(row["gflops_fwd_bwd"]):
            lines.append(f"- **NOT MEASURED** {name}: the block case or the matmul rate is missing.")
            all_met = False
        else:
            fraction = row["gflops_fwd_bwd"] / matmul_rates[device]
            met = fraction >= MATMUL_FRACTION_TARGET
            all_met &= bool(met)
            lines.append(
                f"- **{'MET' if met else 'MISSED'}** {name} ({row['path']}): "
                f"{row['gflops_fwd_bwd']:.1f} GFLOP/s = {fraction:.0%} of {matmul_rates[device]:.1f} GFLOP/s "
                f"({row['macs_fwd'] / 1e9:.1f} GMACs forward x {FWD_BWD_MAC_FACTOR} in "
                f"{row['median_ms_fwd_bwd']:.0f} ms; forward alone {row['gflops_fwd']:.1f} GFLOP/s = "
                f"{row['matmul_pct_fwd']:.0f}%)."
            )
        lines.append("")
    return lines, all_met


def _used_by(rows: list[str]) -> str:
    """"2b_stage: res3; 2c_blocks: R50 5-block; ..." -> "2b, 2c (2 rows)"."""
    tables = dict.fromkeys(r.split(":")[0].split("_")[0] for r in rows)
    return f"{', '.join(tables)} ({len(rows)} row{'s' if len(rows) != 1 else ''})"


def _paired_ratio(row: dict) -> float:
    """auto over the faster path: the median over rounds of auto's time over that path's in the same round
    (the calls of a round run back to back, so load that drifts between rounds cancels), or the ratio of the
    medians where the rounds were not kept."""
    auto, faster = row.get("auto_rounds"), row.get(f"{'naive' if row['faster_path'] == 'naive' else 'fast'}_rounds")
    if isinstance(auto, list) and isinstance(faster, list) and auto and len(auto) == len(faster):
        return statistics.median(a / f for a, f in zip(auto, faster))
    return row["auto_ms"] / row["faster_ms"]


def zoo_table(zoo: pd.DataFrame) -> pd.DataFrame:
    """Per zoo case: the faster exact path, auto's time over it, and whether auto stayed in the budget."""
    out = zoo.copy()
    out["auto_ms"] = out["median_ms"]
    out["faster_ms"] = out[["naive_ms", "fast_ms"]].min(axis=1, skipna=True)
    out["faster_path"] = [
        fast if pd.isna(naive) or fast_ms <= naive else "naive"
        for fast, fast_ms, naive in zip(out["fast_path"], out["fast_ms"], out["naive_ms"])
    ]
    out["auto_ratio"] = [_paired_ratio(row) for row in out.to_dict("records")]
    # The path auto runs against the faster one, both timed as themselves (by their medians): what the cost
    # model chose, apart from the noise of timing auto's own calls.
    chosen_ms = out["naive_ms"].where(out["auto_path"] == "naive", out["fast_ms"])
    out["choice_ratio"] = chosen_ms / out["faster_ms"]
    out["within"] = out["auto_ratio"] <= 1 + AUTO_TOLERANCE
    # Above the budget only if auto ran naive where naive's matrices do not fit: at the batch that ran, and at
    # the profile's per-GPU batch (what auto would run there, from the same cost model).
    out["in_budget"] = (out["naive_fits"] | (out["auto_path"] != "naive")) & (
        out["profile_naive_fits"] | (out["profile_auto_path"] != "naive")
    )
    return out


def selected_zoo_cases(data: dict) -> list[tuple[str, str]] | None:
    """The zoo cases (block label, pass) a run of benchmarks/test_zoo_dispatch.py set out to measure: the JSON's
    ``selected`` (benchmarks/conftest.py) names every test the run selected, and those of the test that wrote
    the zoo cases are ``test_zoo_block[<label>-<pass>]`` (the suite's ids). None for a JSON written before
    ``selected`` was: the report then cannot say what is missing."""
    if "selected" not in data:
        return None
    zoo_tests = {bench["name"].partition("[")[0] for bench in data["benchmarks"]
                 if bench.get("extra_info", {}).get("kind") == "zoo_dispatch"}
    ids = [param for test, _, param in (name.partition("[") for name in data["selected"]) if test in zoo_tests]
    return [tuple(param.removesuffix("]").rsplit("-", 1)) for param in ids]


def zoo_section(zoo: pd.DataFrame, expected: list[tuple[str, str]] | None = None) -> tuple[list[str], bool]:
    table = zoo_table(zoo)
    budget = table["budget_bytes"].iloc[0]
    loads = [v for pair in table.get("loadavg", pd.Series(dtype=object)).dropna() for v in pair]
    shapes = table["label"].nunique()
    lines = [
        "## `impl=\"auto\"` at every zoo shape",
        "",
        f"- The {shapes} distinct non-local blocks of the model zoo: every row of every `ablations/*.yaml` table "
        "(Table 2a-2g and the bottleneck table) built at the paper profile (paper width, 224 crops, 32 frames or "
        "128 for the long clips, the profile's per-GPU batch) on the meta device, a hook on every `NonLocalBlock` "
        "recording its input and knobs (`benchmarks/zoo_shapes.py`). The `used by` column names the tables.",
        "- `train`: forward + backward in train mode (the cost model's grad=True); `infer`: eval-mode forward "
        "under `torch.no_grad()` (grad=False). float32, CPU, "
        f"{', '.join(str(b) for b in sorted(table['batch_run'].unique()))} clip(s) per call, to fit the suite in a "
        "quarter of an hour. Every feature of the cost model is proportional to the number of groups, but SDPA's "
        "CPU backward parallelises over groups only (`dispatch.PARALLEL_OVER_GROUPS`), and the naive path's "
        "matrices spill out of the cache at larger batches (`dispatch.CACHE_BYTES`), so the choice at one clip "
        "may differ from the profile batch's; the memory budget is checked at the profile's "
        "per-GPU batch as well (`at profile batch` column: auto's choice there, not measured).",
        "- naive, fast and auto share their weights and are timed round-robin, the order rotating from round to "
        "round (naive, fast, auto; fast, auto, naive; auto, naive, fast; the rounds column: about 2 s of calls "
        "per impl, 5 to 25 rounds, 5 for calls over a second), each time the median round. Load on the machine"
        + (f" (1-minute load average {min(loads):.1f}-{max(loads):.1f} on "
           f"{zoo['cpu_cores'].iloc[0] if 'cpu_cores' in zoo else '?'} cores while these ran)" if loads else "")
        + ": the interleaving makes any load hit the three alike, and the ratio is what to read.",
        f"- `auto / faster`: auto's time over the faster of naive and fast (by their medians), the median over "
        f"rounds of the two calls' ratio within a round (paired: load that drifts between rounds cancels); within "
        f"{AUTO_TOLERANCE:.0%} is the "
        "target. Memory: naive's pairwise matrices as `nlbench.ops.dispatch` estimates them "
        f"(`LIVE_MATRICES` x B x N x N' x 4 bytes) against the budget, {budget / 2**30:.2f} GiB here "
        "(`NLBENCH_NAIVE_MEMORY_BUDGET`, default a quarter of physical RAM). Where naive would exceed it, naive "
        "is not run and auto must take the fast path.",
        "",
    ]
    order = {p: i for i, p in enumerate(("train", "infer"))}
    table = table.sort_values(["instantiation", "channels", "label", "pass_"],
                              key=lambda c: c.map(order) if c.name == "pass_" else c)
    out = pd.DataFrame(
        {
            "block": [
                f"{r.instantiation} C={r.channels} d={r.inner_channels} {r.t}x{r.h}x{r.w} {r.mode} "
                + (f"pool {'x'.join(map(str, r.pool_kernel))} {r.subsample_order}" if r.subsample else "no pool")
                + f", batch {r.batch_run}"
                for r in table.itertuples()
            ],
            "pass": table["pass_"],
            "B x N x N'": [f"{r.groups} x {r.n} x {r.n_keys}" for r in table.itertuples()],
            "naive ms": table["naive_ms"].map(lambda v: _fmt(v, ".1f") if not pd.isna(v) else "over budget"),
            "fast ms": table["fast_ms"].map(lambda v: _fmt(v, ".1f")),
            "auto ms": table["auto_ms"].map(lambda v: _fmt(v, ".1f")),
            "rounds": table["rounds"],
            "auto ran": table["auto_path"],
            "faster": table["faster_path"],
            "auto / faster": table["auto_ratio"].map(lambda v: _fmt(v, ".3f")),
            "path auto ran / faster": table["choice_ratio"].map(lambda v: _fmt(v, ".3f")),
            f"within {AUTO_TOLERANCE:.0%}": table["within"].map({True: "yes", False: "**no**"}),
            "naive GiB (est.)": (table["naive_bytes"] / 2**30).map(lambda v: f"{v:.2f}"),
            "at profile batch: naive GiB, auto": [
                f"b{r.profile_batch}: {r.profile_naive_bytes / 2**30:.2f}, {r.profile_auto_path}"
                for r in table.itertuples()
            ],
            "used by": table["used_by"].map(_used_by),
        }
    )
    lines += [out.to_markdown(index=False), ""]
    measured = set(zip(table["label"], table["pass_"]))
    missing = [case for case in expected or [] if case not in measured]
    if missing:
        lines += [f"**Not measured** ({len(missing)} of {len(missing) + len(table)} zoo cases; the run was cut "
                  "short): " + ", ".join(f"`{label}` {pass_}" for label, pass_ in missing) + ".", ""]
    within_measured = bool(table["within"].all())
    within, in_budget = within_measured and not missing, bool(table["in_budget"].all())
    worst = table.loc[table["auto_ratio"].idxmax()]
    met = within and in_budget
    lines += [
        f"- **{'MET' if met else 'NOT MEASURED everywhere' if missing and within_measured else 'MISSED'}** "
        f"`auto` within {AUTO_TOLERANCE:.0%} of the faster exact path at every "
        f"zoo shape and pass ({int(table['within'].sum())}/{len(table)} measured cases; worst {worst['auto_ratio']:.3f}, "
        f"{worst['label']} {worst['pass_']}), and never above the memory budget "
        f"({int(table['in_budget'].sum())}/{len(table)} cases, at the batch that ran and at the profile's batch; "
        f"naive would not fit in {int((~table['naive_fits']).sum())} cases as run and "
        f"{int((~table['profile_naive_fits']).sum())} at the profile's batch).",
        f"- The path auto ran, timed as itself, within {AUTO_TOLERANCE:.0%} of the faster path in "
        f"{int((table['choice_ratio'] <= 1 + AUTO_TOLERANCE).sum())}/{len(table)} cases (worst "
        f"{table['choice_ratio'].max():.3f}): where auto's own calls are further from the faster path than its "
        "path's, the difference is between timings of the same kernels.",
        "",
    ]
    return lines, met


def render(bench_jsons: list[Path]) -> str:
    """The report from one or more pytest-benchmark JSON files (`make bench` writes two: the zoo dispatch suite
    and the fast-vs-naive suite, so that either can be re-run alone)."""
    loaded = [(path, *load(path)) for path in bench_jsons]
    blocks = pd.concat([b for _, _, b, _, _ in loaded], ignore_index=True)
    matmuls = pd.concat([m for _, _, _, m, _ in loaded], ignore_index=True)
    zoo = pd.concat([z for _, _, _, _, z in loaded], ignore_index=True)
    if blocks.empty and zoo.empty:
        raise SystemExit(f"{', '.join(map(str, bench_jsons))}: no non-local block benchmarks in these files")
    matmul_rates = dict(zip(matmuls["device"], matmuls["gflops"])) if not matmuls.empty else {}
    lines = [
        "# Non-local block performance",
        "",
        f"Generated by `python -m nlbench.report.performance {' '.join(map(str, bench_jsons))} ...` from "
        "pytest-benchmark's JSON (`make bench`); do not edit by hand.",
        "",
    ]
    for path, data, _, file_matmuls, _ in loaded:
        lines += machine_section(data, file_matmuls, path if len(loaded) > 1 else None)
    all_met = True
    if not zoo.empty:
        selected = [selected_zoo_cases(data) for _, data, _, _, file_zoo in loaded if not file_zoo.empty]
        expected = None if None in selected else [case for cases in selected for case in cases]
        zoo_lines, all_met = zoo_section(zoo, expected)
        lines += zoo_lines
    if not blocks.empty:
        table = case_table(blocks, matmul_rates)
        lines += ["# The fast paths against the naive one", ""]
        lines += method_section(blocks)
        target_lines, paths_met = targets_section(table, matmul_rates)
        all_met &= paths_met
        lines += results_section(table, blocks)
        lines += target_lines
    lines += [f"Overall: {'all targets MET' if all_met else 'some targets MISSED or NOT MEASURED'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, nargs="+", help="pytest-benchmark JSON files written by `make bench`")
    parser.add_argument("out_md", type=Path, help="markdown report to write")
    args = parser.parse_args(argv)
    text = render(args.bench_json)
    atomic_write_text(args.out_md, text)
    print(f"wrote {args.out_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
