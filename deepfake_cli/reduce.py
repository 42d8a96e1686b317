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
from deepfake_cli.reducers import create_reducer


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


def reduce(features: str, method: str, out: str, dim: int | None = None, variance: float | None = None,
           hidden: tuple[int, ...] | None = None, epochs: int | None = None, lr: float | None = None,
           seed: int = 0, device: str = "auto", datasets: list[str] | None = None,
           write_features: str | None = None) -> ReduceSummary:
    """Fit `method` (none|pca|autoencoder) on `features`, save it to `out`; see `reducers.create_reducer`."""
    if method != "pca" and variance is not None:
        raise DeepfakeError("--variance applies to --method pca only.")
    if method != "autoencoder" and any(v is not None for v in (hidden, epochs, lr)):
        raise DeepfakeError("--hidden, --epochs and --lr apply to --method autoencoder only.")
    if method == "none" and dim is not None:
        raise DeepfakeError("--dim does not apply to --method none.")
    if dim is not None and variance is not None:
        raise DeepfakeError("Give either --dim or --variance, not both.")
    fs = read_features(features, datasets=datasets)
    if len(fs.y) == 0:
        raise DeepfakeError(f"{features} has no images to fit a reducer on.")
    params: dict = {}
    if method == "pca":
        params = {"dim": dim, "variance": variance, "random_state": seed}
    elif method == "autoencoder":
        params = {"dim": dim, "hidden": tuple(hidden) if hidden else None, "epochs": epochs, "lr": lr,
                  "random_state": seed, "device": device}
    est = create_reducer(method, **params)
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
    if method == "autoencoder":
        meta["epochs_run"] = int(est.epochs_run_)
        meta["best_val_loss"] = float(est.best_val_loss_)
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
