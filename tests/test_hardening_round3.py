"""Hardening, third round (issue 16): each test names its item. Real CLI runs on the example images,
kept small (a few images, the `lowlevel` backbone, one tiny fine-tuning epoch)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from tests.clicheck import one_line_error
from tests.conftest import copy_subset, example_set

runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _refused(res, says: str) -> str:
    """The run ended non-zero with exactly one `error:` line on stderr that contains `says`."""
    line = one_line_error(res.stderr)
    assert res.exit_code not in (0, None) and line is not None, (res.exit_code, res.output)
    assert says in line, line
    return line


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------- items 3, 5, 13 (study, train, finetune): outputs, limits, sizes

STUDY_TOML = """
[study]
seed = 0
test_size = 0.3
cross_dataset = false
device = "cpu"
batch_size = 8
{study_extra}

[datasets]
biggan = "data/biggan"
cifake = {{ real = "data/cifake/real", fake = "data/cifake/fake" }}

[grid]
backbones = ["lowlevel"]
reducers = {reducers}
classifiers = ["lda", "naive-bayes"]
"""


def _study_config(path: Path, reducers: str = '["none"]', study_extra: str = "") -> Path:
    path.write_text(STUDY_TOML.format(reducers=reducers, study_extra=study_extra))
    return path


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    """data/biggan (a dataset root) and data/cifake/{real,fake} (a --real/--fake pair), 4 images a class."""
    root = tmp_path_factory.mktemp("round3_study")
    copy_subset(example_set("forensynths_biggan"), root / "data" / "biggan", 4)
    copy_subset(example_set("cifake_sd14"), root / "data" / "cifake", 4)
    return root


@pytest.mark.parametrize("inside", ["data/biggan/real/out", "data/biggan", "data/cifake/fake/study"])
def test_study_out_inside_a_dataset_folder_is_refused_and_writes_nothing_there(study_root, inside):
    """Item 3: `study --out` inside a dataset folder of its own config used to exit 0 and drop figures and
    caches among the real images."""
    cfg = _study_config(study_root / "s.toml")
    before = _listing(study_root / "data")
    t0 = time.perf_counter()
    res = _cli("study", cfg, "--out", study_root / inside, "-q")
    line = _refused(res, "read by this command")
    assert ("is read" if inside == "data/biggan" else "lies in") in line and time.perf_counter() - t0 < 30
    assert _listing(study_root / "data") == before


def test_every_image_reading_command_refuses_an_output_inside_its_image_folders(study_root, tmp_path):
    """Item 3, as a class: extract, predict and finetune refuse any output (new or existing, file or folder)
    below a folder they read images from; outside it is fine."""
    data = study_root / "data"
    biggan, cifake = data / "biggan", data / "cifake"
    before = _listing(data)
    low = ["--backbone", "lowlevel", "--workers", "0", "--device", "cpu", "-q"]
    _refused(_cli("extract", biggan, *low, "--out", biggan / "real" / "f.h5"), "lies in")
    _refused(_cli("extract", biggan, *low, "--out", biggan / "f.h5"), "lies in")
    _refused(_cli("extract", "--real", cifake / "real", "--fake", cifake / "fake", *low,
                  "--out", cifake / "fake" / "new" / "f.h5"), "lies in")
    feats = tmp_path / "f.h5"
    assert _cli("extract", biggan, *low, "--out", feats).exit_code == 0
    model = tmp_path / "lda.model"
    assert _cli("train", feats, "--classifier", "lda", "--out", model, "-q").exit_code == 0
    _refused(_cli("predict", model, biggan, "--out", biggan / "fake" / "p.csv", "--workers", "0"), "lies in")
    _refused(_cli("finetune", f"b={biggan}", "--out", biggan / "ft.model", "--arch", "resnet18",
                  "--random-weights", "--epochs", "1", "--size", "32", "--device", "cpu", "--workers", "0", "-q"),
             "lies in")
    assert _listing(data) == before


def test_deeply_nested_or_mistyped_study_config_is_one_line(study_root, tmp_path):
    """Item 5: a TOML nested 5,000 deep gave RecursionError (exit 70); values of the wrong type in [study]
    gave TypeError/ValueError from deep inside the run."""
    deep = tmp_path / "deep.toml"
    deep.write_text("[study]\nseed = " + "[" * 5000 + "]" * 5000 + "\n")
    _refused(_cli("study", deep, "--out", tmp_path / "o1", "-q"), "nests arrays or tables too deeply")
    inline = tmp_path / "inline.toml"
    inline.write_text("[grid]\nbackbones = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
    _refused(_cli("study", inline, "--out", tmp_path / "o2", "-q"), "too deeply")
    for extra, says in (("batch_size = [1]", "batch_size in [study] must be an integer"),
                        ('seed = "abc"', "seed in [study] must be an integer"),
                        ("test_size = { a = 1 }", "test_size in [study] must be a number"),
                        ("autoencoder_epochs = 1e400", "autoencoder_epochs in [study] must be an integer"),
                        ("gpus_per_worker = [0.5]", "gpus_per_worker in [study] must be a number"),
                        ("align = 256", "align in [study]"),
                        ("weights = { lowlevel = 3 }", "weights in [study]")):
        cfg = study_root / "bad.toml"
        cfg.write_text(f'[study]\n{extra}\n[datasets]\nb = "data/biggan"\n[grid]\nbackbones = ["lowlevel"]\n'
                       'classifiers = ["lda"]\n')
        _refused(_cli("study", cfg, "--out", tmp_path / "o3", "-q"), says)
    cfg = study_root / "bad_ds.toml"
    cfg.write_text('[datasets]\nx = { real = 1, fake = "data/cifake/fake" }\n[grid]\nbackbones = ["lowlevel"]\n'
                   'classifiers = ["lda"]\n')
    _refused(_cli("study", cfg, "--out", tmp_path / "o4", "-q"), "must be strings")
    assert not any(p.exists() for p in (tmp_path / f"o{i}" for i in range(1, 5)))


def test_study_jobs_beyond_the_limit_is_refused_before_any_work(study_root, tmp_path):
    """Item 5: `study --jobs 1000000000` gave a ValueError after 19 s of extraction."""
    from deepfake_cli.errors import DeepfakeError
    from deepfake_cli.study import run_study
    from deepfake_cli.study.runner import max_jobs

    cfg = _study_config(study_root / "s.toml")
    t0 = time.perf_counter()
    line = _refused(_cli("study", cfg, "--out", tmp_path / "o", "--jobs", 1_000_000_000, "-q"), "--jobs")
    assert f"from 1 to {max_jobs()}" in line and time.perf_counter() - t0 < 10
    assert not (tmp_path / "o").exists()
    assert max_jobs() == 4 * len(os.sched_getaffinity(0))
    for bad in (max_jobs() + 1, 0, 2.5, True):
        with pytest.raises(DeepfakeError, match="--jobs must be a whole number"):
            run_study(cfg, tmp_path / "o", jobs=bad)


def _many_reducers(n: int) -> str:
    return "[" + ", ".join(f'"pca:{i}"' for i in range(1, n + 1)) + "]"


def test_a_large_grid_needs_yes_and_every_grid_states_its_size(study_root, tmp_path):
    """Item 13: a 300,000-cell grid started silently under -q. Past 1,000 cells the run is refused without
    --yes (before any work); with --yes, or below the limit, the size is stated on stderr first, -q or not."""
    big = _study_config(study_root / "big.toml", reducers=_many_reducers(300))  # 2 datasets x 300 x 2 = 1,200
    t0 = time.perf_counter()
    line = _refused(_cli("study", big, "--out", tmp_path / "big", "-q"), "--yes")
    assert "1,200 cells" in line and "more than 1,000" in line and time.perf_counter() - t0 < 30
    assert not (tmp_path / "big").exists()

    # --yes lets it start: the size comes first; an empty dataset then stops the first extraction
    empty = study_root / "empty"
    (empty / "real").mkdir(parents=True, exist_ok=True)
    (empty / "fake").mkdir(parents=True, exist_ok=True)
    big.write_text(big.read_text().replace('"data/biggan"', '"empty"'))
    res = _cli("study", big, "--out", tmp_path / "big", "-q", "--yes")
    assert res.stderr.splitlines()[0].startswith("study grid: 1,200 cells (1 backbone x 1 layer setting x "
                                                 "2 datasets x 1 train transform x 300 reducers x 2 classifiers)")
    assert "--yes" not in res.stderr

    small = _study_config(study_root / "small.toml")
    res = _cli("study", small, "--out", tmp_path / "small", "-q")
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines()[0] == ("study grid: 4 cells (1 backbone x 1 layer setting x 2 datasets x "
                                          "1 train transform x 1 reducer x 2 classifiers), 2 feature files, "
                                          "4 result rows")


@pytest.mark.parametrize("extra,cross", [
    ("", True), ('backbones = ["lowlevel", "lowlevel+effnet-lite0", "effnet-lite0"]', False),
    ('backbones = ["lowlevel+effnet-lite0"]\nlayers = ["last", "all"]', True)])
def test_grid_size_counts_what_the_plan_builds(study_root, extra, cross):
    """Item 13: the stated size (counted without building the plan) is the plan's."""
    from deepfake_cli.study import load_config, plan
    from deepfake_cli.study.plan import grid_size, member_jobs

    text = STUDY_TOML.format(reducers='["none", "pca:2"]', study_extra="")
    text = text.replace("cross_dataset = false", f"cross_dataset = {str(cross).lower()}")
    text += 'test_transforms = ["none", "blur@1"]\n'
    if extra:
        text = text.replace('backbones = ["lowlevel"]', extra)
    (study_root / "g.toml").write_text(text)
    cfg = load_config(study_root / "g.toml")
    features, cells = plan(cfg)
    size = grid_size(cfg)
    assert size.cells == len(cells)
    assert size.feature_files == len(features) + len(member_jobs(cfg, features))
    assert size.rows == sum(len(c.test_fkeys) for c in cells)


