"""Each stage's options, declared once: the `deepfake` command and the `dfc.` function are built from here.

An option group is a frozen dataclass; each field is one option with its default and its help in
`field(metadata=...)` (made by `option(...)`), plus what only one side needs: the command line's flag names
and Typer settings (`flags`, `cli`), the API's wider type (`api_type`: `PathLike` where the command takes a
string) and wording (`doc`, when the `--help` line does not read well in Python). Adding an option to a
stage is one field here: `cli/options_cli.typer_command` turns the groups into the command's Typer
parameters, `api_function` below into the API function's keyword arguments, its signature and the
options part of its docstring (so `help(dfc.extract)` and docs/API.md list every option with its default).

The engine options are not written here: `EngineOptions` is built from the engine registry
(`inference/engines.py`), where each engine declares its own.

This module imports neither typer nor rich nor torch: `import deepfake_cli; dfc.extract` stays light.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path  # noqa: F401 -- named in the field annotations, which are evaluated from here
from typing import Any, Callable

from deepfake_cli.errors import DeepfakeError

# A help text may name these; they are filled in when the help is shown (`help_text`), so that importing
# this module does not import the modules that hold them (data.transforms loads numpy and PIL).
_LAZY_TEXT = {"{TRANSFORM_HELP}": ("deepfake_cli.data.transforms", "TRANSFORM_HELP")}


def option(default: Any = dataclasses.MISSING, help: str = "", *, flags: tuple[str, ...] = (),
           api_type: str | None = None, doc: str | None = None, cli: bool = True, api: bool = True,
           **typer: Any):
    """One option: its default (none: required) and help, and how each side shows it.

    flags    the command line's names (default: `--name-with-dashes`, and `--no-...` for a bool)
    typer    further `typer.Option` settings (metavar, min, ...)
    api_type the API annotation when it is wider than the command's (default: the field's type)
    doc      the API docstring's text, when the `--help` line does not fit Python (default: `help`)
    cli/api  False: the option exists on one side only
    """
    meta = {"help": help, "flags": tuple(flags), "typer": typer, "api_type": api_type, "doc": doc, "cli": cli,
            "api": api}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def help_text(f: dataclasses.Field) -> str:
    text = f.metadata.get("help", "")
    for key, (module, name) in _LAZY_TEXT.items():
        if key in text:
            import importlib

            text = text.replace(key, getattr(importlib.import_module(module), name))
    return text


def fields(group: type, side: str = "api") -> list[dataclasses.Field]:
    """The options of `group` that `side` ("api" or "cli") has."""
    return [f for f in dataclasses.fields(group) if f.metadata.get(side, True)]


def field_type(group: type, name: str):
    """The evaluated annotation of a field (the command line builds its parameters from it)."""
    return typing.get_type_hints(group)[name]


def required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def values(*groups: Any) -> dict:
    """The options of group instances as one dict of keyword arguments (for calling the API)."""
    out: dict = {}
    for g in groups:
        out.update({f.name: getattr(g, f.name) for f in fields(type(g))})
    return out


def derive(group: type, name: str, keep: list[str], other: dict[str, tuple[str, Any]] | None = None) -> type:
    """A group made of some options of `group` (same help), with another type and default where `other`
    gives them (`{name: (type, default)}`): one declaration serves two functions whose options overlap
    (`embed` takes part of `extract`'s)."""
    by_name = {f.name: f for f in dataclasses.fields(group)}
    specs = []
    for key in keep:
        f = by_name[key]
        kind, default = (other or {}).get(key, (f.type, f.default))
        specs.append((key, kind, field(default=default, metadata=dict(f.metadata))))
    return _made(name, specs)


def _made(name: str, specs: list) -> type:
    group = dataclasses.make_dataclass(name, specs, frozen=True, kw_only=True)
    group.__module__ = __name__  # its string annotations are evaluated in this module
    return group


# ------------------------------------------------------------------------------------------- the API side

def _annotation(group: type, f: dataclasses.Field) -> str:
    if f.metadata.get("api_type"):
        return f.metadata["api_type"]
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t


def _doc_lines(group: type, indent: str) -> list[str]:
    out = []
    for f in fields(group, "api"):
        head = f"{f.name} : {_annotation(group, f)}"
        if not required(f):
            head += f", default {f.default!r}"
        text = f.metadata.get("doc") or help_text(f)
        out.append(indent + head)
        out += textwrap.wrap(text, 104 - len(indent), initial_indent=indent + "    ",
                             subsequent_indent=indent + "    ", break_on_hyphens=False) or [indent + "    -"]
    return out


def grouped_call(sig: inspect.Signature, groups: dict[str, type], flat: dict, side: str) -> dict:
    """The keyword arguments of a function with signature `sig` whose parameters named in `groups` each take
    one option group: each group built from the `flat` values of its fields (`side`: "api" or "cli"), every
    other parameter passed as it is in `flat`. The API (`api_function`) and the commands
    (`cli.common.typer_command`) call their stage functions through this one rule."""
    call = {}
    for p in sig.parameters.values():
        if p.name in groups:
            call[p.name] = groups[p.name](**{f.name: flat[f.name] for f in fields(groups[p.name], side)})
        else:
            call[p.name] = flat[p.name]
    return call


def api_function(**groups: type) -> Callable:
    """Build an API function's keyword options from option groups.

    The decorated function takes one parameter per group (`o: ExtractOptions`), and gets an instance of
    that group; the function callers see takes the groups' options as keyword arguments instead, checked
    by name (an unknown one is a one-line DeepfakeError naming the options there are), with the defaults
    declared in the group. Its signature lists them, and a line `{options}` in its docstring becomes the
    numpydoc entries of every option (name, type, default, help)."""

    def deco(impl: Callable) -> Callable:
        sig = inspect.signature(impl)
        params: list[inspect.Parameter] = []
        kw_only: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            if p.name in groups:
                for f in fields(groups[p.name], "api"):
                    default = inspect.Parameter.empty if required(f) else f.default
                    kw_only.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                     annotation=_annotation(groups[p.name], f)))
            elif p.kind == inspect.Parameter.KEYWORD_ONLY:
                kw_only.append(p)
            else:
                params.append(p)
        # required keywords first, as Python's own signatures show them
        kw_only.sort(key=lambda q: q.default is not inspect.Parameter.empty)
        public = sig.replace(parameters=params + kw_only)
        names = [q.name for q in kw_only]

        @functools.wraps(impl)
        def wrapper(*args, **kwargs):
            unknown = [k for k in kwargs if k not in public.parameters]
            if unknown:
                raise DeepfakeError(f"{impl.__name__}() has no option {', '.join(map(repr, unknown))}; "
                                    f"it takes {', '.join(names)}.")
            try:
                bound = public.bind(*args, **kwargs)
            except TypeError as exc:
                raise DeepfakeError(f"{impl.__name__}(): {exc}.") from None
            bound.apply_defaults()
            return impl(**grouped_call(sig, groups, bound.arguments, "api"))

        wrapper.__signature__ = public
        wrapper.__annotations__ = {q.name: q.annotation for q in public.parameters.values()}
        if sig.return_annotation is not inspect.Signature.empty:
            wrapper.__annotations__["return"] = sig.return_annotation
        wrapper.__doc__ = _fill_doc(impl.__doc__ or "", list(groups.values()))
        wrapper.option_groups = dict(groups)
        return wrapper

    return deco


