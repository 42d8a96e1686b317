"""Shared fixtures: real images shipped in examples/data, copied into small temporary datasets.

Tests use `example_set` (always present in a clone). The few tests that truly need the larger sets
in ../shared/data (or $DEEPFAKE_SHARED_DATA) call `shared_set` and carry `@pytest.mark.shared_data`;
they are skipped where those sets are absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# At most 2 threads; under pytest-xdist the cores are shared among the workers, and OpenMP pools
# (scikit-learn's histogram boosting) too, set before anything loads them: no oversubscription.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))

import torch  # noqa: E402  (after OMP_NUM_THREADS)

torch.set_num_threads(_THREADS)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEEPFAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
EXAMPLES = REPO / "examples" / "data"


EXAMPLE_SETS = ("cifake_sd14", "forensynths_biggan", "forensynths_stylegan")


def example_set(name: str) -> Path:
    """One of the labelled sets shipped in examples/data (20 real + 20 fake, or 24 + 24 for CIFAKE)."""
    if name not in EXAMPLE_SETS:
        raise ValueError(f"{name} is not shipped in examples/data; choose from {EXAMPLE_SETS}")
    return EXAMPLES / name


def shared_set(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path}")
    return path


def copy_subset(src: Path, dst: Path, n: int, classes=("real", "fake")) -> Path:
    """Copy the first `n` images of each class of a shared set into `dst/<class>/`."""
    for cls in classes:
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for p in sorted((src / cls).iterdir())[:n]:
            shutil.copy(p, dst / cls / p.name)
    return dst


def assert_same_features(a_path, b_path, exact: bool = True):
    """Two feature files hold the same rows in the same order and the same metadata (but the creation
    time); `exact=False`: features equal up to float rounding (another process, another thread count)."""
    import numpy as np

    from deepfake_cli.store.features import read_features

    a, b = read_features(a_path), read_features(b_path)
    for col in ("y", "dataset", "path", "sha256"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    if exact:
        np.testing.assert_array_equal(a.X, b.X)
    else:
        np.testing.assert_allclose(a.X, b.X, rtol=1e-4, atol=1e-5)
    ma, mb = dict(a.meta), dict(b.meta)
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    return a


# An xdist worker starts with COLUMNS=80 and LINES=24 in its environment (GNU readline sets them when it is
# imported), which would wrap the CLI's output at 80 columns in the workers only: a worker takes the
# controller's values instead.
_TERMINAL_VARS = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # xdist, in the controller
    node.workerinput["terminal_vars"] = {k: os.environ.get(k) for k in _TERMINAL_VARS}


def pytest_configure(config):
    for key, value in getattr(config, "workerinput", {}).get("terminal_vars", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# What the slow tests of each file take (pytest --durations, one worker of two): only to balance the workers.
SLOW_SECONDS = {"tests/test_readme_examples.py": 250, "tests/test_hardening.py": 170, "tests/test_zoo.py": 90,
                "tests/test_ray.py": 35, "tests/test_hardening_cli.py": 25, "tests/test_study.py": 25,
                "tests/test_ray_loopback.py": 23, "tests/test_image_budget.py": 18, "tests/test_finetune.py": 16,
                "tests/test_orphan_workers.py": 16, "tests/test_extract.py": 15, "tests/test_fusion.py": 6,
                "tests/test_study_zoo.py": 18, "tests/test_audit_evidence.py": 16, "tests/test_predict_page.py": 6,
                "tests/test_explain.py": 10}


# Tests of 2 s or more (measured with --durations on this 2-core machine, beside the ones marked slow in
# their files): they join the slow set, so `make test-fast`, the edit loop, stays within 2 minutes; the
# full suite runs them as before. By name, parametrized variants included.
HEAVY = {
    "tests/test_protocols.py::test_the_report_shows_the_per_generator_table_and_the_laundering_curves",
    "tests/test_pinned_outputs.py::test_end_to_end_outputs_match_the_pinned_run",
    "tests/test_backbones.py::test_study_combinations_by_name",
    "tests/test_zero_shot.py::test_text_tower_loads_from_the_image_towers_checkpoint",
    "tests/test_zero_shot.py::test_prompt_similarities_are_appended_for_any_classifier",
    "tests/test_extract.py::test_cli_errors_are_one_line",
    "tests/test_study.py::test_first_run_results_and_figures",
    "tests/test_report.py::test_report_never_writes_over_an_input_or_a_foreign_file",
    "tests/test_zero_shot.py::test_zero_shot_trains_without_fitting_and_scores_like_clip",
    "tests/test_api.py::test_every_docs_example_runs",
    "tests/test_zoo.py::test_pre_projection_output_is_the_class_token_after_ln_post",
    "tests/test_zero_shot.py::test_zero_shot_needs_no_labelled_images_and_refuses_other_features",
    "tests/test_protocols.py::test_a_benchmark_folder_expands_and_fake_only_sets_meet_their_pool",
    "tests/test_startup.py::test_quiet_and_json_on_every_command_that_prints_results",
    "tests/test_escaping.py::test_study_results_csv_is_guarded_and_its_report_reads_it_back",
    "tests/test_image_budget.py::test_api_thin_arrays_tensors_and_pil_images_are_skipped_without_large_memory",
    "tests/test_study.py::test_rerun_reuses_everything_and_restart_redoes_only_missing",
    "tests/test_study.py::test_new_test_transform_extracts_and_evaluates_without_retraining",
    "tests/test_protocols.py::test_leave_one_out_gives_one_row_per_held_out_generator_with_operating_points",
    "tests/test_hostile_sources.py::test_100000_missing_entries_are_summarised_in_seconds",
    "tests/test_study_sources.py::test_study_reads_tar_shards_and_lists",
    "tests/test_backbones.py::test_clip_loads_whole_clip_checkpoint",
    "tests/test_report.py::test_per_image_scores_give_roc_histograms_and_image_level_pooling",
    "tests/test_backbones.py::test_weights_file_and_env_var_load_the_saved_model",
    "tests/test_train_eval.py::test_eval_within_and_cross_rows",
    "tests/test_report.py::test_all_figures_from_a_full_table",
    "tests/test_hardening_round3.py::test_a_large_grid_needs_yes_and_every_grid_states_its_size",
    "tests/test_backbones_hub.py::test_open_clip_weights_from_hf_cache_and_clip_cache_equal_open_clip",
    "tests/test_hardening_cli.py::test_generated_command_lines_end_in_success_or_one_line",
    "tests/test_backbones_hub.py::test_timm_files_of_other_layouts_load_as_timm_loads_them",
    "tests/test_report.py::test_study_keeps_per_image_scores_for_the_report",
    "tests/test_study.py::test_cli_draws_the_progress_the_study_reports",
}


def pytest_collection_modifyitems(config, items):
    """Files with slow tests at the front of each worker's queue (order kept within a file). Under `--dist
    worksteal` each of the two workers starts with a contiguous half of this list, and an idle worker steals
    from the other's tail: so the slow files are split between the two halves (the README chain, the
    longest run of tests that build on one another, first in the first), each half starting with its share,
    where nothing steals them and no long file starts last while the other worker idles."""
    def file_of(item):
        return item.nodeid.split("::")[0]

    for item in items:
        if item.nodeid.split("[")[0] in HEAVY:
            item.add_marker(pytest.mark.slow)

    chain = "tests/test_readme_examples.py"
    slow = {file_of(i) for i in items if i.get_closest_marker("slow")}
    by_file: dict[str, list] = {}
    for item in items:
        by_file.setdefault(file_of(item), []).append(item)
    # the slow files in two groups of about equal time (seconds measured on this 2-core machine; a file not
    # listed counts 8 s per slow test), the chain in the first
    weight = {f: SLOW_SECONDS.get(f, 8 * sum(1 for i in by_file[f] if i.get_closest_marker("slow"))) for f in slow}
    groups: tuple[list, list] = ([], [])
    load = [0, 0]
    for f in sorted(slow, key=lambda f: (f != chain, -weight[f], f)):
        k = 0 if f == chain else int(load[1] < load[0])
        groups[k].append(f)
        load[k] += weight[f]
    first = [i for f in groups[0] for i in by_file[f]]
    second = [i for f in groups[1] for i in by_file[f]]
    rest = [i for f, its in by_file.items() if f not in slow for i in its]
    cut = max(0, len(items) // 2 - len(first))  # fast tests that fill the first half
    items[:] = first + rest[:cut] + second + rest[cut:]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture
def small_sets(tmp_path):
    """Two small labelled datasets of real images: BigGAN (PNG) and CIFAKE (JPEG), 6 per class."""
    a = copy_subset(example_set("forensynths_biggan"), tmp_path / "biggan", 6)
    b = copy_subset(example_set("cifake_sd14"), tmp_path / "cifake", 6)
    return a, b


# --- backbones (tests/test_backbones.py, tests/test_backbones_hub.py) ------------------------------

def _first(folder: Path, n: int = 1) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())[:n]


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Real and generated images of different sizes and formats, as PIL images (read-only: a test that
    changes one works on a copy)."""
    from PIL import Image

    from tests.helpers import odd_jpeg

    paths = {
        "biggan_real": _first(example_set("forensynths_biggan") / "real")[0],  # 248x248 PNG
        "biggan_fake": _first(example_set("forensynths_biggan") / "fake")[0],
        "cifake_fake": _first(example_set("cifake_sd14") / "fake")[0],  # 32x32 JPEG
    }
    out = {k: Image.open(p).convert("RGB") for k, p in paths.items()}
    out["odd_jpeg"] = odd_jpeg(_first(example_set("forensynths_stylegan") / "real")[0],
                               tmp_path_factory.mktemp("img") / "odd.jpg")
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: the machine is shared, and ViT-B runs stay predictable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clean_weights_env(monkeypatch, tmp_path):
    """No user env var leaks into a test; caches point at empty folders unless a test says otherwise."""
    for v in [v for v in os.environ if v.startswith("DEEPFAKE_WEIGHTS_")] + ["HF_HUB_CACHE", "DEEPFAKE_OFFLINE"]:
        monkeypatch.delenv(v, raising=False)
    for v in ("TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.setenv(v, str(tmp_path / "cache" / v.lower()))


# --- features extracted once per session (per xdist worker) ----------------------------------------
# Read-only: a test that writes to one of these files or folders copies it into its own tmp_path first.

def _lowlevel(images: Path, out: Path) -> Path:
    from deepfake_cli.stages.extract import extract

    extract([str(images)], backbone="lowlevel", out=str(out), device="cpu", workers=0)
    return out


@pytest.fixture(scope="session")
def cifake_lowlevel(tmp_path_factory) -> dict:
    """All 48 CIFAKE examples (24 real, 24 Stable Diffusion) copied to `cifake/`, and their `lowlevel`
    features (dataset `cifake`)."""
    root = tmp_path_factory.mktemp("cifake_lowlevel")
    images = copy_subset(example_set("cifake_sd14"), root / "cifake", 24)
    return {"images": images, "features": _lowlevel(images, root / "ll.h5")}


@pytest.fixture(scope="session")
def biggan6_lowlevel(tmp_path_factory) -> dict:
    """6 real + 6 BigGAN examples copied to `biggan/`, and their `lowlevel` features (dataset `biggan`)."""
    root = tmp_path_factory.mktemp("biggan6_lowlevel")
    images = copy_subset(example_set("forensynths_biggan"), root / "biggan", 6)
    return {"images": images, "features": _lowlevel(images, root / "ll.h5")}


@pytest.fixture(scope="session")
def cifake8_lda(tmp_path_factory) -> dict:
    """The cheapest real model: a `lowlevel` LDA trained on 8 + 8 CIFAKE examples (a quarter held out),
    and its feature file."""
    from deepfake_cli.stages.train import train

    root = tmp_path_factory.mktemp("cifake8_lda")
    feats = _lowlevel(copy_subset(example_set("cifake_sd14"), root / "cifake", 8), root / "f.h5")
    return {"model": train(str(feats), "lda", str(root / "lda.model"), test_size=0.25)[0].path, "features": feats}
