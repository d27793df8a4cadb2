"""One ablation table's report: our rows beside the paper's, and whether the paper's claims hold in our numbers.

Input: the table file (``ablations/<table>.yaml``) and its sweep results (``results/<profile>/<table>.csv``,
one row per (row, seed)). Output: ``<table>.csv`` (numbers) and ``<table>.md`` (the same, formatted, with a
line per claim and the failed runs), written atomically.

Per row: the mean over the seeds that finished (``status == ok``) with its 95% Student-t confidence
interval, the delta of the means to the table's baseline (ours and the paper's), and the costs (mean over
the runs that measured them). A claim (``claims:`` in the table file, kinds in ``nlbench.sweep.spec``) is
judged on the mean top-1; its margin is in top-1 points, positive when it holds, and it is "beyond the
CIs" when every comparison's margin exceeds the sum of the two rows' CI half-widths (the intervals do
not overlap).
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nlbench.data.synthetic import FAMILIES
from nlbench.io import atomic_write_text
from nlbench.report.stats import mean_ci
from nlbench.sweep.spec import Table

COST_COLUMNS = {  # summary column -> (CSV column, scale)
    "params_m": ("params", 1e-6),
    "gflops": ("gflops", 1.0),
    "latency_ms": ("latency_ms", 1.0),
    "peak_mem_mb": ("peak_mem_mb", 1.0),
    "train_clips_per_s": ("train_clips_per_s", 1.0),
}
SUMMARY_COLUMNS = (
    "row", "paper_top1", "paper_top5", "top1_mean", "top1_ci95", "top5_mean", "top5_ci95", "val_top1_mean",
    "n_ok", "n_failed", "delta_top1", "paper_delta_top1", *COST_COLUMNS,
)
HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "not evaluated"


def read_results(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [c for c in ("row", "seed", "status", "top1") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a sweep results file (no column {missing[0]!r})")
    return frame


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"]


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(dtype=float)
    return pd.to_numeric(frame[column], errors="coerce")


def summarise(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """One line per row of the table (the file's order), rows without results included (n_ok = 0)."""
    lines = []
    for row in table.rows:
        runs = frame[frame["row"] == row.label]
        ok = _ok(runs)
        top1, ci1, n = mean_ci(_num(ok, "top1"))
        top5, ci5, _ = mean_ci(_num(ok, "top5"))
        val1, _, _ = mean_ci(_num(ok, "val_top1"))
        paper = row.paper or {}
        line = {
            "row": row.label, "paper_top1": paper.get("top1", math.nan), "paper_top5": paper.get("top5", math.nan),
            "top1_mean": top1, "top1_ci95": ci1, "top5_mean": top5, "top5_ci95": ci5, "val_top1_mean": val1,
            "n_ok": n, "n_failed": int(len(runs) - len(ok)),
        }
        for name, (column, scale) in COST_COLUMNS.items():
            values = _num(runs, column).dropna()
            line[name] = float(values.mean()) * scale if len(values) else math.nan
        lines.append(line)
    summary = pd.DataFrame(lines)
    base = summary.set_index("row").loc[table.baseline]
    summary["delta_top1"] = summary["top1_mean"] - base["top1_mean"]
    summary["paper_delta_top1"] = summary["paper_top1"] - base["paper_top1"]
    return summary[list(SUMMARY_COLUMNS)]


# ----------------------------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class ClaimResult:
    text: str
    kind: str
    status: str  # holds / does not hold / not evaluated
    margin: float  # top-1 points; > 0 (>= 0 for order) when it holds; NaN when not evaluated
    beyond_ci: bool | None  # every comparison's margin exceeds the CIs; None: no CI (one seed) or n/a
    detail: str
    paper_margin: float  # the same margin on the paper's numbers (NaN where the paper gives none)

    @property
    def holds(self) -> bool:
        return self.status == HOLDS


def _pairs(claim: dict, baseline: str) -> list[tuple[str, str]]:
    """(better, worse) comparisons a claim makes, for the kinds judged by differences of means."""
    kind = claim["kind"]
    if kind == "above":
        return [(r, claim["than"]) for r in claim["rows"]]
    if kind == "order":
        rows = claim["rows"]
        return list(zip(rows[1:], rows[:-1]))
    if kind == "cheaper_and_better":
        return [(claim["row"], claim["than"])]
    if kind == "smaller_gain":  # gain(t) > gain(row) <=> mean(t) > mean(row): same baseline
        return [(t, claim["row"]) for t in claim["than"]]
    return []


def _judge(claim: dict, top1: dict, ci: dict, gflops: dict, baseline: str):
    """(status, margin, beyond_ci, detail) of one claim on one set of numbers."""
    kind = claim["kind"]
    named = [*claim.get("rows", []), *([claim["row"]] if "row" in claim else [])]
    than = claim.get("than")
    named += than if isinstance(than, list) else ([than] if than else [])
    if kind == "smaller_gain":
        named.append(baseline)
    absent = [r for r in dict.fromkeys(named) if not math.isfinite(top1.get(r, math.nan))]
    if absent:
        return UNKNOWN, math.nan, None, f"no top-1 for {', '.join(absent)}"
    if kind == "similar":
        values = {r: top1[r] for r in claim["rows"]}
        spread = max(values.values()) - min(values.values())
        widest = max((ci.get(r, math.nan) for r in values), default=math.nan)
        hi, lo = max(values, key=values.get), min(values, key=values.get)
        pair = f"{hi} {values[hi]:.2f} vs {lo} {values[lo]:.2f}" if spread else f"all at {values[hi]:.2f}"
        detail = f"spread {spread:.2f} points ({pair}; allowed {claim['within']})"
        if math.isfinite(widest):
            detail += f", widest CI +/-{widest:.2f}"
        return (HOLDS if spread <= claim["within"] else FAILS), claim["within"] - spread, None, detail
    pairs = _pairs(claim, baseline)
    margins = [top1[a] - top1[b] for a, b in pairs]
    widths = [ci.get(a, math.nan) + ci.get(b, math.nan) for a, b in pairs]
    strict = kind != "order"
    ok = all(m > 0 if strict else m >= 0 for m in margins)
    parts = []
    for (a, b), m in zip(pairs, margins):
        if kind == "smaller_gain":
            parts.append(f"gain {b} {top1[b] - top1[baseline]:+.2f} vs {a} {top1[a] - top1[baseline]:+.2f}")
        else:
            parts.append(f"{a} - {b} = {m:+.2f}")
    detail = "; ".join(parts)
    if kind == "cheaper_and_better":
        a, b = pairs[0]
        ga, gb = gflops.get(a, math.nan), gflops.get(b, math.nan)
        if not (math.isfinite(ga) and math.isfinite(gb)):
            return UNKNOWN, margins[0], None, detail + "; no GFLOPs to compare"
        cheaper = ga < gb
        detail += f"; GFLOPs {ga:.3g} vs {gb:.3g} ({ga / gb:.2f}x{'' if cheaper else ', not cheaper'})"
        ok = ok and cheaper
    margin = min(margins)
    beyond = None if not all(math.isfinite(w) for w in widths) else all(m > w for m, w in zip(margins, widths))
    return (HOLDS if ok else FAILS), margin, beyond, detail


def evaluate_claims(table: Table, summary: pd.DataFrame) -> list[ClaimResult]:
    s = summary.set_index("row")
    top1, ci, gflops = s["top1_mean"].to_dict(), s["top1_ci95"].to_dict(), s["gflops"].to_dict()
    paper_top1 = s["paper_top1"].to_dict()
    paper_gflops = {r.label: (r.paper or {}).get("gflops_ratio", math.nan) for r in table.rows}
    results = []
    for claim in table.claims:
        status, margin, beyond, detail = _judge(claim, top1, ci, gflops, table.baseline)
        paper_status, paper_margin, _, _ = _judge(claim, paper_top1, {}, paper_gflops, table.baseline)
        if paper_status == UNKNOWN:
            # cheaper_and_better without the paper's FLOPs ratios: the top-1 part alone
            paper_margin = paper_margin if claim["kind"] == "cheaper_and_better" else math.nan
        results.append(ClaimResult(claim["text"], claim["kind"], status, margin, beyond, detail, paper_margin))
    return results


def claim_line(result: ClaimResult) -> str:
    """One markdown line: the verdict first, in bold, then the margin and the comparisons."""
    if result.status == UNKNOWN:
        return f"- **{UNKNOWN}**: {result.text} ({result.detail})"
    unit = "points of slack" if result.kind == "similar" else "top-1 points"
    if result.beyond_ci is None:
        ci = "" if result.kind == "similar" else "; no CI (one seed)"
    else:
        ci = "; beyond the 95% CIs" if result.beyond_ci else "; within the 95% CIs (not significant)"
    paper = f"; paper {result.paper_margin:+.2f}" if math.isfinite(result.paper_margin) else ""
    return f"- **{result.status}**: {result.text}: margin {result.margin:+.2f} {unit}{ci}{paper} ({result.detail})"


# --------------------------------------------------------------------------------------- per family


def per_family(frame: pd.DataFrame, runs_dir: str | Path, rows: list[str]) -> pd.DataFrame | None:
    """Mean test accuracy per class family (``space_same`` -> ``space``) and row, from the run records'
    ``per_class``; None when no record has it."""
    lines = []
    for _, run in _ok(frame).iterrows():
        path = Path(runs_dir) / str(run.get("run_id")) / "record.json"
        try:
            per_class = json.loads(path.read_text()).get("per_class") or {}
        except (OSError, ValueError):
            continue
        for name, acc in per_class.items():
            lines.append({"row": run["row"], "seed": run["seed"], "family": name.split("_")[0], "acc": acc})
    if not lines:
        return None
    data = pd.DataFrame(lines)
    by_run = data.groupby(["row", "seed", "family"], sort=False)["acc"].mean().reset_index()
    wide = by_run.groupby(["row", "family"], sort=False)["acc"].mean().unstack("family")
    known = [f for f in FAMILIES if f in wide.columns]
    wide = wide[known + [f for f in wide.columns if f not in known]]
    return wide.reindex([r for r in rows if r in wide.index])


# --------------------------------------------------------------------------------------------- output


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _pm(mean: float, ci: float, n: int) -> str:
    if n == 0:
        return "-"
    return f"{mean:.1f}" if not math.isfinite(ci) else f"{mean:.1f} ± {ci:.1f}"


def markdown_table(summary: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "row": summary["row"],
        "paper top-1": summary["paper_top1"].map(_fmt),
        "paper top-5": summary["paper_top5"].map(_fmt),
        "top-1 (95% CI)": [_pm(m, c, n) for m, c, n in zip(summary.top1_mean, summary.top1_ci95, summary.n_ok)],
        "top-5 (95% CI)": [_pm(m, c, n) for m, c, n in zip(summary.top5_mean, summary.top5_ci95, summary.n_ok)],
        "seeds ok/failed": [f"{a}/{b}" for a, b in zip(summary.n_ok, summary.n_failed)],
        "Δ top-1": summary["delta_top1"].map(lambda v: _fmt(v, "+.1f")),
        "paper Δ": summary["paper_delta_top1"].map(lambda v: _fmt(v, "+.1f")),
        "params (M)": summary["params_m"].map(lambda v: _fmt(v, ".3f")),
        "GFLOPs": summary["gflops"].map(lambda v: _fmt(v, ".3f")),
        "latency (ms)": summary["latency_ms"].map(_fmt),
        "peak mem (MB)": summary["peak_mem_mb"].map(_fmt),
        "train clips/s": summary["train_clips_per_s"].map(_fmt),
    })
    return shown.to_markdown(index=False, disable_numparse=True, colalign=("left", *["right"] * (shown.shape[1] - 1)))