def _fill_doc(doc: str, groups: list[type]) -> str:
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "{options}":
            indent = line[: len(line) - len(line.lstrip())]
            generated = [x for g in groups for x in _doc_lines(g, indent)]
            return "\n".join(lines[:i] + generated + lines[i + 1:])
    return doc


# ---------------------------------------------------------------------------------------------- the groups
# Help texts are the commands' `--help` lines; `doc` gives the API's wording where that reads better.

_DEVICE = "auto | cpu | cuda."
_WORKERS = ("Reader processes: DataLoader workers (local engine) or read tasks at a time (ray engine); -1: choose "
            "from the CPU count.")
_REAL = "Folder of real images (one dataset, with --fake/--name)."
_FAKE = "Folder of generated images (one dataset, with --real/--name)."
_NAME = "Name of the --real/--fake dataset."
_RAW_CSV = ("Write CSV text cells as they are. By default a cell that a spreadsheet would run as a formula (starting "
            "with =, +, -, @, tab or CR, and not a number) gets a leading ' (JSON is always as it is).")
_DATASETS_DOC = "Only these datasets of the file: \"A,B\" or a list of names (default: all)."
_TRANSFORM_DOC = "`none`, `blur`, `jitter`, `blur+jitter` (optionally `@P`), `jpeg:Q`, `resize:S`; steps join with `+`."


