"""The Python API of deepfake-cli: the commands as functions, and trained models as detectors.

    import deepfake_cli as dfc

Every command that does work has a function here with the same arguments and defaults (options as
keyword arguments; `--out` is `out=`): both are built from one declaration of the stage's options
(`deepfake_cli.options`), and the `deepfake` command line calls these same functions, so a script and
the shell follow one code path and fail with the same one-line `DeepfakeError` (an unknown keyword
too). Nothing here prints or draws progress unless asked (`progress=True` writes a plain counter to stderr; a function
may be given instead, called as the stage reports). torch, scikit-learn and the other heavy libraries are
imported on first use, not by `import deepfake_cli`.

Images, wherever a function takes `images`: a path (file, folder searched recursively, `.tar` shard,
`.txt`/`.csv` list), encoded image bytes (`bytes`/`bytearray`/`memoryview` holding a PNG, JPEG, ...
file: decoded, hashed and size-checked as that file is), a PIL image, a numpy array (H x W x 3 RGB,
H x W grayscale or H x W x 4 RGBA; uint8, or float in [0, 1]; a 4-d array is a batch N x H x W x C), a
torch tensor (C x H x W or a batch N x C x H x W; uint8, or float in [0, 1] as
`torchvision.transforms.ToTensor` gives), or a list of any of these. Anything else (None, a bool or
int64 array, a 0 x 0 image, a closed PIL image) is a `DeepfakeError` naming the input. A PIL image is
decoded as its file would be (EXIF orientation, transparency on white), so it gives the same features
as the file. An image over the readers' size limits (`data.MAX_PIXELS` pixels, an aspect ratio over
`data.decode.MAX_ASPECT`:1, a resize over `data.decode.MAX_RESIZED_PIXELS`) is skipped as its file would
be: it keeps its place, with NaN scores and the reason in `skipped`. In-memory images are named
`<image I>` (`<image I.J>` for image J of a batch at position I) and hashed from their pixels
(`sha256(b"deepfake-cli:rgb8:H:W\\n" + RGB bytes)`), not from file bytes (encoded bytes: from those
bytes, as a file): the hash differs from the file's, and so do the random draws of the `blur` /
`jitter` transforms, which are seeded by it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.options import (AuditOptions, EmbedOptions, EngineOptions, EvalOptions, ExplainOptions, ExtractOptions,
                                  FitOptions, PredictOptions, ReduceOptions, TrainOptions, api_function, make_runner)
from deepfake_cli.store.outputs import writes


def _table(stage: str, name: str) -> Callable[[dict], list]:
    """A stage's output table (`stages.<stage>.<name>`), imported when the guarded function runs, so that
    importing this module stays light."""
    def table(a: dict) -> list:
        import importlib

        return getattr(importlib.import_module(f"deepfake_cli.stages.{stage}"), name)(a)
    return table

if TYPE_CHECKING:  # imported for the type hints only: importing this module stays light
    import numpy as np

    from deepfake_cli.store.artifacts import Model
    from deepfake_cli.stages.audit import AuditResult
    from deepfake_cli.stages.extract import ExtractSummary
    from deepfake_cli.store.features import FeatureSet
    from deepfake_cli.stages.predict import PredictResult
    from deepfake_cli.stages.explain import ExplainResult
    from deepfake_cli.stages.reduce import ReduceSummary
    from deepfake_cli.stages.train import TrainResult
    from deepfake_cli.recipes.fit import FitResult

__all__ = [
    "extract", "reduce", "train", "evaluate", "predict", "explain", "audit",
    "load_model", "Detector", "Scores", "Evaluation", "embed", "read_features",
    "list_backbones", "list_classifiers", "list_reducers",
]

PathLike = Union[str, os.PathLike]
Progress = Union[bool, Callable[..., None]]
# what `images` may be: see the module docstring
Images = Any


class _Counter:
    """`progress=True`: a plain `what: done/total` counter on stderr (no rich, no terminal needed)."""

    def __init__(self, what: str):
        self.what, self.last = what, None

    def start(self, total: int, resumed: int = 0) -> None:
        self(resumed, total)

    def __call__(self, done: int, total: int | None = None) -> None:
        text = f"\r{self.what}: {done}/{total if total is not None else '?'}"
        if text != self.last:
            sys.stderr.write(text + ("\n" if total is not None and done >= total else ""))
            sys.stderr.flush()
            self.last = text


def _callback(progress: Progress, what: str) -> Callable | None:
    if progress is True:
        return _Counter(what)
    return progress if callable(progress) else None


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    """`"a,b"` or `["a", "b"]` -> `["a", "b"]`; None or empty -> None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [v.strip() for v in items if v.strip()]
    return items or None


