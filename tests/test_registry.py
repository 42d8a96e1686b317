"""The registries: entries, typed parameters, scoping of --param, and a classifier and a reducer added at
run time (in this file only) going through reduce -> train -> save -> load -> eval -> predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from typer.testing import CliRunner

from deepfake_cli.store.artifacts import load_model, load_reducer, trusted_types, untrusted_types
from deepfake_cli.classifiers import (CLASSIFIERS, create_classifier, list_classifiers, parse_classifier_names,
                                      parse_classifier_params, register_classifier)
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.evaluate import evaluate
from deepfake_cli.stages.extract import extract
from deepfake_cli.stages.predict import predict
from deepfake_cli.reducers import REDUCERS, create_reducer, list_reducers, register_reducer
from deepfake_cli.reducers._base import ReducerMixin
from deepfake_cli.registry import Entry, Param, Registry, float_or, int_tuple, optional
from deepfake_cli.stages.train import train
from tests.conftest import copy_subset, example_set

runner = CliRunner()


def _toy_registry() -> Registry:
    reg = Registry("classifier")

    def make(k, weights, random_state):
        return {"k": k, "weights": weights, "random_state": random_state}

    reg.register(Entry("toy", "a toy", make,
                       params=(Param("k", 3, "neighbours", int), Param("weights", None, "w", optional(float))),
                       capabilities=frozenset({"random_state"})))
    reg.register(Entry("plain", "no parameters", lambda: "plain"))
    return reg


def test_registry_creates_with_declared_defaults_and_refuses_unknown_names_and_keys():
    reg = _toy_registry()
    assert reg.names() == ["toy", "plain"] and [e.name for e in reg.entries()] == ["toy", "plain"]
    assert reg.create("toy", random_state=7) == {"k": 3, "weights": None, "random_state": 7}
    assert reg.create("toy", k=5, random_state=0)["k"] == 5
    assert reg.create("plain") == "plain"
    with pytest.raises(DeepfakeError, match=r"Unknown classifier 'nope'; choose from toy, plain\."):
        reg.get("nope")
    with pytest.raises(DeepfakeError, match=r"'toy' does not take depth; it takes k, weights, random_state\."):
        reg.create("toy", depth=2, random_state=0)
    with pytest.raises(DeepfakeError, match="'plain' does not take device; it takes no parameters"):
        reg.create("plain", device="cpu")  # no "device" capability
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(Entry("toy", "again", dict))
    with pytest.raises(ValueError, match="reserved"):
        reg.register(Entry("bad", "seed as a param", dict, params=(Param("random_state", 0, "seed", int),)))


def test_parse_params_types_values_and_refuses_bad_ones():
    reg = _toy_registry()
    assert reg.parse_params("toy", ["k=7", " weights = 0.5 "]) == {"k": 7, "weights": 0.5}
    assert reg.parse_params("toy", ["weights=none"]) == {"weights": None}
    assert reg.parse_params("toy", []) == {}
    with pytest.raises(DeepfakeError, match=r"Bad value k='x' for classifier 'toy'"):
        reg.parse_params("toy", ["k=x"])
    with pytest.raises(DeepfakeError, match=r"--param takes KEY=VALUE, got 'k'"):
        reg.parse_params("toy", ["k"])
    with pytest.raises(DeepfakeError, match=r"has no parameter 'random_state'; it takes k, weights\."):
        reg.parse_params("toy", ["random_state=1"])  # seeds come from --seed, not --param
    assert int_tuple("512, 128") == (512, 128) and int_tuple([4, "2"]) == (4, 2)
    gamma = float_or("scale", "auto")
    assert gamma("scale") == "scale" and gamma("0.25") == 0.25
    with pytest.raises(ValueError):
        gamma("big")


@pytest.mark.parametrize("registry", [CLASSIFIERS, REDUCERS], ids=["classifiers", "reducers"])
def test_declared_defaults_are_what_the_estimators_get(registry):
    """A Param's default is the value the built estimator carries (so `deepfake classifiers` tells the truth)."""
    for entry in registry.entries():
        extra = {k: v for k, v in (("random_state", 0), ("device", "cpu")) if k in entry.accepted()}
        got = registry.create(entry.name, **extra).get_params(deep=True)
        for p in entry.params:
            keys = [k for k in got if k == p.name or k.endswith("__" + p.name)]
            assert keys, (entry.name, p.name)
            assert got[keys[0]] == p.default, (entry.name, p.name)
        assert entry.trusted_types <= trusted_types()


