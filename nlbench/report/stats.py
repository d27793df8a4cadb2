"""Means and confidence intervals over seeds, Student t (scipy.stats).

The half-width is ``t_{(1+level)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation (n - 1 in
the denominator). One value has no interval (NaN). ``paired`` lines two rows' runs up by seed: the
differences of a paired design, whose interval is the one-sample interval of the differences.
``pairs_for_power`` turns an unresolved comparison into a plan: how many paired seeds would resolve it.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd
from scipy import stats


def t_critical(df: int, level: float = 0.95) -> float:
    """The two-sided ``level`` critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(stats.t.ppf((1 + level) / 2, df))


def mean_sd(values: Iterable) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n) of the finite values; NaN where undefined."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, 1
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)), n


def half_width(sd: float, n: int, level: float = 0.95) -> float:
    """The half-width of the ``level`` Student-t interval of a mean of n values with sample SD ``sd``."""
    return t_critical(n - 1, level) * sd / math.sqrt(n) if n > 1 else math.nan


def mean_ci(values: Iterable, level: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the ``level`` interval, n) of the finite values; NaN where undefined."""
    mean, sd, n = mean_sd(values)
    return mean, half_width(sd, n, level), n


MOST_PAIRS = 1000  # pairs_for_power looks no further: beyond it a plan is not one


def pairs_for_power(gap: float, sd: float, level: float = 0.95, power: float = 0.8, most: int = MOST_PAIRS) -> float:
    """The fewest pairs n at which a paired difference with true mean ``gap`` past a boundary and standard
    deviation ``sd`` puts the two-sided ``level`` interval's near end past that boundary with probability
    ``power``, if the differences are normal: the noncentral t, 1 - F_{n-1, gap sqrt(n) / sd}(t_crit) >= power.
    ``inf`` when even ``most`` pairs would not do (a gap of 0 never does)."""
    if not (math.isfinite(gap) and math.isfinite(sd)) or gap <= 0 or sd < 0:
        return math.inf
    if sd == 0:
        return 2.0

    def reached(n: int) -> bool:
        return 1 - stats.nct.cdf(t_critical(n - 1, level), n - 1, gap * math.sqrt(n) / sd) >= power

    if not reached(most):
        return math.inf
    low, high = 2, most  # power rises with n: bisect for the first n that reaches it
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if reached(mid) else (mid + 1, high)
    return float(low)


def by_seed(frame: pd.DataFrame, column: str = "top1") -> pd.DataFrame:
    """seed x row of ``column`` over the runs that finished (``status == ok``); a missing run is NaN."""
    ok = frame[frame["status"] == "ok"].copy()
    ok[column] = pd.to_numeric(ok[column], errors="coerce")
    return ok.pivot_table(index="seed", columns="row", values=column, aggfunc="mean")


def paired(wide: pd.DataFrame, better: str, worse: str, requires: tuple[str, ...] = ()) -> pd.Series:
    """``better - worse`` per seed, over the seeds where both (and every row of ``requires``) have a value."""
    needed = [better, worse, *requires]
    if any(r not in wide.columns for r in needed):
        return pd.Series(dtype=float)
    both = wide[needed].dropna()
    return both[better] - both[worse]


__all__ = ["MOST_PAIRS", "by_seed", "half_width", "mean_ci", "mean_sd", "paired", "pairs_for_power", "t_critical"]
