"""One ablation table's report: our rows beside the paper's, how stable each row is over seeds, and whether
the paper's claims hold in our numbers (``nlbench.report.claims``: paired per-seed differences).

Input: the table file (``ablations/<table>.yaml``), its sweep results (``results/<profile>/<table>.csv``, one
row per (row, seed)) and the runs' records. Output: ``<table>.csv`` (numbers), ``<table>.md`` and
``<table>.tex`` (the same, formatted; LaTeX with booktabs rules), written atomically.

Per row: the mean over the seeds that finished (``status == ok``) with its 95% Student-t interval, the seed
standard deviation (flagged ``unstable`` above STABLE_SD points, ``bimodal`` when a seed lies more than
BIMODAL_GAP points from the row's median), the mean per-class accuracy and the accuracy per family (the
synthetic benchmark's cue layouts),
the delta of the means to the table's baseline (ours and the paper's), the paired gain over the row's own
baseline (``baseline:`` of the row, default the table's; mean of the per-seed differences with its 95% CI),
and the costs (the record's cost fields, ``nlbench.record.COSTS``: mean over the runs that measured them).
Top-5 is left out when no run has it (a task of at most 10 classes, where top-5 cannot move).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd

from nlbench.data.synthetic import GROUP
from nlbench.io import atomic_write_text
from nlbench.numerics import NUMERICS_VERSION, version_of
from nlbench.record import COSTS
from nlbench.report.claims import ClaimResult, claim_line, counts
from nlbench.report.stats import by_seed, mean_ci, paired
from nlbench.sweep.results import FAMILY_PREFIX, family_columns
from nlbench.sweep.spec import Table

STABLE_SD = 3.0  # points: a row whose seed SD of top-1 is larger is flagged unstable
BIMODAL_GAP = 10.0  # points: a row with a seed this far from its median is flagged bimodal
GEOMETRY_MIN_SIDE, GEOMETRY_MIN_KEYS = 4, 4  # a block attending over less than 4x4 positions or 4 keys is flagged
TOP5_COLUMNS = ("paper_top5", "top5_mean", "top5_ci95")
SUMMARY_COLUMNS = (
    "row", "baseline", "paper_top1", "paper_top5", "top1_mean", "top1_ci95", "top1_sd", "top1_min", "top1_max",
    "flags", "top5_mean", "top5_ci95", "val_top1_mean", "mean_class_top1", "n_ok", "n_failed", "delta_top1",
    "paper_delta_top1", "gain_top1", "gain_ci95", "gain_n", *(cost.column for cost in COSTS.values()),
)


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


def enrich(frame: pd.DataFrame, records: dict[str, dict]) -> pd.DataFrame:
    """The results with ``mean_class_top1`` and ``family_<family>`` filled from the records where the CSV has
    none: ``mean_class_top1`` from the record (or the mean of its ``per_class``), each family's accuracy from
    its ``per_family`` (over that family's test clips; class names say nothing about families). A record
    without ``per_family`` (video data without families) leaves the family columns empty."""
    frame = frame.copy()
    if "mean_class_top1" not in frame.columns:
        frame["mean_class_top1"] = math.nan
    for i, run in frame.iterrows():
        record = records.get(str(run.get("run_id"))) or {}
        per_class = record.get("per_class") or {}
        if pd.isna(run["mean_class_top1"]):
            value = record.get("mean_class_top1")
            if value is None and per_class:
                value = sum(per_class.values()) / len(per_class)
            frame.at[i, "mean_class_top1"] = value
        for family, acc in (record.get("per_family") or {}).items():
            column = FAMILY_PREFIX + family
            if column not in frame.columns:
                frame[column] = math.nan
            if pd.isna(frame.at[i, column]):
                frame.at[i, column] = acc
    return frame


# The validation curve's key for each score (a record's curve points) and the clips one unit of it counts.
CURVE_KEYS = {"top1": ("val_top1", 1), "group_top1": ("val_group_top1", GROUP)}


def flat_at_the_end(record: dict, score: str = "top1") -> bool | None:
    """Whether a run's validation curve of ``score`` is flat over its last quarter: the points at or after 3/4
    of its steps (at least two) differ by no more than a two-proportion z-test at 95% allows between the
    highest and the lowest of them (1.96 x sqrt(2) binomial standard errors, at the two points' pooled
    proportion; a group score's proportions are over the validation set's groups). The pooled proportion of
    the two points compared, not the tail's mean: near 0 % or 100 % the mean understates the noise of a
    difference (97 and 100 of 100 groups are not told apart at 95%: Fisher's p = 0.25). None: no curve of that
    score to judge, or no validation size in its config."""
    key, unit = CURVE_KEYS[score]
    curve = [p for p in record.get("curve") or [] if p.get(key) is not None]
    sizes = ((record.get("config") or {}).get("data") or {}).get("split_sizes")
    if len(curve) < 2 or not sizes:
        return None
    n = sizes[1] / unit
    last = max(p["step"] for p in curve)
    tail = [p[key] for p in curve if p["step"] >= 0.75 * last]
    if len(tail) < 2:
        tail = [p[key] for p in curve[-2:]]
    p = min(max((max(tail) + min(tail)) / 200, 1e-9), 1 - 1e-9)
    tolerance = 1.96 * math.sqrt(2) * math.sqrt(p * (1 - p) / n) * 100
    return max(tail) - min(tail) <= max(tolerance, 100 / n)  # at 0 % or 100 %: one clip (group)


def stability_flags(values: pd.Series) -> str:
    """``unstable`` (seed SD > STABLE_SD), ``bimodal`` (a seed > BIMODAL_GAP from the median), comma-joined."""
    xs = values.dropna()
    flags = []
    if len(xs) >= 2 and xs.std(ddof=1) > STABLE_SD:
        flags.append("unstable")
    if len(xs) >= 2 and ((xs - xs.median()).abs() > BIMODAL_GAP).any():
        flags.append("bimodal")
    return ", ".join(flags)


def paired_gain(wide: pd.DataFrame, row: str, baseline: str) -> tuple[float, float, int]:
    """(mean, 95% CI half-width, pairs) of ``row - baseline`` top-1 over the seeds both finished."""
    if row == baseline:
        return math.nan, math.nan, 0
    return mean_ci(paired(wide, row, baseline))


def summarise(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """One line per row of the table (the file's order), rows without results included (n_ok = 0)."""
    wide = by_seed(frame) if len(frame) else pd.DataFrame()
    families = family_columns(frame.columns)
    lines = []
    for row in table.rows:
        runs = frame[frame["row"] == row.label]
        ok = _ok(runs)
        top1s = _num(ok, "top1")
        top1, ci1, n = mean_ci(top1s)
        top5, ci5, _ = mean_ci(_num(ok, "top5"))
        paper = row.paper or {}
        baseline = table.baseline_of(row.label)
        gain, gain_ci, gain_n = paired_gain(wide, row.label, baseline)
        line = {
            "row": row.label, "baseline": baseline, "paper_top1": paper.get("top1", math.nan),
            "paper_top5": paper.get("top5", math.nan), "top1_mean": top1, "top1_ci95": ci1,
            "top1_sd": float(top1s.std(ddof=1)) if n >= 2 else math.nan,
            "top1_min": float(top1s.min()) if n else math.nan, "top1_max": float(top1s.max()) if n else math.nan,
            "flags": stability_flags(top1s), "top5_mean": top5, "top5_ci95": ci5,
            "val_top1_mean": mean_ci(_num(ok, "val_top1"))[0],
            "mean_class_top1": mean_ci(_num(ok, "mean_class_top1"))[0],
            "n_ok": n, "n_failed": int(len(runs) - len(ok)), "gain_top1": gain, "gain_ci95": gain_ci, "gain_n": gain_n,
        }
        for field, cost in COSTS.items():
            values = _num(runs, field).dropna()
            line[cost.column] = float(values.mean()) * cost.scale if len(values) else math.nan
        for column in families:
            line[column] = mean_ci(_num(ok, column))[0]
        lines.append(line)
    summary = pd.DataFrame(lines)
    base = summary.set_index("row").loc[table.baseline]
    summary["delta_top1"] = summary["top1_mean"] - base["top1_mean"]
    summary["paper_delta_top1"] = summary["paper_top1"] - base["paper_top1"]
    columns = [c for c in SUMMARY_COLUMNS if not (c in TOP5_COLUMNS[1:] and not has_top5(summary))]
    return summary[columns + families]


def has_top5(summary: pd.DataFrame) -> bool:
    return "top5_mean" in summary.columns and bool(summary["top5_mean"].notna().any())


# ------------------------------------------------------------------------------------------ geometry


def block_geometry(frame: pd.DataFrame, records: dict[str, dict], rows: list[str]) -> pd.DataFrame:
    """One line per non-local block of each row (from the first finished run's record ``nonlocal_blocks``):
    input T, H, W, the key count after subsampling, and a flag when the block sees fewer than 4x4 positions
    (H or W below 4) or fewer than 4 keys. Empty when no record has the field (older records)."""
    lines = []
    for label in rows:
        for _, run in _ok(frame[frame["row"] == label]).sort_values("seed").iterrows():
            blocks = (records.get(str(run.get("run_id"))) or {}).get("nonlocal_blocks")
            if blocks is None:
                continue
            for block in blocks:
                t, h, w = (list(block.get("input_thw") or []) + [math.nan] * 3)[:3]
                keys = block.get("keys")
                keys = math.nan if keys is None else keys  # a block that does not say what it attends over
                small = []
                if min(h, w) < GEOMETRY_MIN_SIDE:
                    small.append(f"< {GEOMETRY_MIN_SIDE}x{GEOMETRY_MIN_SIDE} positions")
                if keys < GEOMETRY_MIN_KEYS:
                    small.append(f"< {GEOMETRY_MIN_KEYS} keys")
                lines.append({"row": label, "block": block.get("name", ""), "T": t, "H": h, "W": w, "keys": keys,
                              "flag": ", ".join(small)})
            break
    return pd.DataFrame(lines, columns=["row", "block", "T", "H", "W", "keys", "flag"])


# --------------------------------------------------------------------------------------------- output


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def pm(mean: float, ci: float, n: int, spec: str = ".1f") -> str:
    if n == 0 or not math.isfinite(mean):
        return "-"
    return format(mean, spec) if not math.isfinite(ci) else f"{mean:{spec}} ± {ci:.1f}"


# How a table names the score its profile judges runs by (nlbench.sweep.spec.SCORES), and what it is.
SCORE_NAMES = {"top1": "top-1", "group_top1": "group top-1"}
FAMILY_SCORES = {"top1": "per_family", "group_top1": "per_family_group"}  # each score within each family
SCORE_MEANING = {
    "group_top1": "the share of test quadruples (one layout, four cue colourings; synthetic design 3) with all four "
                  "clips right, which no additive model (a C2D) reaches on a temporal family",
}


def score_note(score: str, figures: str) -> str:
    """The sentence a report opens with where its profile judges by a score other than the clip top-1:
    ``figures`` names what of ours it covers."""
    return (f"Score: {SCORE_NAMES[score]}, {SCORE_MEANING[score]}. Every figure of ours below ({figures}) is this "
            f"score; the paper's are its Kinetics top-1.")


def use_score(frame: pd.DataFrame, records: dict[str, dict], score: str) -> pd.DataFrame:
    """The results with ``top1`` holding the profile's score (the clip top-1 kept as ``clip_top1``): every
    summary, claim and plot below reads ``top1``."""
    if score == "top1":
        return frame
    frame = frame.copy()
    frame["clip_top1"] = frame["top1"]
    frame["top1"] = [(records.get(str(i)) or {}).get(score, math.nan) for i in frame["run_id"]]
    frame["top1"] = frame["top1"].astype(float)
    per_family = FAMILY_SCORES[score]
    for column in family_columns(frame.columns):  # the family columns hold the same score, within the family
        family = column[len(FAMILY_PREFIX):]
        frame[column] = [((records.get(str(i)) or {}).get(per_family) or {}).get(family, math.nan)
                         for i in frame["run_id"]]
        frame[column] = frame[column].astype(float)
    return frame


def display_table(summary: pd.DataFrame, score: str = "top1") -> pd.DataFrame:
    """The summary as text, the columns a reader wants (the .md and the .tex show this)."""
    s, name = summary, SCORE_NAMES[score]
    shown = {
        "row": s["row"],
        "paper top-1": s["paper_top1"].map(fmt),
    }
    if has_top5(s):
        shown["paper top-5"] = s["paper_top5"].map(fmt)
    shown[f"{name} (95% CI)"] = [pm(m, c, n) for m, c, n in zip(s.top1_mean, s.top1_ci95, s.n_ok)]
    if has_top5(s):
        shown["top-5 (95% CI)"] = [pm(m, c, n) for m, c, n in zip(s.top5_mean, s.top5_ci95, s.n_ok)]
    shown.update({
        "seed SD": s["top1_sd"].map(fmt),
        "flags": s["flags"].fillna(""),
        "mean class acc": s["mean_class_top1"].map(fmt),
        "seeds ok/failed": [f"{a}/{b}" for a, b in zip(s.n_ok, s.n_failed)],
        f"Δ {name}": s["delta_top1"].map(lambda v: fmt(v, "+.1f")),
        "paper Δ": s["paper_delta_top1"].map(lambda v: fmt(v, "+.1f")),
        "paired gain (95% CI)": [
            "-" if n == 0 else f"{pm(g, c, n, '+.1f')} vs {b} ({n})"
            for g, c, n, b in zip(s.gain_top1, s.gain_ci95, s.gain_n, s.baseline)
        ],
    })
    shown.update({cost.label: s[cost.column].map(lambda v, spec=cost.spec: fmt(v, spec)) for cost in COSTS.values()})
    return pd.DataFrame(shown)


def family_table(summary: pd.DataFrame) -> pd.DataFrame | None:
    families = family_columns(summary.columns)
    if not families or not summary[families].notna().any().any():
        return None
    shown = summary[["row", *families]].rename(columns={c: c[len(FAMILY_PREFIX):] for c in families})
    return shown.map(lambda v: v if isinstance(v, str) else fmt(v))


def markdown(shown: pd.DataFrame) -> str:
    return shown.to_markdown(index=False, disable_numparse=True, colalign=("left", *["right"] * (shown.shape[1] - 1)))


def latex(shown: pd.DataFrame, caption: str) -> str:
    """A booktabs table (``\\toprule``/``\\midrule``/``\\bottomrule``) of text cells, LaTeX-escaped; the two
    non-ASCII signs the tables use as math so pdflatex needs no extra package."""
    styler = shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    text = styler.to_latex(hrules=True, caption=caption.replace("_", r"\_"),
                           column_format="l" + "r" * (shown.shape[1] - 1))
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("−", "-")


def failed_runs(frame: pd.DataFrame) -> pd.DataFrame:
    bad = frame[frame["status"] != "ok"]
    return bad[[c for c in ("row", "seed", "run_id", "reason") if c in bad.columns]]


def other_numerics(frame: pd.DataFrame, records: dict[str, dict]) -> list[str]:
    """A line per run whose record another numerics version than this code's made (nlbench/numerics.py):
    this code may not give its numbers again. A record without the key predates it (version 1)."""
    lines = []
    for _, run in frame.iterrows():
        record = records.get(str(run.get("run_id")))
        if record is not None and version_of(record) != NUMERICS_VERSION:
            lines.append(f"- {run['row']}, seed {run['seed']} (`{run['run_id']}`): numerics version "
                         f"{version_of(record)}")
    return lines


def render_markdown(
    table: Table,
    summary: pd.DataFrame,
    claims: list[ClaimResult],
    frame: pd.DataFrame,
    *,
    profile: str,
    source: str,
    geometry: pd.DataFrame | None = None,
    plots: list[str] = (),
    numerics: list[str] = (),
    score: str = "top1",
) -> str:
    seeds = sorted(int(s) for s in pd.unique(frame["seed"])) if len(frame) else []
    machines = sorted({str(m) for m in frame.get("machine", pd.Series(dtype=str)).dropna()})
    top5 = "" if has_top5(summary) else " Top-5 is left out: no run has it (at most 10 classes)."
    out = [
        f"# {table.title}",
        "",
        f"Profile `{profile}`, seeds {', '.join(map(str, seeds)) or '-'}; results `{source}`; "
        f"baseline `{table.baseline}`. Ours: mean over the seeds that finished ± the 95% confidence interval "
        f"(Student t; one seed: no interval). Seed SD: the standard deviation of top-1 over seeds; flags: "
        f"`unstable` (SD > {STABLE_SD:g} points), `bimodal` (a seed more than {BIMODAL_GAP:g} points from the "
        f"row's median). Mean class acc: the mean of the per-class test accuracies. Δ: difference of the mean "
        f"top-1 to the baseline. Paired gain: mean of the per-seed differences of top-1 to the row's baseline, "
        f"± the 95% Student-t interval (pairs in brackets). Costs: mean over the runs that measured them "
        f"(GFLOPs: multiply-adds of one clip).{top5}"
        + (f" {score_note(score, 'rows, seed SD, Δ, gains, claims')}" if score in SCORE_MEANING else ""),
        "",
        f"Machine: {'; '.join(machines) or 'unknown'}.",
        "",
        markdown(display_table(summary, score)),
        "",
        "## The paper's claims in our numbers",
        "",
    ]
    if claims:
        out += [f"{counts(claims)}. Each comparison: mean of the per-seed differences of top-1 [Student-t "
                f"interval], the pairs, the paper's difference; verdict rules in `nlbench/report/claims.py`.", ""]
        out += [claim_line(c) for c in claims]
    else:
        out.append("The paper makes no claim for this table.")
    families = family_table(summary)
    if families is not None:
        out += ["", f"## Test {SCORE_NAMES[score]} per family (mean over seeds)", "", markdown(families)]
    out += ["", "## Non-local block geometry", ""]
    if geometry is not None and len(geometry):
        flagged = geometry[geometry["flag"] != ""]
        out.append(f"Input T x H x W of each block and its keys after subsampling (from the records); "
                   f"{len(flagged)} of {len(geometry)} blocks attend over fewer than {GEOMETRY_MIN_SIDE}x"
                   f"{GEOMETRY_MIN_SIDE} positions or {GEOMETRY_MIN_KEYS} keys.")
        out += ["", markdown(geometry.astype(str).replace("nan", "-"))]
    else:
        out.append("Not recorded (the runs' records predate `nonlocal_blocks`), or no row has a non-local block.")
    if numerics:  # only then: a report of this version's runs reads as before the versions existed
        out += ["", "## Runs of another numerics version", "",
                f"{len(numerics)} runs were made by code of another numerics version than this one's "
                f"({NUMERICS_VERSION}): their figures may not come again from this code (`nlbench/numerics.py`).",
                "", *numerics]
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
    "BIMODAL_GAP", "STABLE_SD", "SUMMARY_COLUMNS", "block_geometry", "display_table", "enrich",
    "failed_runs", "family_table", "fmt", "has_top5", "latex", "markdown", "paired_gain", "read_results",
    "other_numerics", "pm", "render_markdown", "score_note", "stability_flags", "summarise", "use_score",
    "write_csv",
]