def test_classifier_params_scope_to_the_classifiers_that_take_them():
    names = parse_classifier_names("lda,linear-probe,knn1,knn3")
    got = parse_classifier_params(names, ["lr=0.1", "n_neighbors=7", "knn1.n_neighbors=2", "lda.shrinkage=0.3"])
    assert got == {"linear-probe": {"lr": 0.1}, "knn1": {"n_neighbors": 2}, "knn3": {"n_neighbors": 7},
                   "lda": {"shrinkage": 0.3}}
    assert create_classifier("knn3", **got["knn3"]).n_neighbors == 7
    with pytest.raises(DeepfakeError, match=r"no chosen classifier takes 'C' \(lda takes shrinkage; "):
        parse_classifier_params(names, ["C=2"])
    with pytest.raises(DeepfakeError, match="'svm' is not among the classifiers being trained"):
        parse_classifier_params(names, ["svm.C=2"])
    with pytest.raises(DeepfakeError, match="Classifier 'lda' has no parameter 'lr'"):
        parse_classifier_params(names, ["lda.lr=2"])


# --- a classifier and a reducer added at run time ------------------------------------------------------

class NearestMeanClassifier(ClassifierMixin, BaseEstimator):
    """p(class) from a softmax over minus the squared distances to the class means divided by `temperature`."""

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        logits = -((X[:, None, :] - self.means_[None]) ** 2).sum(-1) / self.temperature
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class FirstColumnsReducer(ReducerMixin, TransformerMixin, BaseEstimator):
    """Keeps the first `dim` features."""

    def __init__(self, dim: int = 2):
        self.dim = dim

    def fit(self, X, y=None):
        validate_data(self, X)
        self.n_components_ = int(self.dim)
        return self

    def transform(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False)[:, : self.dim]

    def inverse_transform(self, X):
        return np.hstack([X, np.zeros((len(X), self.n_features_in_ - self.dim))])


def _type_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@pytest.fixture
def toys():
    clf = register_classifier(Entry(
        "nearest-mean", "softmax over distances to the class means", NearestMeanClassifier,
        params=(Param("temperature", 1.0, "softmax temperature", float),),
        trusted_types=frozenset({_type_name(NearestMeanClassifier)}), capabilities=frozenset({"scaled"})))
    red = register_reducer(Entry(
        "first-columns", "the first dim features", FirstColumnsReducer,
        params=(Param("dim", 2, "features kept", int),), trusted_types=frozenset({_type_name(FirstColumnsReducer)})))
    yield clf, red
    del CLASSIFIERS._entries[clf.name], REDUCERS._entries[red.name]