def _pair_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _pairs(param: Sequence[str] | dict | None) -> list[str]:
    """`--param` values: `["KEY=VALUE", ...]` as given; a dict `{KEY: VALUE}` (or `{NAME: {KEY: VALUE}}`,
    one classifier's parameters) -> the same `KEY=VALUE` / `NAME.KEY=VALUE` strings."""
    if param is None:
        return []
    if isinstance(param, str):
        return [param]
    if isinstance(param, dict):
        out = []
        for key, value in param.items():
            if isinstance(value, dict):
                out.extend(f"{key}.{k}={_pair_value(v)}" for k, v in value.items())
            else:
                out.append(f"{key}={_pair_value(value)}")
        return out
    return [str(p) for p in param]


# ------------------------------------------------------------------------------------------ the stages

@api_function(o=ExtractOptions, e=EngineOptions)
def extract(datasets: Sequence[str] = (), *, o: ExtractOptions, e: EngineOptions, progress: Progress = False,
            on_start: Callable[[int, int], None] | None = None,
            warn: Callable[[str], None] | None = None) -> "ExtractSummary":
    """Extract backbone features of image datasets into one HDF5 file (`deepfake extract`).

    The file is created, resumed after an interruption, or appended to (a dataset already in it is left
    alone); a file made with another backbone, layers, weights, preprocessing or transform is refused.

    Parameters
    ----------
    datasets : list of str
        `[NAME=]PATH` each: a folder with real/ and fake/ (or 0_real/ and 1_fake/, nature/ and ai/)
        below it, `.tar` shards, or a `.txt`/`.csv` list. NAME defaults to the folder name.
    {options}
    progress : bool or callable
        True: a counter on stderr; a function: called as `progress(done, total)` after each batch.
    on_start, warn : callable, optional
        `on_start(total, resumed)` once before the first batch; `warn(sentence)` per discovery warning
        (the sentences are also in the summary's `warnings`).

    Returns
    -------
    ExtractSummary
        `n_written`, `n_skipped`, `datasets` (name -> counts), `skipped`, `duplicates`, `warnings`,
        `already_present`, `seconds`, `images_per_second`, `device`.

    Example
    -------
    >>> s = dfc.extract(["cifake=examples/data/cifake_sd14"], backbone="effnet-lite0", layers="all",
    ...                 out="feats.h5")
    >>> s.n_written, s.datasets["cifake"]["real"]
    (48, 24)
    """
    from deepfake_cli.stages.extract import extract as run

    runner = make_runner(e, workers=o.workers, device=o.device)
    counter = _callback(progress, "extract")
    if on_start is None and isinstance(counter, _Counter):
        on_start = counter.start
    return run(list(datasets or []), backbone=o.backbone, out=str(o.out), transform=o.transform,
               batch_size=o.batch_size, runner=runner, device=o.device, weights=o.weights, layers=o.layers,
               seed=o.seed, real=o.real, fake=o.fake, name=o.name, align=o.align, dtype=o.dtype,
               overwrite=o.overwrite, pretrained=not o.random_weights, progress=counter, on_start=on_start, warn=warn)


@api_function(o=FitOptions)
def fit(datasets: Sequence[str] = (), *, o: FitOptions, say: Callable[[str], None] | None = None,
        progress: Progress = False) -> "FitResult":
    """Two folders of images to a detector in one step (`deepfake fit`): extract the features (kept beside
    the model for reuse), measure the classifier on a held-out part, then train the model written on every
    image (its file records the held-out figure of the measuring twin).

    Parameters
    ----------
    datasets : list of str
        `[NAME=]PATH` each, as `extract` takes them, instead of or beside `real` / `fake`.
    {options}
    say : callable, optional
        Hears each choice made, one sentence at a time (the backbone and why, features reused or written).
    progress : bool or callable
        True: a counter on stderr; a function: called as `progress(done, total)` during extraction.

    Returns
    -------
    FitResult
        `out` (the model), `features`, `backbone`, `classifier`, `heldout` (accuracy, n, n_correct, n_real,
        n_fake, ci_low, ci_high), `threshold`, `n_images`, `warnings`, `predict_command`.
    """
    from deepfake_cli.recipes.fit import fit as run

    return run(list(datasets or []), o, say=say, progress=_callback(progress, "extract"))