def failed_runs(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame[frame["status"] != "ok"]
    return bad[[c for c in ("row", "seed", "run_id", "reason") if c in bad.columns]]


def render_markdown(
    table: Table,
    summary: pd.DataFrame,
    claims: list[ClaimResult],
    frame: pd.DataFrame,
    *,
    profile: str,
    source: str,
    families: pd.DataFrame | None = None,
    plots: list[str] = (),
) -> str:
    seeds = sorted(int(s) for s in pd.unique(frame["seed"])) if len(frame) else []
    machines = sorted({str(m) for m in frame.get("machine", pd.Series(dtype=str)).dropna()})
    out = [
        f"# {table.title}",
        "",
        f"Profile `{profile}`, seeds {', '.join(map(str, seeds)) or '-'}; results `{source}`; "
        f"baseline `{table.baseline}`. Ours: mean over the seeds that finished ± the 95% confidence interval "
        f"(Student t; one seed: no interval). Δ: difference of the mean top-1 to the baseline. Costs: mean over "
        f"the runs that measured them (GFLOPs: multiply-adds of one clip).",
        "",
        f"Machine: {'; '.join(machines) or 'unknown'}.",
        "",
        markdown_table(summary),
        "",
        "## The paper's claims in our numbers",
        "",
    ]
    if claims:
        held = sum(c.holds for c in claims)
        out.append(f"{held} of {len(claims)} hold.")
        out.append("")
        out += [claim_line(c) for c in claims]
    else:
        out.append("The paper makes no claim for this table.")
    if families is not None and len(families):
        out += ["", "## Test accuracy per class family (mean over seeds)", ""]
        shown = families.map(lambda v: _fmt(v)).reset_index()
        out.append(shown.to_markdown(index=False, disable_numparse=True))
    bad = failed_runs(frame)
    out += ["", "## Failed runs", ""]
    if len(bad):
        out += [f"- {r['row']}, seed {r['seed']} (`{r.get('run_id', '')}`): {r.get('reason') or 'no reason recorded'}"
                for _, r in bad.iterrows()]
    else:
        out.append("None.")
    if plots:
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(out) + "\n"


def write_csv(summary: pd.DataFrame, path: str | Path) -> None:
    buffer = io.StringIO()
    summary.to_csv(buffer, index=False, float_format="%.4f")
    atomic_write_text(path, buffer.getvalue())


__all__ = [
    "ClaimResult", "FAILS", "HOLDS", "SUMMARY_COLUMNS", "UNKNOWN", "claim_line", "evaluate_claims", "failed_runs",
    "markdown_table", "per_family", "read_results", "render_markdown", "summarise", "write_csv",
]
