"""Confidence intervals for the accuracies that evaluate, study, audit and report print, and the
accuracy-matrix grouping that eval's and the report's tables share.

Every accuracy this tool shows carries its count and a 95% interval: small test sets are common
here, and a bare "0.93" on 40 images invites over-reading.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion of `k` successes out of `n` trials.

    Chosen over the normal (Wald) interval because it stays inside [0, 1] and is sensible at
    k = 0 or k = n, which happen often with small, easy test sets. `k` may be fractional (pooled
    accuracies times counts). Returns (nan, nan) when n is 0.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: Sequence | np.ndarray,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratify: Sequence | np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric(*resampled_arrays)`.

    The arrays are resampled together, row-wise, with replacement; `stratify` (e.g. the labels)
    keeps each class's count fixed so that metrics such as ROC AUC stay defined on every draw.
    Draws where the metric raises ValueError or returns NaN are dropped; (nan, nan) when fewer
    than half of the draws are usable (the metric is not defined on this data).
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("bootstrap_ci arrays must have the same length")
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)]
    if stratify is not None:
        strata = np.asarray(stratify)
        groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    values = []
    with warnings.catch_warnings():
        # Undefined draws (one class) are expected and dropped below; their warnings are noise.
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
            try:
                v = float(metric(*(a[idx] for a in arrs)))
            except ValueError:
                continue
            if not math.isnan(v):
                values.append(v)
    if len(values) < n_boot / 2:
        return (math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def pooled_accuracy(accuracies: Sequence[float], counts: Sequence[float]) -> tuple[float, int, float, float]:
    """Pool several accuracies measured on `counts` images each: (accuracy, n, ci_low, ci_high).

    Used when a table averages over factors: the pooled proportion weights each row by its n, and
    its Wilson interval is computed on the total count. Rows with NaN accuracy or n are skipped.
    Note the interval treats pooled rows as independent trials, which understates the spread
    when the same test images appear in several rows; report.py says so next to its tables.
    """
    acc = np.asarray(accuracies, dtype=float)
    cnt = np.asarray(counts, dtype=float)
    ok = ~(np.isnan(acc) | np.isnan(cnt))
    acc, cnt = acc[ok], cnt[ok]
    n = float(cnt.sum())
    if n == 0:
        return (math.nan, 0, math.nan, math.nan)
    k = float((acc * cnt).sum())
    k = min(max(k, 0.0), n)  # float round-off must not push k outside [0, n]
    low, high = wilson_interval(k, n)
    return (k / n, int(round(n)), low, high)


def format_accuracy(acc: float, n: int | float, low: float, high: float) -> str:
    """'0.912 [0.871, 0.941] n=200' -- the one way accuracies are printed in tables."""
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return f"n/a (n={int(n) if n == n else 0})"
    return f"{acc:.3f} [{low:.3f}, {high:.3f}] n={int(n)}"


def group_matrix(rows: Iterable[dict], row_of: Callable[[dict], str],
                 col_of: Callable[[dict], str]) -> tuple[list[str], list[str], dict[tuple[str, str], list[dict]]]:
    """Rows laid out as a matrix: (row keys, column keys, {(row key, column key): rows}), keys in
    first-seen order. The accuracy matrices of eval (one row per cell) and of the report (rows pooled
    per cell with `pooled_accuracy`) are both this grouping."""
    row_keys: dict[str, None] = {}
    col_keys: dict[str, None] = {}
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        rk, ck = row_of(r), col_of(r)
        row_keys.setdefault(rk, None)
        col_keys.setdefault(ck, None)
        cells.setdefault((rk, ck), []).append(r)
    return list(row_keys), list(col_keys), cells