@dataclass(frozen=True, kw_only=True)
class ExtractOptions:
    """`deepfake extract` / `dfc.extract` (the engine's options: `EngineOptions`)."""

    # str, not Path: Path drops the trailing "/" (refused in one line for a one-file output)
    out: str = option(help="Output HDF5 file (created, resumed, or appended to).", flags=("--out", "-o"),
                      api_type="PathLike")
    backbone: str = option("effnet-lite0", "Backbone name; join several with '+' (see `deepfake backbones`).",
                           doc="A name of `list_backbones()`, `open_clip:ARCH/TAG`, `timm:NAME`, or several joined "
                               "with `+`.")
    transform: str = option("none", "Transform before the backbone: {TRANSFORM_HELP}.", doc=_TRANSFORM_DOC)
    batch_size: int = option(32, "Images per batch.")
    workers: int = option(-1, _WORKERS)
    device: str = option("auto", _DEVICE, doc="`auto` (CUDA if present), `cpu` or `cuda`.")
    weights: str | None = option(None, "Local weights file for the backbone (else env var, cache, hub).")
    layers: str = option("last", "Which blocks to pool: last | early | all | comma-separated block indices.")
    seed: int = option(0, "Seed of the random transforms.")
    real: str | None = option(None, _REAL)
    fake: str | None = option(None, _FAKE)
    name: str | None = option(None, _NAME)
    align: str | None = option(None, "SIZE:QUALITY: bring every image to SIZExSIZE and re-encode as JPEG at QUALITY, "
                                     "so format and size stop being cues.")
    dtype: str = option("float32", "Stored feature precision: float32 | float16.")
    overwrite: bool = option(False, "Replace an existing output (refused when it holds datasets this command does not "
                                    "name: delete it to start from nothing; any other kind of file is replaced) and "
                                    "discard any unfinished run.")
    random_weights: bool = option(False, "Random backbone weights (speed tests only).", flags=("--random-weights",))


# `dfc.embed`: features as `extract` computes them, without a file; readers chosen from the CPU count
EmbedOptions = derive(ExtractOptions, "EmbedOptions",
                      ["backbone", "layers", "device", "weights", "transform", "seed", "align", "batch_size",
                       "workers", "random_weights"], other={"workers": ("int | None", None)})


