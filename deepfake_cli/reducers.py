"""Dimensionality reducers: `create_reducer(name, ...)` and `list_reducers()`.

All are scikit-learn transformers with `fit`, `transform`, `inverse_transform` and
`reconstruction_error(X)`. The autoencoder trains in PyTorch but keeps its weights as numpy arrays
and transforms in numpy, so skops can save it without pickling and applying it needs no torch.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from deepfake_cli.errors import DeepfakeError


class _ReconstructionMixin:
    def reconstruction_error(self, X) -> dict:
        """Mean squared reconstruction error, and relative to the feature variance (0 = perfect)."""
        X = np.asarray(X, dtype=np.float64)
        R = self.inverse_transform(self.transform(X))
        mse = float(np.mean((X - R) ** 2))
        var = float(np.mean((X - X.mean(axis=0)) ** 2))
        return {"mse": mse, "relative": mse / var if var > 0 else 0.0}


class IdentityReducer(_ReconstructionMixin, TransformerMixin, BaseEstimator):
    """`none`: passes features through unchanged (so every model has the same pipeline shape)."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        self.n_components_ = self.n_features_in_
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        return np.asarray(X)

    def inverse_transform(self, X):
        return np.asarray(X)


class PCAReducer(_ReconstructionMixin, TransformerMixin, BaseEstimator):
    """`pca`: keep `dim` components, or as many as explain `variance` (0..1) of the variance."""

    def __init__(self, dim: int | None = None, variance: float | None = None, random_state: int | None = 0):
        self.dim = dim
        self.variance = variance
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        X = np.asarray(X, dtype=np.float64)
        limit = min(X.shape)
        if self.dim is not None and self.variance is not None:
            raise ValueError("give either dim or variance, not both")
        if self.dim is not None:
            if not 1 <= self.dim <= limit:
                raise ValueError(f"dim must be between 1 and {limit} (images and features) for PCA, got {self.dim}")
            n = int(self.dim)
        elif self.variance is not None:
            if not 0 < self.variance < 1:
                raise ValueError(f"variance must be between 0 and 1 (exclusive), got {self.variance}")
            n = float(self.variance)
        else:
            n = min(limit, 64)
        self.pca_ = PCA(n_components=n, svd_solver="full", random_state=self.random_state).fit(X)
        self.n_features_in_ = X.shape[1]
        self.n_components_ = int(self.pca_.n_components_)
        self.explained_variance_ratio_ = float(np.sum(self.pca_.explained_variance_ratio_))
        return self

    def transform(self, X):
        check_is_fitted(self, "pca_")
        return self.pca_.transform(np.asarray(X, dtype=np.float64))

    def inverse_transform(self, X):
        return self.pca_.inverse_transform(np.asarray(X, dtype=np.float64))


