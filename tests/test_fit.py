"""`deepfake fit`: two folders -> a detector, with its held-out accuracy measured and its features reused
(`recipes.fit`, `cli/fit_cmds.py`). The `lowlevel` backbone keeps these fast; the default choice of backbone
is tested without extracting."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from deepfake_cli.cli import _Group, fit_cmds
from deepfake_cli.metrics.stats import wilson_interval
from deepfake_cli.recipes import choose_backbone, fit
from deepfake_cli.stages.predict import predict
from deepfake_cli.store.artifacts import load_model
from deepfake_cli.store.features import read_features
from tests.conftest import copy_subset, example_set

runner = CliRunner()


def _app() -> typer.Typer:
    """The CLI's error handling (one line, rc 2) around `fit` alone, whether or not cli/__init__ registers it."""
    app = typer.Typer(cls=_Group, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test app"""

    fit_cmds.register(app)
    return app


@pytest.fixture(scope="module")
def biggan(tmp_path_factory):
    """20 real + 20 BigGAN example images, fitted once with the `lowlevel` backbone."""
    root = tmp_path_factory.mktemp("fit")
    images = copy_subset(example_set("forensynths_biggan"), root / "biggan", 20)
    said = []
    res = fit(real=str(images / "real"), fake=str(images / "fake"), out=str(root / "out" / "detector.model"),
              backbone="lowlevel", device="cpu", say=said.append)
    return {"root": root, "images": images, "res": res, "said": said}


def test_fit_writes_a_model_that_predicts_and_keeps_its_features(biggan):
    res = biggan["res"]
    assert res.out.is_file() and res.features == res.out.with_suffix(".h5") and res.features.is_file()
    assert res.backbone == "lowlevel" and res.datasets == ["biggan"] and not res.features_reused
    assert res.n_images == {"biggan": {"real": 20, "fake": 20}}
    assert any(line.startswith("backbone lowlevel: as asked") for line in biggan["said"])
    # the deployment model is trained on every image (nothing held out) and cites the measured figure
    m = load_model(res.out)
    assert m.meta["n_train"] == res.n_deployed == 40 and sum(m.meta["n_heldout"].values()) == 0
    assert m.meta["heldout"] == res.heldout and m.meta["recipe"]["name"] == "fit"
    assert "trained on all 40 images" in m.meta["heldout"]["measured_by"]
    out = predict(str(res.out), [str(biggan["images"] / "fake")], device="cpu")
    assert out.n_images == 20 and {r["label"] for r in out.rows} <= {"real", "fake"}
    assert res.predict_command == f"deepfake predict {res.out} DIR"


def test_fit_heldout_accuracy_is_consistent(biggan):
    h = biggan["res"].heldout
    # 20% of 20 + 20, stratified: 4 + 4 held out
    assert (h["n"], h["n_real"], h["n_fake"]) == (8, 4, 4)
    assert h["accuracy"] == pytest.approx(h["n_correct"] / h["n"])
    assert (h["ci_low"], h["ci_high"]) == pytest.approx(wilson_interval(h["n_correct"], h["n"]))
    # the features file holds the 40 images the model was trained on
    assert len(read_features(biggan["res"].features).y) == 40


def test_fit_reuses_the_features_on_a_second_run(biggan, tmp_path):
    res = biggan["res"]
    before = res.features.stat().st_mtime_ns
    said = []
    again = fit(real=str(biggan["images"] / "real"), fake=str(biggan["images"] / "fake"), out=str(res.out),
                device="cpu", say=said.append)  # no --backbone: the feature file's own is kept
    assert again.features_reused and again.backbone == "lowlevel"
    assert res.features.stat().st_mtime_ns == before
    assert any("reused" in line for line in said)
    assert again.heldout == res.heldout  # same seed, same features: the same measurement


def test_fit_cli_prints_heldout_accuracy_interval_and_next_command(biggan, tmp_path):
    out = tmp_path / "cli.model"
    res = runner.invoke(_app(), ["fit", "--real", str(biggan["images"] / "real"), "--fake",
                                 str(biggan["images"] / "fake"), "--out", str(out), "--backbone", "lowlevel",
                                 "--device", "cpu"])
    assert res.exit_code == 0, res.output
    m = re.search(r"held-out accuracy ([\d.]+) \((\d+)/(\d+); (\d+) real, (\d+) fake\), 95% Wilson interval "
                  r"([\d.]+)-([\d.]+)", res.stdout)
    assert m, res.stdout
    acc, k, n = float(m[1]), int(m[2]), int(m[3])
    assert n == 8 and int(m[4]) + int(m[5]) == n and acc == pytest.approx(k / n, abs=5e-4)
    low, high = wilson_interval(k, n)
    assert (float(m[6]), float(m[7])) == pytest.approx((low, high), abs=5e-3)
    assert f"next: deepfake predict {out} DIR" in res.stdout
    assert "trained on all 40 images" in res.stdout and f"features kept for reuse: {out.with_suffix('.h5')}" in res.stdout
    assert load_model(out).meta["heldout"]["n"] == n


def test_fit_takes_dataset_specs_as_extract_does(biggan, tmp_path):
    said = []
    res = fit(datasets=[f"gan={biggan['images']}"], out=str(tmp_path / "d.model"), backbone="lowlevel", device="cpu",
              say=said.append)
    assert res.datasets == ["gan"] and res.n_images == {"gan": {"real": 20, "fake": 20}}
    assert res.heldout["n"] == 8 and load_model(res.out).meta["train_datasets"] == ["gan"]


@pytest.mark.parametrize("args, says", [
    (["--real", "/nonexistent/real", "--fake", "/nonexistent/fake"], "not a folder"),
    ([], "give the images"),
    (["--test-size", "0"], "--test-size"),
])
def test_fit_bad_input_is_one_line_rc2(biggan, tmp_path, args, says):
    if args and args[0] == "--test-size":
        args = ["--real", str(biggan["images"] / "real"), "--fake", str(biggan["images"] / "fake")] + args
    res = runner.invoke(_app(), ["fit", *args, "--out", str(tmp_path / "d.model"), "--backbone", "lowlevel"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr
    assert not (tmp_path / "d.model").exists()


def test_fit_refuses_a_folder_or_feature_file_as_out(biggan, tmp_path):
    for out in (str(tmp_path) + "/", str(tmp_path / "f.h5")):
        res = runner.invoke(_app(), ["fit", "--real", str(biggan["images"] / "real"), "--fake",
                                     str(biggan["images"] / "fake"), "--out", out])
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output


def test_default_backbone_is_clip_when_its_weights_are_here_else_effnet(clean_weights_env, monkeypatch, tmp_path):
    name, why = choose_backbone()
    assert name == "effnet-lite0" and "clip-vit-b16" in why and "DEEPFAKE_WEIGHTS_CLIP_VIT_B16" in why
    weights = tmp_path / "ViT-B-16.pt"
    weights.write_bytes(b"stand-in")  # only its presence is looked at here
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_CLIP_VIT_B16", str(weights))
    name, why = choose_backbone()
    assert name == "clip-vit-b16" and str(weights) in why
    assert choose_backbone("lowlevel") == ("lowlevel", "as asked (--backbone)")