def test_train_out_with_a_trailing_slash_is_a_folder(study_root, tmp_path):
    """Item 13: `train --out models/` with one classifier wrote a FILE named `models`."""
    feats = tmp_path / "f.h5"
    res = _cli("extract", study_root / "data" / "biggan", "--backbone", "lowlevel", "--workers", "0", "--device",
               "cpu", "-q", "--out", feats)
    assert res.exit_code == 0, res.output
    res = _cli("train", feats, "--classifier", "lda", "--out", f"{tmp_path / 'models'}/", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "models").is_dir() and (tmp_path / "models" / "lda.model").is_file()
    res = _cli("train", feats, "--classifier", "lda", "--out", tmp_path / "one.model", "-q")  # unchanged
    assert res.exit_code == 0 and (tmp_path / "one.model").is_file()
    (tmp_path / "plain").write_text("a file\n")
    _refused(_cli("train", feats, "--classifier", "lda", "--out", f"{tmp_path / 'plain'}/", "-q"), "is a file")
    assert (tmp_path / "plain").read_text() == "a file\n"
    # a command that writes one file: "x/" names a folder, so it is refused, not written as a file named x
    for cmd in (["extract", study_root / "data" / "biggan", "--backbone", "lowlevel", "--workers", "0", "-q"],
                ["reduce", feats, "--method", "pca", "--dim", "2"],
                ["predict", tmp_path / "one.model", study_root / "data" / "biggan" / "real"]):
        _refused(_cli(*cmd, "--out", f"{tmp_path / 'dir'}/"), "ends with a slash, which names a folder")
        assert not (tmp_path / "dir").exists()


