"""Confidence-interval math against known values and against simulation."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deepfake_cli.metrics.stats import bootstrap_ci, distinct_images, format_accuracy, pooled_accuracy, wilson_interval


def test_wilson_known_values():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=5e-4)
    assert high == pytest.approx(0.5962, abs=5e-4)
    # 0/10: the textbook Wilson upper bound is 0.2775; the lower bound is exactly 0.
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=5e-4)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(1 - 0.2775, abs=5e-4)


def test_wilson_shrinks_with_n_and_contains_p():
    widths = []
    for n in (10, 100, 1000):
        low, high = wilson_interval(0.8 * n, n)
        assert low < 0.8 < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_wilson_edge_cases():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_wilson_coverage_by_simulation():
    # The 95% interval should cover the true p in roughly 95% of draws.
    rng = np.random.default_rng(0)
    p, n = 0.7, 60
    ks = rng.binomial(n, p, size=2000)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(k, n) for k in ks)])
    assert 0.92 < covered < 0.98


def test_bootstrap_ci_of_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 1.0, size=400)
    low, high = bootstrap_ci(np.mean, x, n_boot=500, seed=0)
    assert low < x.mean() < high
    # Close to the normal-theory interval mean +- 1.96 s / sqrt(n).
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert high - low == pytest.approx(2 * half, rel=0.2)
    assert bootstrap_ci(np.mean, x, n_boot=200, seed=3) == bootstrap_ci(np.mean, x, n_boot=200, seed=3)


def test_bootstrap_ci_stratified_auc_and_undefined():
    rng = np.random.default_rng(2)
    y = np.array([0] * 30 + [1] * 5)
    s = rng.normal(size=35) + y * 1.5
    low, high = bootstrap_ci(roc_auc_score, y, s, n_boot=300, seed=0, stratify=y)
    assert 0.0 <= low < roc_auc_score(y, s) < high <= 1.0
    # One class only: AUC is undefined on every draw -> NaN interval, no exception.
    one = np.zeros(10, dtype=int)
    assert all(math.isnan(v) for v in bootstrap_ci(roc_auc_score, one, s[:10], n_boot=50))


def test_pooled_accuracy_counts_each_image_once_and_averages_rows():
    # three rows on one 100-image test set (e.g. three cells), one row on a 40-image set
    acc, n, low, high = pooled_accuracy([0.9, 0.8, 0.7, 0.5], [100, 100, 100, 40], ["a", "a", "a", "b"])
    assert n == 140  # distinct images, not 340 trials
    assert acc == pytest.approx((0.9 + 0.8 + 0.7 + 0.5) / 4)  # every row weighs the same
    assert low < acc < high
    assert "n=140" in format_accuracy(acc, n, low, high)
    # NaN rows are skipped; no rows at all gives NaN and n = 0
    assert pooled_accuracy([0.9, float("nan")], [10, 10], ["a", "a"]).n == 10
    empty = pooled_accuracy([float("nan")], [10], ["a"])
    assert math.isnan(empty.accuracy) and empty.n == 0


def test_repeating_rows_on_the_same_images_does_not_narrow_the_interval():
    one = pooled_accuracy([0.7], [60], ["a"])
    fifty = pooled_accuracy([0.7] * 50, [60] * 50, ["a"] * 50)
    assert fifty.n == 60
    # the old pooling (Wilson on 50 x 60 = 3000 trials) is about sqrt(50) times narrower
    naive = wilson_interval(0.7 * 3000, 3000)
    assert (fifty.high - fifty.low) == pytest.approx(one.high - one.low, rel=0.1)
    assert (fifty.high - fifty.low) > 4 * (naive[1] - naive[0])


def test_single_row_interval_is_close_to_wilson_and_never_a_point():
    acc, n, low, high = pooled_accuracy([0.7], [60], ["a"])
    wl, wh = wilson_interval(42, 60)
    assert (low, high) == pytest.approx((wl, wh), abs=0.01)
    # 12 of 12 right in two rows: the draws do not vary, yet the interval stays open below 1 (Wilson's)
    p = pooled_accuracy([1.0, 1.0], [12, 12], ["a", "a"])
    assert (p.low, p.high) == pytest.approx(wilson_interval(12, 12))
    # high but not perfect on small sets: the interval still reaches above the estimate
    p = pooled_accuracy([17 / 18, 1.0, 11 / 12], [18, 18, 12], ["a", "a", "b"])
    assert p.low < p.accuracy < p.high < 1.0


def test_pooled_accuracy_is_seeded():
    args = ([0.9, 0.6, 0.75], [30, 30, 20], ["a", "a", "b"])
    assert pooled_accuracy(*args, seed=1) == pooled_accuracy(*args, seed=1)
    assert pooled_accuracy(*args, seed=1) != pooled_accuracy(*args, seed=2)


def _correlated_cells(rng, n_images, accs, noise):
    """Per-image correctness of cells that share image difficulty (u) plus a little cell-own noise."""
    u = rng.uniform(size=n_images)
    out = []
    for a in accs:
        flip = rng.uniform(size=n_images) < noise
        own = rng.uniform(size=n_images) < a
        out.append(np.where(flip, own, u < a))
    return out


def test_image_bootstrap_with_ids_covers_the_true_mean():
    """Simulated grids: 20 cells on the same 80 images; the interval should cover the population mean
    accuracy about 95% of the time, where Wilson on the summed counts covers it far less often."""
    rng = np.random.default_rng(0)
    accs = rng.uniform(0.6, 0.9, size=20)
    noise = 0.3
    truth = float(np.mean(accs))  # each cell's population accuracy is its `a` (u and own are uniform)
    covered = naive_covered = 0
    reps = 150
    for _ in range(reps):
        cells = _correlated_cells(rng, 80, accs, noise)
        ids = np.array([f"img{i}" for i in range(80)])
        p = pooled_accuracy([c.mean() for c in cells], [80] * 20, ["a"] * 20, [(ids, c) for c in cells],
                            n_boot=400, seed=int(rng.integers(1 << 30)))
        covered += p.low <= truth <= p.high
        k = sum(c.sum() for c in cells)
        lo, hi = wilson_interval(k, 80 * 20)
        naive_covered += lo <= truth <= hi
    assert 0.88 <= covered / reps <= 0.99
    assert naive_covered / reps < 0.75


def test_count_bootstrap_is_conservative_and_exact_when_cells_agree():
    rng = np.random.default_rng(3)
    ids = np.array([f"img{i}" for i in range(200)])
    accs = rng.uniform(0.55, 0.95, size=15)
    # cells that agree image by image as far as their accuracies allow: both methods see the same thing
    u = rng.uniform(size=200)
    agree = [u < a for a in accs]
    by_ids = pooled_accuracy([c.mean() for c in agree], [200] * 15, ["a"] * 15, [(ids, c) for c in agree])
    by_counts = pooled_accuracy([c.mean() for c in agree], [200] * 15, ["a"] * 15)
    assert by_counts.n == by_ids.n == 200
    assert (by_counts.low, by_counts.high) == pytest.approx((by_ids.low, by_ids.high), abs=0.012)
    # independent cells: the counts alone cannot know that, so their interval is wider than the truth
    indep = [rng.uniform(size=200) < a for a in accs]
    by_ids = pooled_accuracy([c.mean() for c in indep], [200] * 15, ["a"] * 15, [(ids, c) for c in indep])
    by_counts = pooled_accuracy([c.mean() for c in indep], [200] * 15, ["a"] * 15)
    assert by_counts.high - by_counts.low > 2 * (by_ids.high - by_ids.low)


def test_distinct_images_union_of_ids_or_largest_count():
    a = (np.array(["x", "y", "z"]), np.array([True, False, True]))
    b = (np.array(["y", "w"]), np.array([True, True]))
    assert distinct_images([3, 2], ["s", "s"], [a, b]) == {"s": 4}
    assert distinct_images([3, 2, 7], ["s", "s", "t"]) == {"s": 3, "t": 7}
    p = pooled_accuracy([2 / 3, 1.0], [3, 2], ["s", "s"], [a, b])
    assert p.n == 4 and p.accuracy == pytest.approx((2 / 3 + 1.0) / 2)
