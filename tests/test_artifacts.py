"""Model files: round trip, atomic write, and refusal of foreign, tampered and unexpected content."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from deepfake_cli.store.artifacts import (BASE_TYPES, LEGACY_TYPES, load_model, load_reducer, save_model, save_reducer,
                                    trusted_types, untrusted_types)
from deepfake_cli.classifiers import create_classifier, needs_scaling
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.reducers import create_reducer
from tests.conftest import REPO, example_set
from tests.helpers import classifier_names, pixel_stats

NAMES = classifier_names()  # every classifier `all` trains, from the registry


@pytest.fixture(scope="module")
def data():
    root = example_set("forensynths_stylegan")
    X, y = [], []
    for label, cls in enumerate(("real", "fake")):
        for p in sorted((root / cls).iterdir())[:12]:
            X.append(pixel_stats(p))
            y.append(label)
    return np.array(X, dtype=np.float32), np.array(y)


def _pipeline(name, X, y, reducer="pca"):
    red = create_reducer(reducer, **({"dim": 4} if reducer == "pca" else {})).fit(X)
    return Pipeline([("reduce", FrozenEstimator(red)),
                     ("scale", StandardScaler() if needs_scaling(name) else "passthrough"),
                     ("clf", create_classifier(name, 0))]).fit(X, y)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, data):
    X, y = data
    path = tmp_path_factory.mktemp("m") / "lda.model"
    save_model(path, _pipeline("lda", X, y), {"threshold": 0.4, "classifier": "lda", "held": ["a" * 64]})
    return path


@pytest.mark.parametrize("name", NAMES)
def test_every_classifier_pipeline_round_trips(tmp_path, data, name):
    X, y = data
    pipe = _pipeline(name, X, y)
    meta = {"threshold": 0.5, "classifier": name, "n": np.int64(3)}
    path = save_model(tmp_path / f"{name}.model", pipe, meta)
    assert untrusted_types(path) == []
    m = load_model(path)
    assert m.meta == {"threshold": 0.5, "classifier": name, "n": 3}
    assert m.name == name and m.threshold == 0.5
    np.testing.assert_allclose(m.p_fake(X), pipe.predict_proba(X)[:, 1], atol=1e-12)
    # atomic write: only the final file is left in the folder
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.model"]


def test_random_bytes_are_refused(tmp_path):
    bad = tmp_path / "random.model"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DeepfakeError, match="not a deepfake-cli model file"):
        load_model(bad)


def test_plain_pickle_is_refused_without_unpickling(tmp_path, data):
    X, y = data
    bad = tmp_path / "pickled.model"
    bad.write_bytes(pickle.dumps({"estimator": _pipeline("lda", X, y)}))
    with pytest.raises(DeepfakeError, match="not a skops archive"):
        load_model(bad)


def test_skops_file_with_an_unexpected_type_is_refused(tmp_path, data):
    X, y = data
    # a FunctionTransformer can carry any callable: exactly what a crafted model file would use
    evil = Pipeline([("f", FunctionTransformer(func=np.exp)), ("clf", create_classifier("lda").fit(X, y))])
    path = tmp_path / "evil.model"
    sio.dump({"format": "deepfake-cli", "kind": "model", "format_version": 1, "meta_json": "{}",
              "estimator": evil}, path)
    with pytest.raises(DeepfakeError, match="outside the allowlist.*FunctionTransformer"):
        load_model(path)
    with pytest.raises(DeepfakeError, match="outside the allowlist"):
        save_model(tmp_path / "evil2.model", evil, {})
    assert not (tmp_path / "evil2.model").exists()


def test_tampered_schema_is_refused(tmp_path, model_file):
    # rename a trusted class in the schema to something dangerous, keep the rest of the archive
    tampered = tmp_path / "tampered.model"
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "schema.json":
                schema = data.decode().replace('"ShrinkageLDA"', '"system"').replace(
                    '"deepfake_cli.classifiers._lda"', '"os"')
                assert schema != data.decode()
                data = schema.encode()
            dst.writestr(item, data)
    with pytest.raises(DeepfakeError, match="os.system"):
        load_model(tampered)


def test_truncated_file_and_wrong_kinds_are_refused(tmp_path, model_file, data):
    cut = tmp_path / "cut.model"
    cut.write_bytes(model_file.read_bytes()[:200])
    with pytest.raises(DeepfakeError):
        load_model(cut)
    with pytest.raises(DeepfakeError, match="is a deepfake-cli model, not a reducer"):
        load_reducer(model_file)
    X, _ = data
    red = save_reducer(tmp_path / "r.reducer", create_reducer("pca", dim=2).fit(X), {})
    with pytest.raises(DeepfakeError, match="not a model"):
        load_model(red)
    foreign = tmp_path / "foreign.skops"
    sio.dump({"some": "dict"}, foreign)
    with pytest.raises(DeepfakeError, match="not a deepfake-cli model"):
        load_model(foreign)
    with pytest.raises(DeepfakeError, match="No model file"):
        load_model(tmp_path / "missing.model")


def test_allowlist_holds_no_callables():
    banned = ("builtins.eval", "builtins.exec", "os.", "subprocess", "FunctionTransformer", "functools")
    assert not [t for t in trusted_types() if any(b in t for b in banned)]
    assert json.loads(json.dumps(sorted(trusted_types())))


def test_allowlist_is_the_base_plus_what_the_registries_declare():
    from deepfake_cli.classifiers import CLASSIFIERS, LinearProbe
    from deepfake_cli.reducers import REDUCERS, AutoencoderReducer

    declared = set().union(*(e.trusted_types for r in (CLASSIFIERS, REDUCERS) for e in r.entries()))
    assert trusted_types() == BASE_TYPES | LEGACY_TYPES | declared
    assert "sklearn.svm._classes.SVC" in CLASSIFIERS.get("svm").trusted_types
    assert f"{LinearProbe.__module__}.LinearProbe" in CLASSIFIERS.get("linear-probe").trusted_types
    assert f"{AutoencoderReducer.__module__}.AutoencoderReducer" in REDUCERS.get("autoencoder").trusted_types
    # no estimator sneaks in through the base: only the pipeline around the registered ones
    assert not [t for t in BASE_TYPES if t.startswith("sklearn.") and "Classifier" in t]


# --- files written by deepfake-cli 0.1.0 (tests/golden/legacy, see its README) ----------------------------

LEGACY = REPO / "tests" / "golden" / "legacy"


@pytest.fixture(scope="module")
def legacy_features(tmp_path_factory):
    """The `lowlevel` features the legacy files were made from (`biggan=examples/data/forensynths_biggan`)."""
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.store.features import read_features

    out = tmp_path_factory.mktemp("legacy") / "f.h5"
    extract([f"biggan={example_set('forensynths_biggan')}"], backbone="lowlevel", out=str(out), device="cpu",
            workers=0, progress=False)
    return read_features(out)


def test_legacy_models_load_and_score_exactly_as_they_did(monkeypatch):
    from deepfake_cli.stages.predict import predict

    monkeypatch.chdir(REPO)  # predictions.jsonl holds repository-relative paths
    want = {(r["path"], r["model"]): r for r in map(json.loads, (LEGACY / "predictions.jsonl").read_text().splitlines())}
    models = load_model(LEGACY / "models" / "linear-probe.model")
    assert models.meta["tool_version"] == "0.1.0"
    assert type(models.estimator.named_steps["clf"]).__name__ == "LinearProbe"
    rows = predict(str(LEGACY / "models"), ["examples/data/forensynths_biggan"], device="cpu").rows
    assert len(rows) == len(want) == 120
    for r in rows:
        w = want[(r["path"], r["model"])]
        assert r["p_fake"] == pytest.approx(w["p_fake"], rel=1e-9, abs=1e-12) and r["label"] == w["label"], r


@pytest.mark.parametrize("name", ["pca8", "ae4"])
def test_legacy_reducers_load_and_reconstruct_exactly_as_they_did(name, legacy_features):
    art = load_reducer(LEGACY / f"{name}.reducer")
    assert art.meta["tool_version"] == "0.1.0"
    X = legacy_features.X
    assert art.estimator.transform(X).shape == (len(X), art.meta["output_dim"])
    # the reconstruction error stored at fitting time, on these very features, comes out the same
    assert art.estimator.reconstruction_error(X)["mse"] == pytest.approx(art.meta["reconstruction"]["mse"], rel=1e-9)


def test_a_legacy_file_this_version_cannot_read_is_refused_naming_its_version(tmp_path):
    gone = tmp_path / "gone.model"  # as if the probe had been removed: its recorded class is no longer known
    with zipfile.ZipFile(LEGACY / "models" / "linear-probe.model") as src, zipfile.ZipFile(gone, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "schema.json":
                data = data.replace(b'"LinearProbe"', b'"RemovedProbe"')
            dst.writestr(item, data)
    with pytest.raises(DeepfakeError) as err:
        load_model(gone)
    msg = str(err.value)
    assert "deepfake_cli.classifiers.RemovedProbe" in msg and "\n" not in msg
    assert "written by deepfake-cli 0.1.0; retrain it with this version" in msg
