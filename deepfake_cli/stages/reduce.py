"""The `reduce` stage: fit a reducer on a feature file and save it (optionally the reduced features too).

The reducer is fitted on every image of the file (or of `datasets`), labelled or not: it is
unsupervised, so it sees the images `train` later holds out, but never their labels. Fit it on another
file (e.g. only the training datasets) when even that is unwanted. A reducer with the `labels`
capability (the autoencoder search scored by accuracy) is given the labels too, and then never sees
the part `train` holds out with the same `test_size` and `seed` (train's defaults: 0.2 and 0).

A reducer that keeps `trials_` (the autoencoder search) gets its trials written as a CSV table
(`trials_out`, by default `<out>` with `.trials.csv` in place of its suffix).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from deepfake_cli import __version__
from deepfake_cli.store.artifacts import save_reducer
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import COMPAT_KEYS, FeatureFileWriter, capability_values, read_features
from deepfake_cli.safety.fileio import atomic_write_text, csv_text
from deepfake_cli.reducers import REDUCERS, create_reducer
from deepfake_cli.registry import capability_params
from deepfake_cli.store.outputs import Target, writes


@dataclass
class ReduceSummary:
    out: Path
    method: str
    input_dim: int
    output_dim: int
    n_fit: int
    reconstruction: dict
    explained_variance: float | None
    features_out: Path | None
    meta: dict
    trials_out: Path | None = None
    trials: list | None = None


# what it writes and reads (the output guards, `store.outputs.writes`)

def reduce_targets(a: dict) -> list[Target]:
    t = [Target(a["out"], "reducer")]
    if a.get("write_features"):
        t.append(Target(a["write_features"], "features", "--write-features"))
    if a.get("trials_out"):
        t.append(Target(a["trials_out"], "trials", "--trials-out"))
    return t


def reduce_inputs(a: dict) -> list:
    return [a.get("features")]


@writes(reduce_targets, reduce_inputs)  # never over an input or a foreign file; one writer per output
def reduce(features: str, method: str, out: str, params: dict | None = None, seed: int = 0, device: str = "auto",
           datasets: list[str] | None = None, write_features: str | None = None, test_size: float = 0.2,
           trials_out: str | None = None) -> ReduceSummary:
    """Fit reducer `method` (see `reducers.list_reducers`) with hyper-parameters `params` on `features`, save it.

    `seed` and `device` go to the reducer only when its registry entry has that capability (as do the
    feature file's facts for `combined` / `backbone`). `test_size` only matters for reducers that use
    labels: the part `train --test-size` would hold out is left out of their fit.
    """
    entry = REDUCERS.get(method)
    est = _create(method, params or {}, seed, device)
    fs = read_features(features, datasets=datasets)
    if len(fs.y) == 0:
        raise DeepfakeError(f"{features} has no images to fit a reducer on.")
    extra = capability_params(entry, capability_values(fs.meta))
    if extra:
        est.set_params(**extra)
    fit_rows, labels_note = _fit_rows(entry, fs, test_size, seed)
    try:
        if "labels" in entry.capabilities:
            est.fit(fs.X[fit_rows], fs.y[fit_rows].astype(int))
        else:
            est.fit(fs.X)
    except ValueError as exc:
        raise DeepfakeError(f"Cannot fit the {method} reducer on {features}: {exc}.") from None
    recon = est.reconstruction_error(fs.X)
    explained = getattr(est, "explained_variance_ratio_", None)
    meta = {k: fs.meta.get(k) for k in COMPAT_KEYS}
    meta.update({
        "method": method, "params": {k: (list(v) if isinstance(v, tuple) else v)
                                     for k, v in est.get_params().items()},
        "input_dim": int(fs.X.shape[1]), "output_dim": int(est.n_components_),
        "transform": fs.meta.get("transform"), "datasets": fs.datasets, "n_fit": int(len(fit_rows)),
        "features_file": str(Path(features).resolve()), "reconstruction": recon, **labels_note,
        "explained_variance": None if explained is None else float(explained),
        "tool_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    meta.update(est.fit_info() if hasattr(est, "fit_info") else {})
    trials = getattr(est, "trials_", None)
    trials_p = None
    if trials is not None:
        trials_p = Path(trials_out) if trials_out else Path(out).with_suffix(".trials.csv")
        meta["trials_file"] = str(trials_p.resolve())
    out_p = save_reducer(out, est, meta)
    if trials is not None:
        write_trials(trials, trials_p)

    feats_out = None
    if write_features:
        Z = np.asarray(est.transform(fs.X), dtype=np.float32)
        fmeta = {k: v for k, v in fs.meta.items() if k not in ("skipped", "duplicates", "n", "dim")}
        fmeta["reduced_by"] = {"method": method, "output_dim": meta["output_dim"], "reducer": str(out_p.resolve()),
                               "source_dim": meta["input_dim"], "source_file": meta["features_file"]}
        with FeatureFileWriter(write_features, fmeta, Z.shape[1], dtype="float32") as writer:
            writer.append(Z, fs.y, fs.dataset, fs.path, fs.sha256)
            feats_out = writer.close(skipped=fs.meta.get("skipped"), duplicates=fs.meta.get("duplicates"))
    return ReduceSummary(out_p, method, meta["input_dim"], meta["output_dim"], meta["n_fit"], recon,
                         meta["explained_variance"], feats_out, meta, trials_p, trials)


def write_trials(trials: list[dict], path) -> Path:
    """Every trial of a search as CSV, one row each, in the order they ran."""
    columns = list(dict.fromkeys(k for row in trials for k in row))

    def fmt(_column, value):
        if isinstance(value, (tuple, list)):
            return ",".join(str(v) for v in value)
        if isinstance(value, float):
            return "" if value != value else f"{value:.6g}"
        return str(value)

    return atomic_write_text(path, csv_text(trials, columns, fmt))


def _fit_rows(entry, fs, test_size: float, seed: int):
    """Rows a reducer fits on: all of them, or for one that uses labels, all but train's held-out part."""
    if "labels" not in entry.capabilities:
        return np.arange(len(fs.y)), {}
    from deepfake_cli.stages.splits import heldout_split

    if not 0 <= test_size < 1:
        raise DeepfakeError(f"--test-size must be in [0, 1), got {test_size}.")
    _, test_mask = heldout_split(fs, test_size, seed)
    rows = np.flatnonzero(~test_mask)
    return rows, {"labels_used": True, "heldout_excluded": {"test_size": float(test_size), "seed": int(seed),
                                                            "n": int(test_mask.sum())}}


def _create(method: str, params: dict, seed: int, device: str):
    """The unfitted reducer; refuses parameters it does not take before any features are read."""
    entry = REDUCERS.get(method)
    given = {k: v for k, v in params.items() if v is not None}
    for key, value in capability_params(entry, {"random_state": seed, "device": device}).items():
        given.setdefault(key, value)
    return create_reducer(method, **given)
