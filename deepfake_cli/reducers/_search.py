"""`AutoencoderSearch`, the estimator of the `autoencoder-search` entry (search.py describes it).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

import math
import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.reducers._base import ReducerMixin
from deepfake_cli.reducers._autoencoder import AutoencoderReducer
from deepfake_cli.registry import public_module

SCORES = ("reconstruction", "accuracy")
TRIAL_COLUMNS = ("trial", "dim", "hidden", "depth", "width", "dropout", "lr", "epochs", "epochs_run", "seconds",
                 "val_relative_mse", "val_accuracy", "score", "best")


@public_module("deepfake_cli.reducers.search")
class AutoencoderSearch(ReducerMixin, TransformerMixin, BaseEstimator):
    """Random search over `AutoencoderReducer` settings; transforms with the best trial's autoencoder.

    The space: `dims` x `depths` (hidden layers) x `widths` (first hidden layer; each next one half as
    wide, but never narrower than the code) x `dropouts` x learning rates log-uniform in `lr_range` x `epoch_choices`. A fixed `dim`,
    `hidden`, `dropout`, `lr` or `epochs` takes that factor out of the search.
    """

    def __init__(self, trials: int = 8, time_budget: float | None = None, scoring: str = "reconstruction",
                 dims: tuple[int, ...] = (8, 16, 32, 64, 128), depths: tuple[int, ...] = (1, 2, 3),
                 widths: tuple[int, ...] = (64, 128, 256, 512), dropouts: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3),
                 lr_range: tuple[float, ...] = (1e-4, 3e-3), epoch_choices: tuple[int, ...] = (25, 50, 100, 200),
                 dim: int | None = None, hidden: tuple[int, ...] | None = None, dropout: float | None = None,
                 lr: float | None = None, epochs: int | None = None, val_fraction: float = 0.2,
                 batch_size: int = 64, patience: int = 20, random_state: int | None = 0, device: str = "auto"):
        self.trials = trials
        self.time_budget = time_budget
        self.scoring = scoring
        self.dims = dims
        self.depths = depths
        self.widths = widths
        self.dropouts = dropouts
        self.lr_range = lr_range
        self.epoch_choices = epoch_choices
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.epochs = epochs
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.patience = patience
        self.random_state = random_state
        self.device = device

    def _draw(self, rng: np.random.Generator, n_features: int) -> dict:
        """One trial's settings (every factor drawn, so trial k is the same whatever is fixed)."""
        dims = [d for d in self.dims if d <= n_features] or [n_features]
        draw = {
            "dim": int(rng.choice(dims)),
            "depth": int(rng.choice(self.depths)),
            "width": int(rng.choice(self.widths)),
            "dropout": float(rng.choice(self.dropouts)),
            "lr": float(math.exp(rng.uniform(math.log(min(self.lr_range)), math.log(max(self.lr_range))))),
            "epochs": int(rng.choice(self.epoch_choices)),
        }
        for key in ("dim", "dropout", "lr", "epochs"):
            if getattr(self, key) is not None:
                draw[key] = type(draw[key])(getattr(self, key))
        draw["dim"] = min(draw["dim"], n_features)
        # each hidden layer half as wide as the one before, never narrower than the code
        draw["hidden"] = tuple(max(draw["dim"], draw["width"] // 2 ** i) for i in range(draw["depth"]))
        draw["width"] = draw["hidden"][0]
        if self.hidden is not None:
            draw["hidden"] = tuple(int(h) for h in self.hidden)
            draw["depth"], draw["width"] = len(draw["hidden"]), (draw["hidden"][0] if draw["hidden"] else 0)
        return draw

    def fit(self, X, y=None):
        import torch  # noqa: F401  (imported here, so the first trial's time is not the import's)

        X = validate_data(self, X, dtype=np.float32)
        n, d = X.shape
        if self.scoring not in SCORES:
            raise ValueError(f"scoring must be one of {', '.join(SCORES)}, got {self.scoring!r}")
        if int(self.trials) < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")
        if n < 8:
            raise ValueError(f"the autoencoder search needs at least 8 images, got n_samples = {n}")
        seed = int(self.random_state or 0)
        labels = None
        if self.scoring == "accuracy":
            if y is None:
                raise ValueError("scoring=accuracy needs labels (y)")
            labels = np.asarray(y)
        fit_idx, val_idx = self._split(n, labels, seed)
        rng = np.random.default_rng([seed, 4])
        t0 = time.perf_counter()
        self.trials_, best, best_score = [], None, None
        for k in range(int(self.trials)):
            if k and self.time_budget is not None and time.perf_counter() - t0 >= float(self.time_budget):
                break
            draw = self._draw(rng, d)
            ae = AutoencoderReducer(dim=draw["dim"], hidden=draw["hidden"], epochs=draw["epochs"], lr=draw["lr"],
                                    dropout=draw["dropout"], batch_size=int(self.batch_size),
                                    patience=int(self.patience), random_state=seed + k, device=self.device)
            t1 = time.perf_counter()
            ae.fit(X[fit_idx])
            row = {"trial": k + 1, **{c: draw[c] for c in ("dim", "hidden", "depth", "width", "dropout", "lr",
                                                            "epochs")},
                   "epochs_run": int(ae.epochs_run_)}
            row["val_relative_mse"] = float(_relative_mse(ae, X[val_idx], X[fit_idx]))
            row["val_accuracy"] = (_lda_accuracy(ae, X, labels, fit_idx, val_idx) if labels is not None
                                   else float("nan"))
            row["seconds"] = round(time.perf_counter() - t1, 3)
            # higher is better for the search: accuracy, or minus the reconstruction error
            score = row["val_accuracy"] if self.scoring == "accuracy" else -row["val_relative_mse"]
            row["score"] = float(score)
            self.trials_.append(row)
            if math.isfinite(score) and (best_score is None or score > best_score):
                best, best_score = (k, ae), score
        if best is None:
            raise ValueError("no trial of the autoencoder search gave a finite score")
        for i, row in enumerate(self.trials_):
            row["best"] = i == best[0]
        self.best_trial_ = int(best[0]) + 1
        self.best_ = best[1]
        self.n_components_ = int(self.best_.n_components_)
        self.seconds_ = round(time.perf_counter() - t0, 3)
        self.n_fit_, self.n_val_ = int(len(fit_idx)), int(len(val_idx))
        return self

    def _split(self, n: int, labels, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, 5])
        frac = float(self.val_fraction)
        if labels is None:
            order = rng.permutation(n)
            n_val = min(max(2, int(round(n * frac))), n - 4)
            return np.sort(order[n_val:]), np.sort(order[:n_val])
        labelled = np.flatnonzero(np.isin(labels, [0, 1]) if labels.dtype.kind in "iu" else np.ones(n, bool))
        fit, val = [], []
        for c in np.unique(labels[labelled]):
            idx = rng.permutation(labelled[labels[labelled] == c])
            if len(idx) < 2:
                raise ValueError("scoring=accuracy needs at least 2 images of each class")
            k = min(max(1, int(round(len(idx) * frac))), len(idx) - 1)
            val.append(idx[:k])
            fit.append(idx[k:])
        if len(val) < 2:
            raise ValueError("scoring=accuracy needs labelled images of two classes")
        val_idx = np.sort(np.concatenate(val))
        # unlabelled images still train the autoencoders
        fit_idx = np.setdiff1d(np.arange(n), val_idx)
        return fit_idx, val_idx

    def transform(self, X):
        check_is_fitted(self, "best_")
        return self.best_.transform(validate_data(self, X, reset=False, dtype=np.float64))

    def inverse_transform(self, X):
        check_is_fitted(self, "best_")
        return self.best_.inverse_transform(X)

    def fit_info(self) -> dict:
        best = self.trials_[self.best_trial_ - 1]
        return {"search": {"score": self.scoring, "trials_run": len(self.trials_), "best_trial": self.best_trial_,
                           "best": {k: (list(v) if isinstance(v, tuple) else
                                        None if isinstance(v, float) and not math.isfinite(v) else v)
                                    for k, v in best.items()},
                           "seconds": self.seconds_, "n_fit": self.n_fit_, "n_val": self.n_val_},
                "epochs_run": int(self.best_.epochs_run_), "best_val_loss": float(self.best_.best_val_loss_)}


def _relative_mse(ae: AutoencoderReducer, X_val: np.ndarray, X_fit: np.ndarray) -> float:
    """Mean squared reconstruction error on `X_val`, relative to the fit part's feature variance."""
    R = ae.inverse_transform(ae.transform(X_val))
    var = float(np.mean(np.var(X_fit.astype(np.float64), axis=0)))
    mse = float(np.mean((X_val.astype(np.float64) - R) ** 2))
    return mse / var if var > 0 else mse


def _lda_accuracy(ae, X, labels, fit_idx, val_idx) -> float:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.preprocessing import StandardScaler

    keep = fit_idx[np.isin(labels[fit_idx], np.unique(labels[val_idx]))]
    Z_fit, Z_val = ae.transform(X[keep]), ae.transform(X[val_idx])
    scaler = StandardScaler().fit(Z_fit)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(scaler.transform(Z_fit), labels[keep])
    return float(np.mean(lda.predict(scaler.transform(Z_val)) == labels[val_idx]))
