"""Does an image look like the training data? A distance to the training features, stored in the model.

A detector's p(fake) means something only for images like those it was trained on: a model trained on
CIFAKE calls every image of a GAN folder fake, the real photos included, with p near 1. `train` stores a
novelty reference of its training part in the model; `predict` measures each image against it and warns
with the share of images beyond the training set's 99th percentile.

The reference lives in the model's input space after its reducer (the features the scaler and
classifier see). It is a Mahalanobis distance under a covariance that can be estimated from tens of
images in thousands of dimensions:

* features are standardised (per-dimension mean and standard deviation of the training part);
* the covariance is shrunk towards a multiple of the identity by the Ledoit-Wolf intensity
  (`shrinkage.ledoit_wolf_shrinkage`), which keeps it invertible when dimensions outnumber images;
* its K = min(10, rank) leading eigen-directions keep their own (shrunk) variances and every other
  direction gets their mean (probabilistic PCA, Tipping & Bishop 1999, on the shrunk covariance): the
  file keeps K + 2 vectors of the input dimension, not a d x d matrix.

The cut-off is the 99th percentile of *out-of-sample* distances: each training image is measured against
a reference fitted on the other folds of a 5-fold split (a reference's own images lie closer to it than
new images of the same kind, so their distances would set the cut-off too low). The final reference is
fitted on the whole training part, so on images of the training distribution the share beyond the cut-off
is about 1%, or less.
"""

from __future__ import annotations

import numpy as np

from deepfake_cli.metrics.shrinkage import ledoit_wolf_shrinkage

METHOD = "mahalanobis, Ledoit-Wolf shrunk covariance of standardised features, top-10 directions + isotropic rest"
QUANTILE = 0.99
MAX_COMPONENTS = 10
FOLDS = 5
MIN_IMAGES = 10  # fewer training images: no reference (and predict says so)
MAX_IMAGES = 1000  # a seeded subsample of larger training parts (the fit costs O(n^2 d) six times)


def _fit(Z: np.ndarray, k_max: int = MAX_COMPONENTS) -> dict:
    """The reference of the rows of Z: arrays only (float32 vectors, float scalars)."""
    Z = np.asarray(Z, dtype=np.float64)
    n, d = Z.shape
    mean = Z.mean(axis=0)
    std = Z.std(axis=0)
    scale = np.where(std < 10 * np.finfo(np.float64).eps, 1.0, std)
    X = (Z - mean) / scale
    # eigen-directions of the covariance X^T X / n from the smaller of the two Gram matrices
    if n <= d:
        gram = X @ X.T
        ev, U = np.linalg.eigh(gram)
        ev, U = ev[::-1].clip(min=0), U[:, ::-1]
    else:
        gram = X.T @ X
        ev, V = np.linalg.eigh(gram)
        ev, V = ev[::-1].clip(min=0), V[:, ::-1]
    alpha = ledoit_wolf_shrinkage(X, gram) if n > 1 else 1.0
    trace = float((X * X).sum() / n)
    mu = trace / d
    k = int(min(k_max, int((ev > ev.max(initial=0.0) * 1e-12).sum()), d))
    if n <= d:  # right singular vectors: X^T u / sigma
        vt = (X.T @ U[:, :k] / np.sqrt(ev[:k])).T if k else np.zeros((0, d))
    else:
        vt = V[:, :k].T
    ev = ev / n
    var = (1 - alpha) * ev[:k] + alpha * mu
    floor = max(mu, 1e-12) * 1e-6
    var = np.maximum(var, floor)
    rest = (trace - var.sum()) / (d - k) if d > k else 1.0
    rest = max(rest, floor)
    return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32),
            "components": vt[:k].astype(np.float32), "variances": var.astype(np.float32),
            "rest_variance": float(rest), "shrinkage": float(alpha)}


def distances(ref: dict, Z) -> np.ndarray:
    """Mahalanobis distance of each row of Z (input space after the reducer) to the reference."""
    X = (np.asarray(Z, dtype=np.float64) - np.asarray(ref["mean"], np.float64)) / np.asarray(ref["scale"], np.float64)
    comps = np.asarray(ref["components"], dtype=np.float64)
    proj = X @ comps.T if len(comps) else np.zeros((len(X), 0))
    total = (X * X).sum(axis=1)
    inside = (proj * proj).sum(axis=1)
    d2 = (proj * proj / np.asarray(ref["variances"], np.float64)).sum(axis=1) \
        + np.maximum(total - inside, 0.0) / float(ref["rest_variance"])
    return np.sqrt(d2)


def fit_reference(Z, seed: int = 0) -> tuple[dict | None, dict]:
    """(arrays for the model file, JSON-able description with the cut-off) of the training rows Z.

    With fewer than MIN_IMAGES rows there is no reference: (None, {"method": "none", "reason": ...}); of more
    than MAX_IMAGES rows a seeded subsample is used (`n_reference` says how many).
    """
    Z = np.asarray(Z)
    return fit_reference_of(len(Z), lambda rows: Z[rows], seed)


def fit_reference_of(n: int, features, seed: int = 0) -> tuple[dict | None, dict]:
    """`fit_reference` of n training rows whose features `features(row indices)` computes on demand, so a
    model whose features cost a network pass (finetune) computes only the rows the reference uses."""
    if n < MIN_IMAGES:
        return None, {"method": "none", "reason": f"{n} training images, fewer than {MIN_IMAGES}"}
    rng = np.random.default_rng([int(seed), 7])
    rows = np.sort(rng.choice(n, MAX_IMAGES, replace=False)) if n > MAX_IMAGES else np.arange(n)
    Z = np.asarray(features(rows), dtype=np.float64)
    n = len(Z)
    order = rng.permutation(n)
    folds = np.array_split(order, min(FOLDS, n))
    out_of_sample = np.empty(n)
    for held in folds:
        rest = np.setdiff1d(order, held)
        out_of_sample[held] = distances(_fit(Z[rest]), Z[held])
    ref = _fit(Z)
    cutoff = float(np.quantile(out_of_sample, QUANTILE))
    info = {"method": METHOD, "space": "model input after the reducer", "dim": int(Z.shape[1]),
            "components": int(len(ref["components"])), "shrinkage": ref["shrinkage"], "n_reference": int(n),
            "quantile": QUANTILE, "cutoff": cutoff, "cutoff_from": f"{len(folds)}-fold out-of-sample distances",
            "median_distance": float(np.median(out_of_sample))}
    return ref, info


def beyond(ref: dict | None, info: dict | None, Z) -> np.ndarray | None:
    """Each row's distance divided by the stored cut-off (> 1: beyond the training 99th percentile); None
    for a model without a reference."""
    if ref is None or not info or "cutoff" not in info:
        return None
    return distances(ref, Z) / float(info["cutoff"])
