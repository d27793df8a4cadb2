"""The paper's claims judged on paired seeds: each comparison a claim stands for (``COMPARISONS``, per kind;
a table file's claims and their keys are checked by ``nlbench.sweep.spec.CLAIM_KINDS``) is the per-seed
difference of two rows' top-1 (seed s of every row shares the data order and the initial backbone
weights), over the seeds where both finished.

One comparison, n paired differences with mean d and Student-t interval (scipy.stats):
- superiority (``above``, ``smaller_gain``, ``cheaper_and_better``): 95% CI; holds if it lies above 0,
  contradicted if below 0, else unresolved;
- non-inferiority (``order``, margin m = ``within``, default 0): 95% CI; holds if it lies above -m,
  contradicted if below -m;
- equivalence (``similar``, margin m = ``within``): two one-sided tests at 5% each, i.e. the 90% CI; holds if
  it lies inside (-m, +m), contradicted if it lies entirely outside, else unresolved.
Fewer than 2 pairs give no interval: unresolved (no pair at all: not evaluated).

An unresolved comparison also says how many pairs would resolve it (``PLAN_POWER``): the n at which an
interval of the same level would clear its nearer boundary (0 or -m; for equivalence, the margin nearer to the
mean) with 80 % probability, if the differences stayed normal with the mean and SD measured here
(``stats.pairs_for_power``). Bimodal rows are not normal, so it is a planning figure, not a promise; an
equivalence part counts its nearer margin only, so it is a lower bound there.

A ``similar`` claim is judged twice. Its absolute margin (``within``, top-1 points) is the paper's, and at a
scale where gains are 15-20 points instead of 1 no interval fits inside it. Its relative margin applies the
paper's margin-to-gain ratio to the gain measured here: ratio x the rows' mean paired gain over the table's
baseline. The ratio is the paper's largest difference between the claim's rows divided by their mean gain
over the baseline (``relative: paper``; 2a: 0.4 / 0.925), or the ratio the claim gives (``relative: 0.43``)
where its rows have no paper numbers. A claim declares it in its table, before any run. The relative verdict
then decides the claim, and both verdicts are printed side by side.

A claim is a conjunction of its comparisons (plus, for ``cheaper_and_better``, the deterministic GFLOPs
comparison): it holds when every part holds (an intersection-union test: each part at its own level keeps
the claim's level, no correction needed), is contradicted when some part is contradicted (no multiplicity
correction: with k parts the chance of a false "contradicted" is up to k times a part's), else unresolved.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from nlbench.report.stats import MOST_PAIRS, by_seed, half_width, mean_sd, paired, pairs_for_power
from nlbench.sweep.spec import Table

HOLDS, CONTRADICTED, UNRESOLVED, NOT_EVALUATED = "holds", "contradicted", "unresolved", "not evaluated"
NOT_TESTABLE = "not testable"
VERDICTS = (HOLDS, CONTRADICTED, UNRESOLVED, NOT_EVALUATED, NOT_TESTABLE)
LEVEL = {"superiority": 0.95, "noninferiority": 0.95, "equivalence": 0.90}
# The order in which a part decides the claim's headline numbers: the part that is worst for the claim.
_RANK = {CONTRADICTED: 0, NOT_EVALUATED: 1, NOT_TESTABLE: 2, UNRESOLVED: 3, HOLDS: 4}
# The rule for "not testable at this scale", fixed before any run: a comparison that asks a row to beat one
# whose mean score (the profile's: top-1 or group top-1) over the paired seeds is at or above CEILING cannot
# show a gain: that row has already solved what the claim is about (at the tiny scale, I3D solves every
# family of the synthetic set). Such a part is not testable unless its interval contradicts the claim; a claim
# with one is counted apart. A non-inferiority part ("no more than m worse") stays testable at the ceiling.
CEILING = 97.0
PLAN_POWER = 0.8  # the power at which an unresolved comparison's "pairs to resolve it" is planned


@dataclass(frozen=True)
class Comparison:
    """One paired test: top-1 of ``better`` minus top-1 of ``worse``, seed by seed, over the seeds where both
    (and every row of ``requires``) finished.

    test: ``superiority`` (difference > 0), ``noninferiority`` (difference > -margin) or ``equivalence``
    (|difference| < margin, two one-sided tests).
    """

    better: str
    worse: str
    test: str
    margin: float = 0.0
    requires: tuple[str, ...] = ()  # rows the comparison is conditioned on (smaller_gain: the baseline)


# What each kind of claim stands for: (claim, the table's baseline) -> its paired comparisons. The comparisons
# are data (a test and a margin), so a new kind is its keys in nlbench.sweep.spec.CLAIM_KINDS and one entry here.


def _above(claim: dict, baseline: str) -> list[Comparison]:
    """Every row of rows has a higher top-1 than `than` (paired superiority, each row)."""
    return [Comparison(r, claim["than"], "superiority") for r in claim["rows"]]


def _order(claim: dict, baseline: str) -> list[Comparison]:
    """Each row at least as good as the one before it (non-inferiority, margin `within`, default 0)."""
    rows = claim["rows"]
    return [Comparison(b, a, "noninferiority", float(claim.get("within", 0.0))) for a, b in zip(rows, rows[1:])]


def _similar(claim: dict, baseline: str) -> list[Comparison]:
    """Every two rows within +-`within` top-1 points of each other (equivalence, TOST)."""
    rows = claim["rows"]
    return [Comparison(a, b, "equivalence", float(claim["within"])) for i, a in enumerate(rows) for b in rows[i + 1:]]


def _smaller_gain(claim: dict, baseline: str) -> list[Comparison]:
    """Row's paired gain over the table's baseline smaller than each of `than`'s."""
    # gain(t) - gain(row) = (t - base) - (row - base) = t - row, seed by seed, on the seeds base ran too
    return [Comparison(t, claim["row"], "superiority", requires=(baseline,)) for t in claim["than"]]


