"""Operating points (issue 19 item 1): AUC, AP, EER and TPR at low FPR agree with scikit-learn's curves, the
intervals contain the point and shrink with n, and a stored threshold gives the FPR it promised on new reals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from deepfake_cli.metrics.operating import columns, deployed_points, operating_points, thresholds_at_fpr


def _scores(n_real, n_fake, shift, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    p = np.r_[rng.normal(0, 1, n_real), rng.normal(shift, 1, n_fake)]
    if ties:
        p = np.round(p, 1)  # many equal scores, as a kNN or a forest gives
    return np.r_[np.zeros(n_real, int), np.ones(n_fake, int)], p


@pytest.mark.parametrize("ties", [False, True])
def test_points_agree_with_scikit_learn(ties):
    y, p = _scores(300, 200, 1.5, ties=ties)
    op = operating_points(y, p, n_boot=50)
    assert op["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert op["average_precision"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, p)
    for t, key in ((0.01, "1"), (0.05, "5")):
        assert op[f"tpr_at_fpr_{key}"] == pytest.approx(tpr[fpr <= t].max(), abs=1e-12)
    # EER: the false-alarm and miss rates cross there (within one step of the curve)
    i = np.argmin(np.abs((1 - tpr) - fpr))
    assert abs(op["eer"] - fpr[i]) < 0.02 and 0 < op["eer"] < 0.5


def test_intervals_hold_the_point_and_shrink_with_more_images():
    small = operating_points(*_scores(60, 60, 1.0, seed=1), n_boot=300)
    large = operating_points(*_scores(2000, 2000, 1.0, seed=1), n_boot=300)
    for name in ("roc_auc", "average_precision", "eer", "tpr_at_fpr_5"):
        assert small[f"{name}_ci_low"] <= small[name] <= small[f"{name}_ci_high"], name
        assert (large[f"{name}_ci_high"] - large[f"{name}_ci_low"]) < (small[f"{name}_ci_high"] - small[f"{name}_ci_low"])


def test_one_class_gives_nan_not_an_error():
    op = operating_points(np.zeros(10, int), np.linspace(0, 1, 10), n_boot=10)
    assert all(math.isnan(v) for v in op.values())


def test_a_threshold_chosen_on_validation_reals_keeps_its_false_alarm_rate_on_new_reals():
    rng = np.random.default_rng(3)
    cuts = thresholds_at_fpr(rng.normal(0, 1, 5000))
    assert set(cuts) == {"1", "5"} and cuts["1"] > cuts["5"]
    y = np.r_[np.zeros(20000, int), np.ones(1000, int)]
    p = np.r_[rng.normal(0, 1, 20000), rng.normal(3, 1, 1000)]
    d = deployed_points(y, p, cuts)
    assert d["fpr_deployed_fpr_5"] == pytest.approx(0.05, abs=0.01)
    assert d["fpr_deployed_fpr_1"] == pytest.approx(0.01, abs=0.005)
    assert d["tpr_deployed_fpr_5"] > d["tpr_deployed_fpr_1"] > 0.5
    assert {f"tpr_deployed_fpr_{k}" for k in cuts} | {f"fpr_deployed_fpr_{k}" for k in cuts} <= set(columns())


def test_at_most_the_budget_of_validation_reals_lies_above_the_cut():
    reals = np.arange(200, dtype=float)
    cuts = thresholds_at_fpr(reals)
    assert (reals > cuts["1"]).sum() <= 2 and (reals > cuts["5"]).sum() <= 10
    assert (reals > cuts["5"]).sum() == 10  # and no stricter than it needs to be


def test_eval_rows_carry_both_readings_named_apart(cifake_lowlevel, biggan6_lowlevel, tmp_path):
    """A real model on real images: the row has the oracle TPRs with intervals, and the deployed reading at
    the thresholds train stored from its validation reals, with the FPR that occurred."""
    from deepfake_cli.stages.evaluate import COLUMNS, evaluate
    from deepfake_cli.stages.train import train
    from deepfake_cli.store.artifacts import load_model

    model = train(str(cifake_lowlevel["features"]), "lda", str(tmp_path / "lda.model"), test_size=0.25)[0].path
    cuts = load_model(model).meta["validation"]["operating_thresholds"]
    assert set(cuts) == {"1", "5"} and all(0.0 <= v <= 1.0 for v in cuts.values())
    rows = evaluate([model], [cifake_lowlevel["features"], biggan6_lowlevel["features"]])
    assert {r["kind"] for r in rows} == {"within", "cross"}
    for r in rows:
        assert set(columns()) <= set(r) and set(columns()) <= set(COLUMNS)
        assert r["roc_auc_ci_low"] <= r["roc_auc"] <= r["roc_auc_ci_high"]
        assert 0.0 <= r["tpr_at_fpr_5"] <= 1.0 and r["tpr_at_fpr_1"] <= r["tpr_at_fpr_5"]
        assert 0.0 <= r["eer"] <= 1.0
        for k in ("1", "5"):  # deployed: measured at the stored cut, on this set's own images
            assert r[f"fpr_deployed_fpr_{k}"] * r["n_real"] == pytest.approx(round(r[f"fpr_deployed_fpr_{k}"] * r["n_real"]))


def test_a_fake_only_set_is_scored_against_a_named_real_pool(cifake_lowlevel, tmp_path):
    """Issue 19 item 2: a generator set without reals (here StyleGAN fakes alone) gets AUC and TPR at the
    pool's FPR once paired with a named pool of reals; unpaired it has fake recall alone."""
    import shutil

    from deepfake_cli.errors import DeepfakeError
    from deepfake_cli.stages.evaluate import evaluate
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.stages.train import train
    from tests.conftest import copy_subset, example_set

    stylegan = copy_subset(example_set("forensynths_stylegan"), tmp_path / "stylegan", 8)
    shutil.rmtree(stylegan / "real")
    pool = copy_subset(example_set("forensynths_biggan"), tmp_path / "pool", 8)
    shutil.rmtree(pool / "fake")
    feats = tmp_path / "test.h5"
    extract([f"stylegan={stylegan}", f"pool={pool}"], backbone="lowlevel", out=str(feats), device="cpu", workers=0)
    model = train(str(cifake_lowlevel["features"]), "lda", str(tmp_path / "lda.model"), test_size=0.25)[0].path

    alone = {r["test_dataset"]: r for r in evaluate([model], [feats])}
    assert alone["stylegan"]["n_real"] == 0 and alone["stylegan"]["reals_pool"] == ""
    assert alone["stylegan"]["roc_auc"] != alone["stylegan"]["roc_auc"]  # NaN: no reals, no AUC

    paired = {r["test_dataset"]: r for r in evaluate([model], [feats], reals="pool")}
    s = paired["stylegan"]
    assert s["reals_pool"] == "pool" and s["n_fake"] == 8 and s["n_real"] == 8
    assert 0.0 <= s["roc_auc"] <= 1.0 and 0.0 <= s["tpr_at_fpr_5"] <= 1.0
    assert s["accuracy_fake"] == alone["stylegan"]["accuracy_fake"]  # the fakes are scored the same
    assert paired["pool"]["reals_pool"] == ""  # the pool itself is not paired with itself
    with pytest.raises(DeepfakeError, match="no dataset of that name"):
        evaluate([model], [feats], reals="nope")


def test_eval_md_pools_every_distinct_test_image_of_a_model(cifake_lowlevel, biggan6_lowlevel, tmp_path):
    """Issue 19 item 1, pooled: one line per model pooling the images of all its test sets, each once."""
    from deepfake_cli.stages.evaluate import evaluate, pooled_points, to_markdown
    from deepfake_cli.stages.train import train

    model = train(str(cifake_lowlevel["features"]), "lda", str(tmp_path / "lda.model"), test_size=0.25)[0].path
    per_image: list[dict] = []
    rows = evaluate([model], [cifake_lowlevel["features"], biggan6_lowlevel["features"]], per_image=per_image)
    (pooled,) = pooled_points(rows, per_image)
    distinct = {im["sha256"]: im for im in per_image}
    assert pooled["n_real"] + pooled["n_fake"] == len(distinct) == sum(r["n"] for r in rows)
    y = [im["label"] for im in distinct.values()]
    p = [im["p_fake"] for im in distinct.values()]
    assert pooled["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12) and pooled["n_sets"] == 2
    md = to_markdown(rows, per_image)
    assert f"| pooled: 2 test set(s) | {pooled['n_real']} | {pooled['n_fake']} |" in md
