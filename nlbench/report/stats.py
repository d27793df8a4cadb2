"""Mean and 95% confidence interval over seeds (Student t), without scipy.

The half-width is ``t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation (n - 1 in the
denominator). One seed has no interval (NaN). The critical values are the two-sided 95% column of a
t table; between tabulated degrees of freedom the value is interpolated linearly in 1/df, which is
exact to the third decimal.
"""
from __future__ import annotations

import math
from typing import Iterable

# Two-sided 95% (upper 0.975 quantile) of Student's t, degrees of freedom 1..30.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
# Beyond 30: (df, t), then the normal quantile at df = infinity.
T_975_LARGE = ((30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980))
Z_975 = 1.960


def t_critical(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"t_critical: df={df} must be >= 1")
    if df <= len(T_975):
        return T_975[df - 1]
    points = [*T_975_LARGE, (math.inf, Z_975)]
    for (d0, t0), (d1, t1) in zip(points, points[1:]):
        if d0 <= df <= d1:
            # linear in 1/df between the two tabulated points
            x, x0, x1 = 1 / df, 1 / d0, 1 / d1
            return t1 + (t0 - t1) * (x - x1) / (x0 - x1)
    return Z_975  # pragma: no cover


def mean_ci(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, 95% CI half-width, n) of the finite values; NaN mean for none, NaN half-width for one."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, 1
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, t_critical(n - 1) * sd / math.sqrt(n), n


__all__ = ["T_975", "mean_ci", "t_critical"]