def _cheaper_and_better(claim: dict, baseline: str) -> list[Comparison]:
    """Row has a higher top-1 (paired superiority) at fewer GFLOPs than `than` (the GFLOPs: ``cheaper_pairs``)."""
    return [Comparison(claim["row"], claim["than"], "superiority")]


COMPARISONS: dict[str, Callable[[dict, str], list[Comparison]]] = {
    "above": _above, "order": _order, "similar": _similar, "smaller_gain": _smaller_gain,
    "cheaper_and_better": _cheaper_and_better,
}


def cheaper_pairs(claim: dict) -> list[tuple[str, str]]:
    """(row, than) pairs whose GFLOPs must be lower (deterministic: no seeds involved)."""
    return [(claim["row"], claim["than"])] if claim["kind"] == "cheaper_and_better" else []


@dataclass(frozen=True)
class Part:
    """One comparison's paired result: the mean difference, its interval (at ``level``) and verdict."""

    comparison: Comparison
    n: int
    mean: float
    low: float
    high: float
    level: float
    verdict: str
    paper: float  # the paper's difference of the same two rows (NaN where it gives none)
    floor: float = math.nan  # the mean top-1 of the row to beat over the paired seeds
    needed: float = math.nan  # unresolved: pairs that would resolve it at PLAN_POWER (inf: more than MOST_PAIRS)

    def text(self) -> str:
        c = self.comparison
        what = {"superiority": "> 0", "noninferiority": f"> -{c.margin:g}",
                "equivalence": f"within ±{c.margin:.3g}"}[c.test]
        head = f"{c.better} − {c.worse} {what}"
        if self.n == 0:
            return f"{head}: no paired seeds"
        paper = f", paper {self.paper:+.1f}" if math.isfinite(self.paper) else ""
        verdict = (f"{self.verdict} ({c.worse} at {self.floor:.1f} >= {CEILING:g}: at the ceiling)"
                   if self.verdict == NOT_TESTABLE else self.verdict)
        if not math.isfinite(self.low):
            return f"{head}: {self.mean:+.2f} ({self.n} pair, no CI{paper}) {verdict}"
        return (f"{head}: {self.mean:+.2f} [{100 * self.level:.0f}% CI {self.low:+.2f}, {self.high:+.2f}], "
                f"{self.n} pairs{paper}: {verdict}{self.plan()}")

    @property
    def heads_for_contradiction(self) -> bool:
        """The mean lies on the side of the boundary that contradicts (outside the margin, for equivalence)."""
        return _toward_holds(self.comparison, self.mean) <= 0

    def plan(self) -> str:
        """How many pairs would resolve an unresolved part ("" for any other)."""
        if math.isnan(self.needed):
            return ""
        if math.isinf(self.needed):
            return f" (no number of pairs up to {MOST_PAIRS} settles this mean and SD)"
        side = CONTRADICTED if self.heads_for_contradiction else HOLDS
        return (f" (~{self.needed:.0f} pairs would settle it as {side}, at {100 * PLAN_POWER:.0f}% power if this "
                "mean and SD held)")


