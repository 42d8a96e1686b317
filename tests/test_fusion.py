"""`fusion` on real `lowlevel+effnet-lite0` features: member slices from the file, gate, safe model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.store.artifacts import load_model, untrusted_types
from deepfake_cli.classifiers.fusion import FusionClassifier
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.evaluate import evaluate
from deepfake_cli.stages.extract import extract
from deepfake_cli.store.features import feature_members, read_features
from deepfake_cli.stages.predict import predict
from deepfake_cli.stages.train import train
from tests.conftest import copy_subset, example_set

runner = CliRunner()
pytestmark = pytest.mark.slow  # joined lowlevel+effnet features of 28 images, and fusion training runs
PAIR = "lowlevel+effnet-lite0"


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    biggan = copy_subset(example_set("forensynths_biggan"), root / "biggan", 10)
    cifake = copy_subset(example_set("cifake_sd14"), root / "cifake", 6)
    out = root / "pair.h5"
    extract([str(biggan), str(cifake)], backbone=PAIR, out=str(out), device="cpu", workers=0, batch_size=16)
    single = root / "low.h5"
    extract([str(biggan)], backbone="lowlevel", out=str(single), device="cpu", workers=0)
    return {"root": root, "pair": out, "single": single, "biggan": biggan}


def test_combined_files_record_their_members(feats):
    fs = read_features(feats["pair"])
    low = read_features(feats["single"]).meta["dim"]
    assert [m["backbone"] for m in fs.meta["members"]] == ["lowlevel", "effnet-lite0"]
    assert feature_members(fs.meta) == [("lowlevel", low), ("effnet-lite0", 1280)]
    assert low + 1280 == fs.X.shape[1]
    # files written before members were recorded: the dims come from the members' configs
    old = {k: v for k, v in fs.meta.items() if k != "members"}
    assert feature_members(old) == feature_members(fs.meta)
    with pytest.raises(DeepfakeError, match="re-extract|extract it again"):
        feature_members(dict(old, layers="early"))
    with pytest.raises(DeepfakeError, match="reduced"):
        feature_members(dict(fs.meta, reduced_by={"method": "pca"}))


def test_train_hands_the_members_to_fusion_and_the_model_needs_no_torch(feats, tmp_path):
    out = tmp_path / "fusion.model"
    res = runner.invoke(app, ["train", str(feats["pair"]), "--classifier", "fusion", "--out", str(out),
                              "--param", "epochs=40", "--param", "proj_dim=16"])
    assert res.exit_code == 0, res.output
    assert not untrusted_types(out)
    model = load_model(out)
    clf = model.estimator.named_steps["clf"]
    members = feature_members(read_features(feats["pair"]).meta)
    assert [tuple(m) for m in clf.members] == members
    assert model.meta["classifier_params"]["members"] == [list(m) for m in members]
    assert clf.member_names_ == ["lowlevel", "effnet-lite0"]
    np.testing.assert_allclose(clf.member_weights_.sum(), 1.0)
    # nothing of torch in the fitted estimator: numpy arrays, lists of them, plain values
    for value in vars(clf).values():
        items = value if isinstance(value, list) else [value]
        assert all(type(v).__module__.split(".")[0] in ("numpy", "builtins") for v in items), value
    rows = evaluate([str(out)], [str(feats["pair"])])
    assert {r["kind"] for r in rows} == {"within"} and all(0 <= r["accuracy"] <= 1 for r in rows)
    # predict from raw images gives what the pipeline gives on the stored features
    fs = read_features(feats["pair"])
    p_feat = model.p_fake(fs.X)
    pred = predict(str(out), [str(feats["biggan"] / "fake")], device="cpu", workers=0)
    assert len(pred.rows) == 10
    for row in pred.rows:
        name = row["path"].split("/")[-1]
        i = next(i for i, (d, p) in enumerate(zip(fs.dataset, fs.path)) if d == "biggan" and p.endswith("/" + name))
        assert abs(float(row["p_fake"]) - p_feat[i]) < 1e-3


def test_fusion_is_refused_where_it_cannot_apply(feats, tmp_path):
    with pytest.raises(DeepfakeError, match="combined backbones"):
        train(str(feats["single"]), "fusion", str(tmp_path / "x.model"))
    from deepfake_cli.stages.reduce import reduce

    red = tmp_path / "p.reducer"
    reduce(str(feats["pair"]), "pca", str(red), params={"dim": 4})
    with pytest.raises(DeepfakeError, match="reducer"):
        train(str(feats["pair"]), "fusion", str(tmp_path / "y.model"), reducer=str(red))
    # `all` leaves the opt-in fusion out, so it still trains on single-backbone files
    from deepfake_cli.classifiers import parse_classifier_names

    assert "fusion" not in parse_classifier_names("all")


def test_gate_prefers_the_informative_member_and_is_seeded():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n)
    useful = rng.normal(size=(n, 4)) + 1.5 * y[:, None]
    noise = rng.normal(size=(n, 40))
    X = np.hstack([useful, noise])
    a = FusionClassifier(members=(("useful", 4), ("noise", 40)), proj_dim=8, epochs=60).fit(X, y)
    b = FusionClassifier(members=(("useful", 4), ("noise", 40)), proj_dim=8, epochs=60).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.member_weights_[0] > a.member_weights_[1]
    assert np.mean(a.predict(X) == y) > 0.85
    w = a.member_weights(X[:5])
    assert w.shape == (5, 2) and np.allclose(w.sum(axis=1), 1.0)
    assert 0 < a.best_epoch_ <= a.epochs_run_ <= 60
    mean = FusionClassifier(members=(("useful", 4), ("noise", 40)), gate="mean", proj_dim=8, epochs=60).fit(X, y)
    np.testing.assert_allclose(mean.member_weights_, [0.5, 0.5])
    with pytest.raises(ValueError, match="cover 10 columns"):
        FusionClassifier(members=(("a", 4), ("b", 6))).fit(X, y)
    json.dumps(a.get_params())  # plain parameters: the model file's metadata records them
