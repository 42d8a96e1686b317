"""Behaviour is pinned: a small end-to-end run (extract -> reduce -> train -> eval -> predict) through the
CLI gives the same features, thresholds, eval numbers and p_fake as the code of 2026-11-26 did.

`tests/golden/e2e.json` was written by this test with DEEPFAKE_WRITE_GOLDEN=1 before the structural
refactor; a refactor that changes any number here changed behaviour. Regenerate only for an intended
change, and say why in the commit.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from tests.conftest import copy_subset, example_set

GOLDEN = Path(__file__).with_name("golden") / "e2e.json"
runner = CliRunner()


def _ok(args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _run(tmp: Path) -> dict:
    cifake = copy_subset(example_set("cifake_sd14"), tmp / "cifake", 12)
    biggan = copy_subset(example_set("forensynths_biggan"), tmp / "biggan", 12)
    feats = tmp / "f.h5"
    _ok(["extract", f"cifake={cifake}", f"biggan={biggan}", "--backbone", "effnet-lite0", "--layers", "all",
         "--out", feats, "--device", "cpu", "--workers", "0"])
    _ok(["reduce", feats, "--method", "pca", "--dim", "16", "--out", tmp / "pca.reducer"])
    _ok(["reduce", feats, "--method", "autoencoder", "--dim", "8", "--epochs", "15", "--device", "cpu",
         "--out", tmp / "ae.reducer"])
    _ok(["train", feats, "--classifier", "lda,svm,linear-probe,knn3,naive-bayes", "--reducer", tmp / "pca.reducer",
         "--datasets", "cifake", "--out", tmp / "m_pca"])
    _ok(["train", feats, "--classifier", "lda,random-forest", "--reducer", tmp / "ae.reducer",
         "--datasets", "biggan", "--out", tmp / "m_ae"])
    _ok(["eval", tmp / "m_pca", tmp / "m_ae", "--features", feats, "--out", tmp / "eval"])
    _ok(["predict", tmp / "m_pca" / "svm.model", example_set("forensynths_stylegan"), "--out", tmp / "pred.csv",
         "--device", "cpu"])

    with h5py.File(feats, "r") as f:
        X = f["features"][:].astype(np.float64)
        rows = [f"{d.decode()}/{p.decode()}" for d, p in zip(f["dataset"][:], f["path"][:])]
        labels = f["label"][:].tolist()
    evals = json.loads((tmp / "eval" / "eval.json").read_text())
    keep = ("model", "test_dataset", "kind", "n", "n_real", "n_fake", "accuracy", "balanced_accuracy", "roc_auc",
            "threshold", "accuracy_at_0_5")
    with open(tmp / "pred.csv", newline="") as fh:
        preds = [(Path(r["path"]).relative_to(example_set("forensynths_stylegan")).as_posix(), float(r["p_fake"]),
                  r["label"]) for r in csv.DictReader(fh)]
    return {
        "rows": rows, "labels": labels, "dim": X.shape[1],
        "row_sums": X.sum(axis=1).tolist(), "row_norms": np.linalg.norm(X, axis=1).tolist(),
        "col_means": X.mean(axis=0)[::97].tolist(),
        "eval": [{k: r.get(k) for k in keep} for r in evals],
        "predict": preds,
    }


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5, nan_ok=True), path
    else:
        assert a == b, path


def test_end_to_end_outputs_match_the_pinned_run(tmp_path):
    got = _run(tmp_path)
    if os.environ.get("DEEPFAKE_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())
    _close(want, got)
