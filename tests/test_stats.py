"""Confidence-interval math against known values and against simulation."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deepfake_cli.stats import bootstrap_ci, format_accuracy, pooled_accuracy, wilson_interval


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


def test_pooled_accuracy_is_count_weighted():
    acc, n, low, high = pooled_accuracy([1.0, 0.5, float("nan")], [10, 30, 5])
    assert n == 40
    assert acc == pytest.approx((10 + 15) / 40)
    assert (low, high) == pytest.approx(wilson_interval(25, 40))
    assert "n=40" in format_accuracy(acc, n, low, high)
