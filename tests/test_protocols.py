"""The field's protocols as study keys (issue 19 items 3 and 4): leave-one-generator-out, train-on-one, and
the laundering sweep, run on small real image sets with the lowlevel backbone."""

from __future__ import annotations

import csv

import pytest

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.study.config import load_config
from deepfake_cli.study.plan import grid_size, plan
from deepfake_cli.study.runner import run_study
from tests.conftest import copy_subset, example_set
from tests.helpers import small_study_config

SETS = {"cifake": "cifake_sd14", "biggan": "forensynths_biggan", "stylegan": "forensynths_stylegan"}


@pytest.fixture(scope="module")
def three_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol_sets")
    return {name: copy_subset(example_set(src), root / name, 6) for name, src in SETS.items()}


def _config(tmp_path, sets, study_lines: str, **kw):
    path = small_study_config(tmp_path / "study.toml", {n: f'"{p}"' for n, p in sets.items()}, **kw)
    path.write_text(path.read_text().replace("[study]\n", f"[study]\n{study_lines}\n", 1))
    return path


def _rows(out):
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_leave_one_out_gives_one_row_per_held_out_generator_with_operating_points(three_sets, tmp_path):
    cfg = _config(tmp_path, three_sets, 'protocol = "leave-one-out"')
    features, cells = plan(load_config(cfg))
    assert sorted(c.dataset for c in cells) == ["all-but-biggan", "all-but-cifake", "all-but-stylegan"]
    assert grid_size(load_config(cfg)).rows == 3
    run_study(cfg, tmp_path / "out")
    rows = _rows(tmp_path / "out")
    assert sorted((r["train_dataset"], r["test_dataset"]) for r in rows) == [
        ("all-but-biggan", "biggan"), ("all-but-cifake", "cifake"), ("all-but-stylegan", "stylegan")]
    for r in rows:
        assert r["protocol"] == "leave-one-out" and r["kind"] == "cross"
        assert set(r["train_datasets"].split(",")) == set(SETS) - {r["test_dataset"]}  # trained on the others
        assert 0.0 <= float(r["tpr_at_fpr_5"]) <= 1.0
        assert float(r["tpr_at_fpr_5_ci_low"]) <= float(r["tpr_at_fpr_5"]) <= float(r["tpr_at_fpr_5_ci_high"])
        assert int(r["n"]) == 12  # every image of the held-out set


def test_train_on_one_tests_every_other_set_and_never_its_own(three_sets, tmp_path):
    cfg = load_config(_config(tmp_path, three_sets, 'protocol = "train-on-one"'))
    _features, cells = plan(cfg)
    assert len(cells) == 3 and grid_size(cfg).rows == 6
    for c in cells:
        assert len(c.test_fkeys) == 2 and not any(k.startswith(f"{c.dataset}__") for k in c.test_fkeys)


def test_laundering_adds_the_sweep_to_the_test_transforms(three_sets, tmp_path):
    cfg = load_config(_config(tmp_path, {"cifake": three_sets["cifake"]}, "", extra_grid="laundering = true"))
    assert cfg.test_transforms[0] == "none" and "jpeg:50" in cfg.test_transforms and "scale:0.5+jpeg:75" in cfg.test_transforms
    assert "blur:3" in cfg.test_transforms and len(cfg.test_transforms) == 15


def test_a_protocol_not_known_is_one_line(three_sets, tmp_path):
    with pytest.raises(DeepfakeError, match="protocol in \\[study\\] must be one of"):
        load_config(_config(tmp_path, three_sets, 'protocol = "cross"'))


def test_the_report_shows_the_per_generator_table_and_the_laundering_curves(three_sets, tmp_path):
    """A leave-one-out study with the laundering sweep: the report draws the generator bars and the laundering
    figure and tabulates each held-out generator in the field's format."""
    # one severity of each family (the full sweep is the same code, 15 transforms: see the test above)
    cfg = _config(tmp_path, {k: three_sets[k] for k in ("biggan", "stylegan")}, 'protocol = "leave-one-out"',
                  test_transforms='["none", "jpeg:50", "scale:0.25", "blur:3", "scale:0.25+jpeg:65"]')
    run_study(cfg, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    figs = tmp_path / "out" / "figures"
    assert (figs / "generators.png").is_file() and (figs / "laundering.png").is_file()
    assert "Per test generator: TPR at 5% FPR" in md and "Laundering: AUC and TPR at 5% FPR" in md
    assert "mean of 1 generators" in md
    for spec in ("jpeg:50", "scale:0.25+jpeg:65", "blur:3"):
        assert f"| {spec} |" in md


def test_a_benchmark_folder_expands_and_fake_only_sets_meet_their_pool(three_sets, tmp_path):
    """A study entry that is a UnivFD-style folder becomes one entry per set; fake-only sets and pools are test
    only, and each fake-only row is scored against its pool's reals (issue 19 items 2 and 5)."""
    import shutil

    bench = tmp_path / "diffusion_datasets"
    shutil.copytree(three_sets["cifake"] / "real", bench / "laion" / "0_real")
    shutil.copytree(three_sets["stylegan"] / "fake", bench / "ldm_200" / "1_fake")
    shutil.copytree(three_sets["biggan"] / "fake", bench / "guided" / "1_fake")
    shutil.copytree(three_sets["biggan"] / "real", bench / "imagenet" / "0_real")
    path = small_study_config(tmp_path / "study.toml", {"biggan": f'"{three_sets["biggan"]}"',
                                                        "stylegan": f'"{three_sets["stylegan"]}"',
                                                        "univfd": f'"{bench}"'})
    cfg = load_config(path)
    by = {d.name: d for d in cfg.datasets}
    assert by["univfd-ldm_200"].reals == "univfd-laion" and by["univfd-guided"].reals == "univfd-imagenet"
    _features, cells = plan(cfg)
    assert sorted({c.dataset for c in cells}) == ["biggan", "stylegan"]  # never trained on a test-only set
    run_study(path, tmp_path / "out")
    rows = _rows(tmp_path / "out")
    ldm = [r for r in rows if r["test_dataset"] == "univfd-ldm_200"]
    assert {r["reals_pool"] for r in ldm} == {"univfd-laion"} and all(int(r["n_real"]) == 6 for r in ldm)
    assert all(r["roc_auc"] not in ("", "nan") for r in ldm)
    # the miniature's fakes are copies of the example sets' fakes: eval leaves out those a model trained on
    by_model = {r["train_dataset"]: r for r in ldm}
    assert int(by_model["biggan"]["n_fake"]) == 6 and int(by_model["stylegan"]["n_fake"]) < 6


def test_reals_must_name_another_dataset(three_sets, tmp_path):
    path = small_study_config(tmp_path / "study.toml", {"a": f'"{three_sets["biggan"]}"',
                                                        "b": f'{{ fake = "{three_sets["stylegan"]}/fake", reals = "nope" }}'})
    with pytest.raises(DeepfakeError, match="reals = 'nope' names no other dataset"):
        load_config(path)
