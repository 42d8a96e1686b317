"""`LinearProbe`, the estimator of the `linear-probe` entry (linear_probe.py describes it).

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


@public_module("deepfake_cli.classifiers.linear_probe")
class LinearProbe(SoftmaxOutputsMixin, ClassifierMixin, BaseEstimator):
    """Logistic-regression-like linear layer trained with cross-entropy (AdamW, full batch) in PyTorch.

    Full-batch training on a few thousand feature vectors is fast and, unlike mini-batches, gives the same
    result for the same seed regardless of batch order. One output per class (softmax), also for two
    classes; `decision_function` follows scikit-learn's shape: (n,) for two classes, (n, k) above.
    """

    def __init__(self, epochs: int = 300, lr: float = 0.01, weight_decay: float = 1e-3,
                 random_state: int | None = 0, device: str = "cpu"):
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.device = device

    def fit(self, X, y):
        import torch

        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            # "1 class" is the wording scikit-learn's estimator checks look for
            raise ValueError(f"LinearProbe needs at least two classes; got {len(self.classes_)} class")
        target = np.searchsorted(self.classes_, y)
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        layer = torch.nn.Linear(X.shape[1], len(self.classes_))
        with torch.no_grad():  # seeded init, independent of the global torch RNG
            bound = 1.0 / np.sqrt(X.shape[1])
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.zero_()
        with small_torch_threads(X.size, self.device):
            self._train(layer, X, target)
        return self

    def _train(self, layer, X, target):
        import torch

        device = torch.device(self.device)
        layer = layer.to(device)
        xt = torch.from_numpy(X).to(device)
        yt = torch.from_numpy(target.astype(np.int64)).to(device)
        opt = torch.optim.AdamW(layer.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(int(self.epochs)):
            opt.zero_grad()
            loss = loss_fn(layer(xt), yt)
            loss.backward()
            opt.step()
        self.coef_ = layer.weight.detach().cpu().numpy().astype(np.float64)
        self.intercept_ = layer.bias.detach().cpu().numpy().astype(np.float64)
        self.final_loss_ = float(loss.detach().cpu()) if int(self.epochs) > 0 else float("nan")

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_.T + self.intercept_