@api_function(o=ReduceOptions)
def reduce(features: PathLike, *, o: ReduceOptions) -> "ReduceSummary":
    """Fit a dimensionality reducer (PCA, autoencoder, ...) on a feature file and save it (`deepfake reduce`).

    Parameters
    ----------
    features : path
        A feature file written by `extract`.
    {options}

    `dim`, `variance`, `hidden`, `epochs` and `lr` are shorthands for the hyper-parameters of those
    names (`param={"dim": 32}` is the same); `search`, `trials`, `time_budget`, `score` and `trials_out`
    run a random search over the method's hyper-parameters (the `METHOD-search` reducer).

    Returns
    -------
    ReduceSummary
        `method`, `input_dim`, `output_dim`, `n_fit`, `reconstruction` (`mse`, `relative`),
        `explained_variance`, `out`, `features_out`, `meta`, `trials`.

    Example
    -------
    >>> r = dfc.reduce("feats.h5", method="pca", dim=16, out="pca16.reducer")
    >>> r.input_dim, r.output_dim
    (3088, 16)
    """
    from deepfake_cli.stages.reduce import reduce as run
    from deepfake_cli.reducers import REDUCERS

    method = o.method
    given = {"trials": o.trials, "time_budget": o.time_budget, "scoring": o.score}
    if o.search:
        if f"{method}-search" not in REDUCERS:
            searchable = [n[:-len("-search")] for n in REDUCERS.names() if n.endswith("-search")]
            raise DeepfakeError(f"--search is not available for {method}; it is for {', '.join(searchable)}.")
        method = f"{method}-search"
    elif any(v is not None for v in given.values()) or o.trials_out:
        raise DeepfakeError("--trials, --time-budget, --score and --trials-out go with --search.")
    # the shorthands are plain hyper-parameters: the chosen reducer's entry types and checks them
    given.update({"dim": o.dim, "variance": o.variance, "hidden": o.hidden, "epochs": o.epochs, "lr": o.lr})
    pairs = [f"{k}={_pair_value(v)}" for k, v in given.items() if v is not None] + _pairs(o.param)
    return run(str(features), method, str(o.out), params=REDUCERS.parse_params(method, pairs), seed=o.seed,
               device=o.device, datasets=_names(o.datasets),
               write_features=str(o.write_features) if o.write_features else None, test_size=o.test_size,
               trials_out=str(o.trials_out) if o.trials_out else None, overwrite=o.overwrite)


@api_function(o=TrainOptions)
def train(features: PathLike, *, o: TrainOptions, progress: Progress = False) -> "list[TrainResult]":
    """Train classifiers on a feature file and save one model file each (`deepfake train`).

    A seeded, stratified part of each dataset (`test_size`) is held out for `evaluate`; a part of the rest
    (`val_size`) chooses the decision threshold.

    Parameters
    ----------
    features : path
        A feature file written by `extract`.
    {options}
    progress : bool or callable
        True: a line on stderr per classifier; a function: called with each classifier's name.

    Returns
    -------
    list of TrainResult
        Per classifier: `classifier`, `path`, `threshold`, `validation` (scores), `n_fit`, `n_val`,
        `heldout` (dataset -> images held out), `seconds`, `warnings`.

    Example
    -------
    >>> results = dfc.train("feats.h5", classifier="lda,svm", reducer="pca16.reducer", out="models/")
    >>> [r.path.name for r in results]
    ['lda.model', 'svm.model']
    """
    from deepfake_cli.classifiers import parse_classifier_names, parse_classifier_params
    from deepfake_cli.stages.train import train as run

    if progress is True:
        def callback(name):
            sys.stderr.write(f"training {name} ...\n")
    else:
        callback = progress if callable(progress) else None
    names = parse_classifier_names(o.classifier if isinstance(o.classifier, str) else ",".join(o.classifier))
    return run(str(features), names, str(o.out), reducer=str(o.reducer) if o.reducer else None,
               datasets=_names(o.datasets), test_size=o.test_size, val_size=o.val_size, seed=o.seed, device=o.device,
               progress=callback, params=parse_classifier_params(names, _pairs(o.param)), overwrite=o.overwrite,
               calibration=o.calibration)


@dataclass
class Evaluation:
    """What `evaluate` returns: result rows, per-image scores, notes, and the files written."""

    rows: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def matrix(self) -> tuple[list[str], list[str], dict]:
        """(row keys "model [train sets]", column keys = test datasets, {(row, column): result row})."""
        from deepfake_cli.stages.evaluate import matrix

        return matrix(self.rows)


@api_function(o=EvalOptions)
def evaluate(models: PathLike | Sequence[PathLike], *, o: EvalOptions) -> Evaluation:
    """Score models within-dataset (their held-out images) and across datasets (`deepfake eval`).

    Parameters
    ----------
    models : path or list of paths
        Model files, or folders of `*.model` files.
    {options}

    Returns
    -------
    Evaluation
        `rows`: one dict per (model, feature file, test dataset) with `accuracy`, its 95% interval,
        `balanced_accuracy`, `roc_auc`, `n`, `kind` (within | cross), the operating points (AUC and AP
        intervals, `eer`, oracle `tpr_at_fpr_1` / `tpr_at_fpr_5` with intervals, deployed
        `tpr_deployed_fpr_5` / `fpr_deployed_fpr_5`), `reals_pool`, ...; `images`: one dict per scored
        image; `notes`; `written`: the files written to `out`; `matrix()`: the accuracy matrix.

    Example
    -------
    >>> ev = dfc.evaluate(["models/lda.model", "models/svm.model"], features="feats.h5")
    >>> sorted({(r["model"], r["test_dataset"], r["kind"]) for r in ev.rows})
    [('lda', 'cifake', 'within'), ('svm', 'cifake', 'within')]
    """
    models = [models] if isinstance(models, (str, os.PathLike)) else list(models)
    features = [o.features] if isinstance(o.features, (str, os.PathLike)) else list(o.features)
    return _evaluate(models, features, o.out, overwrite=o.overwrite, raw_csv=o.raw_csv, reals=o.reals)


