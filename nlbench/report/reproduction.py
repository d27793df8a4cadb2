"""A reproduction beside its reference: the same tables trained again (a fresh clone's main job, another machine)
against the committed results, at three levels.

* Runs: every run of the reproduction that the reference has too (same run id: same config) is compared figure
  by figure (``nlbench.numerics.compare``): reproduced bit for bit, made by other kernels (no verdict on the
  code: the ISA pin was not in effect), made by another numerics version, or a mismatch.
* Rows: each row's mean top-1 over its seeds against the reference's 95% CI. A row agrees when the
  reproduction's mean lies inside the reference's interval (the usual replication check: the reference is
  what the project published).
* Claims: each claim's verdict in both; they agree when the verdicts are the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nlbench.numerics import compare as compare_records
from nlbench.record import read_record
from nlbench.report.build import analyse_table, profile_score
from nlbench.sweep.spec import table_files

RUN_VERDICTS = ("reproduced", "other kernels", "other numerics", "mismatch")


@dataclass
class Comparison:
    runs: pd.DataFrame  # run_id, verdict, detail
    rows: pd.DataFrame  # table, row, reference / reproduction mean, CI and seeds, agrees
    claims: pd.DataFrame  # table, claim, reference, reproduction, agrees
    only_reference: int  # runs the reproduction has not (yet) made
    tables_missing: list[str]  # tables with results on one side only

    def headline(self) -> str:
        runs = self.runs.verdict.value_counts()
        said = ", ".join(f"{int(runs.get(v, 0))} {v}" for v in RUN_VERDICTS)
        return (f"runs: {len(self.runs)} compared ({said}); rows: {int(self.rows.agrees.sum())} of "
                f"{int(self.rows.agrees.notna().sum())} within the reference's 95% CI; claims: "
                f"{int(self.claims.agrees.sum())} of {len(self.claims)} verdicts agree")


def compare_results(reference: Path, reproduction: Path, profile: str, ablations: Path) -> Comparison:
    """Compare ``reproduction/<profile>/`` with ``reference/<profile>/`` over the tables of ``ablations``."""
    ref, rep = Path(reference) / profile, Path(reproduction) / profile
    rows, claims, missing = [], [], []
    score = profile_score(profile, Path(ablations))
    for table_path in table_files(ablations):
        name = table_path.stem
        if not ((ref / f"{name}.csv").is_file() and (rep / f"{name}.csv").is_file()):
            missing.append(name)
            continue
        a = analyse_table(table_path, ref / f"{name}.csv", ref / "runs", score)
        b = analyse_table(table_path, rep / f"{name}.csv", rep / "runs", score)
        theirs = b.summary.set_index("row")
        for _, r in a.summary.iterrows():
            o = theirs.loc[r["row"]] if r["row"] in theirs.index else None
            mean = math.nan if o is None else o["top1_mean"]
            inside = (abs(mean - r.top1_mean) <= r.top1_ci95) if math.isfinite(mean) and math.isfinite(r.top1_ci95) \
                else None
            rows.append({"table": name, "row": r["row"], "reference": r.top1_mean, "reference_ci95": r.top1_ci95,
                         "reference_n": r.n_ok, "reproduction": mean,
                         "reproduction_ci95": math.nan if o is None else o["top1_ci95"],
                         "reproduction_n": 0 if o is None else o["n_ok"], "agrees": inside})
        verdicts = {c.text: c.verdict for c in b.claims}
        for c in a.claims:
            other = verdicts.get(c.text)
            claims.append({"table": name, "claim": c.text, "reference": c.verdict, "reproduction": other,
                           "agrees": other == c.verdict})
    runs, only = _runs(ref / "runs", rep / "runs")
    return Comparison(pd.DataFrame(runs, columns=["run_id", "verdict", "detail"]),
                      pd.DataFrame(rows, columns=["table", "row", "reference", "reference_ci95", "reference_n",
                                                  "reproduction", "reproduction_ci95", "reproduction_n", "agrees"]),
                      pd.DataFrame(claims, columns=["table", "claim", "reference", "reproduction", "agrees"]),
                      only, missing)


def _runs(ref: Path, rep: Path) -> tuple[list[dict], int]:
    ids = sorted(p.name for p in rep.glob("*") if (p / "record.json").is_file())
    out = []
    for run_id in ids:
        mine = read_record(ref / run_id)
        if mine is None:
            continue
        verdict, lines = compare_records(mine, read_record(rep / run_id))
        out.append({"run_id": run_id, "verdict": verdict, "detail": "; ".join(lines)})
    reference_ids = {p.name for p in ref.glob("*") if (p / "record.json").is_file()}
    return out, len(reference_ids - set(ids))


def render(comparison: Comparison, reference: str, reproduction: str, profile: str) -> str:
    c = comparison
    lines = [f"# Reproduction of `{reference}/{profile}` by `{reproduction}/{profile}`", "",
             f"**{c.headline()}**", "",
             "A run is *reproduced* when every figure of its record (top-1, top-5, the validation curve, per class "
             "and per family) is equal; *other kernels*: the two records were computed with different CPU kernels "
             "(the ISA pin was not in effect), so their figures are not comparable and say nothing of the code. A "
             "row agrees when the reproduction's mean top-1 lies inside the reference's 95% CI.", ""]
    if c.only_reference:
        lines += [f"{c.only_reference} runs of the reference have no record in the reproduction yet.", ""]
    if c.tables_missing:
        lines += [f"Tables with results on one side only: {', '.join(c.tables_missing)}.", ""]
    bad = c.runs[c.runs.verdict != "reproduced"]
    if len(bad):
        lines += ["## Runs not reproduced bit for bit", "", "| run | verdict | what differs |", "| --- | --- | --- |"]
        lines += [f"| `{r.run_id}` | {r.verdict} | {r.detail} |" for r in bad.itertuples()]
        lines.append("")
    for table, rows in c.rows.groupby("table", sort=False):
        lines += [f"## {table}", "", "| row | reference (95% CI, seeds) | reproduction (95% CI, seeds) | agrees |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r.row} | {_pm(r.reference, r.reference_ci95, r.reference_n)} | "
                  f"{_pm(r.reproduction, r.reproduction_ci95, r.reproduction_n)} | {_yes(r.agrees)} |"
                  for r in rows.itertuples()]
        verdicts = c.claims[c.claims.table == table]
        if len(verdicts):
            lines += ["", "| claim | reference | reproduction | agrees |", "| --- | --- | --- | --- |"]
            lines += [f"| {r.claim} | {r.reference} | {r.reproduction or 'absent'} | {_yes(r.agrees)} |"
                      for r in verdicts.itertuples()]
        lines.append("")
    return "\n".join(lines)


def _pm(mean: float, ci: float, n: int) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.1f} ± {ci:.1f} ({n})" if math.isfinite(ci) else f"{mean:.1f} ({n})"


def _yes(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else ("yes" if value else "**no**")


__all__ = ["Comparison", "compare_results", "render"]
