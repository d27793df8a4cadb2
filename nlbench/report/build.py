"""``nlbench report``: every ablation report of a profile, from the sweep results alone -> ``reports/<profile>/``.

For each ``results/<profile>/<table>.csv`` with a table file ``ablations/<table>.yaml``: ``<table>.md``,
``<table>.tex``, ``<table>.csv``, ``<table>_acc_vs_gflops.png`` and ``<table>_curves.png`` (learning curves,
from the records' ``curve``). Then the block's cost against its input size (``block_scaling.csv/png``,
measured now), the paper's Figure 3 from a trained non-local model (``attention.png/json``, when a run
directory holds ``model.pt``), and ``README.md``: first the summary (every non-local variant's paired gain
over its baseline against the GFLOPs, latency and memory it adds: ``gains.csv``, ``gains.tex``,
``gains.png``; each block's geometry), then the index, the machine, profile, seeds and wall time the numbers
came from, and every claim's verdict with the count of each verdict.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from nlbench.data.synthetic import ACROSS_TIME, CONTROL, FAMILIES
from nlbench.io import atomic_write_text
from nlbench.record import WEIGHTS
from nlbench.report import ablation
from nlbench.report.claims import NOT_TESTABLE, PLAN_POWER, claim_line, counts, evaluate_claims, plans
from nlbench.report.plots import accuracy_vs_gflops, gain_vs_cost, learning_curves
from nlbench.sweep.results import FAMILY_PREFIX, machine_summary
from nlbench.sweep.spec import PROFILES_FILE, Table, load_profiles, load_table, table_files

# Where Figure 3's model comes from, in order of preference: (table, row); then any non-local row.
ATTENTION_ROWS = (
    ("2d_space_time", "R50 spacetime"),
    ("2c_blocks", "R50 5-block"),
    ("2a_instantiation", "Embedded Gaussian"),
)
# The block-cost measurement per profile: smoke keeps it to a few seconds.
SCALING_OPTIONS = {"smoke": {"sizes": ((2, 7, 7), (4, 14, 14)), "repeats": 2}}


@dataclass
class TableReport:
    table: Table
    frame: pd.DataFrame
    summary: pd.DataFrame
    claims: list
    files: list[str] = field(default_factory=list)
    records: dict[str, dict] = field(default_factory=dict)
    geometry: pd.DataFrame | None = None


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message)


def _records(runs_dir: Path, run_ids) -> dict[str, dict]:
    out = {}
    for run_id in run_ids:
        path = runs_dir / str(run_id) / "record.json"
        try:
            out[str(run_id)] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def _has_nl(value) -> bool:
    try:
        return int(value) > 0
    except (TypeError, ValueError):
        return isinstance(value, str) and value.strip() not in ("", "[]", "0")


def attention_run(reports: list[TableReport], runs_dir: Path) -> tuple[Path, str] | None:
    """(run dir, label) of a trained non-local run with model.pt: ATTENTION_ROWS first, lowest seed first."""
    def usable(frame: pd.DataFrame):
        for _, r in frame[frame["status"] == "ok"].sort_values("seed").iterrows():
            d = runs_dir / str(r["run_id"])
            if (d / WEIGHTS).is_file() and (d / "config.yaml").is_file():
                return d, f"{r['table']} / {r['row']}, seed {r['seed']}"
        return None

    by_name = {rep.table.name: rep.frame for rep in reports}
    for table, row in ATTENTION_ROWS:
        if table in by_name:
            found = usable(by_name[table][by_name[table]["row"] == row])
            if found:
                return found
    for frame in by_name.values():
        if "nl_blocks" in frame.columns:
            found = usable(frame[frame["nl_blocks"].map(_has_nl)])
            if found:
                return found
    return None


def _curves(frame: pd.DataFrame, records: dict[str, dict], rows: list[str]) -> dict[str, list[list[dict]]]:
    """row -> the ``curve`` of each finished run that recorded one."""
    out = {}
    for label in rows:
        runs = frame[(frame["row"] == label) & (frame["status"] == "ok")]
        curves = [(records.get(str(r)) or {}).get("curve") for r in runs["run_id"]] if "run_id" in runs else []
        if any(curves):
            out[label] = [c for c in curves if c]
    return out


def analyse_table(table_path: Path, csv_path: Path, runs_dir: Path, score: str = "top1") -> TableReport:
    """A table's results, its rows' summary and its claims' verdicts, judged by ``score``; nothing written."""
    table = load_table(table_path)
    frame = ablation.read_results(csv_path)
    if "table" not in frame.columns:
        frame["table"] = table.name
    records = _records(runs_dir, pd.unique(frame["run_id"])) if "run_id" in frame.columns else {}
    frame = ablation.use_score(ablation.enrich(frame, records), records, score)
    summary = ablation.summarise(table, frame)
    return TableReport(table, frame, summary, evaluate_claims(table, frame, summary), records=records)


