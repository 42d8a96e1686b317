"""The public benchmark layouts, recognised by name (issue 19 item 5): each built here in miniature from the
example images, discovered into the datasets its paper uses, with fake-only sets paired with their real pool."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deepfake_cli.data import discover_many
from deepfake_cli.data.layouts import describe, list_layouts
from tests.conftest import example_set

SETS = {"cifake": "cifake_sd14", "biggan": "forensynths_biggan", "stylegan": "forensynths_stylegan"}


def _put(src_set: str, cls: str, dst: Path, n: int = 3) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted((example_set(src_set) / cls).iterdir())[:n]:
        shutil.copy(p, dst / p.name)


def _by_name(root) -> dict:
    return {d["dataset"]: d for d in describe(discover_many([str(root)]))}


def test_forensynths_test_layout_gives_one_dataset_per_generator_with_categories(tmp_path):
    root = tmp_path / "test"
    for cat in ("car", "cat"):  # a generator with categories
        _put("forensynths_stylegan", "real", root / "stylegan" / cat / "0_real", 2)
        _put("forensynths_stylegan", "fake", root / "stylegan" / cat / "1_fake", 2)
    _put("forensynths_biggan", "real", root / "biggan" / "0_real")  # a flat one
    _put("forensynths_biggan", "fake", root / "biggan" / "1_fake")
    got = _by_name(root)
    assert set(got) == {"stylegan", "biggan"}
    assert got["stylegan"]["layout"] == "forensynths" and (got["stylegan"]["real"], got["stylegan"]["fake"]) == (4, 4)
    assert got["stylegan"]["categories"] == {"car": 4, "cat": 4} and got["biggan"]["categories"] == {}
    assert (got["biggan"]["real"], got["biggan"]["fake"]) == (3, 3)


def test_one_generator_with_lsun_categories_stays_one_dataset(tmp_path):
    root = tmp_path / "progan"
    for cat in ("car", "cat"):
        _put("forensynths_stylegan", "real", root / cat / "0_real", 2)
        _put("forensynths_stylegan", "fake", root / cat / "1_fake", 2)
    got = _by_name(root)
    assert set(got) == {"progan"} and got["progan"]["layout"] == "folder"


def test_univfd_diffusion_sets_pair_with_the_papers_real_pools(tmp_path):
    root = tmp_path / "diffusion_datasets"
    _put("cifake_sd14", "real", root / "laion" / "0_real")
    _put("forensynths_biggan", "real", root / "imagenet" / "0_real")
    for gen in ("guided", "ldm_200", "glide_100_10"):
        _put("cifake_sd14", "fake", root / gen / "1_fake", 2)
    got = _by_name(root)
    assert got["guided"]["reals_pool"] == "imagenet"
    assert got["ldm_200"]["reals_pool"] == got["glide_100_10"]["reals_pool"] == "laion"
    assert (got["laion"]["real"], got["laion"]["fake"], got["laion"]["reals_pool"]) == (3, 0, None)
    assert all(got[g]["fake"] == 2 and got[g]["real"] == 0 for g in ("guided", "ldm_200", "glide_100_10"))


def test_synthbuster_generators_are_fake_and_paired_with_raise(tmp_path):
    root = tmp_path / "synthbuster"
    _put("cifake_sd14", "real", root / "RAISE")
    _put("cifake_sd14", "fake", root / "stable-diffusion-2", 2)
    _put("forensynths_biggan", "fake", root / "midjourney-v5", 2)
    got = _by_name(root)
    assert (got["RAISE"]["real"], got["RAISE"]["fake"]) == (3, 0)
    for g in ("stable-diffusion-2", "midjourney-v5"):
        assert (got[g]["fake"], got[g]["real"], got[g]["reals_pool"], got[g]["layout"]) == (2, 0, "RAISE", "synthbuster")


def test_genimage_keeps_the_split(tmp_path):
    root = tmp_path / "genimage"
    for gen in ("imagenet_ai_0419_biggan", "imagenet_glide"):
        for split in ("train", "val"):
            _put("cifake_sd14", "real", root / gen / split / "nature", 2)
            _put("cifake_sd14", "fake", root / gen / split / "ai", 2)
    got = _by_name(root)
    assert set(got) == {f"{g}-{s}" for g in ("imagenet_ai_0419_biggan", "imagenet_glide") for s in ("train", "val")}
    assert all((d["real"], d["fake"], d["layout"]) == (2, 2, "genimage") for d in got.values())
    one = _by_name(root / "imagenet_glide")  # one generator's folder by itself
    assert set(one) == {"imagenet_glide-train", "imagenet_glide-val"}


def test_a_plain_collection_of_sets_is_still_one_dataset(tmp_path):
    """Not a benchmark layout (real/ and fake/, not 0_real/ and 1_fake/): unchanged behaviour."""
    for name, src in SETS.items():
        _put(src, "real", tmp_path / "all" / name / "real", 2)
        _put(src, "fake", tmp_path / "all" / name / "fake", 2)
    got = _by_name(tmp_path / "all")
    assert set(got) == {"all"} and (got["all"]["real"], got["all"]["fake"]) == (6, 6)


def test_every_layout_is_listed():
    assert {d["name"] for d in list_layouts()} == {"forensynths", "univfd-diffusion", "synthbuster", "genimage"}


def test_extract_keeps_the_pairing_and_eval_uses_it(cifake_lowlevel, tmp_path):
    """The UnivFD miniature end to end: extract records each fake-only set's pool, eval scores it against
    that pool without being told."""
    from deepfake_cli.stages.evaluate import evaluate
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.stages.train import train
    from deepfake_cli.store.features import read_meta

    root = tmp_path / "diffusion_datasets"
    # no CIFAKE image here: the model trained on those, and eval leaves out what a model trained on
    _put("forensynths_stylegan", "real", root / "laion" / "0_real", 4)
    _put("forensynths_biggan", "real", root / "imagenet" / "0_real", 4)
    _put("forensynths_biggan", "fake", root / "ldm_200" / "1_fake", 4)
    _put("forensynths_stylegan", "fake", root / "guided" / "1_fake", 4)
    feats = tmp_path / "univfd.h5"
    extract([str(root)], backbone="lowlevel", out=str(feats), device="cpu", workers=0)
    assert read_meta(feats)["reals_pools"] == {"guided": "imagenet", "ldm_200": "laion"}
    model = train(str(cifake_lowlevel["features"]), "lda", str(tmp_path / "m.model"), test_size=0.25)[0].path
    rows = {r["test_dataset"]: r for r in evaluate([model], [feats])}
    assert rows["ldm_200"]["reals_pool"] == "laion" and (rows["ldm_200"]["n_real"], rows["ldm_200"]["n_fake"]) == (4, 4)
    assert rows["guided"]["reals_pool"] == "imagenet" and rows["guided"]["roc_auc"] == rows["guided"]["roc_auc"]
    assert rows["laion"]["reals_pool"] == "" and rows["laion"]["n_fake"] == 0
    override = {r["test_dataset"]: r for r in evaluate([model], [feats], reals="laion")}
    assert override["guided"]["reals_pool"] == "laion"


@pytest.mark.parametrize("layout", ["forensynths"])
def test_a_given_name_prefixes_the_generator_datasets(tmp_path, layout):
    root = tmp_path / "test"
    for gen, src in (("biggan", "forensynths_biggan"), ("stylegan", "forensynths_stylegan")):
        _put(src, "real", root / gen / "0_real", 1)
        _put(src, "fake", root / gen / "1_fake", 1)
    names = {d.name for d in discover_many([f"fs={root}"])}
    assert names == {"fs-biggan", "fs-stylegan"}


def test_deepfake_datasets_prints_what_was_recognised(tmp_path):
    from typer.testing import CliRunner

    from deepfake_cli.cli import app

    root = tmp_path / "synthbuster"
    _put("cifake_sd14", "real", root / "RAISE")
    _put("cifake_sd14", "fake", root / "glide", 2)
    res = CliRunner().invoke(app, ["datasets", str(root), "--json"])
    assert res.exit_code == 0, res.output
    got = {d["dataset"]: d for d in json.loads(res.stdout)}
    assert got["glide"]["reals_pool"] == "RAISE" and got["glide"]["layout"] == "synthbuster"
    table = CliRunner().invoke(app, ["datasets", str(root)])
    assert table.exit_code == 0 and "synthbuster" in table.stdout and "RAISE" in table.stdout
    bad = CliRunner().invoke(app, ["datasets", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
