"""Confidence intervals for the accuracies that evaluate, study, audit and report print, and the
accuracy-matrix grouping that eval's and the report's tables share.

Pooled accuracies (`pooled_accuracy`) count each test image once: the mean of per-row accuracies
with a bootstrap over test images, never a proportion over the sum of the rows' counts.

Every accuracy this tool shows carries its count and a 95% interval: small test sets are common
here, and a bare "0.93" on 40 images invites over-reading.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95% normal quantile
N_BOOT = 2000  # bootstrap draws of pooled accuracies


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


class Pooled(NamedTuple):
    """A pooled accuracy: the mean of per-row accuracies, the distinct test images behind it, its 95% CI."""

    accuracy: float
    n: int
    low: float
    high: float


def pooled_accuracy(accuracies: Sequence[float], counts: Sequence[float], test_sets: Sequence[str],
                    images: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None, *,
                    n_boot: int = N_BOOT, confidence: float = 0.95, seed: int = 0) -> Pooled:
    """Pool result rows that may share test images: (mean accuracy, distinct images, ci_low, ci_high).

    Each row is one model scored on one test set (`test_sets[i]`, `counts[i]` images, `accuracies[i]`);
    many rows reuse the same images (every cell of a grid, every test transform), so counting
    sum(counts) trials would make the interval far too narrow. Here:

    * the estimate is the plain mean of the rows' accuracies (every row weighs the same);
    * n is the number of distinct test images: per test set the union of the rows' image ids when
      `images` gives them, else the largest count among its rows (the rows test the same images,
      or subsets of them);
    * the interval comes from a seeded bootstrap that resamples *images* within each test set (the test
      sets themselves stay fixed) and recomputes the mean of the rows' accuracies on each draw. Its
      variance gives the effective number of images, n_eff = p(1-p) / variance (the independent images
      that would make a proportion as uncertain), and the interval is Wilson's on n_eff: inside [0, 1],
      open at 0 and 1, and for a single row exactly that row's own Wilson interval (n_eff = n). Where
      the draws do not vary (every row right, or wrong, on every image) n_eff is the distinct count.

    `images[i]` is `(ids, correct)` (arrays: an id per test image, e.g. its sha256, and whether the row
    got it right), or None. A test set all of whose rows have ids is resampled image by image. Otherwise
    only the counts are known, and the bootstrap assumes the rows agree image by image as far as their
    accuracies allow (an image missed by one row is missed by every less accurate row): the strongest
    dependence the counts permit, hence the widest interval they are consistent with (`_count_draws`).
    Rows with NaN accuracy or no images are skipped.
    """
    acc = np.asarray(accuracies, dtype=float)
    cnt = np.asarray(counts, dtype=float)
    sets = np.asarray([str(s) for s in test_sets], dtype=object)
    imgs = list(images) if images is not None else [None] * len(acc)
    if not (len(acc) == len(cnt) == len(sets) == len(imgs)):
        raise ValueError("pooled_accuracy: accuracies, counts, test_sets and images must have the same length")
    ok = np.isfinite(acc) & np.isfinite(cnt) & (cnt > 0)
    if not ok.any():
        return Pooled(math.nan, 0, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    total = np.zeros(n_boot)
    used = np.zeros(n_boot)
    n_distinct = 0
    for s in sorted(set(sets[ok].tolist())):
        idx = np.flatnonzero(ok & (sets == s))
        if all(imgs[i] is not None for i in idx):
            draws, n_s = _image_draws([imgs[i] for i in idx], rng, n_boot)
        else:
            draws, n_s = _count_draws(acc[idx], cnt[idx], rng, n_boot)
        total += np.nansum(draws, axis=1)
        used += np.sum(~np.isnan(draws), axis=1)
        n_distinct += n_s
    point = float(acc[ok].mean())
    means = total[used > 0] / used[used > 0]
    var = float(np.var(means, ddof=1)) if len(means) > 1 else 0.0
    n_eff = point * (1.0 - point) / var if var > 0 and 0.0 < point < 1.0 else float(n_distinct)
    z = 1.96 if confidence == 0.95 else _normal_quantile(0.5 + confidence / 2.0)  # 1.96: as every row's CI
    low, high = wilson_interval(point * n_eff, n_eff, z=z)
    return Pooled(point, int(n_distinct), low, high)


def _normal_quantile(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


def distinct_images(counts: Sequence[float], test_sets: Sequence[str],
                    images: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None) -> dict[str, int]:
    """Distinct test images per test set, counted as `pooled_accuracy` counts them (sorted by name)."""
    cnt = np.asarray(counts, dtype=float)
    imgs = list(images) if images is not None else [None] * len(cnt)
    by_set: dict[str, list[int]] = {}
    for i, s in enumerate(test_sets):
        if np.isfinite(cnt[i]) and cnt[i] > 0:
            by_set.setdefault(str(s), []).append(i)
    out = {}
    for s in sorted(by_set):
        idx = by_set[s]
        if all(imgs[i] is not None for i in idx):
            out[s] = len(np.unique(np.concatenate([np.asarray(imgs[i][0]) for i in idx])))
        else:
            out[s] = int(round(cnt[idx].max()))
    return out


def _count_draws(acc: np.ndarray, n: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[np.ndarray, int]:
    """Bootstrap draws (n_boot, rows) of the accuracies of rows sharing one test set, from counts alone.

    Each of the N images (N = the largest count) gets a latent difficulty u and a latent position v,
    both uniform: row c got image i right when u_i < acc_c, and row c tested image i when v_i < n_c / N
    (smaller test sets are subsets of larger ones). Resampling N images then only needs how many fall in
    each cell of the grid that the rows' accuracies and sizes cut [0, 1]^2 into: one multinomial draw.
    """
    N = int(round(n.max()))
    a = np.clip(acc, 0.0, 1.0)
    f = n / n.max()
    ue = np.unique(np.concatenate([[0.0, 1.0], a]))
    ve = np.unique(np.concatenate([[0.0, 1.0], f]))
    du, dv = np.diff(ue), np.diff(ve)
    p = np.outer(du, dv).ravel()
    draws = rng.multinomial(N, p / p.sum(), size=n_boot)
    cum = np.zeros((n_boot, len(du) + 1, len(dv) + 1))
    cum[:, 1:, 1:] = draws.reshape(n_boot, len(du), len(dv)).cumsum(axis=1).cumsum(axis=2)
    iu, jv = np.searchsorted(ue, a), np.searchsorted(ve, f)
    correct, tested = cum[:, iu, jv], cum[:, -1, jv]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tested > 0, correct / np.maximum(tested, 1), np.nan), N


def _image_draws(rows: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator,
                 n_boot: int) -> tuple[np.ndarray, int]:
    """Bootstrap draws (n_boot, rows) of the accuracies of rows sharing one test set, image by image.

    The distinct images of the rows are resampled with replacement; each row's accuracy on a draw is
    its correct images' weight over its tested images' weight.
    """
    universe = np.unique(np.concatenate([np.asarray(ids) for ids, _ in rows]))
    N = len(universe)
    tested = np.zeros((N, len(rows)), dtype=np.float32)
    right = np.zeros_like(tested)
    for c, (ids, ok) in enumerate(rows):
        pos = np.searchsorted(universe, np.asarray(ids))
        np.add.at(tested[:, c], pos, 1.0)
        np.add.at(right[:, c], pos, np.asarray(ok, dtype=np.float32))
    m = N
    out = np.empty((n_boot, len(rows)))
    chunk = max(1, 4_000_000 // m)  # bounded memory for large test sets
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        picks = rng.integers(0, m, size=(b, m)) + (np.arange(b) * m)[:, None]
        w = np.bincount(picks.ravel(), minlength=b * m).reshape(b, m).astype(np.float32)
        num, den = w @ right, w @ tested
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + b] = np.where(den > 0, num / den, np.nan)
    return out, N


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