@writes(_table("evaluate", "eval_targets"), _table("evaluate", "eval_inputs"))  # never over a model or feature file it reads; one writer per --out
def _evaluate(models: list, features: list, out: PathLike | None, overwrite: bool = False,
              raw_csv: bool = False, reals: str | None = None) -> Evaluation:
    from deepfake_cli.stages.evaluate import evaluate as run
    from deepfake_cli.stages.evaluate import write_outputs

    result = Evaluation()
    result.rows = run([m if not isinstance(m, os.PathLike) else str(m) for m in models], [str(f) for f in features],
                      per_image=result.images, notes=result.notes, reals=reals)
    if out is not None and result.rows:
        result.written = list(write_outputs(result.rows, str(out), per_image=result.images, raw_csv=raw_csv))
    return result


@api_function(o=PredictOptions, e=EngineOptions)
def predict(model: PathLike, paths: Images, *, o: PredictOptions, e: EngineOptions,
            progress: Progress = False) -> "PredictResult":
    """Score image files with a model file (or a folder of them) (`deepfake predict`).

    For images in memory, and for arrays out, use `load_model(path)` and its `Detector` methods.

    With `html`, also one self-contained page (no network, nothing outside the file) to browse the run:
    thumbnails sorted by p_fake, filters by label, novelty, true label and model, and on top each
    threshold, the evidence lines and the warnings. With `explain`, also a map of the evidence for "fake"
    of every image in that folder, as `deepfake explain` writes them (overlay PNGs, raw `.npy` maps,
    index.csv and index.json), made before the page, so the page shows each card's map on a click.
    Neither may be, or lie in, an input.

    Parameters
    ----------
    model : path
        A model file, or a folder of `*.model` files (each scores every image).
    paths : path or list of paths
        Image files, folders (searched recursively), `.tar` shards and `.txt`/`.csv` lists.
    {options}
    progress : bool or callable
        True: a counter on stderr; a function: called as `progress(done, total)`.

    Returns
    -------
    PredictResult
        `rows` (one dict per image and model: `path`, `p_fake`, `label`, `model`, ...), `skipped`
        (unreadable images with the reason), `n_images`, `counts()`, and what the verdict rests on:
        `evidence` (per model: training sets and counts, held-out accuracy with n and interval, how the
        threshold was chosen, what it was never tested on; a zoo model's published figures) with
        `evidence_lines` (the same in words) and `warnings` (thin evidence among them). With `json_lines`,
        the last line is `{"evidence": ..., "warnings": [...]}`.

    Example
    -------
    >>> res = dfc.predict("models/lda.model", "examples/data/forensynths_biggan/fake")
    >>> res.n_images, res.rows[0]["label"] in ("real", "fake")
    (20, True)
    """
    from deepfake_cli.inference.memory import as_inputs

    return _predict(model, as_inputs(paths), o, e, progress, out=o.out, overwrite=o.overwrite)


def _predict_targets(a: dict) -> list:
    """predict's outputs (`stages.predict.predict_targets`: --out, --html, --explain); the --explain folder also
    checked as `explain` checks its own (new, empty, or a previous explain run), before any image is scored."""
    targets = _table("predict", "predict_targets")(a)
    o, model = a.get("o"), a.get("model")
    if getattr(o, "explain", None) is not None:
        from deepfake_cli.stages.explain import check_out_dir
        from deepfake_cli.store.artifacts import model_paths

        if isinstance(model, (str, os.PathLike)) and Path(model).is_dir() and len(model_paths(model)) > 1:
            raise DeepfakeError(f"--explain maps the evidence of one model, and {model} holds "
                                f"{len(model_paths(model))}: give one model file (or run `deepfake explain` once per "
                                "model).")
        if str(o.transform or "none").strip().lower() not in ("", "none"):
            # the maps show the files as they are; the scores would be of the transformed images
            raise DeepfakeError(f"--explain maps the images as they are, but --transform {o.transform} scores them "
                                "transformed: drop one of the two.")
        check_out_dir(o.explain, bool(a.get("overwrite")), option="--explain")
    return targets


# --out, --html and --explain never over or inside an input; one writer per output
@writes(_predict_targets, _table("predict", "predict_inputs"))
def _predict(model, paths: list, o: PredictOptions, e: EngineOptions, progress: Progress, *, out, overwrite=False):
    from deepfake_cli.safety.fileio import atomic_write_text
    from deepfake_cli.stages.predict import predict as run
    from deepfake_cli.stages.predict import to_csv, to_jsonl

    runner = make_runner(e, workers=o.workers, device=o.device)
    model = str(model) if isinstance(model, os.PathLike) else model
    paths = [str(p) if isinstance(p, os.PathLike) else p for p in paths]
    if o.explain is not None:  # first: a model only occlusion explains is refused past its limit before scoring
        from deepfake_cli.stages.explain import explain

        explain(model, paths, str(o.explain), weights=o.weights, device=o.device, batch_size=o.batch_size,
                progress=_callback(progress, "explain"), overwrite=overwrite, option="--explain")
    res = run(model, paths, weights=o.weights, transform=o.transform, device=o.device, batch_size=o.batch_size,
              runner=runner, progress=_callback(progress, "predict"))
    if out is not None:
        atomic_write_text(out, to_jsonl(res.rows, evidence=res) if o.json_lines else to_csv(res.rows, raw=o.raw_csv))
    if o.html is not None:  # after the maps, which it shows
        from deepfake_cli.report.predict_page import write_predict_page

        write_predict_page(o.html, res.rows, evidence_lines=res.evidence_lines, warnings=res.warnings,
                           summary=res.summary, notes=res.notes, skipped=res.skipped, inputs=paths,
                           explain_dir=None if o.explain is None else str(o.explain))
    return res


