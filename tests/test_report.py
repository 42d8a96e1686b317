"""Figures and report.md from a results table alone."""

import csv
import itertools
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.evaluate import COLUMNS
from deepfake_cli.report import read_results, render_report
from deepfake_cli.stats import pooled_accuracy, wilson_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_table(path, backbones=("lowlevel", "effnet-lite0", "lowlevel+effnet-lite0"), reducers=("none", "pca:16"),
                 classifiers=("lda", "svm", "knn3"), datasets=("a", "b"), transforms=("none", "blur@0.5"), seed=0):
    """A results table in the shape study/eval write; counts and accuracies drawn at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for bb, rd, clf, tr, te, trt, tet in itertools.product(backbones, reducers, classifiers, datasets, datasets,
                                                           transforms, transforms):
        n = int(rng.integers(20, 60))
        k = int(rng.integers(n // 3, n + 1))
        lo, hi = wilson_interval(k, n)
        rows.append(dict(model=f"{clf}-{bb}", classifier=clf, backbone=bb, reducer=rd, train_datasets=tr,
                         test_dataset=te, kind="within" if tr == te else "cross", train_transform=trt,
                         test_transform=tet, n=n, n_real=n // 2, n_fake=n - n // 2, accuracy=k / n,
                         accuracy_ci_low=lo, accuracy_ci_high=hi, accuracy_real=k / n, accuracy_fake=k / n,
                         balanced_accuracy=k / n, roc_auc=float(rng.uniform(0.5, 1)), average_precision=0.8,
                         threshold=0.5, accuracy_at_0_5=k / n))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return rows


def test_all_figures_from_a_full_table(tmp_path):
    rows = _write_table(tmp_path / "results.csv")
    (tmp_path / "config.toml").write_text("[grid]\nbackbones = [\"lowlevel\"]\n")
    report = render_report(tmp_path / "results.csv", tmp_path / "out")
    for name in ("transforms", "reducers", "classifiers", "backbones", "cross_dataset"):
        png = tmp_path / "out" / "figures" / f"{name}.png"
        svg = tmp_path / "out" / "figures" / f"{name}.svg"
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        assert b"<svg" in svg.read_bytes()[:2000], name
        assert f"figures/{name}.png" in report.read_text()
    text = report.read_text()
    assert "Figures not drawn" not in text
    assert 'backbones = ["lowlevel"]' in text  # the config beside the CSV is embedded
    assert "scikit-learn" in text and "matplotlib" in text  # versions
    # Every accuracy cell in the tables carries a CI and n.
    acc_cells = re.findall(r"\| (\d\.\d{3})( \[\d\.\d{3}, \d\.\d{3}\] n=\d+)? \|", text)
    assert acc_cells and all(ci for _, ci in acc_cells)
    # The reducer table pools within-dataset, matched-transform rows by n.
    sel = [r for r in rows if r["kind"] == "within" and r["train_transform"] == r["test_transform"]
           and r["reducer"] == "pca:16"]
    acc, n, lo, hi = pooled_accuracy([r["accuracy"] for r in sel], [r["n"] for r in sel])
    assert f"| pca:16 | {acc:.3f} [{lo:.3f}, {hi:.3f}] n={n} |" in text


def test_single_level_factors_are_skipped_and_said(tmp_path):
    _write_table(tmp_path / "results.csv", backbones=("lowlevel",), reducers=("none",), classifiers=("lda", "svm"),
                 datasets=("a",), transforms=("none",))
    report = render_report(tmp_path / "results.csv", tmp_path / "out")
    figs = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert figs == ["classifiers.png", "classifiers.svg"]
    text = report.read_text()
    assert "## Figures not drawn" in text
    for phrase in ("one reducer (none)", "one backbone (lowlevel)", "no cross-dataset rows", "one train transform"):
        assert phrase in text


def test_not_a_results_table(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DeepfakeError, match="not a results table"):
        read_results(tmp_path / "x.csv")
    with pytest.raises(DeepfakeError, match="not found"):
        read_results(tmp_path / "missing.csv")


def test_cli_report(tmp_path):
    _write_table(tmp_path / "results.csv", backbones=("lowlevel", "a+b"), classifiers=("lda",))
    res = CliRunner().invoke(app, ["report", str(tmp_path / "results.csv"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.md").is_file()
    assert (tmp_path / "r" / "figures" / "backbones.png").read_bytes()[:8] == PNG_MAGIC
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0