@dataclass(frozen=True)
class ClaimResult:
    text: str
    kind: str
    verdict: str
    parts: tuple[Part, ...]
    cost: str  # the GFLOPs comparison ("" when the kind makes none)
    cost_ok: bool | None  # None: no comparison or no GFLOPs
    # similar claims judged at a relative margin too: the absolute verdict and parts, and how the margin was made
    absolute: str | None = None
    absolute_parts: tuple[Part, ...] = ()
    margin: str = ""

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    @property
    def resolved(self) -> bool:
        return self.verdict in (HOLDS, CONTRADICTED)

    @property
    def headline(self) -> Part | None:
        """The part that decides: the worst for the claim (contradicted, missing, unresolved, holding), and
        among those the one nearest to failing."""
        if not self.parts:
            return None
        return min(self.parts, key=lambda p: (_RANK[p.verdict], _slack(p)))

    @property
    def needed(self) -> float:
        """Unresolved: the pairs that would resolve the claim; NaN otherwise. One part that heads for
        contradiction resolves it when it gets there (the fewest such a part needs); else every unresolved
        part must come to hold (the most any needs)."""
        plans = [p for p in self.parts if p.verdict == UNRESOLVED and not math.isnan(p.needed)]
        if self.verdict != UNRESOLVED or not plans:
            return math.nan
        against = [p.needed for p in plans if p.heads_for_contradiction]
        return min(against) if against else max(p.needed for p in plans)

    @property
    def status(self) -> str:  # the old name of the verdict
        return self.verdict


def _slack(part: Part) -> float:
    """How far the interval is from the boundary that would change its verdict (smaller: closer)."""
    c = part.comparison
    if not math.isfinite(part.low):
        return math.inf if part.n == 0 else abs(part.mean)
    if c.test == "equivalence":
        return c.margin - max(abs(part.low), abs(part.high))
    return part.low + c.margin


def _toward_holds(c: Comparison, mean: float) -> float:
    """How far ``mean`` lies past the nearer boundary of ``c`` on the side where the claim holds (negative: on
    the side that contradicts it): mean + m, or m - |mean| for equivalence."""
    return c.margin - abs(mean) if c.test == "equivalence" else mean + c.margin


def judge_part(diffs: pd.Series, comparison: Comparison, paper: float = math.nan, floor: float = math.nan) -> Part:
    """``floor``: the mean of the row to beat over the paired seeds (at or above CEILING: not testable)."""
    level = LEVEL[comparison.test]
    mean, sd, n = mean_sd(diffs)  # the SD also plans an unresolved part (below)
    half = half_width(sd, n, level)
    low, high = mean - half, mean + half
    m = comparison.margin
    if n == 0:
        verdict = NOT_EVALUATED
    elif not math.isfinite(half):
        verdict = UNRESOLVED
    elif comparison.test == "equivalence":
        verdict = HOLDS if -m < low and high < m else CONTRADICTED if low > m or high < -m else UNRESOLVED
    else:  # superiority is non-inferiority with margin 0
        verdict = HOLDS if low > -m else CONTRADICTED if high < -m else UNRESOLVED
        if comparison.test == "superiority" and floor >= CEILING and verdict != CONTRADICTED and n:
            verdict = NOT_TESTABLE  # no gain can show over a row at the ceiling; "no worse than" still can
    needed = math.nan
    if verdict == UNRESOLVED and n >= 2:
        needed = pairs_for_power(abs(_toward_holds(comparison, mean)), sd, level, PLAN_POWER)
    return Part(comparison, n, mean, low, high, level, verdict, paper, floor, needed)


