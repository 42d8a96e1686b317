"""A fast start and the command-line conventions: what `import deepfake_cli`, `--help` and the listing
commands load (checked in fresh interpreters, not by timing), `-h`, completion, an example and real
placeholders in every help, wide output to pipes and logs, `-q` / `--json`, `--log FILE`, one-line errors.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from deepfake_cli.cli import app
from tests.conftest import REPO, copy_subset, example_set

runner = CliRunner()
HEAVY = ("torch", "torchvision", "open_clip", "timm", "matplotlib", "sklearn", "scipy", "h5py", "pandas", "skops")


def _loaded_after(code: str, cwd=None) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running `code`."""
    probe = code + f"\nimport sys\nprint('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd or REPO,
                         env={**os.environ, "COLUMNS": "120"})
    assert res.returncode == 0, res.stderr
    line = [x for x in res.stdout.splitlines() if x.startswith("LOADED")][-1]
    return eval(line.removeprefix("LOADED "))  # noqa: S307 -- our own list literal


def _cli(args: list[str]) -> str:
    return textwrap.dedent(f"""
        import sys
        from deepfake_cli.cli import main
        sys.argv = ["deepfake", *{args!r}]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
    """)


def test_import_loads_nothing_heavy():
    assert _loaded_after("import deepfake_cli as dfc; dfc.extract; dfc.load_model; dfc.Detector") == []
    assert _loaded_after("import deepfake_cli.cli") == []


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], ["train", "--help"], ["extract", "-h"]])
def test_help_and_version_load_no_torch(args):
    assert _loaded_after(_cli(args)) == []


def test_backbones_listing_loads_no_torch():
    """The registry's configs live apart from the models (backbones/_tower.py): listing loads no torch."""
    assert _loaded_after(_cli(["backbones"])) == []
    assert _loaded_after(_cli(["backbones", "--json"])) == []
    assert _loaded_after("from deepfake_cli.backbones import get_config; get_config('effnet-lite0')") == []


@pytest.mark.parametrize("args", [["classifiers"], ["reducers"], ["classifiers", "--json"], ["reducers", "--json"]])
def test_classifier_and_reducer_listings_load_no_scikit_learn(args):
    """The registries hold names, parameters and factories; the estimators (and scikit-learn, torch) are
    imported only when one is built or a model file is loaded."""
    assert _loaded_after(_cli(args)) == []


