"""`FusionClassifier`, the estimator of the `fusion` entry (fusion.py describes it).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.classifiers._softmax import SoftmaxOutputsMixin
from deepfake_cli.torch_threads import small_torch_threads
from deepfake_cli.registry import public_module

GATES = ("gated", "mean")


@public_module("deepfake_cli.classifiers.fusion")
class FusionClassifier(SoftmaxOutputsMixin, ClassifierMixin, BaseEstimator):
    """Per-backbone projections combined by a learned gate, then a linear classifier.

    `members`: ((name, number of columns), ...) in column order; None treats all columns as one member
    (then it is a one-hidden-layer network). `gate`: "gated" (a softmax over members computed from the
    concatenated projections, one weight vector per image) or "mean" (fixed equal weights; the ablation).
    After fit, `member_weights_` is the mean gate weight of each member on the training images.
    """

    def __init__(self, members=None, proj_dim: int = 64, gate: str = "gated", dropout: float = 0.2,
                 epochs: int = 200, lr: float = 1e-3, weight_decay: float = 1e-3, batch_size: int = 64,
                 val_fraction: float = 0.2, patience: int = 20, random_state: int | None = 0, device: str = "cpu"):
        self.members = members
        self.proj_dim = proj_dim
        self.gate = gate
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.patience = patience
        self.random_state = random_state
        self.device = device

    # --- fitting ---------------------------------------------------------------------------------------

    def _slices(self, n_features: int) -> list[tuple[str, int, int]]:
        if self.members is None:
            return [("all", 0, n_features)]
        out, start = [], 0
        for name, dim in self.members:
            out.append((str(name), start, start + int(dim)))
            start += int(dim)
        if start != n_features:
            raise ValueError(f"members {[(n, d) for n, d in self.members]} cover {start} columns, but "
                             f"n_features = {n_features}")
        return out

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError(f"FusionClassifier needs at least two classes; got {len(self.classes_)} class")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {', '.join(GATES)}, got {self.gate!r}")
        slices = self._slices(X.shape[1])
        self.member_names_ = [name for name, _, _ in slices]
        self.member_slices_ = [(a, b) for _, a, b in slices]
        self.mean_ = X.mean(axis=0).astype(np.float64)
        scale = X.std(axis=0).astype(np.float64)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        Z = ((X - self.mean_) / self.scale_).astype(np.float32)
        target = np.searchsorted(self.classes_, y).astype(np.int64)
        fit_idx, val_idx = _stratified_split(target, float(self.val_fraction), int(self.random_state or 0))
        with small_torch_threads(X.size, self.device):
            self._train(Z, target, fit_idx, val_idx)
        return self

    def _train(self, Z, target, fit_idx, val_idx):
        import torch

        seed = int(self.random_state or 0)
        device = torch.device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _build_net(self.member_slices_, int(self.proj_dim), len(self.classes_), float(self.dropout),
                             self.gate).to(device)
        zt = torch.from_numpy(Z).to(device)
        yt = torch.from_numpy(target).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        loss_fn = torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(seed)
        fit_t = torch.from_numpy(fit_idx).to(device)
        val_t = torch.from_numpy(val_idx).to(device)
        best, best_state, stale, best_epoch, epochs_run = float("inf"), None, 0, 0, 0
        bs = max(1, int(self.batch_size))
        for epoch in range(int(self.epochs)):
            net.train()
            perm = fit_t[torch.randperm(len(fit_idx), generator=gen).to(device)]
            for start in range(0, len(perm), bs):
                idx = perm[start:start + bs]
                opt.zero_grad()
                loss = loss_fn(net(zt[idx], generator=gen), yt[idx])
                loss.backward()
                opt.step()
            epochs_run = epoch + 1
            net.eval()
            with torch.no_grad():
                # no validation part (tiny data): the training loss decides
                watch = val_t if len(val_idx) else fit_t
                val = float(loss_fn(net(zt[watch]), yt[watch]))
            if val < best - 1e-6:
                best, stale, best_epoch = val, 0, epoch + 1
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= int(self.patience):
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self._keep(net)
        self.best_val_loss_ = best
        self.best_epoch_ = best_epoch
        self.epochs_run_ = epochs_run
        self.n_val_ = int(len(val_idx))
        self.member_weights_ = self._gate(self._project(Z.astype(np.float64))).mean(axis=0)

    def _keep(self, net):
        def arr(t):
            return t.detach().cpu().numpy().astype(np.float64)

        self.proj_weights_ = [arr(p.weight) for p in net.proj]
        self.proj_biases_ = [arr(p.bias) for p in net.proj]
        self.gate_weight_ = arr(net.gate.weight) if net.gate is not None else None
        self.gate_bias_ = arr(net.gate.bias) if net.gate is not None else None
        self.out_weight_ = arr(net.out.weight)
        self.out_bias_ = arr(net.out.bias)

    # --- applying (numpy only) --------------------------------------------------------------------------

    def _project(self, Z) -> list[np.ndarray]:
        return [np.maximum(Z[:, a:b] @ w.T + c, 0.0)
                for (a, b), w, c in zip(self.member_slices_, self.proj_weights_, self.proj_biases_)]

    def _gate(self, H: list[np.ndarray]) -> np.ndarray:
        if self.gate_weight_ is None:
            return np.full((H[0].shape[0], len(H)), 1.0 / len(H))
        s = np.hstack(H) @ self.gate_weight_.T + self.gate_bias_
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def member_weights(self, X) -> np.ndarray:
        """(n, members) gate weight of each member for each image (rows sum to 1)."""
        check_is_fitted(self, "out_weight_")
        Z = (validate_data(self, X, reset=False, dtype=np.float64) - self.mean_) / self.scale_
        return self._gate(self._project(Z))

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self, "out_weight_")
        Z = (validate_data(self, X, reset=False, dtype=np.float64) - self.mean_) / self.scale_
        H = self._project(Z)
        A = self._gate(H)
        fused = sum(A[:, [i]] * h for i, h in enumerate(H))
        return fused @ self.out_weight_.T + self.out_bias_



def _build_net(slices, proj_dim: int, n_classes: int, dropout: float, gate: str):
    """The torch module of the fusion network (torch is imported only when fitting)."""
    import torch
    from torch import nn

    class FusionNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.slices = list(slices)
            self.proj = nn.ModuleList(nn.Linear(b - a, proj_dim) for a, b in self.slices)
            self.gate = nn.Linear(proj_dim * len(self.slices), len(self.slices)) if gate == "gated" else None
            self.out = nn.Linear(proj_dim, n_classes)

        def forward(self, z, generator=None):
            drop = self.training and dropout > 0
            hs = []
            for (a, b), proj in zip(self.slices, self.proj):
                x = z[:, a:b]
                hs.append(torch.relu(proj(x * _keep_mask(x, dropout, generator) if drop else x)))
            if self.gate is None:
                w = torch.full((z.shape[0], len(hs)), 1.0 / len(hs), device=z.device)
            else:
                w = torch.softmax(self.gate(torch.cat(hs, dim=1)), dim=1)
            fused = sum(w[:, i:i + 1] * h for i, h in enumerate(hs))
            return self.out(fused * _keep_mask(fused, dropout, generator) if drop else fused)

    return FusionNet()


def _keep_mask(x, p: float, generator):
    """Inverted-dropout factors from a seeded generator (torch's own dropout draws from the global one)."""
    import torch

    keep = torch.rand(x.shape, generator=generator) >= p
    return keep.to(x.device, x.dtype) / (1.0 - p)


def _stratified_split(target: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) indices: `fraction` of each class for validation, at least one per class where a
    class has 3 or more images; no validation part when that leaves too little."""
    rng = np.random.default_rng([seed, 7])
    fit, val = [], []
    for c in np.unique(target):
        idx = rng.permutation(np.flatnonzero(target == c))
        n_val = int(round(len(idx) * fraction)) if fraction > 0 else 0
        if fraction > 0 and len(idx) >= 3:
            n_val = min(max(n_val, 1), len(idx) - 2)
        else:
            n_val = 0
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))
