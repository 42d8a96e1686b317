"""`LinearHead`, the estimator of the `linear-head` entry (linear_head.py describes it).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.registry import public_module


@public_module("deepfake_cli.classifiers.linear_head")
class LinearHead(ClassifierMixin, BaseEstimator):
    """p(fake) = sigmoid(x . weight + bias) with given weights; classes are fixed: 0 real, 1 fake.

    `weight`: the head's (d,) or (1, d) weights, `bias`: its scalar bias (a `torch.nn.Linear(d, 1)` state
    dict's tensors as arrays); `source`: where they came from (a zoo entry, a file and its sha256).
    `fit(X)` checks that X has d columns and keeps the weights as they are; `y` is ignored.
    """

    def __init__(self, weight=None, bias=None, source: str = ""):
        self.weight = weight
        self.bias = bias
        self.source = source

    def fit(self, X, y=None):
        if self.weight is None or self.bias is None:
            raise ValueError("linear-head has fixed, published weights and learns nothing: use a zoo entry "
                             "(`deepfake models`, `deepfake import-head`) or train another classifier")
        coef = np.asarray(self.weight, dtype=np.float64).reshape(1, -1)
        intercept = np.asarray(self.bias, dtype=np.float64).reshape(-1)
        if intercept.shape != (1,):
            raise ValueError(f"linear-head takes one bias, got shape {intercept.shape}")
        validate_data(self, X, dtype=np.float64, ensure_min_samples=0)
        if self.n_features_in_ != coef.shape[1]:
            raise ValueError(f"the head takes {coef.shape[1]} features, X has {self.n_features_in_}")
        self.coef_, self.intercept_ = coef, intercept
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X):
        """The head's logit for each row (its own output, before the sigmoid)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X):
        z = self.decision_function(X)
        # sigmoid without overflow for large |z|
        fake = np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
        return np.column_stack([1.0 - fake, fake])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]
