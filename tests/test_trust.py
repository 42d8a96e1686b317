"""What predict's labels rest on (threshold, true labels and accuracy, novelty and one-label warnings),
calibrated p_fake, small-sample warnings, and compact model files (ShrinkageLDA, compressed archives)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import zipfile

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from typer.testing import CliRunner

from deepfake_cli.metrics import calibration as calib
from deepfake_cli.metrics import novelty
from deepfake_cli.store.artifacts import load_model
from deepfake_cli.classifiers._lda import ShrinkageLDA
from deepfake_cli.cli import app
from deepfake_cli.store.features import FeatureFileWriter, FeatureSet, read_features
from deepfake_cli.stages.predict import predict
from deepfake_cli.stages.train import MIN_TEST, MIN_VAL_PER_CLASS, _split, small_sample_warnings, train
from tests.conftest import example_set

runner = CliRunner()


@pytest.fixture(scope="module")
def cifake(tmp_path_factory, cifake_lowlevel):
    """`lowlevel` features of all 48 CIFAKE images (the session's); models trained on them with 30% held out;
    the held-out images copied to held/real, held/fake."""
    root = tmp_path_factory.mktemp("trust")
    src, feats = cifake_lowlevel["images"], cifake_lowlevel["features"]
    train(str(feats), "lda,naive-bayes,knn3", str(root / "m"), test_size=0.3)
    fs = read_features(feats)
    held = set(load_model(root / "m" / "lda.model").meta["heldout_sha256"]["cifake"])
    for path, sha in zip(fs.path.tolist(), fs.sha256.tolist()):
        if sha in held:
            (root / "held" / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / path, root / "held" / path)
    return {"root": root, "features": feats, "models": root / "m", "held": root / "held", "n_held": len(held)}


# --- predict: threshold, true labels, accuracy, warnings --------------------------------------------------

def test_predict_on_own_heldout_images_says_its_accuracy_and_does_not_warn(cifake):
    for name in ("lda", "naive-bayes", "knn3"):
        m = load_model(cifake["models"] / f"{name}.model")
        res = predict(str(m.path), [str(cifake["held"])], device="cpu")
        # no warning about the inputs; the model's own evidence is thin (a few validation images per class) and says so
        assert [w for w in res.warnings if ": thin evidence: " not in w] == [], (name, res.warnings)
        assert any(w.startswith(f"{name}: thin evidence: its threshold and calibration were chosen on ")
                   for w in res.warnings)
        assert len(res.rows) == cifake["n_held"] >= 10
        for r in res.rows:
            assert r["threshold"] == m.threshold and r["label"] == ("fake" if r["p_fake"] >= m.threshold else "real")
            assert r["true_label"] == r["path"].split("/")[-2]  # held/<class>/<file>
            assert isinstance(r["novelty"], float)
        k = sum(r["label"] == r["true_label"] for r in res.rows)
        acc = res.accuracy[name]
        assert acc["n"] == len(res.rows) and acc["n_correct"] == k
        assert acc["ci_low"] < k / len(res.rows) < acc["ci_high"]
        assert res.summary == [s for s in res.summary if s.startswith(f"{name}: accuracy {k / len(res.rows):.3f} "
                                                                       f"({k}/{len(res.rows)})")]
        # on images like the training data, about 1% lie beyond the 99th percentile; here at most one
        assert sum(r["novelty"] > 1 for r in res.rows) <= 1


def test_predict_on_another_generator_warns_novelty_and_one_label(cifake):
    res = predict(str(cifake["models"] / "lda.model"), [str(example_set("forensynths_biggan"))], device="cpu")
    novel = [w for w in res.warnings if "look unlike the data the model was trained on" in w]
    one = [w for w in res.warnings if "are labelled" in w and "forensynths_biggan" in w]
    assert novel and one, res.warnings
    far = sum(r["novelty"] > 1 for r in res.rows)
    assert f"{far} of 40 image(s) ({far / 40:.0%})" in novel[0] and far / 40 > 0.5
    assert res.accuracy["lda"]["n"] == 40 and res.summary[0].startswith("lda: accuracy 0.500 (20/40)")


def test_predict_cli_prints_threshold_true_label_and_closing_summary(cifake, tmp_path):
    model = cifake["models"] / "knn3.model"
    res = runner.invoke(app, ["predict", str(model), str(example_set("forensynths_stylegan")), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0]) == ["path", "p_fake", "label", "model", "threshold", "score", "novelty", "true_label"]
    assert {r["threshold"] for r in rows} == {repr(load_model(model).threshold)}
    assert {r["true_label"] for r in rows} == {"real", "fake"}
    err = res.stderr.strip().splitlines()
    assert any(line.startswith("warning knn3:") for line in err)
    assert err[-1].startswith("knn3: accuracy ") and "on 40 labelled image(s) (20 real, 20 fake), 95% CI" in err[-1]
    # JSON lines carry the same fields; unlabelled inputs have no true_label column and no summary
    loose = tmp_path / "loose"
    loose.mkdir()
    for p in sorted((cifake["held"] / "fake").iterdir())[:3]:
        shutil.copy(p, loose / p.name)
    res = runner.invoke(app, ["predict", str(model), str(loose), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert set(lines[0]) == {"path", "p_fake", "label", "model", "threshold", "score", "novelty"}
    assert "labelled image" not in res.stderr  # no accuracy summary (the model's own held-out figure is cited)


def test_one_label_and_novelty_rules(tmp_path):
    from deepfake_cli.stages.prediction_checks import check

    def rows(n, fakes, far, where):
        return [{"path": f"{where}/{i}.png", "model": "m", "label": "fake" if i < fakes else "real",
                 "novelty": 2.0 if i < far else 0.5, "true_label": "", "threshold": 0.5} for i in range(n)]

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    out = check(rows(20, 18, 1, a) + rows(9, 9, 0, b), [str(a), str(b)])
    assert out.warnings == []  # 90% one label; 9 images too few to judge; 1 of 29 beyond: expected by chance
    out = check(rows(20, 19, 5, a) + rows(20, 0, 0, b), [str(a), str(b)])
    assert len(out.warnings) == 3, out.warnings
    assert "5 of 40 image(s) (12%) lie farther" in out.warnings[0]  # per model, over all inputs
    assert f"19 of 20 image(s) in {a} (95%) are labelled fake" in out.warnings[1]
    assert f"20 of 20 image(s) in {b} (100%) are labelled real" in out.warnings[2]
    assert out.summary == []  # no true labels: no accuracy line


# --- calibration ----------------------------------------------------------------------------------------

def test_calibration_is_recorded_and_threshold_applies_to_calibrated_p(cifake):
    fs = read_features(cifake["features"])
    for name in ("lda", "naive-bayes", "knn3"):
        m = load_model(cifake["models"] / f"{name}.model")
        cal = m.meta["calibration"]
        assert cal["method"] == "sigmoid" and cal["fitted_on"] == "validation" and cal["a"] > 0
        assert cal["input"] == ("decision_function" if name == "lda" else "logit_p")
        assert cal["n"] == m.meta["n_val"]
        margins, _ = calib.margin(m.estimator, fs.X)
        np.testing.assert_allclose(m.p_fake(fs.X), calib.apply(cal, margins), rtol=1e-12)
        # monotone: the calibrated p ranks images as the classifier's own score does
        raw = m.score(fs.X)
        assert np.all(np.diff(m.p_fake(fs.X)[np.argsort(raw, kind="stable")]) >= -1e-12)
        assert "calibrated" in m.meta["threshold_rule"]


def test_calibration_makes_saturated_probabilities_reliable_on_validation(cifake):
    """Naive Bayes on 83 low-level features says p = 0 or 1 for nearly every image; after Platt scaling on the
    validation part its expected calibration error there is smaller, and p_fake no longer saturates."""
    fs = read_features(cifake["features"])
    m = load_model(cifake["models"] / "naive-bayes.model")
    split = _split(fs, 0.3, 0.2, 0, ["cifake"])
    y, X = fs.y[split.val_idx], fs.X[split.val_idx]
    raw, cal = m.score(X), m.p_fake(X)
    assert np.mean((raw < 1e-6) | (raw > 1 - 1e-6)) >= 0.5  # the case saturates
    assert calib.expected_calibration_error(y, cal) < calib.expected_calibration_error(y, raw)
    assert m.meta["validation"]["ece"] == pytest.approx(calib.expected_calibration_error(y, cal))
    assert m.meta["validation"]["ece"] < m.meta["validation"]["ece_uncalibrated"]
    assert 0.01 < cal.min() and cal.max() < 0.99


def test_platt_fit_recovers_a_known_map_and_never_reverses_the_ranking():
    rng = np.random.default_rng(0)
    m = rng.normal(size=4000) * 3
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.5 * m - 1)))).astype(int)
    cal = calib.fit("sigmoid", m, y)
    assert cal["a"] == pytest.approx(0.5, rel=0.1) and cal["b"] == pytest.approx(-1, abs=0.15)
    # scores that rank validation images the wrong way round: slope at its floor, p near the base rate
    flipped = calib.fit("sigmoid", -m, y)
    assert 0 < flipped["a"] < 1e-2
    p = calib.apply(flipped, -m)
    assert abs(p.mean() - y.mean()) < 0.02 and np.all(np.diff(p[np.argsort(-m)]) >= 0)
    iso = calib.fit("isotonic", m, y)
    assert np.all(np.diff(iso["y"]) >= 0) and calib.apply(iso, np.array([-1e9, 1e9])).tolist() == [iso["y"][0],
                                                                                                 iso["y"][-1]]
    assert calib.expected_calibration_error([0, 1, 1, 0], [0.0, 1.0, 1.0, 0.0]) == 0.0
    assert calib.expected_calibration_error([0, 1], [0.9, 0.9]) == pytest.approx(0.4)


def test_train_calibration_options(cifake, tmp_path):
    feats = str(cifake["features"])
    none = train(feats, "naive-bayes", str(tmp_path / "none.model"), calibration="none")[0]
    m = load_model(none.path)
    X = read_features(feats).X
    assert m.meta["calibration"]["method"] == "none" and none.calibration == "none"
    np.testing.assert_array_equal(m.p_fake(X), m.score(X))
    iso = load_model(train(feats, "lda", str(tmp_path / "iso.model"), calibration="isotonic")[0].path)
    assert iso.meta["calibration"]["method"] == "isotonic" and len(iso.meta["calibration"]["x"]) >= 2
    res = runner.invoke(app, ["train", feats, "--classifier", "lda", "--calibration", "beta", "--out",
                              str(tmp_path / "x.model")])
    assert res.exit_code == 2 and "Unknown calibration 'beta'; choose from sigmoid, isotonic, none" in res.output


# --- novelty reference ----------------------------------------------------------------------------------

def test_novelty_reference_is_stored_small_and_separates_other_generators(cifake):
    m = load_model(cifake["models"] / "lda.model")
    info, ref = m.meta["novelty"], m.extras["novelty"]
    assert info["quantile"] == 0.99 and info["cutoff"] > 0 and info["n_reference"] == m.meta["n_train"]
    assert info["dim"] == 83 and ref["components"].shape == (info["components"], 83)
    assert ref["components"].dtype == np.float32
    other = read_features(cifake["features"]).X  # in-distribution: the training images themselves
    assert np.mean(m.novelty(other) > 1) <= 0.05


def test_novelty_distance_is_a_mahalanobis_distance_in_low_dimensions():
    """With more images than dimensions and every direction kept, the distance is the Mahalanobis distance
    under the Ledoit-Wolf covariance of the standardised features."""
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4)) + 5
    ref = novelty._fit(Z, k_max=4)
    X = (Z - Z.mean(0)) / Z.std(0)
    cov = LedoitWolf().fit(X).covariance_
    q = rng.normal(size=(5, 4)) * 3
    qs = (q - Z.mean(0)) / Z.std(0)
    want = np.sqrt(np.einsum("ij,jk,ik->i", qs, np.linalg.inv(cov), qs))
    np.testing.assert_allclose(novelty.distances(ref, q), want, rtol=1e-4)
    assert novelty.fit_reference(Z[:5])[0] is None  # too few images: no reference, and it says why
    assert "fewer than" in novelty.fit_reference(Z[:5])[1]["reason"]


# --- small samples ---------------------------------------------------------------------------------------

def _synthetic(n_per_class: int) -> FeatureSet:
    n = 2 * n_per_class
    rng = np.random.default_rng(0)
    return FeatureSet(X=rng.normal(size=(n, 3)).astype(np.float32), y=np.repeat([0, 1], n_per_class).astype(np.int8),
                      dataset=np.array(["a"] * n), path=np.array([f"{i}.png" for i in range(n)]),
                      sha256=np.array([f"{i:064x}" for i in range(n)]), meta={})


def test_small_sample_warnings_name_the_counts():
    fs = _synthetic(20)
    split = _split(fs, 0.2, 0.2, 0, ["a"])
    got = small_sample_warnings(fs, split, ["a"])
    n_val = [int((fs.y[split.val_idx] == c).sum()) for c in (0, 1)]
    assert len(got) == 2
    assert got[0].startswith(f"small validation part: {n_val[0]} real and {n_val[1]} fake images (fewer than "
                             f"{MIN_VAL_PER_CLASS} per class)") and f"after fitting on {len(split.fit_idx)}" in got[0]
    assert got[1].startswith(f"small test part: 8 held-out images of a (4 real, 4 fake; fewer than {MIN_TEST})")
    fs = _synthetic(200)
    assert small_sample_warnings(fs, _split(fs, 0.2, 0.2, 0, ["a"]), ["a"]) == []


def test_train_cli_warns_once_about_small_parts(cifake, tmp_path):
    res = runner.invoke(app, ["train", str(cifake["features"]), "--classifier", "lda,knn3", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("warning: small validation part:") == 1
    assert res.stderr.count("warning: small test part: 10 held-out images of cifake (5 real, 5 fake;") == 1
    assert load_model(tmp_path / "lda.model").meta["sample_warnings"]


# --- compact models ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shrinkage", ["auto", 0.3, 0.0])
@pytest.mark.parametrize("shape", [(26, 300), (120, 20)])
def test_shrinkage_lda_matches_scikit_learn(shrinkage, shape):
    rng = np.random.default_rng(2)
    n, d = shape
    y = np.arange(n) % 2
    X = rng.normal(size=(n, d)) * rng.uniform(0.2, 3, d) + 0.4 * y[:, None]
    X[:, 1] = 2.0  # a constant feature
    X = StandardScaler().fit_transform(X)
    ours = ShrinkageLDA(shrinkage).fit(X, y)
    if shrinkage == 0.0 and n < d:  # singular: ours is the minimum-norm solution, theirs picks up rounding noise
        assert np.all(np.isfinite(ours.coef_))
        return
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), rtol=1e-8,
                               atol=1e-8 * np.abs(ref.decision_function(X)).max())
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    assert ours.coef_.shape == (1, d) and not hasattr(ours, "covariance_")


@parametrize_with_checks([ShrinkageLDA(), ShrinkageLDA(shrinkage=None), ShrinkageLDA(shrinkage=0.5)])
def test_shrinkage_lda_keeps_the_scikit_learn_contract(estimator, check):
    check(estimator)


def test_lda_model_on_3088_dims_is_small_compressed_and_quick(tmp_path):
    rng = np.random.default_rng(3)
    n, d = 26, 3088
    y = np.arange(n) % 2
    X = (rng.normal(size=(n, d)) + 0.3 * y[:, None]).astype(np.float32)
    fs = FeatureSet(X=X, y=y.astype(np.int8), dataset=np.array(["a"] * n), path=np.array([f"{i}" for i in range(n)]),
                    sha256=np.array([f"{i:064x}" for i in range(n)]),
                    meta={"backbone": "lowlevel", "dim": d, "layers": "last", "weights_id": "none",
                          "preprocessing": {}, "transform": "none", "seed": 0, "complete": True})
    feats = tmp_path / "wide.h5"
    with FeatureFileWriter(feats, fs.meta, d) as writer:
        writer.append(fs.X, fs.y, fs.dataset, fs.path, fs.sha256)
        writer.close()

    t = time.perf_counter()
    r = train(str(feats), "lda", str(tmp_path / "lda.model"), test_size=0.0, val_size=0.25)[0]
    assert time.perf_counter() - t < 15  # scikit-learn's lsqr LDA took 34-94 s here (an SVD of 3088 x 3088)
    size = r.path.stat().st_size
    assert size < 400_000  # was 76 MB: the d x d covariance
    with zipfile.ZipFile(r.path) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    m = load_model(r.path)
    assert type(m.estimator.named_steps["clf"]).__name__ == "ShrinkageLDA"
    assert any(w.startswith(f"{r.n_fit} images to fit in 3088 dimensions, without a reducer")
               for w in r.sample_warnings), r.sample_warnings