@api_function(o=ExplainOptions)
def explain(model: PathLike, paths: Images, *, o: ExplainOptions, progress: Progress = False) -> "ExplainResult":
    """Evidence maps: where in each image a model finds its evidence for "fake" (`deepfake explain`).

    One map per readable image, in the image's own pixel frame (H x W of the file; NaN where the backbone's
    crop never saw the pixel; > 0: evidence for fake), written to `out` as `<image>.png` (the map over the
    image) and `<image>.npy` (the raw float32 map), with `index.csv` and `index.json`. The method is chosen
    per model (`method="auto"`): "cam", exact (a CNN backbone that mean-pools its last feature map, such as
    effnet-lite0, with an affine pipeline: no reducer, a linear classifier such as `lda` or a linear head;
    the map's cells sum to the model's margin); "tokens", an approximation (a ViT backbone with such a head:
    each patch token through the class token's final path); "occlusion" for any other model (p_fake drop
    when a patch is hidden; one forward pass per patch position, so runs on more than `max_images` images are
    refused). `index.json` states the method, whether it is exact, and its cost.

    Parameters
    ----------
    model : path
        One model file (or a zoo name such as `"zoo:univfd"`).
    paths : path or list of paths
        Image files, folders (searched recursively), `.tar` shards and `.txt`/`.csv` lists, or images in memory.
    {options}
    progress : bool or callable
        True: a counter on stderr; a function: called as `progress(done, total)`.

    Returns
    -------
    ExplainResult
        `rows` (one dict per image: `path`, `model`, `p_fake` (the number `predict` gives), `label`, `method`,
        `exact`, `overlay`, `map` (file names in `out_dir`), `width`, `height`, `seconds`), `skipped` (unreadable
        images with the reason), `method`, `exact`, `method_note`, `out_dir`, `summary()`.

    Example
    -------
    >>> res = dfc.explain("models/lda.model", "examples/data/cifake_sd14/fake/1000.jpg", out="maps/",
    ...                   occlusion_grid=2)  # this model has a PCA reducer: occlusion, 9 patch positions
    >>> res.method, res.exact, res.n_images, res.rows[0]["overlay"]
    ('occlusion', False, 1, '1000.png')
    """
    from deepfake_cli.inference.memory import as_inputs

    paths = [str(p) if isinstance(p, os.PathLike) else p for p in as_inputs(paths)]
    return _explain(str(model) if isinstance(model, os.PathLike) else model, paths, o, progress, out=str(o.out),
                    overwrite=o.overwrite)


@writes(_table("explain", "explain_targets"), _table("explain", "explain_inputs"))  # never into an input; one writer per folder
def _explain(model, paths: list, o: ExplainOptions, progress: Progress, *, out, overwrite=False):
    from deepfake_cli.stages.explain import explain as run

    return run(model, paths, out, method=o.method, max_images=o.max_images, weights=o.weights, device=o.device,
               batch_size=o.batch_size, progress=_callback(progress, "explain"), overwrite=overwrite,
               occlusion_grid=o.occlusion_grid)


@api_function(o=AuditOptions)
def audit(datasets: Sequence[str], *, o: AuditOptions) -> "list[AuditResult]":
    """Shortcut audit: can file metadata alone (no pixels) tell real from fake? (`deepfake audit`).

    A depth-4 decision tree on header fields (format, JPEG tables, size, EXIF, file size, mode) is
    cross-validated; a dataset is flagged when the 95% lower bound of its accuracy exceeds
    max(0.6, chance + 0.1).

    With `model`, also where that model finds its evidence: evidence maps (as `explain` makes them) of
    each dataset's fake and real images (at most `max_images` of each, picked evenly), the share of the
    evidence (for fake in the fakes, for real in the reals) in the outer 10% of each side (0.36 if spread evenly) and the share of images whose peak falls in the
    same place (2x2 cells of an 8x8 relative grid: a quarter of the width by a quarter of the height;
    chance 4/64). It warns when the mean border share exceeds 0.6 or one place other than the centre holds
    the peak of more than half the images (at least 10 images): evidence in the same corner of every fake
    (or every real) is a watermark or a border, not a generator trace (`metrics.evidence_location` states the
    rule). The fakes' numbers are `evidence`'s top-level keys, the reals' are under `evidence["real"]`.

    Parameters
    ----------
    datasets : list of str
        `[NAME=]PATH` each, labelled as for `extract`.
    {options}

    Returns
    -------
    list of AuditResult
        Per dataset: `metadata_accuracy`, `ci_low`, `ci_high`, `chance`, `flagged`, `cues` (best
        first), `formats`, `sizes`, `skipped`; with `model`, `evidence` (the numbers: `border_share_mean`,
        `expected_border_share`, `place_name`, `place_share`, `place_mass`, `method`, ...),
        `evidence_lines` (in words) and `evidence_warnings`; `to_dict()` is what `audit --json` prints.

    Example
    -------
    >>> [(r.dataset, r.n) for r in dfc.audit(["examples/data/cifake_sd14"])]
    [('cifake_sd14', 48)]
    """
    from deepfake_cli.stages.audit import audit as run

    model = o.model if o.model is None or not isinstance(o.model, os.PathLike) else str(o.model)
    return run(list(datasets), seed=o.seed, folds=o.folds, align=o.align, model=model, max_images=o.max_images,
               weights=str(o.weights) if o.weights is not None else None, device=o.device, batch_size=o.batch_size)