class AutoencoderReducer(_ReconstructionMixin, TransformerMixin, BaseEstimator):
    """`autoencoder`: a small MLP autoencoder on standardised features; the code layer is linear.

    Trains with Adam on mean squared error, keeps the weights of the epoch with the lowest loss on a
    seeded held-out part (`val_fraction`) and stops after `patience` epochs without improvement.
    """

    def __init__(self, dim: int = 32, hidden: tuple[int, ...] = (256,), epochs: int = 200, lr: float = 1e-3,
                 batch_size: int = 64, val_fraction: float = 0.1, patience: int = 20,
                 random_state: int | None = 0, device: str = "auto"):
        self.dim = dim
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.patience = patience
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        from deepfake_cli.classifiers import small_torch_threads

        X = np.asarray(X, dtype=np.float32)
        device = _torch_device(self.device)
        with small_torch_threads(X.size, str(device)):
            return self._fit(X, device)

    def _fit(self, X, device):
        import torch

        n, d = X.shape
        if n < 4:
            raise ValueError(f"the autoencoder needs at least 4 images, got {n}")
        if not 1 <= int(self.dim) <= d:
            raise ValueError(f"dim must be between 1 and {d} (the feature dimension), got {self.dim}")
        seed = int(self.random_state or 0)
        rng = np.random.default_rng(seed)
        self.mean_ = X.mean(axis=0).astype(np.float64)
        scale = X.std(axis=0).astype(np.float64)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        Z = ((X - self.mean_) / self.scale_).astype(np.float32)
        order = rng.permutation(n)
        n_val = max(1, int(round(n * float(self.val_fraction))))
        val_idx, fit_idx = order[:n_val], order[n_val:]

        torch.manual_seed(seed)
        sizes = [d, *[int(h) for h in self.hidden], int(self.dim)]
        enc = _mlp(sizes)
        dec = _mlp(sizes[::-1])
        model = torch.nn.Sequential(enc, dec).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=float(self.lr))
        zfit = torch.from_numpy(Z[fit_idx]).to(device)
        zval = torch.from_numpy(Z[val_idx]).to(device)
        gen = torch.Generator().manual_seed(seed)
        best, best_state, stale, history = float("inf"), None, 0, []
        for epoch in range(int(self.epochs)):
            model.train()
            perm = torch.randperm(len(fit_idx), generator=gen).to(device)
            for start in range(0, len(fit_idx), int(self.batch_size)):
                batch = zfit[perm[start:start + int(self.batch_size)]]
                opt.zero_grad()
                loss = torch.mean((model(batch) - batch) ** 2)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                val = float(torch.mean((model(zval) - zval) ** 2))
            history.append(val)
            if val < best - 1e-7:
                best, stale = val, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= int(self.patience):
                    break
        model.load_state_dict(best_state)
        self.encoder_weights_, self.encoder_biases_ = _to_numpy(enc)
        self.decoder_weights_, self.decoder_biases_ = _to_numpy(dec)
        self.n_features_in_ = d
        self.n_components_ = int(self.dim)
        self.best_val_loss_ = best
        self.epochs_run_ = len(history)
        return self

    def transform(self, X):
        check_is_fitted(self, "encoder_weights_")
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return _forward(Z, self.encoder_weights_, self.encoder_biases_)

    def inverse_transform(self, X):
        check_is_fitted(self, "decoder_weights_")
        Z = _forward(np.asarray(X, dtype=np.float64), self.decoder_weights_, self.decoder_biases_)
        return Z * self.scale_ + self.mean_


def _mlp(sizes):
    import torch

    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _to_numpy(seq):
    import torch

    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    return ([m.weight.detach().cpu().numpy().astype(np.float64) for m in linears],
            [m.bias.detach().cpu().numpy().astype(np.float64) for m in linears])


def _forward(Z, weights, biases):
    for i, (w, b) in enumerate(zip(weights, biases)):
        Z = Z @ w.T + b
        if i < len(weights) - 1:
            Z = np.maximum(Z, 0.0)
    return Z


def _torch_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


_REDUCERS = {
    "none": ("no reduction: features pass through unchanged", IdentityReducer),
    "pca": ("principal component analysis (--dim N or --variance F)", PCAReducer),
    "autoencoder": ("MLP autoencoder in PyTorch (--dim, --hidden, --epochs, --lr), early stopping", AutoencoderReducer),
}


def list_reducers() -> list[dict]:
    return [{"name": k, "description": v[0]} for k, v in _REDUCERS.items()]


def create_reducer(name: str, **params):
    """A fresh, unfitted reducer. `params` are the class's hyper-parameters (None values are dropped)."""
    if name not in _REDUCERS:
        raise DeepfakeError(f"Unknown reducer '{name}'; choose from {', '.join(_REDUCERS)}.")
    cls = _REDUCERS[name][1]
    params = {k: v for k, v in params.items() if v is not None}
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise DeepfakeError(f"Reducer '{name}' does not take {', '.join(unknown)}.")
    return cls(**params)