def test_estimator_names_of_model_files_still_resolve():
    """Model files name their estimators by the public module (and 0.1.0 files by the package): both
    resolve, to the one class, and a fitted estimator is saved under that public name."""
    code = textwrap.dedent("""
        import importlib
        names = ["deepfake_cli.classifiers.LinearProbe", "deepfake_cli.classifiers.linear_probe.LinearProbe",
                 "deepfake_cli.classifiers.fusion.FusionClassifier", "deepfake_cli.classifiers.zero_shot.ZeroShotClassifier",
                 "deepfake_cli.reducers.PCAReducer", "deepfake_cli.reducers.pca.PCAReducer",
                 "deepfake_cli.reducers.IdentityReducer", "deepfake_cli.reducers.identity.IdentityReducer",
                 "deepfake_cli.reducers.AutoencoderReducer", "deepfake_cli.reducers.autoencoder.AutoencoderReducer",
                 "deepfake_cli.reducers.prompts.PromptSimilarities", "deepfake_cli.reducers.search.AutoencoderSearch"]
        for full in names:
            module, _, name = full.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            home = cls.__module__ + "." + cls.__qualname__
            assert getattr(importlib.import_module(cls.__module__), cls.__qualname__) is cls, full
            assert home.count("._") == 0, home  # saved under a public module, never the private one
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    import deepfake_cli.reducers as reducers

    with pytest.raises(AttributeError):
        reducers.NoSuchReducer  # noqa: B018


def test_info_loads_h5py_only(tmp_path):
    from deepfake_cli.stages.extract import extract

    extract([str(copy_subset(example_set("cifake_sd14"), tmp_path / "c", 2))], backbone="lowlevel",
            out=str(tmp_path / "f.h5"), device="cpu", workers=0)
    assert set(_loaded_after(_cli(["info", str(tmp_path / "f.h5")]))) <= {"h5py"}


# ------------------------------------------------------------------------------------- CLI conventions

def _commands():
    return get_command(app).commands


def test_every_help_has_an_example_and_real_placeholders():
    for name in _commands():
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "Example: deepfake " + name in res.output, name
        for placeholder in ("<str>", "<list[", "<path>", "<int>", "<float>", "<bool>", "<Path>"):
            assert placeholder not in res.output, (name, placeholder)
        assert "{" + name not in res.output
        short = runner.invoke(app, [name, "-h"], env={"COLUMNS": "200"})
        assert short.exit_code == 0 and short.output == res.output
    top = runner.invoke(app, ["-h"], env={"COLUMNS": "200"})
    assert top.exit_code == 0 and "--install-completion" in top.output and "--log" in top.output


def test_output_to_a_pipe_is_not_wrapped_at_80_columns_nor_hundreds_wide():
    """Piped, tables fit 120 columns (cells wrap inside them: `deepfake classifiers | head` reads), while a
    plain line (a summary, a path) is never wrapped, so `| grep` and log files hold whole lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    res = subprocess.run([sys.executable, "-m", "deepfake_cli", "classifiers"], capture_output=True, text=True,
                         env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr
    width = max(len(line) for line in res.stdout.splitlines())
    assert 80 < width <= 120
    assert "lda" in res.stdout and "shrinkage" in res.stdout.lower()
    from deepfake_cli.cli.common import PIPE_TABLE_WIDTH, _Console

    out = io.StringIO()
    con = _Console(file=out)
    con.print("wrote " + "x" * 300 + ".h5", highlight=False)
    assert ("wrote " + "x" * 300 + ".h5") in out.getvalue().splitlines()
    for name in _commands():
        if name in ("backbones", "classifiers", "reducers", "models"):
            listing = runner.invoke(app, [name])
            assert listing.exit_code == 0, (name, listing.output)
            assert max(len(line) for line in listing.stdout.splitlines()) <= PIPE_TABLE_WIDTH, name


# Commands whose only output is the listing or metadata asked for: `--json` but no `-q` (nothing to quieten)
LISTINGS = {"info", "backbones", "classifiers", "reducers", "models", "datasets"}


def test_every_command_that_prints_results_has_quiet_and_json():
    """Over the registered commands, not a hand-kept list: a new command gets this check."""
    group = get_command(app)
    for name, cmd in group.commands.items():
        flags = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        assert "--json" in flags, name
        if name not in LISTINGS:
            assert {"-q", "--quiet"} <= flags, name


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    data = copy_subset(example_set("cifake_sd14"), root / "cifake", 8)
    res = runner.invoke(app, ["extract", f"cifake={data}", "--backbone", "lowlevel", "--out", str(root / "f.h5"),
                              "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    return root


def test_quiet_and_json_on_every_command_that_prints_results(small, tmp_path):
    f = str(small / "f.h5")
    res = runner.invoke(app, ["reduce", f, "--method", "pca", "--dim", "4", "--out", str(tmp_path / "p.reducer"),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["output_dim"] == 4
    res = runner.invoke(app, ["train", f, "--classifier", "lda,naive-bayes", "--out", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout)
    assert [t["classifier"] for t in trained] == ["lda", "naive-bayes"] and "training lda" not in res.output
    res = runner.invoke(app, ["train", f, "--classifier", "lda", "--out", str(tmp_path / "q.model"), "-q"])
    assert res.exit_code == 0 and "training lda" not in res.output and "lda" in res.stdout
    loud = runner.invoke(app, ["train", f, "--classifier", "lda", "--out", str(tmp_path / "l.model")])
    assert "training lda" in loud.output
    res = runner.invoke(app, ["eval", str(tmp_path / "m"), "--features", f, "--json", "-q"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["model"] for r in rows} == {"lda", "naive-bayes"} and all(r["kind"] == "within" for r in rows)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[datasets]\ncifake = "{small / "cifake"}"\n[grid]\nbackbones = ["lowlevel"]\n'
                   'classifiers = ["lda"]\n[study]\ncross_dataset = false\n')
    res = runner.invoke(app, ["study", str(cfg), "--out", str(tmp_path / "st"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["n_rows"] >= 1 and summary["cells_trained"] == 1
    for cmd in ("train", "reduce", "eval", "study"):
        out = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"}).output
        assert "--quiet" in out and "-q" in out and "--json" in out, cmd
    res = runner.invoke(app, ["report", str(tmp_path / "st" / "results.csv"), "--out", str(tmp_path / "rep"), "--json",
                              "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["report"].endswith("report.md")
    res = runner.invoke(app, ["report", str(tmp_path / "st" / "results.csv"), "--out", str(tmp_path / "rep"), "-q"])
    assert res.exit_code == 0 and "report ->" in res.stdout, res.output
    res = runner.invoke(app, ["extract", str(small / "cifake"), "--backbone", "lowlevel", "--out",
                              str(tmp_path / "again.h5"), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["n_written"] == 16 and summary["datasets"]["cifake"] == {"real": 8, "fake": 8, "unknown": 0}
    res = runner.invoke(app, ["predict", str(tmp_path / "q.model"), str(small / "cifake" / "fake"), "-q"])
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.strip().splitlines() if not line.startswith("#")]
    assert len(rows) == 1 + 8 and "scored" not in res.stderr  # the CSV only
    loud = runner.invoke(app, ["predict", str(tmp_path / "q.model"), str(small / "cifake" / "fake")])
    assert "scored 8 image(s)" in loud.stderr
    res = runner.invoke(app, ["audit", str(small / "cifake"), "--folds", "2", "-q"])
    assert res.exit_code == 0 and "cifake" in res.stdout and "Rule:" not in res.stdout, res.output


def test_info_on_a_model_file_shows_its_card(small, tmp_path):
    f = str(small / "f.h5")
    model = tmp_path / "lda.model"
    assert runner.invoke(app, ["train", f, "--classifier", "lda", "--out", str(model), "-q"]).exit_code == 0
    res = runner.invoke(app, ["info", str(model)])
    assert res.exit_code == 0, res.output
    assert "threshold" in res.stdout and "lowlevel" in res.stdout and "lda" in res.stdout
    card = json.loads(runner.invoke(app, ["info", str(model), "--json"]).stdout)
    assert card["kind"] == "model" and card["backbone"] == "lowlevel" and 0 <= card["threshold"] <= 1
    reducer = tmp_path / "p.reducer"
    assert runner.invoke(app, ["reduce", f, "--method", "pca", "--dim", "3", "--out", str(reducer)]).exit_code == 0
    card = json.loads(runner.invoke(app, ["info", str(reducer), "--json"]).stdout)
    assert card["kind"] == "reducer"
    (tmp_path / "junk.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: neither
    res = runner.invoke(app, ["info", str(tmp_path / "junk.zip")])
    assert res.exit_code == 2 and res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1


def test_study_without_out_uses_a_folder_named_after_the_config(small, tmp_path, monkeypatch):
    cfg = tmp_path / "conf" / "mini.toml"
    cfg.parent.mkdir()
    cfg.write_text(f'[datasets]\ncifake = "{small / "cifake"}"\n[grid]\nbackbones = ["lowlevel"]\n'
                   'classifiers = ["lda"]\n[study]\ncross_dataset = false\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    res = runner.invoke(app, ["study", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    assert (work / "mini" / "results.csv").is_file()
    assert f"study folder: {work / 'mini'}" in res.stderr


def test_log_file_gets_everything_printed_and_errors(small, tmp_path):
    log = tmp_path / "run.log"
    f = str(small / "f.h5")
    res = runner.invoke(app, ["--log", str(log), "info", f])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["--log", str(log), "info", str(tmp_path / "missing.h5")])
    assert res.exit_code != 0
    text = log.read_text()
    assert text.count("# ") >= 2 and "lowlevel" in text and "cifake" in text
    assert "error:" in text and "missing.h5" in text
    assert "\x1b[" not in text  # plain text, no colour codes


def test_errors_are_one_line_never_starting_blank(small, tmp_path):
    f = str(small / "f.h5")
    cases = [["info", str(tmp_path / "missing.h5")],
             ["train", f, "--classifier", "bogus", "--out", str(tmp_path / "x.model")],
             ["train", f, "--out", str(tmp_path / "x.model")],          # a missing option
             ["extract", str(small / "cifake"), "--backbone", "lowlevel", "--transform", "blur", "--out", f],
             ["eval", str(tmp_path / "nothere.model"), "--features", f],
             ["--bogus-option"]]
    for args in cases:
        res = runner.invoke(app, args)
        assert res.exit_code not in (0, None), args
        err = res.stderr
        assert err and not err.startswith("\n") and not err.startswith(" "), (args, err)
        assert err.startswith("error:") and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, (args, err)


def test_study_checks_every_dataset_path_before_extracting(small, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[datasets]\ncifake = "{small / "cifake"}"\nmine = {{ real = "{small / "cifake" / "real"}", '
                   'fake = "no/such/folder" }\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\n')
    res = runner.invoke(app, ["study", str(cfg), "--out", str(tmp_path / "st"), "-q"])
    assert res.exit_code != 0
    assert "[datasets] mine.fake" in res.stderr and "no/such/folder" in res.stderr and "s.toml" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "st").rglob("*.h5"))  # nothing extracted, not even the good dataset