# ----------------------------------------------------------------------------------- features, models

def read_features(path: PathLike, datasets: Sequence[str] | None = None) -> "FeatureSet":
    """Read a feature file written by `extract`: arrays, and a plain dict of what made them.

    Parameters
    ----------
    path : path
        The HDF5 feature file.
    datasets : list of str, optional
        Only the rows of these datasets.

    Returns
    -------
    FeatureSet
        `X` (N, D) float32, `y` (N,) int8 (0 real, 1 fake, -1 unlabelled), `dataset`, `path` and
        `sha256` (N,) str arrays, `meta` (backbone, dim, layers, weights_id, preprocessing, transform,
        seed, skipped, roots, ...), `datasets` (names in file order), `subset(mask)`.

    Example
    -------
    >>> fs = dfc.read_features("feats.h5")
    >>> fs.X.shape, fs.meta["backbone"], fs.datasets
    ((48, 3088), 'effnet-lite0', ['cifake'])
    """
    from deepfake_cli.store.features import read_features as run

    return run(str(path), datasets=list(datasets) if datasets else None)


@dataclass
class Scores:
    """What `Detector.score` returns: one entry per image found, in input order.

    `names`: a file's path as found, `<image I>` for an in-memory image; `p_fake`: NaN where the image
    could not be read; `labels`: 1 fake, 0 real, -1 unreadable; `skipped`: {path, reason} of each image
    that could not be read; `rows`: the rows `predict` gives (with every column it has)."""

    names: list[str]
    p_fake: "np.ndarray"
    labels: "np.ndarray"
    threshold: float
    skipped: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


class Detector:
    """A trained model ready to score images: scikit-learn style `predict` / `predict_proba`.

    Made by `load_model(path)`. The backbone the model was trained with (its layers, weights and
    alignment) is built on first use and kept, so scoring many small batches costs one build.

    Attributes
    ----------
    threshold : float
        The decision threshold chosen on the validation part: `p_fake >= threshold` is fake.
    classes_ : numpy array
        `[0, 1]`: the columns of `predict_proba` (0 real, 1 fake).
    name, path, meta :
        The model's name, file and metadata (backbone, layers, train_datasets, validation, ...).
    model :
        The loaded model (`estimator`: the scikit-learn Pipeline; `p_fake(X)` on feature rows).
    """

    def __init__(self, model: "Model", *, device: str = "auto", weights: str | None = None, transform: str = "none",
                 batch_size: int = 32, workers: int | None = None):
        self.model, self.device, self.weights, self.transform = model, device, weights, transform
        self.batch_size, self.workers = batch_size, workers
        self._backbones: dict = {}

    def __repr__(self) -> str:
        return (f"Detector({self.name!r}, backbone={self.meta.get('backbone')!r}, "
                f"layers={self.meta.get('layers')!r}, threshold={self.threshold:.4f})")

    @property
    def threshold(self) -> float:
        return self.model.threshold

    @property
    def classes_(self) -> "np.ndarray":
        import numpy as np

        return np.array([0, 1])

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def path(self) -> Path | None:
        return self.model.path

    @property
    def meta(self) -> dict:
        return self.model.meta

    def score(self, images: Images, progress: Progress = False) -> Scores:
        """Score images: names, p_fake, labels and the unreadable ones, in input order.

        Parameters
        ----------
        images :
            Paths, folders, PIL images, numpy arrays, torch tensors, or a list of them (see the module
            documentation for the conventions).
        progress : bool or callable
            True: a counter on stderr; a function: called as `progress(done, total)`.

        Returns
        -------
        Scores
            `names`, `p_fake`, `labels`, `threshold`, `skipped`, `rows`.

        Example
        -------
        >>> det = dfc.load_model("models/lda.model")
        >>> s = det.score("examples/data/forensynths_biggan/real")
        >>> len(s), s.names[0]
        (20, 'examples/data/forensynths_biggan/real/105_biggan_real.png')
        """
        import numpy as np

        from deepfake_cli.inference.memory import collect_images
        from deepfake_cli.stages.predict import predict as run

        items, skipped = collect_images(images)
        res = run([self.model], items, weights=self.weights, transform=self.transform, device=self.device,
                  batch_size=self.batch_size, workers=self.workers, progress=_callback(progress, "score"),
                  backbones=self._backbones)
        p = np.full(len(items), np.nan)
        rows: list[dict] = []
        k = 0
        for i, it in enumerate(items):  # rows come in item order, one per readable item (one model)
            if k < len(res.rows) and res.rows[k]["path"] == it.rel:
                p[i] = float(res.rows[k]["p_fake"])
                rows.append(res.rows[k])
                k += 1
        labels = np.where(np.isnan(p), -1, (p >= self.threshold).astype(int))
        return Scores([it.rel for it in items], p, labels, self.threshold, list(skipped) + list(res.skipped), rows)

    def predict_proba(self, images: Images, progress: Progress = False) -> "np.ndarray":
        """(N, 2) array of [p(real), p(fake)] per image found (NaN for an unreadable one).

        Example
        -------
        >>> from PIL import Image
        >>> det = dfc.load_model("models/lda.model")
        >>> img = Image.open("examples/data/cifake_sd14/fake/1000.jpg")
        >>> proba = det.predict_proba([img, "examples/data/cifake_sd14/fake/1000.jpg"])
        >>> proba.shape, bool(abs(proba[0] - proba[1]).max() < 1e-6)
        ((2, 2), True)
        """
        import numpy as np

        p = self.score(images, progress=progress).p_fake
        return np.column_stack([1.0 - p, p])

    def predict(self, images: Images, progress: Progress = False) -> "np.ndarray":
        """(N,) int array: 1 fake (p_fake >= threshold), 0 real, -1 for an image that could not be read.

        Example
        -------
        >>> import numpy as np
        >>> det = dfc.load_model("models/lda.model")
        >>> batch = np.zeros((2, 64, 64, 3), dtype=np.uint8)   # N x H x W x 3, uint8
        >>> det.predict(batch).shape
        (2,)
        """
        return self.score(images, progress=progress).labels

    def p_fake_from_features(self, X: "np.ndarray") -> "np.ndarray":
        """p(fake) of feature rows (e.g. `read_features(path).X` of a compatible file), without images."""
        return self.model.p_fake(X)


