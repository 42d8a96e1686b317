"""The grid runner on real images: caching, restart, keys, parallel cells, CLI."""

import csv
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_subset, example_set
from tests.helpers import small_study_config
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import compatibility_key, read_features
from deepfake_cli.metrics.stats import wilson_interval
from deepfake_cli.study import (DatasetEntry, StudyConfig, StudyProgress, combine_features, feature_key, load_config,
                                parse_reducer, plan, run_study)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(path: Path, test_transforms='["none", "blur@1"]', extra_grid="") -> Path:
    return small_study_config(path, {"biggan": '"data/biggan"',
                                     "cifake": '{ real = "data/cifake/real", fake = "data/cifake/fake" }'},
                              test_transforms=test_transforms, reducers='["none", "pca:4"]',
                              classifiers='["lda", "naive-bayes"]', extra_grid=extra_grid)


class RecordingProgress(StudyProgress):
    """Keeps every call the study makes, in order."""

    def __init__(self):
        self.calls = []

    def phase(self, name, total):
        self.calls.append(("phase", name, total))

    def unit(self, name, label):
        self.calls.append(("unit", name, label))

    def images(self, done, total):
        self.calls.append(("images", done, total))

    def advance(self, name):
        self.calls.append(("advance", name))

    def phase_done(self, name):
        self.calls.append(("phase_done", name))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    copy_subset(example_set("forensynths_biggan"), root / "data" / "biggan", 8)
    copy_subset(example_set("cifake_sd14"), root / "data" / "cifake", 8)
    cfg = _config(root / "study.toml")
    progress = RecordingProgress()
    summary = run_study(cfg, root / "out", progress=progress)
    return root, cfg, summary, progress