@dataclass(frozen=True, kw_only=True)
class ReduceOptions:
    """`deepfake reduce` / `dfc.reduce`."""

    method: str = option(help="Reducer name (see `deepfake reducers`).", doc="A name of `list_reducers()`.")
    out: str = option(help="Reducer file to write (e.g. pca64.reducer).", flags=("--out", "-o"), api_type="PathLike")
    dim: int | None = option(None, "Output dimension: --param dim=N (defaults: `deepfake reducers`).")
    variance: float | None = option(None, "Fraction of the variance to keep: --param variance=F.")
    hidden: str | None = option(None, "Hidden layer sizes: --param hidden=512,128.",
                                api_type="str | Sequence[int] | None")
    epochs: int | None = option(None, "Maximum epochs: --param epochs=N.")
    lr: float | None = option(None, "Learning rate: --param lr=F.")
    param: list[str] | None = option(None, "Any hyper-parameter of the reducer, KEY=VALUE (repeatable; see "
                                           "`deepfake reducers`).", flags=("--param",),
                                     api_type="Sequence[str] | dict | None",
                                     doc="Any hyper-parameter of the reducer: [\"KEY=VALUE\", ...] or {KEY: VALUE} "
                                         "(`list_reducers()` lists them).")
    datasets: str | None = option(None, "Fit on these datasets of the file only (A,B).",
                                  api_type="str | Sequence[str] | None", doc=_DATASETS_DOC)
    seed: int = option(0, "Seed, for reducers that take one.")
    device: str = option("auto", "auto | cpu | cuda, for reducers that take a device.")
    write_features: Path | None = option(None, "Also write the reduced features as a new HDF5 file.",
                                         api_type="PathLike | None")
    overwrite: bool = option(False, "Replace existing outputs that are not a reducer / feature file (never a file "
                                    "this command reads).")
    search: bool = option(False, "Random search over the method's hyper-parameters (the `METHOD-search` reducer, "
                                 "e.g. autoencoder-search); keeps the best trial and writes every trial as CSV.",
                          flags=("--search",))
    trials: int | None = option(None, "With --search: number of trials (--param trials=N).")
    time_budget: float | None = option(None, "With --search: start no trial after this many seconds "
                                             "(--param time_budget=S).")
    score: str | None = option(None, "With --search: reconstruction (validation reconstruction error, default) or "
                                     "accuracy (validation accuracy of LDA on the codes; uses the labels).")
    trials_out: Path | None = option(None, "With --search: the trials CSV (default: --out with .trials.csv).",
                                     api_type="PathLike | None")
    test_size: float = option(0.2, "For reducers that use labels (--score accuracy): leave out the part "
                                   "`train --test-size` (same --seed) holds out.")


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """`deepfake train` / `dfc.train`."""

    classifier: str = option(help="Classifier name(s), comma-separated, or 'all' (see `deepfake classifiers`).",
                             api_type="str | Sequence[str]",
                             doc="Names of `list_classifiers()` (`\"lda,svm\"`, `[\"lda\", \"svm\"]`) or `\"all\"`.")
    # str, not Path: Path drops the trailing "/" that makes `--out models/` a folder
    out: str = option(help="Model file for one classifier (a folder when it ends in '/' or exists); a folder receiving "
                           "<name>.model per classifier for several.", flags=("--out", "-o"), api_type="PathLike")
    reducer: Path | None = option(None, "Reducer file from `deepfake reduce`, built into the model.",
                                  api_type="PathLike | None")
    datasets: str | None = option(None, "Train on these datasets of the file only (A,B).",
                                  api_type="str | Sequence[str] | None", doc=_DATASETS_DOC)
    test_size: float = option(0.2, "Fraction of each dataset held out of training for `eval`.")
    val_size: float = option(0.2, "Fraction of the training part used to choose the threshold.")
    seed: int = option(0, "Seed of the splits and of the classifiers.")
    device: str = option("cpu", "cpu | cuda, for classifiers that take a device.")
    param: list[str] | None = option(None, "A classifier hyper-parameter, KEY=VALUE for every chosen classifier that "
                                           "takes KEY, or NAME.KEY=VALUE for one (repeatable; see `deepfake "
                                           "classifiers`).", flags=("--param",),
                                     api_type="Sequence[str] | dict | None",
                                     doc="Hyper-parameters: `{\"shrinkage\": 0.1}` (or \"KEY=VALUE\") for every "
                                         "chosen classifier that takes it, `{\"svm\": {\"C\": 10}}` (or "
                                         "\"NAME.KEY=VALUE\") for one.")
    calibration: str = option("sigmoid", "How p_fake is calibrated on the validation part: sigmoid (Platt scaling), "
                                         "isotonic (for hundreds of validation images per class) or none (the "
                                         "classifier's own probability).")
    overwrite: bool = option(False, "Replace an existing --out file that is not a model file (never a file this "
                                    "command reads).")


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """`deepfake fit` / `dfc.fit`: two folders to a detector in one step (`recipes.fit`)."""

    out: str = option(help="The detector model file to write (e.g. detector.model).", flags=("--out", "-o"),
                      api_type="PathLike")
    real: str | None = option(None, "Folder of real images.", api_type="PathLike | None")
    fake: str | None = option(None, "Folder of generated images.", api_type="PathLike | None")
    features: str | None = option(None, "Feature file to write or reuse (default: --out with .h5, beside the model).",
                                  api_type="PathLike | None")
    name: str | None = option(None, "Name of the --real/--fake dataset (default: their parent folder's name).")
    backbone: str | None = option(None, "Backbone (default: clip-vit-b16 when its weights are here, else "
                                        "effnet-lite0; an existing feature file keeps its own).")
    layers: str = option("last", "Which blocks to pool: last | early | all | comma-separated block indices.")
    classifier: str = option("lda", "Classifier (see `deepfake classifiers`).")
    test_size: float = option(0.2, "Fraction of each dataset held out to measure the accuracy; the model written is "
                                   "then trained on every image.")
    val_size: float = option(0.2, "Fraction of the training images that calibrate p_fake and choose the threshold.")
    seed: int = option(0, "Seed of the splits and of the classifier.")
    device: str = option("auto", "auto | cpu | cuda, for the backbone.")
    weights: str | None = option(None, "Backbone weights file.", api_type="PathLike | None")
    batch_size: int = option(32, "Images per batch.", min=1)
    workers: int | None = option(None, "Reader processes (default: from the CPU count).", cli=False)
    overwrite: bool = option(False, "Replace existing outputs that are not a model / feature file; the features are "
                                    "extracted again, not reused.")


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """`deepfake eval` / `dfc.evaluate`."""

    features: list[Path] = option(help="Feature file(s) to score on: `--features A.h5 B.h5` or `-f A.h5 -f B.h5`.",
                                  flags=("--features", "-f"), api_type="PathLike | Sequence[PathLike]",
                                  doc="Feature files to score on (written with the models' backbone, layers and "
                                      "weights).")
    out: Path | None = option(None, "Folder for eval.csv, eval.json, eval.md, eval_images.csv.",
                              flags=("--out", "-o"), api_type="PathLike | None")
    reals: str | None = option(None, "A dataset of the feature files whose real images are the pool that fake-only "
                                     "sets are scored against (AUC and TPR at the pool's FPR; the row's reals_pool "
                                     "names it). Benchmark layouts pair theirs without it.")
    overwrite: bool = option(False, "Replace files of those names in --out that eval did not write (never a file this "
                                    "command reads).")
    raw_csv: bool = option(False, _RAW_CSV, flags=("--raw-csv",))


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """`deepfake predict` / `dfc.predict` (the engine's options: `EngineOptions`)."""

    out: str | None = option(None, "Write the rows to this file instead of stdout.", flags=("--out", "-o"),
                             api_type="PathLike | None", doc="Also write the rows to this file: CSV, or JSON lines "
                                                             "with `json_lines=True`.")
    json_lines: bool = option(False, "JSON lines instead of CSV.", flags=("--json",))
    weights: str | None = option(None, "Backbone weights file (must be the ones the model was trained with).")
    transform: str = option("none", "Test-time transform before the backbone (default none, whatever the model was "
                                    "trained with).")
    device: str = option("auto", _DEVICE)
    batch_size: int = option(32, "Images per batch.", min=1)
    workers: int = option(-1, _WORKERS)
    overwrite: bool = option(False, "Replace an existing --out file that is not a predictions file, and write --explain "
                                    "maps into a folder of other files (never a file this command reads).")
    raw_csv: bool = option(False, _RAW_CSV, flags=("--raw-csv",))
    html: str | None = option(None, "Also write a self-contained HTML page to browse the run: thumbnails sorted by "
                                    "p_fake, filters, the trust summary, maps when --explain is given.",
                              flags=("--html",), metavar="FILE", api_type="PathLike | None")
    explain: str | None = option(None, "Also write evidence maps for every image into this folder (see `deepfake "
                                       "explain`).", flags=("--explain",), metavar="DIR", api_type="PathLike | None")


