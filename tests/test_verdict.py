"""A verdict that says how far to trust it: every predict result states the model's evidence (what it was
trained on, its held-out accuracy with n and interval, how its threshold was chosen, what it was never tested
on, a zoo model's published figures), warns when that evidence is thin, and an input folder without an image
is refused before the model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.metrics.stats import wilson_interval
from deepfake_cli.stages.prediction_checks import NOT_RECORDED, evidence, evidence_lines
from deepfake_cli.stages.predict import predict, to_csv, to_jsonl
from deepfake_cli.stages.train import train
from deepfake_cli.store.artifacts import load_model
from deepfake_cli.store.features import read_features
from deepfake_cli.store.outputs import artifact_kind
from tests.conftest import REPO, copy_subset, example_set

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory):
    """As the demo: a model trained on the 20 + 20 BigGAN examples (here with `lowlevel` features), and the
    StyleGAN examples, another generator, to predict on."""
    from deepfake_cli.stages.extract import extract

    root = tmp_path_factory.mktemp("verdict")
    images = copy_subset(example_set("forensynths_biggan"), root / "biggan", 20)
    extract([str(images)], backbone="lowlevel", out=str(root / "f.h5"), device="cpu", workers=0)
    model = train(str(root / "f.h5"), "lda", str(root / "lda.model"))[0].path
    other = copy_subset(example_set("forensynths_stylegan"), root / "stylegan", 10)
    return {"root": root, "images": images, "features": root / "f.h5", "model": model, "other": other}


def test_train_records_the_heldout_accuracy_and_counts(demo_like):
    m = load_model(demo_like["model"])
    meta = m.meta
    assert meta["n_by_class"]["train"] == {"real": 16, "fake": 16}
    assert sum(meta["n_by_class"]["heldout"].values()) == sum(meta["n_heldout"].values()) == 8
    assert meta["n_by_class"]["val"] == {"real": meta["validation"]["n_real"], "fake": meta["validation"]["n_fake"]}
    assert meta["train_roots"] == {"biggan": str(demo_like["images"].resolve())}
    # the recorded held-out accuracy is the model's own on its held-out images, recomputed here
    fs = read_features(demo_like["features"])
    held = np.isin(fs.sha256, meta["heldout_sha256"]["biggan"])
    k = int(((m.p_fake(fs.X[held]) >= m.threshold).astype(int) == fs.y[held]).sum())
    h = meta["heldout"]
    assert (h["n"], h["n_correct"]) == (int(held.sum()), k)
    assert (h["ci_low"], h["ci_high"]) == pytest.approx(wilson_interval(k, h["n"]))


def test_predict_on_another_generator_states_the_evidence_and_warns(demo_like):
    res = predict(str(demo_like["model"]), [str(demo_like["other"])], device="cpu")
    ev = res.evidence["lda"]
    assert ev["trained_on"]["datasets"] == ["biggan"] and ev["trained_on"]["n_train"] == 32
    assert ev["heldout"]["n"] == 8 and ev["inputs_outside_training"] == [str(demo_like["other"])]
    assert ev["threshold"]["rule"].startswith("max balanced accuracy on validation")
    text = "\n".join(res.evidence_lines)
    assert "lda: trained on biggan, 32 images (16 real, 16 fake)" in text
    assert f"held-out accuracy {ev['heldout']['accuracy']:.3f} ({ev['heldout']['n_correct']}/8;" in text
    assert "never tested on any generator other than biggan" in text
    assert "not from its training sets" in text
    # 3 + 3 validation images and an interval reaching far below 0.7: the run does not pass in silence
    thin = [w for w in res.warnings if ": thin evidence: " in w]
    assert any("validation images (under 30 per class)" in w for w in thin)
    assert any("does not rule out a weak detector" in w for w in thin)


def test_evidence_goes_into_csv_comments_and_json(demo_like, tmp_path):
    res = predict(str(demo_like["model"]), [str(demo_like["other"])], device="cpu")
    text = to_csv(res.rows, evidence=res)
    lines = text.splitlines()
    assert lines[0].startswith("path,p_fake,label") and len([x for x in lines if not x.startswith("#")]) == 21
    comments = [x for x in lines if x.startswith("# ")]
    assert comments == [f"# {x}" for x in res.evidence_lines] + [f"# warning: {w}" for w in res.warnings]
    assert not any(x.startswith("#") for x in lines[:21])  # after the rows: the header stays first
    (tmp_path / "p.csv").write_text(text)
    assert artifact_kind(tmp_path / "p.csv") == "predictions"
    rows = [json.loads(x) for x in to_jsonl(res.rows, evidence=res).splitlines()]
    assert len(rows) == 21 and rows[-1]["evidence"]["lda"]["heldout"]["n"] == 8
    assert rows[-1]["warnings"] == res.warnings
    assert to_csv(res.rows) == "\n".join(lines[:21]) + "\n"  # without evidence: as before


def test_older_model_files_say_not_recorded(demo_like):
    m = load_model(demo_like["model"])
    for key in ("heldout", "n_by_class", "train_roots"):  # what files of earlier versions lack
        m.meta.pop(key)
    res = predict([m], [str(demo_like["other"])], device="cpu")
    ev = res.evidence[m.name]
    assert ev["heldout"] == NOT_RECORDED and ev["trained_on"]["by_class"] == NOT_RECORDED
    assert ev["inputs_outside_training"] == []
    assert any("held-out accuracy: not recorded" in line for line in res.evidence_lines)
    # the validation counts are in every file: the thin threshold still warns
    assert any("validation images (under 30 per class)" in w for w in res.warnings)


def _meta(**over) -> dict:
    meta = {"name": "m", "classifier": "lda", "backbone": "effnet-lite0", "train_datasets": ["a"], "n_train": 400,
            "n_by_class": {"train": {"real": 200, "fake": 200}}, "threshold": 0.48,
            "threshold_rule": "max balanced accuracy on validation p_fake (calibrated)",
            "validation": {"n_real": 40, "n_fake": 40}, "calibration": {"method": "sigmoid"},
            "heldout": {"n": 100, "n_real": 50, "n_fake": 50, "n_correct": 92, "accuracy": 0.92, "ci_low": 0.85,
                        "ci_high": 0.96, "measured_by": "train"}}
    meta.update(over)
    return meta


def test_thick_evidence_gives_no_warning_and_each_thin_kind_does():
    assert evidence(_meta())["warnings"] == []
    small_val = evidence(_meta(validation={"n_real": 40, "n_fake": 12}))["warnings"]
    assert len(small_val) == 1 and "12 fake validation images" in small_val[0]
    low = evidence(_meta(heldout=dict(_meta()["heldout"], ci_low=0.62)))["warnings"]
    assert len(low) == 1 and "0.62" in low[0]
    far = evidence(_meta(threshold=0.12, validation={"n_real": 4, "n_fake": 5}))["warnings"]
    assert len(far) == 2 and "threshold 0.120, far from 0.5, was chosen on 9 validation images" in far[1]
    assert evidence(_meta(threshold=0.12))["warnings"] == []  # far from 0.5, but on 80 images


def test_zoo_model_shows_published_figures_with_citation():
    zoo = {"name": "univfd", "zoo_name": "zoo:univfd", "citation": "Ojha et al., CVPR 2023.",
           "published": {"mean_accuracy_pct": 81.38, "mean_ap_pct": 90.14}, "training_data": "ProGAN, 20 LSUN classes",
           "measured_here": "nothing measured yet"}
    meta = {"name": "zoo:univfd", "threshold": 0.5, "threshold_rule": "published (0.5, the paper's)", "zoo": zoo,
            "train_datasets": [], "calibration": None, "validation": None}
    ev = evidence(meta)
    lines = evidence_lines(ev)
    assert lines[0] == ("zoo:univfd: zoo model zoo:univfd; published (not measured here): mean accuracy (%) 81.38, "
                        "mean ap (%) 90.14; source: Ojha et al., CVPR 2023; measured with this tool: nothing measured yet")
    assert "zoo:univfd: trained on ProGAN, 20 LSUN classes" in lines
    assert "zoo:univfd: threshold 0.500: published (0.5, the paper's), not chosen on images here (calibration: none)" \
        in lines
    assert ev["heldout"] == "not measured here" and ev["warnings"] == []


def test_a_real_zoo_entry_cites_its_paper():
    zoo_model = pytest.importorskip("deepfake_cli.zoo.model").zoo_model
    m = zoo_model("univfd")
    ev = evidence(dict(m.meta, name=m.name))
    first = evidence_lines(ev)[0]
    assert "published (not measured here)" in first and "81.38" in first and "CVPR 2023" in first
    assert ev["warnings"] == []


def test_empty_folder_is_refused_before_the_model_loads(demo_like, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.md").write_text("no image here")
    res = runner.invoke(app, ["predict", str(demo_like["model"]), str(empty)])
    assert res.exit_code == 2 and res.stderr.strip().splitlines() == [
        f"error: no image found in {empty}: the folder holds no image file (nor .tar shard, list or .parquet "
        "file); nothing to predict."]
    # in a fresh process: refused before torch (or the model) is imported, well under a second after start-up
    code = ("import sys, time; t = time.perf_counter()\n"
            "from deepfake_cli import api\nfrom deepfake_cli.errors import DeepfakeError\n"
            f"try:\n    api.predict({str(demo_like['model'])!r}, {str(empty)!r})\n"
            "except DeepfakeError as e:\n    print(round(time.perf_counter() - t, 3), 'torch' in sys.modules, "
            "'skops.io' in sys.modules)\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    wall = time.perf_counter() - t0
    seconds, torch_loaded, skops_loaded = out.stdout.split()
    assert (torch_loaded, skops_loaded) == ("False", "False"), out.stderr
    assert float(seconds) < 1.0 and wall < 5, (seconds, wall)


def test_refusal_does_not_walk_a_folder_of_images(demo_like):
    from deepfake_cli.stages.image_inputs import refuse_empty_folders

    refuse_empty_folders([str(demo_like["other"]), str(demo_like["images"] / "real" / "x.png")])  # no error
    nothing = demo_like["root"] / "nothing"
    (nothing / "sub").mkdir(parents=True, exist_ok=True)
    with pytest.raises(DeepfakeError, match="no image found in"):
        refuse_empty_folders([str(demo_like["other"]), str(nothing)])
    # a link loop is left to collect_files, whose message names it
    loops = demo_like["root"] / "loops"
    loops.mkdir(exist_ok=True)
    if not (loops / "self").is_symlink():
        (loops / "self").symlink_to(".")
    refuse_empty_folders([str(loops)])
    with pytest.raises(DeepfakeError, match="no image found in .*loops; skipped .*self: symlink loop"):
        predict(str(demo_like["model"]), [str(loops)], device="cpu")
