"""The statistics of a score: Student's t distribution, the val-loss test, intervals.

Written out here rather than taken from scipy: the scorer needs three functions of
one distribution, and scipy would add tens of megabytes to every scorer image. The
t CDF goes through the regularized incomplete beta function, evaluated by its
continued fraction (modified Lentz); tests check it against published table values.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

_EPS = 1e-14
_TINY = 1e-300


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on the CDF: monotone, and accurate to 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2.0


def mean_below_pvalue(values: Sequence[float], threshold: float) -> float | None:
    """One-sided one-sample t test of H1: mean < threshold. None with fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    if sd == 0.0:
        return 0.0 if mean < threshold else 1.0
    t = (threshold - mean) / (sd / math.sqrt(n))
    return 1.0 - t_cdf(t, n - 1)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Two-sided confidence interval of the mean. None with fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile(0.5 + level / 2.0, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


def ratio_ci(
    numerators: Sequence[float], denominators: Sequence[float], level: float = 0.95
) -> tuple[float, float] | None:
    """Interval of mean(num) / mean(den) over paired samples (delta method, t quantile).

    FSR is such a ratio: num_i = t_baseline_i - t_submission_i and
    den_i = t_baseline_i - t_reference_i, paired by repeat (same seed, same slot).
    """
    n = len(numerators)
    if n < 2 or n != len(denominators):
        return None
    mn, md = statistics.fmean(numerators), statistics.fmean(denominators)
    if md == 0.0:
        return None
    r = mn / md
    var_n, var_d = statistics.variance(numerators), statistics.variance(denominators)
    cov = sum((a - mn) * (b - md) for a, b in zip(numerators, denominators, strict=True)) / (n - 1)
    var_r = max(0.0, var_n - 2.0 * r * cov + r * r * var_d) / (n * md * md)
    half = t_quantile(0.5 + level / 2.0, n - 1) * math.sqrt(var_r)
    return r - half, r + half