def report_table(table_path: Path, csv_path: Path, out_dir: Path, profile: str, runs_dir: Path,
                 score: str = "top1") -> TableReport:
    analysed = analyse_table(table_path, csv_path, runs_dir, score)
    table, frame, summary, claims, records = (analysed.table, analysed.frame, analysed.summary, analysed.claims,
                                              analysed.records)
    rows = [r.label for r in table.rows]
    geometry = ablation.block_geometry(frame, records, rows)
    plots = []
    png = accuracy_vs_gflops(summary, table.title, out_dir / f"{table.name}_acc_vs_gflops.png", table.baseline,
                             ablation.SCORE_NAMES[score])
    if png is not None:
        plots.append(png.name)
    curves = _curves(frame, records, rows)
    key = ablation.CURVE_KEYS[score][0]
    if not any(p.get(key) is not None for runs in curves.values() for run in runs for p in run):
        key, score_name = "val_top1", "top1"  # records from before the curve held the score
    else:
        score_name = score
    png = learning_curves(curves, table.title, out_dir / f"{table.name}_curves.png", key,
                          f"validation {ablation.SCORE_NAMES[score_name]}")
    if png is not None:
        plots.append(png.name)
    text = ablation.render_markdown(table, summary, claims, frame, profile=profile, source=str(csv_path),
                                    geometry=geometry, plots=plots, numerics=ablation.other_numerics(frame, records),
                                    score=score)
    ablation.write_csv(summary, out_dir / f"{table.name}.csv")
    atomic_write_text(out_dir / f"{table.name}.tex", ablation.latex(ablation.display_table(summary, score), table.title))
    atomic_write_text(out_dir / f"{table.name}.md", text)
    return TableReport(table, frame, summary, claims,
                       [f"{table.name}.md", f"{table.name}.tex", f"{table.name}.csv", *plots], records, geometry)


def profile_score(profile: str, ablations: Path) -> str:
    """The profile's score (profiles.yaml beside the tables; top1 for a profile it does not declare)."""
    path = ablations / PROFILES_FILE
    found = load_profiles(path).get(profile) if path.is_file() else None
    return found.score if found else "top1"


def _not_testable(claims) -> str:
    n = sum(c.verdict == NOT_TESTABLE for c in claims)
    return f", {n} not testable" if n else ""


# ------------------------------------------------------------------------------------------ the summary

GAIN_COLUMNS = ("table", "row", "baseline", "label", "gain", "gain_ci95", "gain_n", "blocks", "added_gflops",
                "added_latency_ms", "added_peak_mem_mb", "also_in")


def _nl_rows(rep: TableReport) -> list[str]:
    """The rows that place blocks (non-local or any other: nl_blocks is their placement)."""
    if "nl_blocks" not in rep.frame.columns:
        return []
    has = rep.frame[rep.frame["nl_blocks"].map(_has_nl)]
    return [r.label for r in rep.table.rows if r.label in set(has["row"])]


def _block_count(rep: TableReport, label: str) -> int | None:
    """How many blocks a row's model places: the blocks its records measured (their geometry)."""
    ids = rep.frame.loc[rep.frame["row"] == label, "run_id"] if "run_id" in rep.frame.columns else []
    counts = {len(rep.records[str(i)].get("nonlocal_blocks") or []) for i in ids if str(i) in rep.records}
    return counts.pop() if len(counts) == 1 else None