def combine(verdicts: list[str]) -> str:
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    if any(v == NOT_EVALUATED for v in verdicts):
        return NOT_EVALUATED
    if any(v == NOT_TESTABLE for v in verdicts):
        return NOT_TESTABLE
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else UNRESOLVED


def judge(claim: dict, table: Table, wide: pd.DataFrame, gflops: dict[str, float]) -> ClaimResult:
    paper = {r.label: (r.paper or {}).get("top1", math.nan) for r in table.rows}
    # Each comparison's per-seed differences, once; the row to beat's mean over the same seeds (its floor).
    pairs = [(c, paired(wide, c.better, c.worse, c.requires)) for c in COMPARISONS[claim["kind"]](claim, table.baseline)]
    parts = tuple(judge_part(d, c, paper[c.better] - paper[c.worse], _floor(wide, c, d)) for c, d in pairs)
    verdicts = [p.verdict for p in parts]
    cost, cost_ok = [], None
    for row, than in cheaper_pairs(claim):
        g, h = gflops.get(row, math.nan), gflops.get(than, math.nan)
        if not (math.isfinite(g) and math.isfinite(h)):
            cost.append(f"no GFLOPs for {row} or {than}")
            verdicts.append(NOT_EVALUATED)
            continue
        cheaper = g < h
        cost_ok = cheaper if cost_ok is None else cost_ok and cheaper
        cost.append(f"GFLOPs {g:.3g} vs {h:.3g} ({g / h:.2f}x{'' if cheaper else ', not cheaper'})")
        verdicts.append(HOLDS if cheaper else CONTRADICTED)  # deterministic: no interval
    if claim["kind"] == "similar":
        margin, why = relative_margin(claim, table, wide, paper)
        if math.isfinite(margin) or why:
            relative = tuple(judge_part(d, replace(c, margin=margin), p.paper) for (c, d), p in zip(pairs, parts))
            return ClaimResult(claim["text"], claim["kind"], combine([p.verdict for p in relative]), relative, "",
                               None, combine(verdicts), parts, why)
    return ClaimResult(claim["text"], claim["kind"], combine(verdicts), parts, "; ".join(cost), cost_ok)


def _floor(wide: pd.DataFrame, c: Comparison, diffs: pd.Series) -> float:
    """The mean top-1 of the row ``c`` asks to beat, over the seeds its differences pair."""
    if c.test == "equivalence" or not len(diffs):
        return math.nan
    return float(wide.loc[diffs.index, c.worse].mean())


def relative_margin(claim: dict, table: Table, wide: pd.DataFrame, paper: dict[str, float]) -> tuple[float, str]:
    """(margin, how it was made) of a similar claim: the paper's margin-to-gain ratio (or the claim's
    ``relative``) times the rows' mean paired gain over the table's baseline here. (NaN, "") where the claim
    has no ratio; NaN with a reason where no gain was measured."""
    rows, base = claim["rows"], table.baseline
    ratio = claim.get("relative")
    if ratio is None:
        return math.nan, ""
    if ratio == "paper":
        values = [paper.get(r, math.nan) for r in rows]
        gain = sum(v - paper.get(base, math.nan) for v in values) / len(values)
        if not all(math.isfinite(v) for v in values) or not gain > 0:
            return math.nan, "relative margin: the paper gives no gain of these rows"
        ratio = (max(values) - min(values)) / gain
        source = f"the paper's {max(values) - min(values):.2g} of a {gain:.3g}-point gain"
    else:
        source = "the claim's ratio"
    gains = [paired(wide, r, base).mean() for r in rows if r != base]
    gain = sum(gains) / len(gains) if gains else math.nan
    if not (math.isfinite(gain) and gain > 0):
        return math.nan, f"relative margin: no positive gain over {base} measured"
    return ratio * gain, f"relative margin ±{ratio * gain:.2f} = {ratio:.2f} ({source}) x the {gain:.1f}-point gain here"


