"""Zoo models in a study (`zoo = [...]` in [grid]): scored beside the trained cells on features of their own
recipe, tested on every dataset, with the numbers `predict` gives for `zoo:NAME` on the same images.

The real entries need CLIP ViT-L/14 weights (heavy; tests/test_zoo.py checks them). Here two entries on the
offline backbone effnet-lite0 are added as data, the way a user adds one (an entries file named by
DEEPFAKE_ZOO_ENTRIES), each with a seeded Linear(1280, 1) head written by the test with its sha256.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from conftest import copy_subset, example_set
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.study import load_config, plan, run_study
from deepfake_cli.study.plan import grid_size
from deepfake_cli.zoo.catalog import ENTRIES_ENV, entries, get_entry
from deepfake_cli.zoo.heads import file_sha256

ENTRY = """
[[entry]]
name = "{name}"
title = "A test head on effnet-lite0"
backbone = "effnet-lite0"
layers = "last"
backbone_weights = "EfficientNet-Lite0, ImageNet (the pip package's)"
weights_sha256 = ""
head_file = "heads/{name}.pth"
head_sha256 = "{sha}"
head_weight = "{prefix}weight"
head_bias = "{prefix}bias"
head_source = "written by tests/test_study_zoo.py (seed {seed})"
licence = "none: test data"
licence_file = "heads/LICENSE"
training_data = "nothing: seeded random weights"
preprocessing = "effnet-lite0's own: resize 256, centre crop 224"
threshold = 0.5
published = {{ note = "none" }}
citation = "none"
"""
NAMES = ("test-effnet-a", "test-effnet-b")


def write_entries(folder, names=NAMES) -> str:
    """An entries file with one seeded Linear(1280, 1) head per name (the second nested as a checkpoint's)."""
    (folder / "heads").mkdir(parents=True, exist_ok=True)
    (folder / "heads" / "LICENSE").write_text("test data\n")
    text = ""
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(1280, 1)
        torch.nn.init.normal_(layer.weight, std=0.05)
        prefix = "state_dict.fc." if seed % 2 else ""
        sd = {"state_dict": {f"fc.{k}": v for k, v in layer.state_dict().items()}} if prefix else layer.state_dict()
        torch.save(sd, folder / "heads" / f"{name}.pth")
        text += ENTRY.format(name=name, sha=file_sha256(folder / "heads" / f"{name}.pth"), prefix=prefix, seed=seed)
    (folder / "entries.toml").write_text(text)
    return str(folder / "entries.toml")


def study_config(path, zoo: str, grid: str = 'backbones = ["effnet-lite0"]\nclassifiers = ["lda"]',
                 study: str = "", datasets: str = 'biggan = "data/biggan"\ncifake = "data/cifake"'):
    path.write_text(f"""
[study]
seed = 0
test_size = 0.3
device = "cpu"
batch_size = 8
{study}

[datasets]
{datasets}

[grid]
{grid}
zoo = {zoo}
""")
    return path


@pytest.fixture(scope="module")
def zoo_study(tmp_path_factory):
    """A study of effnet-lite0 + LDA on two small sets, with both test entries: run once, then rerun."""
    root = tmp_path_factory.mktemp("zoo_study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENTRIES_ENV, write_entries(root / "zoo"))
        copy_subset(example_set("forensynths_biggan"), root / "data" / "biggan", 4)
        copy_subset(example_set("cifake_sd14"), root / "data" / "cifake", 4)
        cfg = study_config(root / "study.toml", '["test-effnet-a", "zoo:test-effnet-b"]')
        first = run_study(cfg, root / "out")
        again = run_study(cfg, root / "out")
        yield root, first, again


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # reason: the module's study (effnet-lite0 on 16 images, two zoo entries, the report), ~8 s
def test_zoo_rows_sit_beside_the_trained_cells_on_every_dataset(zoo_study):
    root, s, again = zoo_study
    rows = _rows(s.results_csv)
    for name in NAMES:
        mine = [r for r in rows if r["model"] == f"zoo:{name}"]
        assert sorted(r["test_dataset"] for r in mine) == ["biggan", "cifake"]
        for r in mine:  # tested on every image of each set, since it trained on none of them; and it says so
            assert r["train_datasets"] == r["train_dataset"] == f"zoo:{name} (published, not trained here)"
            assert (r["kind"], r["n"], r["classifier"], r["backbone"]) == ("cross", "8", "linear-head", "effnet-lite0")
            assert float(r["threshold"]) == 0.5 and r["roc_auc"] not in ("", "nan")
    trained = [r for r in rows if not r["model"].startswith("zoo:")]
    assert {r["kind"] for r in trained} == {"within", "cross"} and len(trained) == 4
    metrics = ("accuracy", "accuracy_ci_low", "balanced_accuracy", "roc_auc", "average_precision", "tpr_at_fpr_5")
    assert all(r[m] not in ("", "nan") for r in rows for m in metrics)  # the same metrics for zoo and trained rows
    # one feature file per dataset: the grid and both entries share effnet-lite0 / last
    assert (s.features_extracted, s.cells_trained, s.cells_evaluated, s.failures) == (2, 2, 4, [])
    assert len(list((s.out / "models").glob("zoo__*.model"))) == 2
    size = grid_size(load_config(root / "study.toml"))  # what the run announced, before any work
    assert (size.cells, size.zoo, size.feature_files, size.rows) == (2, 2, 2, len(rows))
    # a rerun reuses everything, the zoo cells included
    assert (again.features_extracted, again.cells_evaluated, again.cells_reused) == (0, 0, 4)
    assert _rows(again.results_csv) == rows
    assert "zoo:test-effnet-a (published, not trained here)" in (s.out / "report.md").read_text()


@pytest.mark.slow  # reason: predict of two zoo models on 16 images, and the module's study if run alone
def test_zoo_rows_equal_what_predict_gives_for_the_zoo_name(zoo_study, monkeypatch):
    from deepfake_cli.stages.predict import predict

    root, s, _ = zoo_study
    monkeypatch.setenv(ENTRIES_ENV, str(root / "zoo" / "entries.toml"))
    rows = _rows(s.results_csv)
    # both entries in one call: one backbone pass over the images of both sets
    res = predict([f"zoo:{name}" for name in NAMES], [str(root / "data" / ds) for ds in ("biggan", "cifake")],
                  device="cpu", batch_size=8, workers=0)
    for name in NAMES:
        for ds in ("biggan", "cifake"):
            row = next(r for r in rows if r["model"] == f"zoo:{name}" and r["test_dataset"] == ds)
            mine = [r for r in res.rows if r["model"] == f"zoo:{name}" and f"/data/{ds}/" in r["path"]]
            y = np.array([int(r["true_label"] == "fake") for r in mine])  # from the folder names
            p = np.array([r["p_fake"] for r in mine])
            assert len(y) == int(row["n"]) == 8
            assert float(row["accuracy"]) == pytest.approx(np.mean((p >= 0.5) == y), abs=1e-12)
            assert float(row["roc_auc"]) == pytest.approx(roc_auc_score(y, p), abs=1e-9)
            # the study's per-image scores are predict's p_fake (features batched otherwise: float rounding)
            images = json.loads((s.out / "cells" / "images" / f"{row['cell']}.json").read_text())
            kept = next(iter(v[ds] for v in images.values() if ds in v))
            np.testing.assert_allclose(sorted(kept["p_fake"]), sorted(p), atol=1e-5)
    assert np.ptp(p) > 0.05  # the scores differ between images: the comparison says something


def test_every_protocol_tests_a_zoo_model_on_every_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv(ENTRIES_ENV, write_entries(tmp_path / "zoo"))
    datasets = 'a = "a"\nb = "b"\nc = "c"\nsd = { fake = "sd", reals = "c" }'
    for protocol in ("matrix", "train-on-one", "leave-one-out"):
        cfg = load_config(study_config(tmp_path / "s.toml", '["test-effnet-a"]', datasets=datasets,
                                       study=f'protocol = "{protocol}"\n'))
        features, cells = plan(cfg)
        zoo = [c for c in cells if c.zoo]
        assert len(zoo) == 1 and zoo[0].dataset == "zoo:test-effnet-a (published, not trained here)"
        tested = [features[k].dataset.name for k in zoo[0].test_fkeys]
        assert tested == ["a", "b", "c", "sd"]  # every set, whatever the protocol
        assert [features[k].dataset.name for k in zoo[0].reals.values()] == ["c"]  # the fake-only set meets its pool
        size = grid_size(cfg)
        assert size.zoo == 1 and "1 zoo model (published" in size.describe()
    # a study of zoo models alone needs no trained grid
    cfg = load_config(study_config(tmp_path / "z.toml", '["test-effnet-a", "test-effnet-b"]', grid=""))
    features, cells = plan(cfg)
    assert [c.zoo for c in cells] == list(NAMES) and len(features) == 2  # two datasets, one shared recipe
    assert grid_size(cfg).describe() == ("study grid: 2 zoo models (published, tested on every dataset), "
                                         "2 feature files, 4 result rows")


def _one_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.mark.usefixtures("clean_weights_env")
def test_missing_weights_stop_the_study_in_one_line_before_any_extraction(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_OFFLINE", "1")
    copy_subset(example_set("cifake_sd14"), tmp_path / "data" / "cifake", 2)
    copy_subset(example_set("forensynths_biggan"), tmp_path / "data" / "biggan", 2)
    cfg = study_config(tmp_path / "s.toml", '["univfd"]', grid='backbones = ["lowlevel"]\nclassifiers = ["lda"]')
    line = _one_line(CliRunner().invoke(app, ["study", str(cfg), "--out", str(tmp_path / "out")]))
    assert "zoo:univfd" in line and "ViT-L-14.pt" in line and "DEEPFAKE_WEIGHTS_CLIP_VIT_L14" in line
    assert '[study] weights = { "clip-vit-l14-univfd" = "PATH" }' in line
    assert not (tmp_path / "out").exists()  # nothing extracted, not even the grid's lowlevel features
    cfg = study_config(tmp_path / "s.toml", '["univfd"]', study='weights = { "clip-vit-l14-univfd" = "nope.pt" }')
    line = _one_line(CliRunner().invoke(app, ["study", str(cfg), "--out", str(tmp_path / "out")]))
    assert "nope.pt" in line and "does not exist" in line and not (tmp_path / "out").exists()


def test_an_unknown_zoo_name_is_one_line_listing_the_known_ones(tmp_path):
    cfg = study_config(tmp_path / "s.toml", '["univdf"]')
    line = _one_line(CliRunner().invoke(app, ["study", str(cfg), "--out", str(tmp_path / "out")]))
    assert "zoo in [grid]" in line and "'univdf'" in line
    assert all(f"zoo:{e.name}" in line for e in entries())
    with pytest.raises(DeepfakeError, match="needs at least 'backbones' and 'classifiers'"):
        load_config(study_config(tmp_path / "s.toml", '["univfd"]', grid='backbones = ["lowlevel"]'))


def test_an_entries_file_adds_entries_and_its_mistakes_are_one_line(tmp_path, monkeypatch):
    path = write_entries(tmp_path / "zoo", names=("test-effnet-a",))
    text = open(path).read()
    monkeypatch.setenv(ENTRIES_ENV, path)
    e = get_entry("zoo:test-effnet-a")
    assert e.head_path == tmp_path / "zoo" / "heads" / "test-effnet-a.pth" and e.head_path.is_file()
    assert [x.name for x in entries()][-1] == "test-effnet-a"
    (tmp_path / "zoo" / "entries.toml").write_text(text.replace("citation", "citashun"))  # read again: changed
    with pytest.raises(DeepfakeError, match=r"entry 'test-effnet-a' has unknown keys \['citashun'\] and lacks"):
        entries()
    monkeypatch.setenv(ENTRIES_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(DeepfakeError, match="DEEPFAKE_ZOO_ENTRIES names .*missing.toml, which is not a file"):
        entries()
    (tmp_path / "dup.toml").write_text(text.replace("test-effnet-a", "univfd"))
    monkeypatch.setenv(ENTRIES_ENV, str(tmp_path / "dup.toml"))
    with pytest.raises(DeepfakeError, match="univfd used twice"):
        entries()