def gains(reports: list[TableReport]) -> pd.DataFrame:
    """Every non-local variant (a row with nl_blocks > 0) against its baseline: the paired gain in ``top1``
    (the profile's score: ablation.use_score; mean of the per-seed differences, 95% Student-t CI) and what it
    adds in GFLOPs, latency and peak memory (the difference of the rows' mean costs). A (variant, baseline)
    pair that several tables share (the same runs) is listed once, with the other tables in ``also_in``."""
    lines, seen = [], {}
    for rep in reports:
        s = rep.summary.set_index("row")
        runs = rep.frame.groupby("row")["run_id"].agg(lambda ids: tuple(sorted(map(str, ids)))) \
            if "run_id" in rep.frame.columns else pd.Series(dtype=object)
        for label in _nl_rows(rep):
            base = rep.table.baseline_of(label)
            key = (runs.get(label, (rep.table.name, label)), runs.get(base, (rep.table.name, base)))
            if key in seen:
                seen[key]["also_in"].append(rep.table.name)
                continue
            line = {
                "table": rep.table.name, "row": label, "baseline": base, "label": f"{rep.table.name}: {label}",
                "gain": s.loc[label, "gain_top1"], "gain_ci95": s.loc[label, "gain_ci95"],
                "gain_n": int(s.loc[label, "gain_n"]), "blocks": _block_count(rep, label),
                "added_gflops": s.loc[label, "gflops"] - s.loc[base, "gflops"],
                "added_latency_ms": s.loc[label, "latency_ms"] - s.loc[base, "latency_ms"],
                "added_peak_mem_mb": s.loc[label, "peak_mem_mb"] - s.loc[base, "peak_mem_mb"],
                "also_in": [],
            }
            seen[key] = line
            lines.append(line)
    frame = pd.DataFrame(lines, columns=list(GAIN_COLUMNS))  # a RangeIndex: gains.png numbers its points by it
    frame["also_in"] = frame["also_in"].map(lambda t: ", ".join(t) if isinstance(t, list) else "")
    return frame


def gains_display(frame: pd.DataFrame, score: str = "top1") -> pd.DataFrame:
    f = ablation.fmt

    def per_block(column: str, spec: str) -> list[str]:
        return [f(v / n, spec) if n and not pd.isna(n) else "-" for v, n in zip(frame[column], frame["blocks"])]
    return pd.DataFrame({
        "#": [str(i + 1) for i in range(len(frame))],  # the point's number in gains.png
        "variant": frame["label"], "baseline": frame["baseline"],
        f"paired {ablation.SCORE_NAMES[score]} gain (95% CI)": [
            ablation.pm(g, c, n, "+.1f") for g, c, n in zip(frame.gain, frame.gain_ci95, frame.gain_n)],
        "pairs": frame["gain_n"].astype(str),
        "+GFLOPs": frame["added_gflops"].map(lambda v: f(v, "+.4f")),
        "+latency (ms)": frame["added_latency_ms"].map(lambda v: f(v, "+.1f")),
        "+peak mem (MB)": frame["added_peak_mem_mb"].map(lambda v: f(v, "+.1f")),
        # What one block costs, for comparing blocks placed as many times (the successors table's point).
        "blocks": frame["blocks"].map(lambda n: "-" if pd.isna(n) else str(int(n))),
        "+GFLOPs / block": per_block("added_gflops", "+.5f"),
        "+latency / block (ms)": per_block("added_latency_ms", "+.2f"),
        "same runs in": frame["also_in"],
    })


def geometry_lines(reports: list[TableReport]) -> list[str]:
    """One line per non-local row: its blocks' T x H x W / keys, flagged below 4x4 positions or 4 keys."""
    rows, seen = [], set()
    for rep in reports:
        g = rep.geometry
        if g is None or g.empty:
            continue
        for label, blocks in g.groupby("row", sort=False):
            text = "; ".join(f"{b['block']} {int(b['T'])}x{int(b['H'])}x{int(b['W'])}/{'?' if pd.isna(b['keys']) else int(b['keys'])}"
                             for _, b in blocks.iterrows())
            if text in seen:
                continue
            seen.add(text)
            flag = sum(blocks["flag"] != "")
            side, keys = ablation.GEOMETRY_MIN_SIDE, ablation.GEOMETRY_MIN_KEYS
            flagged = f"**{flag} below {side}x{side} or {keys} keys**" if flag else ""
            rows.append(f"| {rep.table.name}: {label} | {len(blocks)} | {text} | {flagged} |")
    if not rows:
        return ["Block geometry: not recorded (the runs' records predate `nonlocal_blocks`)."]
    return ["Each non-local block's input T x H x W / keys after subsampling (rows with the same geometry listed "
            "once):", "", "| row | blocks | T x H x W / keys | flagged |", "|---|---:|---|---|", *rows]


