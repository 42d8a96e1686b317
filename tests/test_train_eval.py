"""reduce -> train -> eval on feature files made by `extract` (lowlevel backbone) from real images."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.store.artifacts import load_model
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.evaluate import COLUMNS, evaluate
from deepfake_cli.stages.extract import extract
from deepfake_cli.store.features import read_features
from deepfake_cli.stages.reduce import reduce
from deepfake_cli.stages.splits import heldout_split
from deepfake_cli.stages.train import train
from tests.conftest import copy_subset, example_set
from tests.helpers import classifier_names

runner = CliRunner()
NAMES = classifier_names()  # what `--classifier all` trains, from the registry


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """biggan (6+6, one real duplicated inside), gaugan (StyleGAN images, 5+5 plus two of biggan's fakes),
    onlyreal (4 real CIFAKE photos)."""
    root = tmp_path_factory.mktemp("sets")
    biggan = copy_subset(example_set("forensynths_biggan"), root / "biggan", 6)
    first_real = sorted((biggan / "real").iterdir())[0]
    shutil.copy(first_real, biggan / "real" / ("copy_" + first_real.name))
    gaugan = copy_subset(example_set("forensynths_stylegan"), root / "gaugan", 5)
    dup_fakes = sorted((biggan / "fake").iterdir())[:2]
    for p in dup_fakes:
        shutil.copy(p, gaugan / "fake" / ("from_biggan_" + p.name))
    onlyreal = copy_subset(example_set("cifake_sd14"), root / "onlyreal", 4, classes=("real",))
    feats = root / "ll.h5"
    extract([str(biggan), str(gaugan), str(onlyreal)], backbone="lowlevel", out=str(feats), device="cpu", workers=0)
    return {"root": root, "features": feats, "biggan": biggan, "gaugan": gaugan, "onlyreal": onlyreal}


@pytest.fixture(scope="module")
def models(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    res = runner.invoke(app, ["train", str(store["features"]), "--classifier", "all", "--datasets", "biggan",
                              "--out", str(out), "--test-size", "0.25", "--seed", "0"])
    assert res.exit_code == 0, res.output
    return out


def test_split_is_stratified_grouped_by_content_and_seeded(store):
    fs = read_features(store["features"])
    train_m, test_m = heldout_split(fs, 0.25, seed=0)
    assert not set(fs.sha256[train_m]) & set(fs.sha256[test_m])
    for ds in ("biggan", "gaugan"):
        held = test_m & (fs.dataset == ds)
        assert (fs.y[held] == 0).sum() >= 1 and (fs.y[held] == 1).sum() >= 1
    # biggan's real class has 6 distinct contents (7 files): round(0.25 * 6) = 2 of them held out
    real_b = fs.subset(test_m & (fs.dataset == "biggan") & (fs.y == 0))
    assert len(set(real_b.sha256)) == 2
    # the duplicated contents sit wholly on one side, also across datasets
    for sha in set(fs.sha256[test_m]):
        assert not (train_m & (fs.sha256 == sha)).any()
    assert not (train_m | test_m)[fs.y < 0].any()
    again = heldout_split(fs, 0.25, seed=0)
    np.testing.assert_array_equal(again[1], test_m)
    assert not np.array_equal(heldout_split(fs, 0.25, seed=1)[1], test_m)


def test_train_all_writes_one_complete_model_per_classifier(models, store):
    assert sorted(p.stem for p in models.glob("*.model")) == sorted(NAMES)
    fs = read_features(store["features"])
    _, test_m = heldout_split(fs, 0.25, seed=0)
    expect_held = sorted(set(fs.sha256[test_m & (fs.dataset == "biggan")]))
    for name in NAMES:
        m = load_model(models / f"{name}.model")
        meta = m.meta
        for key in ("backbone", "layers", "weights_id", "preprocessing", "transform", "reducer", "threshold",
                    "classes", "train_datasets", "heldout_sha256", "tool_version", "validation", "features_file"):
            assert key in meta, key
        assert meta["classifier"] == name and meta["backbone"] == "lowlevel"
        assert meta["train_datasets"] == ["biggan"] and meta["heldout_sha256"]["biggan"] == expect_held
        assert not set(meta["train_sha256"]) & set(expect_held)
        assert 0.0 <= meta["threshold"] <= 1.0 and meta["validation"]["threshold"] == meta["threshold"]
        assert meta["n_fit"] + meta["n_val"] == meta["n_train"]
        assert [s[0] for s in m.estimator.steps] == ["reduce", "scale", "clf"]


def test_eval_within_and_cross_rows(models, store):
    per_image: list = []
    rows = evaluate([models], [str(store["features"])], per_image=per_image)
    fs = read_features(store["features"])
    assert {r["model"] for r in rows} == set(NAMES)
    loaded = {name: load_model(models / f"{name}.model") for name in NAMES}
    for r in rows:
        assert set(COLUMNS) <= set(r)
        m = loaded[r["model"]]
        mine = [p for p in per_image if p["model"] == r["model"] and p["test_dataset"] == r["test_dataset"]]
        assert len(mine) == r["n"] == r["n_real"] + r["n_fake"]
        # accuracy is recomputable from the per-image scores at the stored threshold
        acc = np.mean([(p["p_fake"] >= m.threshold) == (p["label"] == 1) for p in mine])
        assert r["accuracy"] == pytest.approx(acc)
        assert r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"]
        if r["test_dataset"] == "biggan":
            assert r["kind"] == "within"
            assert {p["sha256"] for p in mine} == set(m.meta["heldout_sha256"]["biggan"])
        elif r["test_dataset"] == "gaugan":
            assert r["kind"] == "cross"
            trained_dups = int(np.isin(fs.sha256[fs.dataset == "gaugan"], m.meta["train_sha256"]).sum())
            assert r["n_excluded_trained"] == trained_dups
            assert r["n"] == (fs.dataset == "gaugan").sum() - trained_dups
        else:
            assert r["test_dataset"] == "onlyreal" and r["kind"] == "cross" and r["n_fake"] == 0
            assert math.isnan(r["roc_auc"]) and math.isnan(r["average_precision"])
            assert math.isnan(r["balanced_accuracy"])


def test_eval_cli_writes_csv_json_md(models, store, tmp_path):
    out = tmp_path / "ev"
    res = runner.invoke(app, ["eval", str(models / "lda.model"), str(models / "svm.model"),
                              "--features", str(store["features"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "within" in res.output and "cross" in res.output and "trained on" in res.output
    with open(out / "eval.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and list(table[0])[: len(COLUMNS)] == COLUMNS
    data = json.loads((out / "eval.json").read_text())
    assert [d["test_dataset"] for d in data] == [t["test_dataset"] for t in table]
    assert "| lda [biggan] |" in (out / "eval.md").read_text()


def test_robustness_features_with_another_transform_are_accepted(models, store, tmp_path):
    jpeg = tmp_path / "jpeg.h5"
    extract([str(store["biggan"])], backbone="lowlevel", out=str(jpeg), transform="jpeg:75", device="cpu", workers=0)
    rows = evaluate([models / "knn1.model"], [str(store["features"]), str(jpeg)])
    jrows = [r for r in rows if r["test_transform"] == "jpeg:75"]
    plain = [r for r in rows if r["test_transform"] == "none" and r["test_dataset"] == "biggan"]
    assert len(jrows) == 1 and jrows[0]["kind"] == "within" and jrows[0]["train_transform"] == "none"
    assert jrows[0]["n"] == plain[0]["n"]  # the held-out images were found by content hash
    # Features without the model's training dataset: cross rows only, and a note that says why.
    gaugan_only = tmp_path / "gaugan.h5"
    extract([str(store["gaugan"])], backbone="lowlevel", out=str(gaugan_only), device="cpu", workers=0)
    notes: list = []
    rows = evaluate([models / "knn1.model"], [str(gaugan_only)], notes=notes)
    assert {r["kind"] for r in rows} == {"cross"}
    assert len(notes) == 1 and "no within-dataset row" in notes[0] and "biggan" in notes[0]
    # The documented CLI shape: several feature files after one --features.
    res = runner.invoke(app, ["eval", str(models / "knn1.model"), "--features", str(store["features"]), str(jpeg),
                              "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "ev" / "eval.csv") as f:
        assert {r["test_transform"] for r in csv.DictReader(f)} == {"none", "jpeg:75"}


def test_refusals(models, store, tmp_path):
    aligned = tmp_path / "aligned.h5"
    small = copy_subset(store["gaugan"], tmp_path / "small", 2)
    extract([str(small)], backbone="lowlevel", out=str(aligned), align="128:90", device="cpu", workers=0)
    with pytest.raises(DeepfakeError, match=r"Model lda was trained on preprocessing=.*aligned\.h5 has preprocessing="):
        evaluate([models / "lda.model"], [str(aligned)])
    res = runner.invoke(app, ["eval", str(models / "lda.model"), "--features", str(aligned)])
    assert res.exit_code == 2 and "align" in res.output and "Traceback" not in res.output
    with pytest.raises(DeepfakeError, match="nosuch"):
        train(str(store["features"]), "lda", str(tmp_path / "x.model"), datasets=["nosuch"])
    with pytest.raises(DeepfakeError, match="0 fake"):
        train(str(store["features"]), "lda", str(tmp_path / "x.model"), datasets=["onlyreal"])
    res = runner.invoke(app, ["train", str(store["features"]), "--classifier", "lda,bogus", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "bogus" in res.output
    # a reducer fitted on features made another way cannot go into a model of these
    reduce(str(aligned), "pca", str(tmp_path / "al.reducer"), params={"dim": 2})
    with pytest.raises(DeepfakeError, match="Reducer .* was fitted on preprocessing="):
        train(str(store["features"]), "lda", str(tmp_path / "y.model"), reducer=str(tmp_path / "al.reducer"))


def test_reduce_cli_then_train_and_eval_with_reducers(store, tmp_path):
    feats = str(store["features"])
    res = runner.invoke(app, ["reduce", feats, "--method", "pca", "--dim", "6", "--out", str(tmp_path / "p.reducer"),
                              "--write-features", str(tmp_path / "red.h5")])
    assert res.exit_code == 0, res.output
    assert "83 -> 6" in res.output and "explained variance" in res.output and "reconstruction MSE" in res.output
    orig, red = read_features(feats), read_features(tmp_path / "red.h5")
    assert red.X.shape == (len(orig), 6) and red.meta["reduced_by"]["method"] == "pca"
    np.testing.assert_array_equal(red.sha256, orig.sha256)
    np.testing.assert_array_equal(red.dataset, orig.dataset)
    s = reduce(feats, "autoencoder", str(tmp_path / "ae.reducer"), params={"dim": 4, "hidden": (16,), "epochs": 30},
               device="cpu")
    assert s.output_dim == 4 and s.reconstruction["relative"] > 0 and s.meta["epochs_run"] <= 30

    for reducer, dim in (("p.reducer", 6), ("ae.reducer", 4)):
        res = train(feats, "lda,linear-probe", str(tmp_path / reducer.split(".")[0]), reducer=str(tmp_path / reducer),
                    datasets=["biggan", "gaugan"])
        for r in res:
            m = load_model(r.path)
            assert m.meta["reducer"]["output_dim"] == dim
            assert m.estimator.named_steps["clf"].n_features_in_ == dim
    rows = evaluate([tmp_path / "p", tmp_path / "ae"], [feats])
    assert {r["reducer"] for r in rows} == {"pca:6", "autoencoder:4"}
    assert {r["kind"] for r in rows if r["test_dataset"] in ("biggan", "gaugan")} == {"within"}
    # a model of reduced features refuses unreduced ones (and the other way round)
    model_red = train(str(tmp_path / "red.h5"), "lda", str(tmp_path / "onred.model"), datasets=["biggan"])[0]
    with pytest.raises(DeepfakeError, match="6-dimensional"):
        evaluate([model_red.path], [feats])
    assert evaluate([model_red.path], [str(tmp_path / "red.h5")])


def test_train_params_reach_the_chosen_classifiers_and_unknown_ones_are_refused(store, tmp_path):
    feats = str(store["features"])
    res = runner.invoke(app, ["train", feats, "--classifier", "knn1,knn3,linear-probe", "--datasets", "biggan",
                              "--param", "n_neighbors=2", "--param", "knn3.n_neighbors=4", "--param", "epochs=40",
                              "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    params = {n: load_model(tmp_path / "m" / f"{n}.model").meta["classifier_params"] for n in ("knn1", "knn3",
                                                                                               "linear-probe")}
    assert params["knn1"]["n_neighbors"] == 2 and params["knn3"]["n_neighbors"] == 4
    assert params["linear-probe"]["epochs"] == 40 and params["linear-probe"]["device"] == "cpu"
    for args, says in ((["--param", "C=2"], "no chosen classifier takes 'C'"),
                       (["--param", "svm.C=2"], "'svm' is not among the classifiers being trained"),
                       (["--param", "lda.k=2"], "Classifier 'lda' has no parameter 'k'; it takes shrinkage"),
                       (["--param", "shrinkage=much"], "Bad value shrinkage='much'"),
                       (["--param", "nokey"], "--param takes KEY=VALUE")):
        res = runner.invoke(app, ["train", feats, "--classifier", "lda,knn1", "--out", str(tmp_path / "x")] + args)
        assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output, (args, res.output)
    assert not (tmp_path / "x").exists()  # refused before any training
    # the Python API takes typed values per classifier, and checks them before reading the features
    with pytest.raises(DeepfakeError, match="Parameters given for svm, which is not among"):
        train(feats, "lda", str(tmp_path / "y.model"), params={"svm": {"C": 2.0}})
    with pytest.raises(DeepfakeError, match="Classifier 'lda' does not take n_neighbors"):
        train("/no/such/file.h5", "lda", str(tmp_path / "y.model"), params={"lda": {"n_neighbors": 2}})
    r = train(feats, "lda", str(tmp_path / "z.model"), params={"lda": {"shrinkage": 0.5}}, datasets=["biggan"])[0]
    assert load_model(r.path).estimator.named_steps["clf"].shrinkage == 0.5


def test_reduce_options_are_generic_and_refused_where_the_reducer_does_not_take_them(store, tmp_path):
    feats = str(store["features"])
    res = runner.invoke(app, ["reduce", feats, "--method", "autoencoder", "--dim", "3", "--hidden", "12,6",
                              "--epochs", "4", "--lr", "0.01", "--param", "patience=2", "--device", "cpu",
                              "--seed", "5", "--out", str(tmp_path / "ae.reducer")])
    assert res.exit_code == 0, res.output
    assert "83 -> 3" in res.output and "epochs" in res.output
    from deepfake_cli.store.artifacts import load_reducer

    meta = load_reducer(tmp_path / "ae.reducer").meta
    assert {k: meta["params"][k] for k in ("dim", "hidden", "epochs", "lr", "patience", "random_state", "device")} == \
        {"dim": 3, "hidden": [12, 6], "epochs": 4, "lr": 0.01, "patience": 2, "random_state": 5, "device": "cpu"}
    assert meta["epochs_run"] <= 4 and meta["best_val_loss"] > 0
    for args, says in ((["--method", "none", "--dim", "3"], "Reducer 'none' has no parameter 'dim'; it takes no"),
                       (["--method", "pca", "--hidden", "8"], "Reducer 'pca' has no parameter 'hidden'; it takes dim, "
                                                              "variance"),
                       (["--method", "autoencoder", "--variance", "0.9"], "has no parameter 'variance'"),
                       (["--method", "autoencoder", "--hidden", "8,x"], "Bad value hidden='8,x'"),
                       (["--method", "pca", "--dim", "3", "--variance", "0.5"], "give either dim or variance"),
                       (["--method", "umap"], "Unknown reducer 'umap'; choose from none, pca, autoencoder")):
        res = runner.invoke(app, ["reduce", feats, "--out", str(tmp_path / "x.reducer")] + args)
        assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output, (args, res.output)
    # seed and device go only to reducers that take them: pca gets the seed, not the device
    s = reduce(feats, "pca", str(tmp_path / "p.reducer"), params={"variance": 0.9}, seed=3, device="cuda")
    assert s.meta["params"] == {"dim": None, "variance": 0.9, "random_state": 3}
    assert s.explained_variance >= 0.9
    with pytest.raises(DeepfakeError, match="Reducer 'pca' does not take hidden"):
        reduce(feats, "pca", str(tmp_path / "q.reducer"), params={"hidden": (3,)})


def test_eval_matrix_shows_n_where_cell_sizes_differ(models, store, tmp_path):
    from deepfake_cli.stages.evaluate import matrix, matrix_cell, mixed_sizes, to_markdown

    rows = evaluate([models / "lda.model", models / "knn1.model"], [str(store["features"])])
    sizes = {r["test_dataset"]: r["n"] for r in rows}
    assert len(set(sizes.values())) > 1  # 4 held-out biggan images beside 10 gaugan and 4 onlyreal ones
    md = to_markdown(rows)
    for ds, n in sizes.items():
        r = next(r for r in rows if r["test_dataset"] == ds and r["model"] == "lda")
        assert matrix_cell(r, True) in md and matrix_cell(r, True).endswith(f" (n={n})")
    assert "n = test images per cell" in md
    res = runner.invoke(app, ["eval", str(models / "lda.model"), "--features", str(store["features"])])
    assert res.exit_code == 0, res.output
    assert f"(n={sizes['gaugan']})" in res.output and f"(n={sizes['biggan']})" in res.output
    # one size everywhere: no per-cell n, the n in the title instead
    same = [r for r in rows if r["test_dataset"] == "gaugan"]
    _, _, cells = matrix(same)
    assert not mixed_sizes(cells) and "(n=" not in to_markdown(same)
    assert f"n={sizes['gaugan']} test images in every cell" in to_markdown(same)


def test_train_warns_about_small_validation_and_test_parts(store, tmp_path):
    res = runner.invoke(app, ["train", str(store["features"]), "--classifier", "lda", "--datasets", "biggan",
                              "--test-size", "0.25", "--out", str(tmp_path / "m.model")])
    assert res.exit_code == 0, res.output
    m = load_model(tmp_path / "m.model")
    n_val = m.meta["n_val"]
    assert "warning: small validation part:" in res.stderr and f"after fitting on {m.meta['n_fit']}" in res.stderr
    assert f"small test part: {m.meta['n_heldout']['biggan']} held-out images of biggan" in res.stderr
    assert n_val < 2 * 30 and m.meta["sample_warnings"][0].startswith("small validation part:")


def test_model_metadata_records_the_solver_an_svm_used(store, tmp_path):
    """The SVM's size switch is visible where a user looks: the train output and the model's metadata."""
    for pairs, solver in ((["max_exact=4"], "nystroem"), (["solver=exact", "max_exact=4"], "exact")):
        out = tmp_path / f"{solver}.model"
        res = runner.invoke(app, ["train", str(store["features"]), "--classifier", "svm", "--datasets", "biggan",
                                  "--out", str(out), *[x for p in pairs for x in ("--param", p)]],
                            env={"COLUMNS": "300"})
        assert res.exit_code == 0, res.output
        fit = load_model(out).meta["classifier_fit"]
        assert fit["solver"] == solver and fit["n_fit"] > 4
        assert ("kernel approximation" in res.output) == (solver == "nystroem")