@dataclass(frozen=True, kw_only=True)
class AuditOptions:
    """`deepfake audit` / `dfc.audit`."""

    align: str | None = option(None, "Audit the images as `extract --align SIZE:QUALITY` would feed them (resized, "
                                     "cropped, JPEG re-encoded).", flags=("--align",), metavar="SIZE:QUALITY")
    folds: int = option(5, "Cross-validation folds.", flags=("--folds",), min=2)
    seed: int = option(0, "Seed of the folds and the trees.", flags=("--seed",))
    model: str | None = option(None, "Also check where this model finds its evidence: evidence maps of each "
                                     "dataset's fake and real images, the share in the outer border and how often "
                                     "the peak sits at one fixed place (a watermark, not a generator trace).",
                               flags=("--model",), api_type="PathLike | Model | None", metavar="MODEL",
                               doc="A model file, a zoo name or a loaded `Model`: also check where it finds its "
                                   "evidence (evidence maps of each dataset's fake and real images, the share in the "
                                   "outer border, how often the peak sits at one fixed place).")
    max_images: int | None = option(None, "With --model: at most this many fake (and as many real) images per dataset get a map, "
                                          "picked evenly along the dataset (default 200; 20 when the model is "
                                          "explained by occlusion, about 170 forward passes per image).",
                                    flags=("--max-images",), min=1)
    weights: str | None = option(None, "With --model: backbone weights file (the ones the model was trained with).",
                                 flags=("--weights",))
    device: str = option("auto", "With --model: " + _DEVICE, flags=("--device",))
    batch_size: int = option(32, "With --model: images per batch.", flags=("--batch-size",), min=1)


