"""Classifier registry: `create_classifier(name, random_state)` and `list_classifiers()`.

Every classifier is a scikit-learn estimator with `predict_proba`; column 1 is p(fake). The ones that
need standardised inputs (distance, margin or gradient based) are marked `scaled`; `train` puts a
StandardScaler in front of them. `LinearProbe` is a linear layer trained with cross-entropy in
PyTorch whose weights are kept as numpy arrays, so that skops can save it and prediction needs no torch.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted

from deepfake_cli.errors import DeepfakeError


@contextmanager
def small_torch_threads(n_values: int, device: str):
    """Run tiny CPU workloads on one torch thread, restoring the setting afterwards.

    On a busy machine, torch's intra-op thread pool makes thousands of tiny steps (a linear layer on
    a few hundred images) 50-100x slower than one thread does.
    """
    import torch

    if str(device).startswith("cuda") or n_values > 2_000_000:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Logistic-regression-like linear layer trained with cross-entropy (AdamW, full batch) in PyTorch.

    Full-batch training on a few thousand feature vectors is fast and, unlike mini-batches, gives the same
    result for the same seed regardless of batch order.
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

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError("LinearProbe needs at least two classes")
        target = np.searchsorted(self.classes_, y)
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        layer = torch.nn.Linear(X.shape[1], len(self.classes_))
        with torch.no_grad():  # seeded init, independent of the global torch RNG
            bound = 1.0 / np.sqrt(X.shape[1])
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.zero_()
        with small_torch_threads(X.size, self.device):
            self._train(layer, X, target)
        self.n_features_in_ = X.shape[1]
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
        self.final_loss_ = float(loss.detach().cpu())

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        logits = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return logits

    def predict_proba(self, X):
        logits = self.decision_function(X)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


@dataclass(frozen=True)
class ClassifierInfo:
    name: str
    description: str
    scaled: bool  # needs a StandardScaler in front
    factory: Callable[[int], object]


def _bagging(rs):
    from sklearn.ensemble import BaggingClassifier

    return BaggingClassifier(n_estimators=20, random_state=rs, n_jobs=1)


def _tree(rs):
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=rs)


def _forest(rs):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, random_state=rs, n_jobs=1)


def _lda(rs):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    # shrinkage keeps the covariance invertible when features outnumber images
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")


def _knn(k):
    def make(rs):
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=k)

    return make


def _svm(rs):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    # SVC(probability=True) is deprecated in scikit-learn 1.9; this is its documented replacement
    return CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, gamma="scale", random_state=rs),
                                  method="sigmoid", cv=3, ensemble=False)


def _nb(rs):
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def _gb(rs):
    from sklearn.ensemble import HistGradientBoostingClassifier

    # the histogram variant: plain GradientBoosting is far too slow on 1000+ dimensional features;
    # min_samples_leaf=5 (default 20) so that the small benchmark sets (tens of images) can split at all
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, min_samples_leaf=5, early_stopping=False,
                                          random_state=rs)


def _probe(rs):
    return LinearProbe(random_state=rs)


_REGISTRY: dict[str, ClassifierInfo] = {
    info.name: info
    for info in [
        ClassifierInfo("bagging", "bagged decision trees (20)", False, _bagging),
        ClassifierInfo("decision-tree", "one decision tree", False, _tree),
        ClassifierInfo("random-forest", "random forest (200 trees)", False, _forest),
        ClassifierInfo("lda", "linear discriminant analysis with shrinkage", True, _lda),
        ClassifierInfo("knn1", "1-nearest neighbour", True, _knn(1)),
        ClassifierInfo("knn3", "3-nearest neighbours", True, _knn(3)),
        ClassifierInfo("knn5", "5-nearest neighbours", True, _knn(5)),
        ClassifierInfo("svm", "RBF support vector machine, sigmoid-calibrated", True, _svm),
        ClassifierInfo("naive-bayes", "Gaussian naive Bayes", False, _nb),
        ClassifierInfo("gradient-boosting", "histogram gradient boosting (200 rounds)", False, _gb),
        ClassifierInfo("linear-probe", "linear layer trained with cross-entropy (PyTorch)", True, _probe),
    ]
}


def list_classifiers() -> list[dict]:
    """Name, description and whether a StandardScaler precedes it, in registry order."""
    return [{"name": i.name, "description": i.description, "scaled": i.scaled} for i in _REGISTRY.values()]


def classifier_names() -> list[str]:
    return list(_REGISTRY)


def parse_classifier_names(spec: str) -> list[str]:
    """`"svm,lda"` or `"all"` -> validated list of names (order kept, duplicates dropped)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise DeepfakeError("No classifier given; use --classifier NAME[,NAME...] or 'all'.")
    if "all" in names:
        return classifier_names()
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise DeepfakeError(f"Unknown classifier {', '.join(map(repr, unknown))}; "
                            f"choose from {', '.join(_REGISTRY)} or 'all'.")
    return list(dict.fromkeys(names))


def needs_scaling(name: str) -> bool:
    return _info(name).scaled


def create_classifier(name: str, random_state: int = 0):
    """A fresh, unfitted estimator for `name` (see `list_classifiers`)."""
    return _info(name).factory(random_state)


def _info(name: str) -> ClassifierInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DeepfakeError(f"Unknown classifier '{name}'; choose from {', '.join(_REGISTRY)}.") from None