def load_model(path: PathLike, *, device: str = "auto", weights: str | None = None, transform: str = "none",
               batch_size: int = 32, workers: int | None = None) -> Detector:
    """Load a model file written by `train` as a `Detector` with `predict`, `predict_proba` and `threshold`.

    The file is checked against the list of trusted types before loading: loading never runs code
    from it.

    Parameters
    ----------
    path : path
        A `.model` file, or a ready detector of the zoo: `"zoo:univfd"` (see `list_models()`).
    device : str
        Where the backbone runs: `auto`, `cpu` or `cuda`.
    weights : str, optional
        The backbone's weights file, when it is not found on its own (must be the ones trained with).
    transform : str
        Test-time transform (`none` by default, whatever the model was trained with).
    batch_size, workers : int
        Images per batch; reader processes (None: chosen from the CPU count).

    Returns
    -------
    Detector

    Example
    -------
    >>> det = dfc.load_model("models/lda.model")
    >>> det.meta["train_datasets"], 0.0 <= det.threshold <= 1.0
    (['cifake'], True)
    """
    from deepfake_cli.store.artifacts import load_model as load

    return Detector(load(str(path), weights=weights), device=device, weights=weights, transform=transform,
                    batch_size=batch_size, workers=workers)


def list_datasets(paths: PathLike | Sequence[PathLike]) -> list[dict]:
    """What discovery makes of dataset paths (`deepfake datasets`): the benchmark layout it recognised, and
    per dataset its root, classes and counts, the real pool a fake-only set is paired with, and the
    categories a ForenSynths generator holds.

    Parameters
    ----------
    paths : path or list of paths
        `[NAME=]PATH` each, as `extract` takes them.

    Returns
    -------
    list of dict
        One per dataset: dataset, layout (`forensynths`, `univfd-diffusion`, `synthbuster`, `genimage` or
        `folder`), root, real, fake, unlabelled, reals_pool, categories.

    Example
    -------
    >>> [(d["dataset"], d["real"], d["fake"]) for d in dfc.list_datasets("examples/data/cifake_sd14")]
    [('cifake_sd14', 24, 24)]
    """
    from deepfake_cli.data import discover_many
    from deepfake_cli.data.layouts import describe

    specs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return describe(discover_many([os.fspath(p) for p in specs]))


def list_models() -> list[dict]:
    """The model zoo: ready detectors, usable as `"zoo:NAME"` wherever a model file is (`deepfake models`).

    Returns
    -------
    list of dict
        One per entry: name, zoo_name, backbone, training_data, licence, published (the paper's figures,
        not measured here), citation, measured_here, head file, sha256, source.

    Example
    -------
    >>> [m["zoo_name"] for m in dfc.list_models()][0]
    'zoo:univfd'
    """
    from deepfake_cli.zoo import list_models as run

    return run()