def test_a_classifier_and_a_reducer_added_at_run_time_go_through_every_stage(toys, tmp_path):
    assert _type_name(NearestMeanClassifier) in trusted_types()
    assert "nearest-mean" in [c["name"] for c in list_classifiers()]
    assert "first-columns" in [r["name"] for r in list_reducers()]
    res = runner.invoke(app, ["classifiers"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "nearest-mean" in res.output and "temperature=1.0" in res.output
    res = runner.invoke(app, ["reducers"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "first-columns" in res.output and "dim=2" in res.output

    biggan = copy_subset(example_set("forensynths_biggan"), tmp_path / "biggan", 8)
    feats = tmp_path / "f.h5"
    extract([str(biggan)], backbone="lowlevel", out=str(feats), device="cpu", workers=0)
    res = runner.invoke(app, ["reduce", str(feats), "--method", "first-columns", "--param", "dim=5",
                              "--out", str(tmp_path / "first.reducer")])
    assert res.exit_code == 0, res.output
    assert "-> 5 dimensions" in res.output
    assert load_reducer(tmp_path / "first.reducer").meta["params"] == {"dim": 5}
    res = runner.invoke(app, ["reduce", str(feats), "--method", "first-columns", "--variance", "0.9",
                              "--out", str(tmp_path / "x.reducer")])
    assert res.exit_code == 2 and "has no parameter 'variance'; it takes dim" in res.output

    res = runner.invoke(app, ["train", str(feats), "--classifier", "nearest-mean,lda", "--param", "temperature=50",
                              "--reducer", str(tmp_path / "first.reducer"), "--out", str(tmp_path / "models")])
    assert res.exit_code == 0, res.output
    path = tmp_path / "models" / "nearest-mean.model"
    assert untrusted_types(path) == []
    model = load_model(path)
    assert model.meta["classifier_params"] == {"temperature": 50.0}
    assert isinstance(model.estimator.named_steps["clf"], NearestMeanClassifier)
    assert model.estimator.named_steps["clf"].means_.shape == (2, 5)
    assert model.estimator.named_steps["scale"] != "passthrough"  # the entry asked for scaling

    rows = evaluate([path], [str(feats)])
    assert [(r["model"], r["kind"], r["reducer"]) for r in rows] == [("nearest-mean", "within", "first-columns:5")]
    assert rows[0]["n"] == sum(model.meta["n_heldout"].values())

    res = runner.invoke(app, ["predict", str(path), str(biggan), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = [r for r in (json.loads(line) for line in res.stdout.splitlines() if line.strip()) if "path" in r]
    assert len(out) == 16 and {r["model"] for r in out} == {"nearest-mean"}
    direct = predict(str(path), [str(biggan)], device="cpu").rows
    assert [r["p_fake"] for r in direct] == pytest.approx([r["p_fake"] for r in out])
    for r in out:
        assert r["label"] == ("fake" if r["p_fake"] >= model.threshold else "real")


def test_unregistered_types_are_refused_again(toys, tmp_path):
    """The allowlist follows the registry: a file whose classifier is no longer registered is refused."""
    from deepfake_cli.store.artifacts import save_model
    from sklearn.pipeline import Pipeline

    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    path = save_model(tmp_path / "toy.model", Pipeline([("clf", create_classifier("nearest-mean"))]).fit(X, y),
                      {"threshold": 0.5, "tool_version": "9.9"})
    assert create_reducer("first-columns", dim=None).dim == 2  # None means "the default"
    del CLASSIFIERS._entries["nearest-mean"]
    try:
        with pytest.raises(DeepfakeError, match=r"outside the allowlist \(.*NearestMeanClassifier\) "
                                                r"\(written by deepfake-cli 9\.9; retrain it"):
            load_model(path)
    finally:
        register_classifier(toys[0])


def test_a_classifier_that_needs_combined_features_refuses_a_single_backbone(tmp_path):
    entry = register_classifier(Entry("fusion-toy", "needs a+b features", NearestMeanClassifier,
                                      capabilities=frozenset({"combined"})))
    try:
        biggan = copy_subset(example_set("forensynths_biggan"), tmp_path / "biggan", 3)
        feats = tmp_path / "f.h5"
        extract([str(biggan)], backbone="lowlevel", out=str(feats), device="cpu", workers=0)
        with pytest.raises(DeepfakeError, match=r"fusion-toy needs features of combined backbones .* has lowlevel\."):
            train(str(feats), "fusion-toy", str(tmp_path / "m.model"), test_size=0.0)
        assert not (tmp_path / "m.model").exists()
    finally:
        del CLASSIFIERS._entries[entry.name]
