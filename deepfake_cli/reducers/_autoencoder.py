"""`AutoencoderReducer`, the estimator of the `autoencoder` entry (autoencoder.py describes it).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.reducers._base import ReducerMixin
from deepfake_cli.torch_threads import small_torch_threads
from deepfake_cli.registry import public_module


@public_module("deepfake_cli.reducers.autoencoder")
class AutoencoderReducer(ReducerMixin, TransformerMixin, BaseEstimator):
    """An MLP autoencoder on standardised features; the code layer is linear.

    Trains with Adam on mean squared error, keeps the weights of the epoch with the lowest loss on a
    seeded held-out part (`val_fraction`) and stops after `patience` epochs without improvement.
    `dropout` (after each hidden layer, training only) is 0 by default.
    """

    dropout = 0.0  # files written before the parameter existed load with this value

    def __init__(self, dim: int = 32, hidden: tuple[int, ...] = (256,), epochs: int = 200, lr: float = 1e-3,
                 batch_size: int = 64, val_fraction: float = 0.1, patience: int = 20,
                 random_state: int | None = 0, device: str = "auto", dropout: float = 0.0):
        self.dim = dim
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.dropout = dropout
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.patience = patience
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float32)
        device = _torch_device(self.device)
        with small_torch_threads(X.size, str(device)):
            return self._fit(X, device)

    def _fit(self, X, device):
        import torch

        n, d = X.shape
        # the wording ("n_samples = ", "n_features = ") is what scikit-learn's estimator checks look for
        if n < 4:
            raise ValueError(f"the autoencoder needs at least 4 images, got n_samples = {n}")
        if not 1 <= int(self.dim) <= d:
            raise ValueError(f"dim must be between 1 and the feature dimension (n_features = {d}), got {self.dim}")
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
        enc = _mlp(sizes, float(self.dropout))
        dec = _mlp(sizes[::-1], float(self.dropout))
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
        if best_state is not None:  # None only when no epoch ran (epochs=0) or the loss was never finite
            model.load_state_dict(best_state)
        self.encoder_weights_, self.encoder_biases_ = _to_numpy(enc)
        self.decoder_weights_, self.decoder_biases_ = _to_numpy(dec)
        self.n_components_ = int(self.dim)
        self.best_val_loss_ = best
        self.epochs_run_ = len(history)
        return self

    def transform(self, X):
        check_is_fitted(self, "encoder_weights_")
        Z = (validate_data(self, X, reset=False, dtype=np.float64) - self.mean_) / self.scale_
        return _forward(Z, self.encoder_weights_, self.encoder_biases_)

    def inverse_transform(self, X):
        check_is_fitted(self, "decoder_weights_")
        Z = _forward(np.asarray(X, dtype=np.float64), self.decoder_weights_, self.decoder_biases_)
        return Z * self.scale_ + self.mean_

    def fit_info(self) -> dict:
        return {"epochs_run": int(self.epochs_run_), "best_val_loss": float(self.best_val_loss_)}


def _mlp(sizes, dropout: float = 0.0):
    import torch

    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
            if dropout > 0:  # training only: eval() turns it off, and numpy's forward has none
                layers.append(torch.nn.Dropout(dropout))
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
