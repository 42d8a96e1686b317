"""The `reduce` stage: fit a reducer on a feature file and save it (optionally the reduced features too).

The reducer is fitted on every image of the file (or of `datasets`), labelled or not: it is
unsupervised, so it sees the images `train` later holds out, but never their labels. Fit it on another
file (e.g. only the training datasets) when even that is unwanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from deepfake_cli import __version__
from deepfake_cli.artifacts import save_reducer
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.features import COMPAT_KEYS, FeatureFileWriter, read_features
from deepfake_cli.reducers import REDUCERS, create_reducer


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


def reduce(features: str, method: str, out: str, params: dict | None = None, seed: int = 0, device: str = "auto",
           datasets: list[str] | None = None, write_features: str | None = None) -> ReduceSummary:
    """Fit reducer `method` (see `reducers.list_reducers`) with hyper-parameters `params` on `features`, save it.

    `seed` and `device` go to the reducer only when its registry entry has that capability.
    """
    est = _create(method, params or {}, seed, device)
    fs = read_features(features, datasets=datasets)
    if len(fs.y) == 0:
        raise DeepfakeError(f"{features} has no images to fit a reducer on.")
    try:
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
        "transform": fs.meta.get("transform"), "datasets": fs.datasets, "n_fit": int(len(fs.y)),
        "features_file": str(Path(features).resolve()), "reconstruction": recon,
        "explained_variance": None if explained is None else float(explained),
        "tool_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    meta.update(est.fit_info() if hasattr(est, "fit_info") else {})
    out_p = save_reducer(out, est, meta)

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
                         meta["explained_variance"], feats_out, meta)


def _create(method: str, params: dict, seed: int, device: str):
    """The unfitted reducer; refuses parameters it does not take before any features are read."""
    entry = REDUCERS.get(method)
    given = {k: v for k, v in params.items() if v is not None}
    for cap, value in (("random_state", seed), ("device", device)):
        if cap in entry.capabilities:
            given.setdefault(cap, value)
    return create_reducer(method, **given)