def evaluate_claims(table: Table, frame: pd.DataFrame, summary: pd.DataFrame) -> list[ClaimResult]:
    wide = by_seed(frame)
    gflops = summary.set_index("row")["gflops"].to_dict()
    return [judge(claim, table, wide, gflops) for claim in table.claims]


def claim_line(result: ClaimResult) -> str:
    """One markdown line: the verdict in bold, then each comparison's paired numbers (the deciding one first)."""
    head = result.headline
    parts = [p for p in result.parts if p is not head]
    text = "; ".join(([head.text()] if head else []) + ([f"also {'; '.join(p.text() for p in parts)}"] if parts
                                                         else []) + ([result.cost] if result.cost else []))
    if result.absolute is not None:
        worst = min(result.absolute_parts, key=lambda p: (_RANK[p.verdict], _slack(p)), default=None)
        text = (f"{result.margin}: {text}; at the absolute margin: **{result.absolute}**"
                + (f" ({worst.text()})" if worst else ""))
    return f"- **{result.verdict}**: {result.text}: {text}"


def claims_frame(claims: list[ClaimResult]) -> pd.DataFrame:
    """One line per claim: the verdict and the deciding comparison's paired numbers."""
    lines = []
    for c in claims:
        h = c.headline
        lines.append({
            "claim": c.text, "kind": c.kind, "verdict": c.verdict,
            "comparison": f"{h.comparison.better} − {h.comparison.worse}" if h else "",
            "mean_diff": h.mean if h else math.nan, "ci_low": h.low if h else math.nan,
            "ci_high": h.high if h else math.nan, "ci_level": h.level if h else math.nan,
            "n_pairs": h.n if h else 0, "paper_delta": h.paper if h else math.nan, "cost": c.cost,
            "absolute_verdict": c.absolute or "", "margin": c.margin,
            "pairs_to_resolve": c.needed,
        })
    return pd.DataFrame(lines, columns=["claim", "kind", "verdict", "comparison", "mean_diff", "ci_low", "ci_high",
                                        "ci_level", "n_pairs", "paper_delta", "cost", "absolute_verdict", "margin",
                                        "pairs_to_resolve"])


def plans(claims: list[tuple[str, ClaimResult]]) -> str:
    """``"2c_blocks: R101: 5 blocks beat 1 block ~7; ..."``: each unresolved claim (with its table's name) and
    the paired seeds that would resolve it (``ClaimResult.needed``); "" when none has a plan."""
    said = [f"{name}: {c.text} " + (f"~{c.needed:.0f}" if math.isfinite(c.needed) else f"more than {MOST_PAIRS}")
            for name, c in claims if not math.isnan(c.needed)]
    return "; ".join(said)


def counts(claims: list[ClaimResult]) -> str:
    """``"5 hold, 1 contradicted, 16 unresolved (6 of 22 resolved, 27 %)"``; claims that are not testable at
    this scale are counted apart, and the share is of the testable ones."""
    n = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    parts = [f"{n[HOLDS]} hold", f"{n[CONTRADICTED]} contradicted", f"{n[UNRESOLVED]} unresolved"]
    if n[NOT_EVALUATED]:
        parts.append(f"{n[NOT_EVALUATED]} not evaluated")
    if n[NOT_TESTABLE]:
        parts.append(f"{n[NOT_TESTABLE]} not testable (the row to beat scores {CEILING:g} % or more)")
    resolved = n[HOLDS] + n[CONTRADICTED]
    testable = len(claims) - n[NOT_TESTABLE]
    share = f", {100 * resolved / testable:.0f} %" if testable else ""
    of = f"{testable} testable" if n[NOT_TESTABLE] else f"{testable}"
    return f"{', '.join(parts)} ({resolved} of {of} resolved{share})"


__all__ = ["CEILING", "COMPARISONS", "CONTRADICTED", "ClaimResult", "Comparison", "HOLDS", "NOT_EVALUATED",
           "NOT_TESTABLE", "PLAN_POWER", "Part", "UNRESOLVED", "VERDICTS", "cheaper_pairs", "claim_line",
           "claims_frame", "combine", "counts", "evaluate_claims", "judge", "judge_part", "plans"]