def busy_minutes(records: dict[str, dict]) -> float | None:
    """Minutes during which at least one run was going (the union of the records' start-finish spans): the
    sweep's elapsed time with parallel workers, without the pauses of an interrupted and resumed sweep."""
    spans = []
    for record in records.values():
        try:
            spans.append((datetime.fromisoformat(record["started"]), datetime.fromisoformat(record["finished"])))
        except (KeyError, TypeError, ValueError):
            continue
    if not spans:
        return None
    spans.sort()
    total, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            total += (end - start).total_seconds()
            start, end = s, e
        else:
            end = max(end, e)
    return (total + (end - start).total_seconds()) / 60


def _backbones(records: dict[str, dict], runs_dir: Path) -> dict[str, dict]:
    """The records of the backbones (``model.init_from: run:<id>``) that ``records`` were fine-tuned from."""
    from nlbench.record import read_record
    from nlbench.training.config import init_run

    ids = {init_run(((r.get("config") or {}).get("model") or {}).get("init_from")) for r in records.values()}
    found = {i: read_record(runs_dir / i) for i in sorted(i for i in ids if i)}
    return {i: r for i, r in found.items() if r is not None}


def _machines(frames: pd.DataFrame, records: dict[str, dict]) -> list[str]:
    found = set()
    for record in records.values():
        machine = record.get("machine")
        if isinstance(machine, dict):
            text = machine_summary(machine)
            device = machine.get("device")
            found.add(f"{text}, device {device}" if device else text)
        elif machine:
            found.add(str(machine))
    if not found and "machine" in frames.columns:
        found = {str(m) for m in frames["machine"].dropna()}
    return sorted(found)