@dataclass(frozen=True, kw_only=True)
class FinetuneOptions:
    """`deepfake finetune` (the stage `stages.finetune.finetune`)."""

    # str, not Path: Path drops the trailing "/" that makes `--out ft/` a folder
    out: str = option(help="Model file to write (e.g. ft.model; a folder when it ends in '/' or exists); the "
                           "fine-tuned network goes beside it as ft.safetensors, checkpoints as ft.model.checkpoint.",
                      flags=("--out", "-o"))
    arch: str = option("resnet50", "Network: resnet50 | resnet18 | effnet-lite0 (ImageNet weights).")
    weights: str | None = option(None, "ImageNet weights file of the network (else env var DEEPFAKE_WEIGHTS_<ARCH>, "
                                       "the torch hub cache, the hub).")
    epochs: int = option(80, "Training epochs (the study: 80).")
    batch_size: int = option(128, "Images per SGD step.")
    micro_batch: int | None = option(None, "Run each batch in chunks of at most N images whose gradients add up to "
                                           "the one step: less memory (batch 128 at 256x256 needs about 15 GB on CPU "
                                           "for effnet-lite0); BatchNorm then sees each chunk.")
    lr: float = option(1e-5, "SGD learning rate.")
    momentum: float = option(0.9, "SGD momentum.")
    weight_decay: float = option(0.0, "SGD weight decay.")
    size: int = option(256, "Input size: shorter side resized to SIZE, centre crop SIZExSIZE.")
    augment: str = option("blur+jitter", "Training augmentation, drawn afresh each epoch: {TRANSFORM_HELP}.")
    test_size: float = option(0.2, "Fraction of each dataset held out for `eval` (the same images "
                                   "`train --test-size` holds out).")
    val_size: float = option(0.2, "Fraction of the training part that picks the best epoch and the threshold.")
    seed: int = option(0, "Seed of the splits, the shuffles, the augmentation and the new layer.")
    device: str = option("auto", _DEVICE)
    workers: int = option(-1, "DataLoader worker processes (-1: choose from the CPU count).")
    real: str | None = option(None, _REAL)
    fake: str | None = option(None, _FAKE)
    name: str | None = option(None, _NAME)
    features_out: Path | None = option(None, "Also extract the fine-tuned network's features of these datasets into "
                                             "this HDF5 file, for `deepfake eval`.")
    overwrite: bool = option(False, "Discard an existing model, network and checkpoint made with other arguments.")
    random_weights: bool = option(False, "Start from random weights (speed tests only).", flags=("--random-weights",))