def _rows(csv_path):
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_first_run_results_and_figures(study):
    root, cfg, s, _ = study
    # 2 datasets x 2 transforms of one backbone; 2 pca fits; 2 datasets x 2 reducers x 2 classifiers.
    assert (s.features_extracted, s.reducers_fitted, s.cells_trained) == (4, 2, 8)
    rows = _rows(s.results_csv)
    assert len(rows) == 8 * 2 * 2 == s.n_rows  # cells x test transforms x test datasets
    assert {r["kind"] for r in rows} == {"within", "cross"}
    assert {r["test_transform"] for r in rows} == {"none", "blur@1"}
    assert {r["reducer"] for r in rows} == {"none", "pca:4"}
    for r in rows:
        n, acc = int(r["n"]), float(r["accuracy"])
        assert (r["kind"] == "within") == (r["train_datasets"] == r["test_dataset"])
        lo, hi = wilson_interval(round(acc * n), n)
        assert float(r["accuracy_ci_low"]) == pytest.approx(lo) and float(r["accuracy_ci_high"]) == pytest.approx(hi)
        assert r["cell"] and r["layers"] == "last" and r["seed"] == "0"
    # within rows are the held-out part only (30% of 8 per class), cross rows the whole other set
    assert {int(r["n"]) for r in rows if r["kind"] == "within"} == {4}
    assert all(int(r["n"]) == 16 for r in rows if r["kind"] == "cross")
    js = json.loads(s.results_json.read_text())
    assert len(js) == len(rows) and js[0]["cell"] == rows[0]["cell"]
    for name in ("transforms", "reducers", "classifiers", "cross_dataset"):
        assert (s.out / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert "one backbone (lowlevel)" in s.report.read_text()


def test_progress_reaches_the_caller_through_callbacks(study):
    _, _, s, progress = study
    calls = progress.calls
    assert [c[1] for c in calls if c[0] == "phase"] == ["features", "reducers", "cells"]
    assert [c[1] for c in calls if c[0] == "phase_done"] == ["features", "reducers", "cells"]
    totals = {c[1]: c[2] for c in calls if c[0] == "phase"}
    assert totals == {"features": 4, "reducers": 2, "cells": 8}
    for name, total in totals.items():  # every unit is reported finished once, inside its phase
        start, end = calls.index(("phase", name, total)), calls.index(("phase_done", name))
        assert calls[start:end].count(("advance", name)) == total
    units = [c[2] for c in calls if c[0] == "unit"]
    assert len(units) == s.features_extracted == 4 and "cifake / lowlevel / blur@1" in units
    images = [c for c in calls if c[0] == "images"]
    assert images and images[-1][1:] == (16, 16)  # the last file's 8 + 8 images, all extracted


def test_rerun_reuses_everything_and_restart_redoes_only_missing(study):
    root, cfg, first, _ = study
    again = run_study(cfg, root / "out")
    assert (again.features_extracted, again.reducers_fitted, again.cells_trained, again.cells_evaluated) == (0, 0, 0, 0)
    assert again.cells_reused == 8 and again.features_reused == 4
    assert _rows(again.results_csv) == _rows(first.results_csv)

    # Simulate a run stopped half-way: one cell never finished, one feature file never written.
    cell = sorted((root / "out" / "cells").glob("*.json"))[0]
    (root / "out" / "models" / (cell.stem + ".model")).unlink()
    cell.unlink()
    sorted((root / "out" / "features").glob("cifake__*__blur-1__*.h5"))[0].unlink()
    third = run_study(cfg, root / "out")
    assert (third.features_extracted, third.cells_trained, third.cells_evaluated, third.cells_reused) == (1, 1, 1, 7)
    assert third.reducers_fitted == 0
    assert _rows(third.results_csv) == _rows(first.results_csv)  # seeded: the same numbers again


def test_new_test_transform_extracts_and_evaluates_without_retraining(study, tmp_path):
    root, _, first, _ = study
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    cfg = _config(root / "study_jpeg.toml", test_transforms='["none", "blur@1", "jpeg:50"]')
    s = run_study(cfg, out)
    assert s.features_extracted == 2  # jpeg:50 of the two datasets
    assert s.cells_trained == 0 and s.cells_evaluated == 8 and s.reducers_fitted == 0
    rows = _rows(s.results_csv)
    assert len(rows) == 8 * 3 * 2
    assert {r["test_transform"] for r in rows} == {"none", "blur@1", "jpeg:50"}


@pytest.mark.slow  # a second whole study, in a process pool
def test_parallel_jobs_give_the_same_results(study, tmp_path):
    root, cfg, first, _ = study
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(root / "out" / "features", out / "features")  # reuse features, retrain everything
    s = run_study(cfg, out, jobs=2)
    assert s.features_extracted == 0 and s.cells_trained == 8 and s.reducers_fitted == 2
    key = lambda r: (r["cell"], r["test_dataset"], r["test_transform"])  # noqa: E731
    a = {key(r): r["accuracy"] for r in _rows(first.results_csv)}
    b = {key(r): r["accuracy"] for r in _rows(s.results_csv)}
    assert a == b


def test_cache_keys(study):
    root, cfg_path, _, _ = study
    cfg = load_config(cfg_path)
    ds = cfg.datasets[0]
    k = feature_key(cfg, ds, "lowlevel", "last", "none")
    assert k == feature_key(load_config(cfg_path), ds, "lowlevel", "last", "none")  # same config, same key
    assert k != feature_key(cfg, ds, "lowlevel", "last", "blur@1")                  # transform
    assert k != feature_key(replace(cfg, align="64:90"), ds, "lowlevel", "last", "none")  # align
    assert k != feature_key(cfg, ds, "effnet-lite0", "last", "none")                # backbone
    assert k != feature_key(cfg, cfg.datasets[1], "lowlevel", "last", "none")       # dataset
    assert k == feature_key(replace(cfg, classifiers=["svm"], reducers=[parse_reducer("pca:2")]), ds, "lowlevel", "last", "none")
    features, cells = plan(cfg)
    assert len(features) == 4 and len(cells) == 8 and len({c.key for c in cells}) == 8


def test_combined_backbone_equals_direct_extraction(tmp_path):
    from deepfake_cli.stages.extract import extract

    data = copy_subset(example_set("forensynths_biggan"), tmp_path / "bg", 3)
    files = []
    for bb in ("lowlevel", "effnet-lite0"):
        extract([str(data)], bb, str(tmp_path / f"{bb}.h5"), device="cpu", batch_size=8)
        files.append(tmp_path / f"{bb}.h5")
    combine_features(files, tmp_path / "combined.h5")
    extract([str(data)], "lowlevel+effnet-lite0", str(tmp_path / "direct.h5"), device="cpu", batch_size=8)
    a, b = read_features(tmp_path / "combined.h5"), read_features(tmp_path / "direct.h5")
    assert compatibility_key(a.meta) == compatibility_key(b.meta)
    assert a.meta["dim"] == b.meta["dim"] == a.X.shape[1]
    order = np.argsort(b.path)
    assert list(a.path[np.argsort(a.path)]) == list(b.path[order])
    np.testing.assert_allclose(a.X[np.argsort(a.path)], b.X[order], rtol=1e-4, atol=1e-5)


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[datasets]\na = "x"\n[grid]\nbackbones = ["nope"]\nclassifiers = ["lda"]\n')
    with pytest.raises(DeepfakeError, match="Unknown backbone"):
        load_config(bad)
    bad.write_text('[datasets]\na = "x"\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\nreducers = ["tsne:2"]\n')
    with pytest.raises(DeepfakeError, match="unknown reducer"):
        load_config(bad)
    bad.write_text('[study]\nsed = 1\n[datasets]\na = "x"\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\n')
    with pytest.raises(DeepfakeError, match="unknown key"):
        load_config(bad)
    with pytest.raises(DeepfakeError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("text, message", [
    ('[datasets]\na = "x"\n[grid]\nbackbone = ["lowlevel"]\nclassifiers = ["lda"]\n',
     r"unknown key\(s\) backbone in \[grid\] of .*bad2.toml; allowed: backbones,"),
    ('seed = 1\n[datasets]\na = "x"\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\n',
     r"key\(s\) seed of .*bad2.toml stand outside any section"),
    ('[datasets]\na = { real = "x", fkae = "y" }\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\n',
     r"unknown key\(s\) fkae in \[datasets\] a of .*bad2.toml; allowed: fake, path, real, reals"),
    ('[study]\nsed = 1\n[datasets]\na = "x"\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\n',
     r"unknown key\(s\) sed in \[study\] of"),
])
def test_unknown_keys_name_their_section(tmp_path, text, message):
    bad = tmp_path / "bad2.toml"
    bad.write_text(text)
    with pytest.raises(DeepfakeError, match=message):
        load_config(bad)


def test_grid_reducers_come_from_the_registry(tmp_path):
    from deepfake_cli.reducers import REDUCERS

    for name in REDUCERS.names():  # every registered reducer is usable in a grid, by name alone
        assert parse_reducer(name).method == name and parse_reducer(name).label == name
    assert parse_reducer("pca:dim=16") == parse_reducer("pca:16") == parse_reducer(" PCA:16 ")
    assert parse_reducer("pca:16").label == "pca:16"
    spec = parse_reducer("autoencoder:8,hidden=64,32,epochs=5")
    assert spec.params_dict == {"dim": 8, "hidden": (64, 32), "epochs": 5}
    assert parse_reducer(spec.label) == spec  # the label written to results.csv reads back
    assert parse_reducer("pca:variance=0.9").label == "pca:variance=0.9"
    for bad, message in [("pca:16,whiten=1", "pca:16,whiten=1.*no parameter 'whiten'"),
                         ("pca:dim=x", "Bad value dim='x'"), ("pca:0", "at least 1"),
                         ("none:4", "takes no dimension"), ("pca:random_state=3", "set by \\[study\\]"),
                         ("tsne:2", "unknown reducer 'tsne:2'.*none, pca, autoencoder")]:
        with pytest.raises(DeepfakeError, match=message):
            parse_reducer(bad)
    # the [study] key autoencoder_epochs is the default epochs of every autoencoder; a grid entry overrides it
    cfg_path = _config(tmp_path / "ae.toml").read_text().replace("[study]", "[study]\nautoencoder_epochs = 3")
    (tmp_path / "ae.toml").write_text(cfg_path)
    cfg = load_config(tmp_path / "ae.toml")
    assert cfg.reducer_params(parse_reducer("autoencoder:8")) == {"epochs": 3, "dim": 8}
    assert cfg.reducer_params(parse_reducer("autoencoder:8,epochs=7")) == {"epochs": 7, "dim": 8}
    assert cfg.reducer_params(parse_reducer("pca:8")) == {"dim": 8}


def test_cache_keys_of_earlier_versions_are_kept():
    # Written by the study of 0.1 (before the reducer registry): results.csv carries these cell keys, and
    # the caches of earlier runs are found again only if they do not change.
    cfg = StudyConfig(path=Path("/x/study.toml"),
                      datasets=[DatasetEntry("biggan", path="/data/biggan"),
                                DatasetEntry("cifake", real="/data/c/real", fake="/data/c/fake")],
                      backbones=["lowlevel", "lowlevel+effnet-lite0"], layers=["last"], train_transforms=["none"],
                      test_transforms=["none", "blur@1"], classifiers=["lda"], autoencoder_epochs=5,
                      reducers=[parse_reducer(r) for r in ("none", "pca:16", "autoencoder:8", "pca")])
    _, cells = plan(cfg)
    keys = {(c.key, c.reducer_key) for c in cells}
    assert ("biggan__lowlevel__none__none__lda__70c7a4d58e72", None) in keys
    assert ("cifake__lowlevel__none__pca-16__lda__c31a6a2726a0", "pca-16__94913ff3f3c3") in keys
    assert ("biggan__lowlevel__none__autoencoder-8__lda__2de21c2b74a8", "autoencoder-8__cd5cef4cc408") in keys
    assert ("cifake__lowlevel-effnet-lite0__none__pca__lda__fa0de845e01e", "pca__52c45dbeb6f0") in keys
    assert feature_key(cfg, cfg.datasets[1], "lowlevel", "last", "none") == "cifake__lowlevel__last__none__9173ff555fb2"


def test_study_is_an_orchestrator_that_prints_nothing():
    """The study calls stages only through their public functions, and no library module draws progress."""
    import ast

    import deepfake_cli

    public = {"extract": {"extract"}, "reduce": {"reduce"}, "train": {"train"}, "evaluate": {"evaluate", "COLUMNS"},
              "report": {"render_report"}, "predict": set(), "audit": set()}
    root = Path(deepfake_cli.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = {node.module}
                names = {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported, names = {a.name for a in node.names}, set()
            else:
                continue
            if "cli" not in path.relative_to(root).parts:
                assert not any(m.split(".")[0] == "rich" for m in imported), f"{path} imports rich"
            if path.parent.name == "study":
                for m in imported:
                    stage = m.removeprefix("deepfake_cli.")
                    if stage in public:
                        assert names <= public[stage], f"{path.name} imports {names} from the {stage} stage"


def test_example_config_is_valid():
    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "study.toml")
    assert {"lowlevel", "effnet-lite0"} <= set(cfg.singles)
    assert all(Path(d.path or d.real).exists() for d in cfg.datasets)


def test_cli_study_resumes(study):
    root, cfg, _, _ = study
    res = CliRunner().invoke(app, ["study", str(cfg), "--out", str(root / "out"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "0 trained" in res.output and "8 reused" in res.output


def test_cli_draws_the_progress_the_study_reports(study, tmp_path, monkeypatch):
    from deepfake_cli.cli import study_cmds

    # bars are drawn on a terminal only (a pipe or log file gets the summary lines): pretend to be one
    monkeypatch.setattr(study_cmds.console, "_force_terminal", True)
    root, cfg, _, _ = study
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    sorted((out / "features").glob("biggan__*__none__*.h5"))[0].unlink()  # one file to extract again
    res = CliRunner().invoke(app, ["study", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "features: 1 extracted" in res.output and "cells: 0 trained, 0 evaluated, 8 reused" in res.output
    for bar in ("features", "reducers", "cells"):
        assert re.search(rf"{bar} .*\b\d+/\d+\b", res.output), res.output  # the bars, drawn by the CLI


def test_a_unit_that_cannot_run_is_reported_and_the_grid_goes_on(study, tmp_path):
    root, _, _, _ = study
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)  # reuse the cached features; leave the fixture's folder alone
    cfg = tmp_path / "study.toml"
    text = _config(tmp_path / "base.toml").read_text()
    text = text.replace('reducers = ["none", "pca:4"]', 'reducers = ["none", "pca:40"]')
    text = text.replace('"data/', f'"{root}/data/')
    cfg.write_text(text)
    s = run_study(cfg, out)
    # pca:40 cannot be fitted on ~11 training images of either dataset: 2 reducers, 4 cells fail.
    assert sorted(f["what"] for f in s.failures) == ["cell"] * 4 + ["reducer"] * 2
    assert all("pca" in f["error"] or "reducer" in f["error"] for f in s.failures)
    rows = _rows(s.results_csv)
    assert rows and {r["reducer"] for r in rows} == {"none"}
    assert json.loads((out / "failures.json").read_text()) == s.failures