# -------------------------------------------------------- item 8: a fine-tuned model moves with its network

def _finetune(study_root: Path, out: str):
    res = _cli("finetune", f"biggan={study_root / 'data' / 'biggan'}", "--out", out, "--arch", "resnet18",
               "--random-weights", "--epochs", "1", "--batch-size", "4", "--size", "32", "--device", "cpu",
               "--workers", "0", "--test-size", "0.25", "--seed", "1", "-q")
    assert res.exit_code == 0, res.output


def _scores(model: Path, images: list[Path], tmp_path: Path) -> list[str]:
    out = tmp_path / "p.csv"
    out.unlink(missing_ok=True)
    res = _cli("predict", model, *images, "--out", out, "--workers", "0", "--device", "cpu")
    assert res.exit_code == 0, res.output
    return [ln.split(",")[1] for ln in out.read_text().splitlines()[1:]]


def test_finetuned_model_and_network_move_together(study_root, tmp_path):
    """Item 8: the model stored its network's absolute path; copying both elsewhere and removing the
    originals broke it."""
    from deepfake_cli.store.artifacts import load_artifact

    first = tmp_path / "first"
    _finetune(study_root, str(first / "ft.model"))
    model, trunk = first / "ft.model", first / "ft.safetensors"
    meta = load_artifact(model, "model").meta
    assert meta["finetune"]["trunk_file"] == "ft.safetensors" and meta["weights_id"].startswith("sha256:")
    images = sorted((study_root / "data" / "biggan" / "fake").iterdir())[:3]
    expected = _scores(model, images, tmp_path)

    moved = tmp_path / "elsewhere" / "deeper"
    moved.mkdir(parents=True)
    for p in (model, trunk):
        shutil.copy(p, moved / p.name)
    shutil.rmtree(first)
    assert _scores(moved / model.name, images, tmp_path) == expected


def test_an_older_finetuned_model_with_an_absolute_path_still_loads(study_root, tmp_path):
    """Item 8: models written before the relative path (absolute `trunk_file` and backbone) load from the
    absolute path while it is there, then from the file of the same name beside the model. (Item 13:
    `finetune --out DIR/` writes DIR/finetuned-ARCH.model, not a file named DIR.)"""
    from deepfake_cli.store.artifacts import load_artifact, load_model, save_model
    from deepfake_cli.backbones.finetuned import backbone_name

    _finetune(study_root, f"{tmp_path / 'a'}/")
    model, trunk = tmp_path / "a" / "finetuned-resnet18.model", tmp_path / "a" / "finetuned-resnet18.safetensors"
    assert model.is_file() and trunk.is_file()
    old = load_artifact(model, "model")
    old.meta["finetune"]["trunk_file"] = str(trunk.resolve())  # as older versions wrote it
    save_model(tmp_path / "old.model", old.estimator, old.meta, old.extras)
    assert load_model(tmp_path / "old.model").meta["backbone"] == backbone_name(trunk)
    images = sorted((study_root / "data" / "biggan" / "real").iterdir())[:2]
    expected = _scores(tmp_path / "old.model", images, tmp_path)

    moved = tmp_path / "b"
    moved.mkdir()
    shutil.copy(tmp_path / "old.model", moved / "old.model")
    shutil.copy(trunk, moved / trunk.name)
    shutil.rmtree(tmp_path / "a")
    assert load_model(moved / "old.model").meta["backbone"] == backbone_name(moved / trunk.name)
    assert _scores(moved / "old.model", images, tmp_path) == expected