@dataclass(frozen=True, kw_only=True)
class StudyOptions:
    """`deepfake study`."""

    out: Path | None = option(None, "Study folder: caches, results.csv/.json, figures/, report.md (default: a folder "
                                    "named after CONFIG in the current folder, e.g. ./study/ for study.toml).",
                              flags=("--out", "-o"))
    jobs: int = option(1, "Worker processes for reducers and cells.", flags=("--jobs", "-j"), min=1)
    raw_csv: bool = option(False, _RAW_CSV, flags=("--raw-csv",))
    yes: bool = option(False, "Run a grid of more than 1,000 cells (refused without it).", flags=("--yes",))


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """`deepfake report`."""

    out: Path = option(help="Folder for figures/, report.md and report.html.", flags=("--out", "-o"))
    config: Path | None = option(None, "Study TOML to embed in the report (default: config.toml beside RESULTS_CSV).",
                                 flags=("--config",))
    overwrite: bool = option(False, "Replace a report.md/report.html in --out that this tool did not write.")


@dataclass(frozen=True, kw_only=True)
class ExplainOptions:
    """`deepfake explain` / `dfc.explain` (the stage `stages.explain.explain`)."""

    # str, not Path: a folder name as typed
    out: str = option(help="Folder for the overlays (<image>.png), raw maps (<image>.npy), index.csv and index.json.",
                      flags=("--out", "-o"), api_type="PathLike")
    method: str = option("auto", "auto | cam (exact: CNN + linear head) | tokens (approximation: ViT + linear head) | "
                                 "occlusion (any model; one forward pass per patch position).")
    max_images: int | None = option(50, "Refuse an occlusion run on more images than this (it costs about 170 forward "
                                        "passes per image at the default grid).", flags=("--max-images",), min=1,
                                    doc="Refuse an occlusion run on more images than this (None: no limit); the exact "
                                        "and token paths cost one forward pass per image and are never refused.")
    occlusion_grid: int = option(7, "Occlusion patches per side (patch = input / N, stride half a patch: (2N-1)^2 "
                                    "forward passes per image).", flags=("--occlusion-grid",), min=1)
    weights: str | None = option(None, "Backbone weights file (must be the ones the model was trained with).")
    device: str = option("auto", _DEVICE)
    batch_size: int = option(32, "Images per batch (occlusion: occluded copies per batch).", min=1)
    overwrite: bool = option(False, "Write into an existing --out folder that holds other files.")


# ------------------------------------------------------------------------------------ the engine options

def _engine_group() -> type:
    """`EngineOptions`: `engine` and every option any registered engine declares (inference/engines.py)."""
    from deepfake_cli.inference.engines import engine_options, engines_help, option_help

    specs = [("engine", "str", option("local", f"Where reading and the model run: {engines_help()}.",
                                      doc="Where reading and the model run: a name of the engine registry "
                                          f"({engines_help()})."))]
    for o in engine_options():
        specs.append((o.name, f"{o.type.__name__} | None", option(o.default, option_help(o))))
    group = _made("EngineOptions", specs)
    group.__doc__ = "Where reading and the model run: the engine and its options, from the engine registry."
    return group


EngineOptions = _engine_group()


def engine_kwargs(e: Any) -> dict:
    """An `EngineOptions` instance as `create_runner` keyword arguments (options left unset are None)."""
    return {f.name: getattr(e, f.name) for f in dataclasses.fields(e) if f.name != "engine"}


def make_runner(e: Any, *, workers: int | None, device: str | None):
    """The Runner an `EngineOptions` instance names (engines are imported here, on use)."""
    from deepfake_cli.inference.engines import create_runner

    return create_runner(e.engine, workers=workers, device=device, **engine_kwargs(e))
