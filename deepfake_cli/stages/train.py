"""The `train` stage: features -> one model file per classifier.

Splits (all seeded, stratified by label and grouped by content hash, so that identical bytes never sit
on both sides of a split):
  * test: `test_size` of each training dataset is held out of training; `eval` scores it later
    (the model stores the held-out sha256s per dataset). Images whose content is held out in any
    dataset are dropped from training everywhere.
  * validation: `val_size` of the remaining training part calibrates p_fake (`calibration.py`: Platt
    scaling by default, recorded in the model), then chooses the decision threshold (maximum balanced
    accuracy on the calibrated p_fake) and gives the stored validation scores.
The saved classifier is the one fitted on the fit part (training part minus validation), so the stored
calibration, threshold and validation scores describe exactly the saved model. The model also stores a
novelty reference of the training part (`novelty.py`) that `predict` measures new images against, and the
warnings about small samples (a validation part under MIN_VAL_PER_CLASS images per class, a held-out test
part under MIN_TEST images) that `train` returns.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deepfake_cli.metrics import calibration as calib
from deepfake_cli.store.artifacts import MODEL_SUFFIX, load_reducer, save_model
from deepfake_cli.store.model_card import ModelCard, heldout_record, model_inputs, split_fields
from deepfake_cli.metrics.novelty import fit_reference
from deepfake_cli.classifiers import CLASSIFIERS, create_classifier, needs_scaling, parse_classifier_names
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import COMPAT_KEYS, FeatureSet, capability_values, describe, matching_options, \
    mismatch, read_features
from deepfake_cli.registry import capability_params
from deepfake_cli.stages.splits import TrainSplit, train_val_split
from deepfake_cli.metrics.stats import wilson_interval
from deepfake_cli.store.outputs import Target, names_folder, writes


@dataclass
class TrainResult:
    classifier: str
    path: Path
    threshold: float
    validation: dict
    n_fit: int
    n_val: int
    heldout: dict  # dataset -> number of held-out images
    seconds: float
    warnings: list = field(default_factory=list)         # notes about this classifier's fit
    sample_warnings: list = field(default_factory=list)  # small validation / test parts (same for every model)
    calibration: str = "none"
    heldout_accuracy: dict | None = None  # the model on the held-out part (`model_card.heldout_record`), None if none


# Below these sizes `train` warns: a threshold or a calibration chosen on a few validation images, and a
# within-dataset accuracy measured on a few test images, are too uncertain to be read at face value.
MIN_VAL_PER_CLASS = 30
MIN_TEST = 30
WIDE_RATIO = 10  # fewer than dimensions / WIDE_RATIO images to fit, and no reducer: a note says what that means


# what it writes and reads (the output guards, `store.outputs.writes`)

def train_targets(a: dict) -> list[Target]:
    from deepfake_cli.store.artifacts import MODEL_SUFFIX
    from deepfake_cli.classifiers import parse_classifier_names

    out = Path(a["out"])
    c = a["classifiers"]
    names = parse_classifier_names(c if isinstance(c, str) else ",".join(c))
    folder = names_folder(a["out"])
    if (len(names) > 1 or folder) and out.exists() and not out.is_dir():
        raise DeepfakeError(f"--out {a['out']} is a file; with several classifiers or a trailing '/' --out must "
                            "be a folder.")
    if len(names) > 1 or folder:
        return [Target(out / f"{n}{MODEL_SUFFIX}", "model", lock=out) for n in names]
    return [Target(out, "model")]


def train_inputs(a: dict) -> list:
    return [a.get("features"), a.get("reducer")]


@writes(train_targets, train_inputs)  # never over an input or a foreign file; one writer per --out
def train(features: str, classifiers: str | list[str], out: str, reducer: str | None = None,
          datasets: list[str] | None = None, test_size: float = 0.2, val_size: float = 0.2, seed: int = 0,
          device: str = "cpu", progress: Callable[[str], None] | None = None,
          params: dict[str, dict] | None = None, calibration: str = calib.DEFAULT,
          extra_meta: dict | None = None) -> list[TrainResult]:
    """Train each classifier on `features` and write its model.

    One classifier: `out` is the model file (or a folder to put `<name>.model` in: an existing folder, or
    a name ending in "/", created). Several: `out` is a
    folder that receives `<name>.model` per classifier. `params` maps a classifier name to its
    hyper-parameters (see `deepfake classifiers`); `seed` and `device` go to the classifiers whose
    registry entry takes them. `calibration`: sigmoid | isotonic | none (see `deepfake_cli.metrics.calibration`).
    `extra_meta`: keys added to (or replacing) every model's metadata, for a recipe that knows more than this
    call (`recipes.fit` records the held-out accuracy measured before training on all images).
    """
    if calibration not in calib.METHODS:
        raise DeepfakeError(f"Unknown calibration '{calibration}'; choose from {', '.join(calib.METHODS)}.")
    names = parse_classifier_names(classifiers if isinstance(classifiers, str) else ",".join(classifiers))
    estimators = _make_classifiers(names, params, seed, device)  # refuses unknown parameters before any work
    if not 0 <= test_size < 1:
        raise DeepfakeError(f"--test-size must be in [0, 1), got {test_size}.")
    if not 0 <= val_size < 1:
        raise DeepfakeError(f"--val-size must be in [0, 1), got {val_size}.")
    fs = read_features(features, datasets=datasets)
    _check_combined(names, fs, features, reducer)
    _set_feature_params(names, estimators, fs, features)
    train_sets = list(datasets) if datasets else fs.datasets
    red_step, red_info = _reducer_step(reducer, fs, features)
    # classifiers that learn nothing from the images (zero-shot) train on files without both classes too
    need_classes = not all("untrained" in CLASSIFIERS.get(n).capabilities for n in names)
    split = _split(fs, test_size, val_size, seed, train_sets, need_classes)
    card = _card(fs, features, red_info, train_sets, split, test_size, val_size, seed)
    if red_info.get("method") == "none" and len(split.fit_idx) * WIDE_RATIO < fs.X.shape[1]:
        card.sample_warnings.append(
            f"{len(split.fit_idx)} images to fit in {fs.X.shape[1]} dimensions, without a reducer: lda (shrinkage) "
            "and linear-probe (weight decay) are built for this; kNN, SVM and trees tend to overfit, and "
            "gradient-boosting's time and model size grow with the dimension. `deepfake reduce --method pca` and "
            "`train --reducer` cut the dimension (not done automatically: it would change what each classifier "
            "computes, and a PCA fitted on n images keeps n-1 vectors of the full dimension, as large as the "
            "images kNN and SVM already store)")
    notes = []
    if fs.meta.get("reduced_by"):
        notes.append("these features were written by `deepfake reduce`; the model cannot be applied to raw "
                     "images by `predict` (train on the original features with --reducer for that)")

    out_p = Path(out)
    into_folder = len(names) > 1 or names_folder(out)  # "models/" with one classifier: models/<name>.model
    if into_folder and out_p.exists() and not out_p.is_dir():
        raise DeepfakeError(f"--out {out} is a file; with several classifiers or a trailing '/' --out must be a "
                            "folder.")
    results = []
    for name in names:
        if progress:
            progress(name)
        target = (out_p / f"{name}{MODEL_SUFFIX}") if into_folder else out_p
        results.append(_train_one(name, estimators[name], fs, split, red_step, card, target, list(notes),
                                  calibration=calibration, seed=seed, extra_meta=extra_meta))
    return results


def _make_classifiers(names: list[str], params: dict[str, dict] | None, seed: int, device: str) -> dict:
    """A fresh estimator per classifier name, with its parameters, seed and (if it takes one) device."""
    params = params or {}
    stray = [k for k in params if k not in names]
    if stray:
        raise DeepfakeError(f"Parameters given for {', '.join(stray)}, which {'is' if len(stray) == 1 else 'are'} "
                            f"not among the classifiers being trained ({', '.join(names)}).")
    out = {}
    for name in names:
        kwargs = dict(params.get(name) or {})
        if "device" in CLASSIFIERS.get(name).capabilities:
            kwargs.setdefault("device", device)
        out[name] = create_classifier(name, random_state=seed, **kwargs)
    return out


def _check_combined(names: list[str], fs: FeatureSet, features: str, reducer: str | None = None) -> None:
    """Classifiers with the `combined` capability take only features of joined backbones (`a+b`), as extracted
    (a reducer mixes the members' columns)."""
    backbone = str(fs.meta.get("backbone"))
    for name in names:
        if "combined" in CLASSIFIERS.get(name).capabilities:
            if "+" not in backbone:
                raise DeepfakeError(f"Classifier {name} needs features of combined backbones (extract --backbone "
                                    f"a+b); {features} has {backbone}.")
            if reducer:
                raise DeepfakeError(f"Classifier {name} works on each backbone's own columns; it cannot follow a "
                                    "reducer (train it without --reducer).")


def _set_feature_params(names: list[str], estimators: dict, fs: FeatureSet, features: str) -> None:
    """Hand each classifier what its capabilities ask of the feature file (`features.capability_values`:
    the members of a combination, the backbone's identity), as the parameters the registry names."""
    supplied = capability_values(fs.meta)
    for name in names:
        try:
            extra = capability_params(CLASSIFIERS.get(name), supplied)
        except DeepfakeError as exc:
            raise DeepfakeError(f"Classifier {name} cannot use {features}: {exc}") from None
        if extra:
            estimators[name].set_params(**extra)


def _reducer_step(reducer: str | None, fs: FeatureSet, features: str):
    """The pipeline's reduce step (a frozen, already fitted reducer) and its description for the metadata."""
    from sklearn.frozen import FrozenEstimator

    if not reducer:
        return "passthrough", {"method": "none"}
    art = load_reducer(reducer)
    diff = mismatch(art.meta, fs.meta, COMPAT_KEYS)
    if diff:
        raise DeepfakeError(f"Reducer {reducer} was fitted on {describe(art.meta, diff, fs.meta)} but {features} has "
                            f"{describe(fs.meta, diff, art.meta)}; fit a reducer on {features} (`deepfake reduce "
                            f"{features} ...`), or train on features extracted with the reducer's settings"
                            + (f" ({matching_options(art.meta, fs.meta, diff)})." if matching_options(art.meta, fs.meta, diff)
                               else "."))
    if int(art.meta.get("input_dim", -1)) != fs.X.shape[1]:
        raise DeepfakeError(f"Reducer {reducer} takes {art.meta.get('input_dim')}-dimensional features; "
                            f"{features} has {fs.X.shape[1]}.")
    info = {k: art.meta.get(k) for k in ("method", "params", "input_dim", "output_dim", "features_file",
                                         "reconstruction", "explained_variance")}
    info["path"] = str(Path(reducer).resolve())
    return FrozenEstimator(art.estimator), info


def _split(fs: FeatureSet, test_size: float, val_size: float, seed: int, train_sets: list[str],
           need_classes: bool = True) -> TrainSplit:
    return train_val_split(fs, test_size, val_size, seed, train_sets if need_classes else None)


def small_sample_warnings(fs: FeatureSet, split: TrainSplit, train_sets: list[str]) -> list[str]:
    """One sentence per part of the split that is too small to be read at face value, naming its counts."""
    out = []
    y_val = fs.y[split.val_idx]
    n_real, n_fake = int((y_val == 0).sum()), int((y_val == 1).sum())
    if min(n_real, n_fake) < MIN_VAL_PER_CLASS:
        out.append(f"small validation part: {n_real} real and {n_fake} fake images (fewer than {MIN_VAL_PER_CLASS} "
                   f"per class) choose the threshold and calibrate p_fake, after fitting on {len(split.fit_idx)}; "
                   "both are uncertain (more images, or a larger --val-size, firm them up)")
    for d in train_sets:
        held = split.test_mask & (fs.dataset == d)
        n = int(held.sum())
        if 0 < n < MIN_TEST:
            r, f = int((fs.y[held] == 0).sum()), int((fs.y[held] == 1).sum())
            low, high = wilson_interval(n * 0.5, n)
            out.append(f"small test part: {n} held-out images of {d} ({r} real, {f} fake; fewer than {MIN_TEST}): "
                       f"`eval`'s within-dataset accuracy on them has a 95% interval up to {high - low:.2f} wide")
    return out


def _card(fs: FeatureSet, features: str, red_info: dict, train_sets: list[str], split: TrainSplit,
          test_size: float, val_size: float, seed: int) -> ModelCard:
    """What every model of one `train` call shares (what made its features, splits, reducer, warnings)."""
    inputs = model_inputs(backbone=fs.meta.get("backbone"), dim=fs.meta.get("dim"), input_dim=fs.X.shape[1],
                          layers=fs.meta.get("layers"), weights_id=fs.meta.get("weights_id"),
                          preprocessing=fs.meta.get("preprocessing"), transform=fs.meta.get("transform", "none"),
                          feature_seed=fs.meta.get("seed"), align=(fs.meta.get("preprocessing") or {}).get("align"),
                          reducer=red_info, features_reduced_by=fs.meta.get("reduced_by"))
    return ModelCard(inputs, split_fields(fs.sha256, fs.dataset, split, train_sets, test_size, val_size, seed,
                                          y=fs.y, roots=fs.meta.get("roots")),
                     features_file=str(Path(features).resolve()), features_created=fs.meta.get("created"),
                     sample_warnings=small_sample_warnings(fs, split, train_sets))


def _train_one(name: str, clf, fs: FeatureSet, split: TrainSplit, red_step, card: ModelCard, target: Path,
               notes: list, calibration: str = calib.DEFAULT, seed: int = 0, extra_meta: dict | None = None) -> TrainResult:
    """Fit reduce -> scale -> clf on the fit part, calibrate and pick the threshold on validation, store a
    novelty reference of the training part, save the model."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    fit_idx, val_idx = split.fit_idx, split.val_idx
    pipe = Pipeline([("reduce", red_step),
                     ("scale", StandardScaler() if needs_scaling(name) else "passthrough"),
                     ("clf", clf)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pipe.fit(fs.X[fit_idx], fs.y[fit_idx].astype(int))
        except ValueError as exc:
            raise DeepfakeError(f"Classifier {name} could not be trained on {len(fit_idx)} images: {exc}") from None
    notes += sorted({str(w.message).splitlines()[0] for w in caught
                     if issubclass(w.category, (UserWarning, RuntimeWarning))})[:3]
    # what the estimator chose in fit (e.g. the SVM's solver past a training-set size), for the metadata
    fit_info = clf.fit_info() if hasattr(clf, "fit_info") else {}
    if fit_info.get("note"):
        notes.append(fit_info["note"])
    labelled_val = val_idx[fs.y[val_idx] >= 0]
    decision = calib.calibrate_and_threshold(pipe, fs.X[labelled_val], fs.y[labelled_val], calibration)
    notes += decision.notes
    reference, novelty = fit_reference(pipe[:1].transform(fs.X[split.tr_idx]), seed=seed)
    meta = card.meta(name=target.stem, classifier=name, classifier_params=_json_params(clf), decision=decision,
                     novelty=novelty, notes=notes,
                     extra={"classifier_fit": fit_info, "heldout": _heldout(pipe, decision, fs, split, card),
                            **(extra_meta or {})})
    save_model(target, pipe, meta, extras={"novelty": reference} if reference is not None else None)
    return TrainResult(name, target, decision.threshold, decision.validation, int(len(fit_idx)), int(len(val_idx)),
                       card.split["n_heldout"], time.perf_counter() - t0, notes,
                       sample_warnings=list(card.sample_warnings), calibration=decision.calibration["method"],
                       heldout_accuracy=meta["heldout"])


def _heldout(pipe, decision, fs: FeatureSet, split: TrainSplit, card: ModelCard) -> dict | None:
    """The saved model's accuracy on the held-out test part (what `eval` would report within-dataset), kept in
    the model so that `predict` can cite it; None when nothing is held out (--test-size 0)."""
    rows = split.test_mask & (fs.y >= 0)
    if not rows.any():
        return None
    p = calib.calibrated_p_fake(pipe, decision.calibration, fs.X[rows])
    sets = card.split["train_datasets"]
    return heldout_record(fs.y[rows], p, decision.threshold, sets,
                          f"train: this model on the {card.split['test_size']:.0%} of {', '.join(sets)} held out of "
                          "its training")


def _json_params(est) -> dict:
    return {k: _json_value(v) for k, v in est.get_params(deep=False).items()}


def _json_value(v):
    """Plain values as they are, tuples/lists and dicts of them as JSON lists/objects, anything else by type."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (tuple, list)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {k: _json_value(x) for k, x in v.items()}
    return type(v).__name__
