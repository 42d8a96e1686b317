"""`reduce --method autoencoder --search`: seeded random search, the trials table, the best reducer, study use."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.store.artifacts import load_reducer
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import read_features
from deepfake_cli.stages.reduce import reduce
from deepfake_cli.reducers import create_reducer
from deepfake_cli.stages.splits import heldout_split
from deepfake_cli.stages.train import train
from tests.conftest import copy_subset, example_set

runner = CliRunner()
SMALL = ["--param", "epoch_choices=5,10", "--param", "widths=16,32", "--param", "dims=2,4,8"]


@pytest.fixture(scope="module")
def feats(cifake_lowlevel):
    return cifake_lowlevel["features"]  # lowlevel features of the 48 CIFAKE examples (read-only)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_search_writes_every_trial_and_keeps_the_best(feats, tmp_path):
    out = tmp_path / "ae.reducer"
    res = runner.invoke(app, ["reduce", str(feats), "--method", "autoencoder", "--search", "--trials", "4",
                              "--out", str(out), "--device", "cpu", *SMALL])
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "ae.trials.csv")
    assert [int(r["trial"]) for r in rows] == [1, 2, 3, 4]
    assert {"dim", "hidden", "depth", "width", "dropout", "lr", "epochs", "val_relative_mse", "score"} <= set(rows[0])
    best = [r for r in rows if r["best"] == "True"]
    assert len(best) == 1 and float(best[0]["val_relative_mse"]) == min(float(r["val_relative_mse"]) for r in rows)
    art = load_reducer(out)
    assert art.meta["method"] == "autoencoder-search" and art.meta["search"]["trials_run"] == 4
    assert art.meta["output_dim"] == int(best[0]["dim"]) == art.estimator.n_components_
    assert art.meta["search"]["best_trial"] == int(best[0]["trial"])
    X = read_features(feats).X
    np.testing.assert_allclose(art.estimator.transform(X), art.estimator.best_.transform(X))
    # the same seed draws and fits the same trials
    again = reduce(str(feats), "autoencoder-search", str(tmp_path / "again.reducer"), device="cpu",
                   params={"trials": 4, "epoch_choices": (5, 10), "widths": (16, 32), "dims": (2, 4, 8)})
    assert [r["val_relative_mse"] for r in again.trials] == pytest.approx([float(r["val_relative_mse"]) for r in rows],
                                                                          rel=1e-4)
    # a model built on it scores raw features like any reducer
    train(str(feats), "lda", str(tmp_path / "m.model"), reducer=str(out))


def test_bounds_score_accuracy_and_fixed_factors(feats, tmp_path):
    fs = read_features(feats)
    est = create_reducer("autoencoder-search", trials=50, time_budget=0.0, epoch_choices=(3,), widths=(8,),
                         device="cpu")
    est.fit(fs.X)
    assert len(est.trials_) == 1  # the budget is spent after the first trial
    s = reduce(str(feats), "autoencoder-search", str(tmp_path / "acc.reducer"), device="cpu", test_size=0.25,
               params={"trials": 3, "scoring": "accuracy", "dim": 4, "epoch_choices": (5,), "widths": (16,)})
    assert all(r["dim"] == 4 and r["epochs"] == 5 for r in s.trials)
    assert all(0 <= r["val_accuracy"] <= 1 and r["score"] == r["val_accuracy"] for r in s.trials)
    best = max(s.trials, key=lambda r: r["score"])
    assert best["best"] and s.meta["labels_used"]
    # labels are used, so train's held-out part (same test size and seed) is left out of the fit
    _, test_mask = heldout_split(fs, 0.25, 0)
    assert s.n_fit == len(fs.y) - int(test_mask.sum()) == s.meta["search"]["n_fit"] + s.meta["search"]["n_val"]
    with pytest.raises(DeepfakeError, match="scoring must be one of"):
        reduce(str(feats), "autoencoder-search", str(tmp_path / "x.reducer"), params={"scoring": "bogus"})


def test_cli_refuses_what_does_not_go_together(feats, tmp_path):
    res = runner.invoke(app, ["reduce", str(feats), "--method", "pca", "--search", "--out", str(tmp_path / "p")])
    assert res.exit_code != 0 and "--search is not available for pca" in res.output
    res = runner.invoke(app, ["reduce", str(feats), "--method", "autoencoder", "--trials", "3",
                              "--out", str(tmp_path / "p")])
    assert res.exit_code != 0 and "go with --search" in res.output


def test_study_uses_the_search_as_a_reducer(tmp_path):
    from deepfake_cli.study import parse_reducer, run_study

    spec = parse_reducer("autoencoder-search:trials=2,epoch_choices=3,widths=8,dims=2")
    assert spec.method == "autoencoder-search" and spec.params_dict["trials"] == 2
    copy_subset(example_set("forensynths_biggan"), tmp_path / "data" / "biggan", 8)
    cfg = tmp_path / "s.toml"
    cfg.write_text("""
[study]
device = "cpu"
cross_dataset = false
[datasets]
biggan = "data/biggan"
[grid]
backbones = ["lowlevel"]
reducers = ["autoencoder-search:trials=2,epoch_choices=3,widths=8,dims=2"]
classifiers = ["lda"]
""")
    summary = run_study(cfg, tmp_path / "out")
    rows = _rows(summary.results_csv if hasattr(summary, "results_csv") else tmp_path / "out" / "results.csv")
    assert rows and all(r["reducer"].startswith("autoencoder-search") for r in rows)
    assert list((tmp_path / "out").rglob("*.trials.csv"))