def _last_sweep(results_dir: Path) -> list[str]:
    """The line on the last `nlbench sweep` call's workers (results/<profile>/last_sweep.json), if it wrote one."""
    try:
        last = json.loads((results_dir / "last_sweep.json").read_text())
        stopped = " (stopped part-way)" if last.get("interrupted") else ""
        return [f"- Last `nlbench sweep` call{stopped}: {last['workers']} workers busy "
                f"{last['busy_s'] / 60:.1f} min of {last['workers']} x {last['elapsed_s'] / 60:.1f} min elapsed "
                f"({100 * last['utilisation']:.0f} %); {last['trained']} runs trained, {last['reused']} reused"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def completeness(ablations: Path, profile: str, runs_dir: Path) -> tuple[int, int] | None:
    """(distinct runs of the profile's grid that have a record, distinct runs in the grid) over every table
    file; None where the grid cannot be built here (a profile that needs a data set)."""
    from nlbench.sweep.spec import build_sweep
    from nlbench.training.config import ConfigError

    try:
        ids = {c.run_id for p in table_files(ablations) for c in build_sweep(p, profile).cells}
    except ConfigError:
        return None
    return sum((runs_dir / i / "record.json").is_file() for i in ids), len(ids)


def render_readme(profile: str, reports: list[TableReport], records: dict[str, dict], *, results_dir: Path,
                  not_run: list[str], extra: list[str], score: str = "top1", gain_table: pd.DataFrame | None = None,
                  gain_files: list[str] = (), done: tuple[int, int] | None = None) -> str:
    frames = pd.concat([r.frame for r in reports], ignore_index=True)
    runs = frames.drop_duplicates("run_id") if "run_id" in frames.columns else frames
    seeds = sorted(int(s) for s in pd.unique(frames["seed"]))
    wall = pd.to_numeric(runs.get("wall_s", pd.Series(dtype=float)), errors="coerce").sum()
    ok = int((runs["status"] == "ok").sum())
    machines = _machines(frames, records)
    claims = [(rep.table.name, c) for rep in reports for c in rep.claims]
    backbones = _backbones(records, results_dir / "runs")  # a protocol's pretraining is part of the sweep's cost
    wall += sum(float(b.get("wall_s") or 0) for b in backbones.values())
    busy = busy_minutes({**records, **backbones})  # these tables' runs (one record per run) and their backbones
    lines = [
        f"# nlbench ablation reports: profile `{profile}`",
        "",
        f"Generated by `nlbench report --profile {profile}` from `{results_dir}/*.csv` and the run records beside "
        f"them; every number below is read or derived from those files (nothing typed by hand).",
        "",
        *([f"**Incomplete: {done[0]} of the profile's {done[1]} distinct runs have a record**, so some rows and "
           f"tables below are missing or have fewer seeds; `make ablation-table2 PROFILE={profile}` resumes the "
           f"sweep and regenerates this report.", ""] if done and done[0] < done[1] else []),
        f"Claims of the paper, judged on paired seeds: {counts([c for _, c in claims])}; see [Claims](#claims).",
        "",
        *([ablation.score_note(score, "rows, gains, seed SDs, claims, curves"), ""]
          if score in ablation.SCORE_MEANING else []),
        "## What a non-local block buys",
        "",
    ]
    if gain_table is not None and len(gain_table):
        lines += [
            "Every variant with blocks (non-local, or a successor or your own: docs/successors.md) against its "
            "baseline row (the row's `baseline:` "
            f"in the table file, else the table's): the paired {ablation.SCORE_NAMES[score]} gain is the mean over "
            "seeds of the per-seed difference (seed s of both rows: the same data order and initial backbone), ± "
            "the 95% Student-t interval; the added costs are the differences of the rows' mean GFLOPs, latency and peak memory, and "
            "per block divided by the blocks the row places. A pair of rows that several tables share (the same "
            "runs) is listed once.",
            "",
            ablation.markdown(gains_display(gain_table, score)),
            "",
            *(f"![gain vs added GFLOPs]({f})" for f in gain_files if f.endswith(".png")),
            "",
            "Numbers: " + ", ".join(f"[{f}]({f})" for f in gain_files if not f.endswith(".png")) + ".",
            "",
        ]
    else:
        lines += ["No non-local variant with results.", ""]
    lines += [*geometry_lines(reports), "", "## Where the numbers come from", ""]
    lines += [
        f"- Machine: {'; '.join(machines) or 'unknown'}",
        f"- Profile: `{profile}`; seeds: {', '.join(map(str, seeds))}",
        f"- Runs: {len(runs)} distinct ({ok} ok, {len(runs) - ok} failed; a run shared by several tables counts "
        f"once)" + (f" and the {len(backbones)} pretrained backbones they start from" if backbones else "")
        + f", wall time {wall / 60:.1f} min summed over runs"
        + (f", {busy:.1f} min elapsed with runs in parallel (records' start to finish, pauses left out)"
           if busy is not None else ""),
        *_last_sweep(results_dir),
        f"- Claims of the paper, judged on paired seeds: {counts([c for _, c in claims])}",
        *_unstable(reports, score),
        *_converged(reports, score),
        *_controls(reports, score),
        "",
        "## Tables",
        "",
        "| table | title | rows with results | runs ok/failed | claims held/contradicted/unresolved | files |",
        "|---|---|---:|---:|---:|---|",
    ]
    for rep in reports:
        s = rep.summary
        n_claims = len(rep.claims)
        lines.append(
            f"| [{rep.table.name}]({rep.table.name}.md) | {rep.table.title} | {int((s['n_ok'] > 0).sum())}/{len(s)} "
            f"| {int(s['n_ok'].sum())}/{int(s['n_failed'].sum())} | "
            f"{sum(c.verdict == 'holds' for c in rep.claims)}/{sum(c.verdict == 'contradicted' for c in rep.claims)}/"
            f"{sum(not c.resolved and c.verdict != NOT_TESTABLE for c in rep.claims)} of {n_claims}"
            f"{_not_testable(rep.claims)} | "
            + ", ".join(f"[{f}]({f})" for f in rep.files) + " |"
        )
    if not_run:
        lines += ["", f"Not run in this profile (no results file): {', '.join(not_run)}."]
    lines += ["", "## Claims", ""]
    if not claims:
        lines.append("No table makes a claim.")
    else:
        lines += [f"{counts([c for _, c in claims])}. Each claim is judged on the per-seed paired differences of "
                  f"{ablation.SCORE_NAMES[score]} (Student-t intervals: 95% for 'beats' and 'at least as good', "
                  "90% for the two one-sided tests of 'similar'; rules in `nlbench/report/claims.py`): holds when "
                  "every comparison's interval lies on the claimed side, contradicted when one lies on the other side, else "
                  "unresolved. A 'similar' claim that declares a relative margin is decided at it (the paper's "
                  "margin-to-gain ratio times the gain measured here); its verdict at the paper's absolute margin "
                  "is printed beside it.", ""]
        planned = plans(claims)
        if planned:
            lines += [f"Paired seeds that would resolve each unresolved claim, at {100 * PLAN_POWER:.0f}% power if "
                      "its differences kept the mean and SD measured here (normal; bimodal rows make it a planning "
                      f"figure): {planned}.", ""]
    for name, c in claims:
        lines.append(claim_line(c).replace("- ", f"- [{name}]({name}.md) ", 1))
    lines += ["", "## Plots", ""] + extra
    return "\n".join(lines) + "\n"


def _converged(reports: list[TableReport], score: str = "top1") -> list[str]:
    records = {i: r for rep in reports for i, r in rep.records.items()}
    judged = {i: ablation.flat_at_the_end(r, score) for i, r in records.items()}
    judged = {i: v for i, v in judged.items() if v is not None}
    if not judged:
        return []
    flat = sum(judged.values())
    return [f"- Convergence: {flat} of {len(judged)} runs ({100 * flat / len(judged):.0f} %) end with a flat "
            f"validation curve of the {ablation.SCORE_NAMES[score]} (the highest and lowest points of its last "
            "quarter within a 95% two-proportion test on the validation set)"]


# The synthetic benchmark's control (docs/synthetic_data.md): every C2D solves the local family and relates
# nothing across time; every family is solved by some row with blocks (non-local or temporal convs).
CONTROL_MIN, ACROSS_TIME_MAX, SOLVED_MIN = 90.0, 60.0, 90.0


def _controls(reports: list[TableReport], score: str = "top1") -> list[str]:
    frame = pd.concat([r.frame for r in reports], ignore_index=True)
    frame = frame[frame["status"] == "ok"].drop_duplicates("run_id") if "run_id" in frame.columns else frame
    columns = [FAMILY_PREFIX + f for f in FAMILIES]
    if len(frame) == 0 or not all(c in frame.columns for c in columns) or not {"arch", "nl_blocks"} <= set(frame.columns):
        return []
    control, across = FAMILY_PREFIX + CONTROL, [FAMILY_PREFIX + f for f in ACROSS_TIME]
    is_c2d = (frame["arch"] == "c2d") & (pd.to_numeric(frame["nl_blocks"], errors="coerce") == 0)
    c2d = frame[is_c2d]
    # A run without every family's score is not scored, never counted as passing (NaN fails no comparison)
    scored = c2d[[control, *across]].notna().all(axis=1)
    failing = c2d[~scored | (c2d[control] < CONTROL_MIN) | (c2d[across] > ACROSS_TIME_MAX).any(axis=1)]
    name = ablation.SCORE_NAMES[score]
    lines = [f"- Control ({name} within each family): {len(c2d) - len(failing)} of {len(c2d)} C2D runs (every "
             f"C2D row, every seed) at >= {CONTROL_MIN:g} on the {CONTROL} family and <= {ACROSS_TIME_MAX:g} on "
             f"each family across time ({', '.join(ACROSS_TIME)})"
             + ("" if failing.empty else "; not: " + ", ".join(
                 f"{r.row} seed {r.seed} ({', '.join(f'{c[len(FAMILY_PREFIX):]} {r[c]:.1f}' for c in [control, *across])})"
                 for _, r in failing.iterrows()))]
    means = frame[~is_c2d].groupby("row")[columns].mean()
    if len(means):
        best = [(c[len(FAMILY_PREFIX):], means[c].max(), means[c].idxmax() if means[c].notna().any() else "no score")
                for c in columns]
        unsolved = [f for f, v, _ in best if not v >= SOLVED_MIN]
        lines.append(f"- Every family solved (>= {SOLVED_MIN:g}, a row's mean over seeds) by a row with blocks: "
                     + ("yes" if not unsolved else f"no ({', '.join(unsolved)})") + "; best: "
                     + ", ".join(f"{f} {v:.1f} ({row})" for f, v, row in best))
    return lines


def _unstable(reports: list[TableReport], score: str = "top1") -> list[str]:
    rows = [(rep.table.name, r["row"], r["top1_sd"], r["flags"]) for rep in reports
            for _, r in rep.summary.iterrows()]
    flagged = [(t, r, sd, f) for t, r, sd, f in rows if isinstance(f, str) and f]
    with_sd = sum(1 for *_, sd, _ in rows if pd.notna(sd))
    if not with_sd:
        return ["- Row stability: one seed a row, no seed SD"]
    return [f"- Row stability: {len(flagged)} of {with_sd} rows flagged (seed SD of "
            f"{ablation.SCORE_NAMES[score]} > {ablation.STABLE_SD:g} points: unstable; a seed > "
            f"{ablation.BIMODAL_GAP:g} points from the row's median: bimodal)" + (": " + "; ".join(f"{t} {r} (SD {sd:.1f}, {f})" for t, r, sd, f in flagged)
                                   if flagged else "")]


def build_reports(
    profile: str = "tiny",
    results: str | Path = "results",
    out: str | Path = "reports",
    ablations: str | Path = "ablations",
    measure: bool = True,
    attention: bool = True,
    quiet: bool = False,
    from_wandb: str | Path | None = None,
    data: str | None = None,
    log_wandb: bool = False,
) -> Path:
    """Write ``out/profile/``; returns its README path. Missing inputs raise FileNotFoundError / ValueError.

    ``from_wandb``: the records come from W&B runs (offline run folders under a path, or ENTITY/PROJECT),
    written as results under ``results/wandb/`` first (``data``: the root of a profile that needs one).
    ``log_wandb``: log each table to a W&B report run in its group (``wandb_tables``; the CLI's default).
    """
    if from_wandb is not None:
        from nlbench.report.wandb_source import materialise

        folder, found = materialise(from_wandb, profile, Path(results) / "wandb", ablations, data)
        _say(f"{found} run records from W&B ({from_wandb}) -> {folder}", quiet)
        results = Path(results) / "wandb"
    results_dir, out_dir, ablations = Path(results) / profile, Path(out) / profile, Path(ablations)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir}: no such folder; run `nlbench sweep ablations/*.yaml --profile "
                                f"{profile}` first (or pass --results)")
    if not ablations.is_dir():
        raise FileNotFoundError(f"{ablations}: no such folder of table files (pass --ablations)")
    pairs = [(ablations / f"{c.stem}.yaml", c) for c in sorted(results_dir.glob("*.csv"))]
    skipped = [c.name for t, c in pairs if not t.is_file()]
    pairs = [(t, c) for t, c in pairs if t.is_file()]
    if not pairs:
        raise ValueError(f"{results_dir}: no results file of a table in {ablations}/ (expected <table>.csv)")
    for name in skipped:
        _say(f"note: {results_dir / name} has no table file in {ablations}/; left out", quiet)
    runs_dir = results_dir / "runs"
    score = profile_score(profile, ablations)
    reports = []
    for table_path, csv_path in pairs:
        rep = report_table(table_path, csv_path, out_dir, profile, runs_dir, score)
        reports.append(rep)
        _say(f"{out_dir / (rep.table.name + '.md')}: claims {counts(rep.claims)}", quiet)
    done = {t.stem for t, _ in pairs}
    not_run = [p.stem for p in table_files(ablations) if p.stem not in done]

    extra = ["- Accuracy vs GFLOPs, one per table: "
             + ", ".join(f"[{r.table.name}]({r.table.name}_acc_vs_gflops.png)" for r in reports
                         if f"{r.table.name}_acc_vs_gflops.png" in r.files)]
    if measure:
        from nlbench.report.block_scaling import write_block_scaling

        csv, png = write_block_scaling(out_dir, **SCALING_OPTIONS.get(profile, {}))
        _say(f"{png}: one block's latency and memory vs T x H x W ({csv.name})", quiet)
    elif (out_dir / "block_scaling.csv").is_file():
        from nlbench.report.block_scaling import plot_block_scaling

        plot_block_scaling(pd.read_csv(out_dir / "block_scaling.csv"), out_dir / "block_scaling.png")
    if (out_dir / "block_scaling.png").is_file():
        extra.append("- One non-local block per instantiation, latency (forward + backward) and peak memory vs "
                     "T x H x W, measured on this machine when the report was made: "
                     "![block scaling](block_scaling.png) (numbers: [block_scaling.csv](block_scaling.csv))")
    if attention:
        found = attention_run(reports, runs_dir)
        previous = out_dir / "attention.json"
        info = None
        if found is not None:
            from nlbench.report.attention import figure3

            info = figure3(found[0], out_dir, found[1])
            _say(f"{out_dir / 'attention.png'}: {found[1]}, block {info['block']}", quiet)
        elif previous.is_file() and (out_dir / "attention.png").is_file():
            # model.pt is not committed (.gitignore): keep the figure drawn where the weights were.
            info = json.loads(previous.read_text())
            _say(f"note: no model.pt in {runs_dir}; kept {out_dir / 'attention.png'} drawn earlier from "
                 f"{info.get('label')}", quiet)
        else:
            _say("note: no trained non-local run with model.pt in "
                 f"{runs_dir}; the attention figure (paper's Figure 3) is skipped", quiet)
            extra.append("- Figure 3 (attention): skipped, no trained non-local model (`model.pt`) in the runs.")
        if info is not None:
            info.setdefault("label", "")
            extra.append(
                f"- The paper's Figure 3 on the embedded data: {info['label']}, block `{info['block']}` "
                f"(input map {'x'.join(map(str, info['input_map']))}, keys {'x'.join(map(str, info['key_grid']))}), "
                f"validation clip {info['clip_index']} ({info['class']}). From the query on the first cue, "
                f"{100 * info['weight_on_other_cue']:.0f}% of the weight goes to keys covering the other cue "
                f"(uniform weights: {100 * info['uniform_on_other_cue']:.0f}%). ![attention](attention.png)"
            )
    extra.insert(1, f"- Learning curves (validation {ablation.SCORE_NAMES[score]} vs training step, mean over seeds, "
                 "min-max band), one per table: " + (", ".join(f"[{r.table.name}]({r.table.name}_curves.png)" for r in reports
                                        if f"{r.table.name}_curves.png" in r.files)
                              or "none (the runs' records predate `curve`)"))
    records = {k: v for rep in reports for k, v in rep.records.items()}
    gain_table = gains(reports)
    gain_files = []
    if len(gain_table):
        ablation.write_csv(gain_table, out_dir / "gains.csv")
        atomic_write_text(out_dir / "gains.tex", ablation.latex(
            gains_display(gain_table, score), f"Paired {ablation.SCORE_NAMES[score]} gain of each non-local variant "
            "over its baseline, and its cost"))
        gain_files = ["gains.csv", "gains.tex"]
        png = gain_vs_cost(gain_table, out_dir / "gains.png", ablation.SCORE_NAMES[score])
        if png is not None:
            gain_files.append(png.name)
    readme = render_readme(profile, reports, records, results_dir=results_dir, not_run=not_run, extra=extra, score=score,
                           gain_table=gain_table, gain_files=gain_files,
                           done=completeness(ablations, profile, runs_dir) if from_wandb is None else None)
    path = out_dir / "README.md"
    atomic_write_text(path, readme)
    _say(f"{path}", quiet)
    if log_wandb:
        from nlbench.report.wandb_tables import log_reports

        log_reports(reports, profile, out_dir, records, quiet)
    return path


__all__ = ["ATTENTION_ROWS", "GAIN_COLUMNS", "TableReport", "attention_run", "build_reports", "gains", "render_readme",
           "report_table"]