def import_head(name: str, file: PathLike, out: PathLike, *, weights: str | None = None,
                overwrite: bool = False) -> Path:
    """Write zoo entry `name` as a model file from your own copy of its head checkpoint (`deepfake import-head`).

    Parameters
    ----------
    name : str
        The zoo entry (`univfd`, `clipcues-synthclic`, ...).
    file : path
        The checkpoint; its sha256 and tensor shapes must be the entry's.
    out : path
        The `.model` file to write.
    weights : str, optional
        The backbone's weights file, recorded as `--weights` would be.
    overwrite : bool
        Replace an existing model file.

    Returns
    -------
    Path
        The model file written.
    """
    from deepfake_cli.zoo import import_head as run

    return run(name, file, out, weights=weights, overwrite=overwrite)


@api_function(o=EmbedOptions)
def embed(images: Images, *, o: EmbedOptions, progress: Progress = False) -> "tuple[np.ndarray, list[str]]":
    """Features of images, computed exactly as `extract` computes them, without a feature file.

    Parameters
    ----------
    images :
        Paths, folders, PIL images, numpy arrays, torch tensors, or a list of them.
    {options}
    progress : bool or callable
        True: a counter on stderr; a function: called as `progress(done, total)`.

    Returns
    -------
    (numpy array, list of str)
        The (N, D) float32 features, one row per image found in input order (NaN for an image that
        could not be read), and each image's content hash: sha256 of the file's bytes, or of the pixels
        for an in-memory image (see the module documentation), "" where unreadable.

    Example
    -------
    >>> from PIL import Image
    >>> img = Image.open("examples/data/cifake_sd14/real/0000.jpg")
    >>> X, hashes = dfc.embed([img, "examples/data/cifake_sd14/real/0000.jpg"], layers="all", device="cpu")
    >>> X.shape, bool(abs(X[0] - X[1]).max() < 1e-4), hashes[0] == hashes[1]
    ((2, 3088), True, False)
    """
    import numpy as np

    from deepfake_cli.inference.device import resolve_device
    from deepfake_cli.inference.embed import embed as run
    from deepfake_cli.inference.mapper import BackboneSpec
    from deepfake_cli.inference.memory import collect_images
    from deepfake_cli.data.transforms import normalize_transform

    items, _skipped = collect_images(images)
    spec = BackboneSpec(o.backbone, o.weights, o.layers, not o.random_weights)
    bb = spec.build(resolve_device(o.device))
    X = np.full((len(items), int(bb.dim)), np.nan, dtype=np.float32)
    hashes = [""] * len(items)
    counter = _callback(progress, "embed")
    done = 0
    for batch in run(bb, items, transform=normalize_transform(o.transform), seed=o.seed, align=o.align,
                     batch_size=o.batch_size, device=o.device, workers=o.workers, spec=spec):
        for row, (i, sha) in enumerate(zip(batch.indices, batch.sha256s)):
            X[i] = batch.features[row]
            hashes[i] = sha
        done += len(batch.indices) + len(batch.skipped)
        if counter:
            counter(done, len(items))
    return X, hashes


# ---------------------------------------------------------------------------------------- registries

def list_backbones(all: bool = False, pattern: str | None = None, cached: bool = False) -> list[dict]:
    """The backbones `extract` takes (`deepfake backbones`).

    Parameters
    ----------
    all : bool
        Also every open_clip and timm model with pretrained weights.
    pattern : str, optional
        Only names containing it (case-insensitive), or matching it as a glob (`* ? [ ]`).
    cached : bool
        Only backbones whose weights are here.

    Returns
    -------
    list of dict
        `name`, `family`, `dim`, `input_size`, `source`, `weights_present`, `description`, `env_var`,
        `layers` (block dimensions).

    Example
    -------
    >>> [b["dim"] for b in dfc.list_backbones(pattern="effnet-lite0")]
    [1280]
    """
    from deepfake_cli.backbones import list_backbones as run

    return run(all=all, pattern=pattern, cached=cached)


def list_classifiers() -> list[dict]:
    """The classifiers `train` takes (`deepfake classifiers`), in the order of `classifier="all"`.

    Returns
    -------
    list of dict
        `name`, `description`, `scaled` (a StandardScaler goes in front), `capabilities`, `at_scale`
        (what it switches to on large training sets, and past which size; "" when nothing), `params`
        (each `name`, `default`, `help`).

    Example
    -------
    >>> "lda" in [c["name"] for c in dfc.list_classifiers()]
    True
    """
    from deepfake_cli.classifiers import list_classifiers as run

    return run()


def list_reducers() -> list[dict]:
    """The reducers `reduce` takes (`deepfake reducers`).

    Returns
    -------
    list of dict
        `name`, `description`, `capabilities`, `params` (each `name`, `default`, `help`).

    Example
    -------
    >>> "pca" in [r["name"] for r in dfc.list_reducers()]
    True
    """
    from deepfake_cli.reducers import list_reducers as run

    return run()
