"""Every registered classifier on small real-image features; the threshold rule and the scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deepfake_cli.classifiers import (CLASSIFIERS, LinearProbe, create_classifier, list_classifiers,
                                      needs_scaling, parse_classifier_names)
from deepfake_cli.metrics.scoring import binary_scores, choose_threshold
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import read_features
from tests.helpers import capability_kwargs, classifier_names

# from the registry, so a new classifier is tested without editing a list: the ones `all` trains, and the
# opt-in ones (they apply only to some features: fusion needs a+b features, zero-shot CLIP features;
# tests/test_fusion.py, tests/test_zero_shot.py)
NAMES = classifier_names()
OPT_IN = classifier_names(opt_in=True)
# the built-ins, which must stay registered
BUILT_IN = ["bagging", "decision-tree", "random-forest", "lda", "knn1", "knn3", "knn5", "svm", "naive-bayes",
            "gradient-boosting", "linear-probe"]


@pytest.fixture(scope="module")
def split(cifake_lowlevel):
    """`lowlevel` features of CIFAKE (24 real photos, 24 Stable Diffusion images): alternate images to train and test."""
    fs = read_features(cifake_lowlevel["features"])
    train = np.arange(len(fs.y)) % 2 == 0
    return fs.X[train], fs.y[train].astype(int), fs.X[~train], fs.y[~train].astype(int)


def test_registry_lists_every_name_once():
    names = [c["name"] for c in list_classifiers()]
    assert set(BUILT_IN) <= set(NAMES) and {"fusion", "zero-shot"} <= set(OPT_IN)
    assert sorted(names) == sorted(NAMES + OPT_IN) and len(set(names)) == len(names)
    assert parse_classifier_names("all") == NAMES
    assert parse_classifier_names("svm, lda,svm") == ["svm", "lda"]
    with pytest.raises(DeepfakeError, match="Unknown classifier 'bogus'"):
        parse_classifier_names("svm,bogus")
    with pytest.raises(DeepfakeError):
        create_classifier("bogus")


@pytest.mark.parametrize("name", NAMES)
def test_each_classifier_learns_real_vs_generated(name, split):
    Xtr, ytr, Xte, yte = split
    clf = CLASSIFIERS.create(name, **capability_kwargs(CLASSIFIERS.get(name)))
    model = make_pipeline(StandardScaler(), clf) if needs_scaling(name) else clf
    model.fit(Xtr, ytr)
    proba = model.predict_proba(Xte)
    assert proba.shape == (len(yte), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)  # float32 features: float32 sums (naive-bayes)
    assert list(model.classes_) == [0, 1]
    scores = binary_scores(yte, proba[:, 1], 0.5)
    # every classifier must beat chance on these held-out images (the weakest, knn1, reaches about 0.67)
    assert scores["roc_auc"] > 0.6, scores
    # seeded: a second fit gives the same probabilities
    clf2 = CLASSIFIERS.create(name, **capability_kwargs(CLASSIFIERS.get(name)))
    model2 = make_pipeline(StandardScaler(), clf2) if needs_scaling(name) else clf2
    np.testing.assert_allclose(model2.fit(Xtr, ytr).predict_proba(Xte), proba, atol=1e-6)


def test_linear_probe_keeps_numpy_weights_and_matches_its_argmax(split):
    Xtr, ytr, Xte, _ = split
    scaler = StandardScaler().fit(Xtr)
    probe = LinearProbe(epochs=200, random_state=3).fit(scaler.transform(Xtr), ytr)
    assert isinstance(probe.coef_, np.ndarray) and probe.coef_.shape == (2, Xtr.shape[1])
    p = probe.predict_proba(scaler.transform(Xte))
    np.testing.assert_array_equal(probe.predict(scaler.transform(Xte)), np.argmax(p, axis=1))
    other = LinearProbe(epochs=200, random_state=4).fit(scaler.transform(Xtr), ytr)
    assert not np.allclose(other.coef_, probe.coef_)
    with pytest.raises(ValueError):
        LinearProbe().fit(Xtr[ytr == 0], ytr[ytr == 0])


def test_threshold_maximises_balanced_accuracy(split):
    Xtr, ytr, Xte, yte = split
    p = create_classifier("naive-bayes").fit(Xtr, ytr).predict_proba(Xte)[:, 1]
    t = choose_threshold(yte, p)
    best = binary_scores(yte, p, t)["balanced_accuracy"]
    for cut in np.linspace(0, 1, 201):
        assert binary_scores(yte, p, cut)["balanced_accuracy"] <= best + 1e-12
    assert best >= binary_scores(yte, p, 0.5)["balanced_accuracy"]
    assert choose_threshold(np.zeros(5), p[:5]) == 0.5


def test_scores_are_nan_where_undefined(split):
    Xtr, ytr, Xte, yte = split
    p = create_classifier("lda").fit(Xtr, ytr).predict_proba(Xte)[:, 1]
    fakes = yte == 1
    s = binary_scores(yte[fakes], p[fakes], 0.5)
    assert s["n_real"] == 0 and s["n_fake"] == fakes.sum()
    assert math.isnan(s["roc_auc"]) and math.isnan(s["average_precision"]) and math.isnan(s["accuracy_real"])
    assert s["accuracy"] == s["accuracy_fake"] == np.mean(p[fakes] >= 0.5)


def test_linear_probe_follows_the_sklearn_shapes(split):
    Xtr, ytr, Xte, _ = split
    scaler = StandardScaler().fit(Xtr)
    probe = LinearProbe(epochs=50).fit(scaler.transform(Xtr), ytr)
    Z = scaler.transform(Xte)
    logits = Z.astype(np.float64) @ probe.coef_.T + probe.intercept_
    d = probe.decision_function(Z)
    assert d.shape == (len(Z),)  # binary: the margin of class 1, as scikit-learn's classifiers give it
    np.testing.assert_allclose(d, logits[:, 1] - logits[:, 0])
    # p(fake) is the softmax of the two logits, the formula of 0.1.0 (model files keep scoring the same)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_array_equal(probe.predict_proba(Z), e / e.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(probe.predict(Z), (d > 0).astype(int))
    three = LinearProbe(epochs=20).fit(Z, np.arange(len(Z)) % 3)
    assert three.decision_function(Z).shape == (len(Z), 3) and three.predict_proba(Z).shape == (len(Z), 3)
    with pytest.raises(NotFittedError):
        LinearProbe().predict_proba(Z)
    with pytest.raises(ValueError, match="X has 3 features"):
        probe.predict_proba(Z[:, :3])


def test_hyper_parameters_and_capabilities_reach_the_estimator():
    assert create_classifier("svm", C=2.5, random_state=4).get_params()["C"] == 2.5
    assert create_classifier("svm", random_state=4).random_state == 4
    assert create_classifier("random-forest", n_estimators=7, random_state=1).get_params()["n_estimators"] == 7
    probe = create_classifier("linear-probe", random_state=2, device="cpu", epochs=9)
    assert (probe.epochs, probe.random_state, probe.device) == (9, 2, "cpu")
    assert create_classifier("lda", random_state=5).get_params()["shrinkage"] == "auto"  # takes no seed
    with pytest.raises(DeepfakeError, match="Classifier 'lda' does not take device; it takes shrinkage"):
        create_classifier("lda", device="cuda")
    rows = {c["name"]: c for c in list_classifiers()}
    assert rows["linear-probe"]["capabilities"] == ["device", "random_state", "scaled"]
    assert [p["name"] for p in rows["gradient-boosting"]["params"]] == ["max_iter", "learning_rate", "min_samples_leaf"]
    assert all(r["scaled"] == needs_scaling(n) for n, r in rows.items())


def test_svm_switches_to_a_kernel_approximation_past_max_exact_and_says_so(split):
    """solver=auto fits libsvm up to max_exact training images and a Nystroem map + linear SVM above; with
    as many landmarks as images the approximation is the exact kernel, so both label the test images alike."""
    from deepfake_cli.classifiers._svm import SVMClassifier

    Xtr, ytr, Xte, yte = split
    scaler = StandardScaler().fit(Xtr)
    exact = SVMClassifier(random_state=0).fit(scaler.transform(Xtr), ytr)
    approx = SVMClassifier(max_exact=len(ytr) - 1, random_state=0).fit(scaler.transform(Xtr), ytr)
    assert exact.solver_ == "exact" and exact.fit_info()["solver"] == "exact" and "note" not in exact.fit_info()
    info = approx.fit_info()
    assert approx.solver_ == "nystroem" and info["solver"] == "nystroem" and info["n_fit"] == len(ytr)
    assert f"max_exact={len(ytr) - 1}" in info["note"] and "solver=exact" in info["note"]
    assert type(approx.estimator_.estimator).__name__ == "Pipeline"  # Nystroem -> LinearSVC, calibrated
    agree = np.mean(exact.predict(scaler.transform(Xte)) == approx.predict(scaler.transform(Xte)))
    acc = [np.mean(m.predict(scaler.transform(Xte)) == yte) for m in (exact, approx)]
    assert agree >= 0.8 and min(acc) > 0.6, (agree, acc)
    # the switch point is a hyper-parameter, and a forced solver is reported as such
    forced = SVMClassifier(solver="nystroem", n_components=8, random_state=0).fit(scaler.transform(Xtr), ytr)
    assert forced.fit_info()["why"] == "solver=nystroem" and forced.fit_info()["n_components"] == 8
    with pytest.raises(ValueError, match="solver must be one of"):
        SVMClassifier(solver="bogus").fit(Xtr, ytr)


def test_the_listing_says_what_switches_on_large_training_sets():
    rows = {c["name"]: c for c in list_classifiers()}
    assert "Nystroem" in rows["svm"]["at_scale"] and "20,000" in rows["svm"]["at_scale"]
    assert {p["name"] for p in rows["svm"]["params"]} >= {"solver", "max_exact", "n_components"}
