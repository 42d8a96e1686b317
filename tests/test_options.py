"""Each stage's options declared once (deepfake_cli/options.py): the `deepfake` commands and the `dfc.`
functions are built from the same declarations, and the engines are a registry whose options are declared
once (inference/engines.py) and reach the CLI, the API and the study config from there."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
from typing import Annotated

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

import deepfake_cli as dfc
from deepfake_cli import api, options
from deepfake_cli.cli import app
from deepfake_cli.cli.common import typer_command
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.inference import engines
from deepfake_cli.options import option
from tests.conftest import REPO

runner = CliRunner()

# command -> (API function, its option groups); the command's own extra options (how it shows results)
STAGES = {"extract": "extract", "reduce": "reduce", "train": "train", "eval": "evaluate", "predict": "predict",
          "explain": "explain", "audit": "audit"}
CLI_ONLY = {"quiet", "json_out", "top", "help"}


def test_commands_and_api_functions_are_built_from_the_same_groups():
    group = get_command(app)
    for command, fn in STAGES.items():
        groups = getattr(api, fn).option_groups
        declared = {f.name: f for g in groups.values() for f in options.fields(g, "cli")}
        cli = {p.name: p for p in group.commands[command].params if p.param_type_name == "option"}
        assert set(cli) - CLI_ONLY == set(declared), command
        sig = inspect.signature(getattr(dfc, fn)).parameters
        for name, f in declared.items():
            assert name in sig, (command, name)
            assert cli[name].help == options.help_text(f)  # the help text is the declaration's
            if options.required(f):
                assert cli[name].required and sig[name].default is inspect.Parameter.empty
            else:
                assert sig[name].default == f.default, (fn, name)
                assert cli[name].default == f.default or (cli[name].default in ((), []) and f.default is None)


def test_every_option_has_help_and_every_api_option_is_documented():
    groups = [options.ExtractOptions, options.EngineOptions, options.ReduceOptions, options.TrainOptions,
              options.EvalOptions, options.PredictOptions, options.AuditOptions, options.FinetuneOptions,
              options.StudyOptions, options.ReportOptions, options.EmbedOptions]
    for g in groups:
        for f in dataclasses.fields(g):
            assert options.help_text(f).strip(), (g.__name__, f.name)
    for fn in ("extract", "reduce", "train", "evaluate", "predict", "audit", "embed"):
        doc = getattr(dfc, fn).__doc__
        assert "{options}" not in doc
        declared = {f.name for g in getattr(dfc, fn).option_groups.values() for f in dataclasses.fields(g)}
        for name, p in inspect.signature(getattr(dfc, fn)).parameters.items():
            assert f"{name} :" in doc or f" {name}," in doc, (fn, name)
            if name in declared:
                default = "" if p.default is inspect.Parameter.empty else f", default {p.default!r}"
                assert f"{name} : {p.annotation}{default}\n" in doc, (fn, name)


def test_an_option_added_once_reaches_the_command_and_the_function():
    """The builder itself: one field in a group is a `--flag` with its help and default on the command line
    and a checked keyword with its default and docs in the API."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Toy:
        out: str = option(help="Where to write.", flags=("--out", "-o"), api_type="PathLike")
        size: int = option(3, "How many.", min=1)
        label: str | None = option(None, "A label.", doc="The label, in Python words.")
        loud: bool = option(False, "Say more.", flags=("--loud",))
        secret: int = option(7, "API only.", cli=False)

    seen = {}

    @options.api_function(o=Toy)
    def toy(x: int, *, o: Toy, progress: bool = False) -> dict:
        """A toy.

        Parameters
        ----------
        x : int
            A number.
        {options}
        progress : bool
            Ignored.
        """
        return {"x": x, **options.values(o)}

    @typer_command(o=Toy)
    def toy_cmd(x: Annotated[int, typer.Argument(help="A number.")], *, o: Toy,
                quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Quiet.")] = False) -> None:
        seen.update(x=x, quiet=quiet, **dataclasses.asdict(o))

    assert toy(1, out="f") == {"x": 1, "out": "f", "size": 3, "label": None, "loud": False, "secret": 7}
    assert toy(1, out="f", size=5, secret=1)["size"] == 5
    sig = inspect.signature(toy)
    assert list(sig.parameters) == ["x", "out", "size", "label", "loud", "secret", "progress"]
    assert sig.parameters["out"].annotation == "PathLike" and sig.parameters["size"].default == 3
    assert "size : int, default 3\n            How many." in toy.__doc__
    assert "label : str | None, default None\n            The label, in Python words." in toy.__doc__
    with pytest.raises(DeepfakeError, match=r"toy\(\) has no option 'colour'; it takes out, size, label, loud"):
        toy(1, out="f", colour="red")
    with pytest.raises(DeepfakeError, match="missing a required argument: 'out'"):
        toy(1)

    app_ = typer.Typer()
    app_.command("toy")(toy_cmd)
    app_.command("other")(lambda: None)
    res = runner.invoke(app_, ["toy", "2", "-o", "f", "--size", "4", "--loud"])
    assert res.exit_code == 0, res.output
    assert seen == {"x": 2, "quiet": False, "out": "f", "size": 4, "label": None, "loud": True, "secret": 7}
    res = runner.invoke(app_, ["toy", "2", "-o", "f", "--size", "0"])
    assert res.exit_code == 2  # min=1 reached typer
    res = runner.invoke(app_, ["toy", "--help"], env={"COLUMNS": "200"})
    assert "How many." in res.output and "--loud" in res.output and "--secret" not in res.output
    res = runner.invoke(app_, ["toy", "2"])
    assert res.exit_code == 2 and "--out" in res.output


def test_unknown_api_keyword_is_one_line():
    with pytest.raises(DeepfakeError) as err:
        dfc.extract(["x"], out="f.h5", batchsize=3)
    assert "extract() has no option 'batchsize'" in str(err.value) and "\n" not in str(err.value)


def test_no_api_or_command_function_takes_more_than_eight_parameters():
    """The point of the groups: the stage entry points take groups, not two dozen keywords."""
    too_many = []
    cli = REPO / "deepfake_cli" / "cli"
    # the modules converted so far (cli/fit_cmds.py and cli/zoo_cmds.py are newer: they should join)
    for path in [REPO / "deepfake_cli" / "api.py", REPO / "deepfake_cli" / "options.py",
                 *(cli / f"{m}.py" for m in ("__init__", "common", "extract_cmds", "finetune_cmds", "model_cmds",
                                             "study_cmds"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                a = node.args
                n = len([x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg != "self"])
                n += (a.vararg is not None) + (a.kwarg is not None)
                if n > 8:
                    too_many.append(f"{path.name}:{node.name} ({n})")
    assert not too_many, too_many


# ------------------------------------------------------------------------------------- the engine registry

class ToyRunner:
    """A Runner factory for the registry test (never run)."""

    def __init__(self, workers=None, speed=None):
        self.workers, self.speed = workers, speed


@pytest.fixture()
def toy_engine(monkeypatch):
    entry = engines.Engine("toy", f"{__name__}:ToyRunner", "a test engine",
                           options=(engines.EngineOption("speed", int, "how fast."),))
    monkeypatch.setitem(engines.ENGINES, "toy", entry)
    return entry


def test_engines_are_a_registry_with_options_declared_once(toy_engine):
    assert [e.name for e in engines.list_engines()][:2] == ["local", "ray"]
    r = engines.create_runner("toy", workers=2, speed=3, device="cpu")
    assert isinstance(r, ToyRunner) and (r.workers, r.speed) == (2, 3)
    with pytest.raises(DeepfakeError, match="--speed applies to --engine toy only, not to --engine local"):
        engines.create_runner("local", speed=3)
    with pytest.raises(DeepfakeError, match="--model-workers applies to --engine ray only, not to --engine toy"):
        engines.create_runner("toy", model_workers=2)
    with pytest.raises(DeepfakeError, match="unknown engine 'spark': choose from local, ray, toy"):
        engines.create_runner("spark")
    # the group the CLI, the API and the study take is built from the registry: the new option is in it
    group = options._engine_group()
    names = [f.name for f in dataclasses.fields(group)]
    assert names[:1] == ["engine"] and {"ray_address", "model_workers", "gpus_per_worker", "speed"} <= set(names)
    speed = next(f for f in dataclasses.fields(group) if f.name == "speed")
    assert options.help_text(speed) == "--engine toy: how fast." and "toy (a test engine)" in engines.engines_help()
    from deepfake_cli.study.config import _engine, _engine_keys

    assert "speed" in _engine_keys()
    assert _engine({"engine": "toy", "speed": 4}) == ("toy", {"speed": 4})
    with pytest.raises(DeepfakeError, match="speed in \\[study\\] must be an integer"):
        _engine({"engine": "toy", "speed": "fast"})


def test_ray_options_keep_their_names_everywhere():
    assert engines.create_runner("local", ray_address=None, model_workers=None).__class__.__name__ == "LocalRunner"
    with pytest.raises(DeepfakeError, match="--ray-address applies to --engine ray only"):
        engines.create_runner("local", address="h:1")  # the factory's keyword is accepted too
    with pytest.raises(DeepfakeError, match="--gpus-per-worker applies to --engine ray only"):
        dfc.predict("no.model", [], gpus_per_worker=0.5)
    res = runner.invoke(app, ["extract", "x", "--out", "o.h5", "--model-workers", "2"])
    assert res.exit_code == 2 and "--model-workers applies to --engine ray only" in res.stderr
    for command in ("extract", "predict"):
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}).output
        assert "local (this process" in text and "ray (a Ray cluster" in text, command
        assert "local | ray" not in text


# ------------------------------------------------------------------------------------------ progress bars

def test_every_progress_bar_has_rate_elapsed_time_and_eta():
    """The commands make their bars with `make_progress` only, and it has a rate, the elapsed time (which
    ticks on its own: the heartbeat of a long step) and an ETA."""
    from rich.console import Console
    from rich.progress import TimeElapsedColumn, TimeRemainingColumn

    from deepfake_cli.cli import common

    pending = {"fit_cmds.py"}  # newer than make_progress: it should switch to it
    for path in (REPO / "deepfake_cli" / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Progress":
                assert path.name in {"common.py"} | pending, f"{path.name} builds a bar without make_progress"
    out = io.StringIO()
    con = Console(file=out, force_terminal=True, width=150)
    bar = common.make_progress("predict", unit="img/s", console=con)
    kinds = {type(c) for c in bar.columns}
    assert {common.RateColumn, TimeElapsedColumn, TimeRemainingColumn} <= kinds
    with bar:
        task = bar.add_task("predict", total=10)
        for i in range(1, 5):
            bar.update(task, completed=i)
    text = out.getvalue()
    assert "img/s" in text and "eta" in text and "4/10" in text
    with common.heartbeat("audit", console=con) as hb:
        assert hb.tasks[0].total is None and hb.tasks[0].description == "audit"
