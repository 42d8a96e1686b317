"""`PCAReducer`, the estimator of the `pca` entry (pca.py).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.reducers._base import ReducerMixin
from deepfake_cli.registry import public_module


@public_module("deepfake_cli.reducers.pca")
class PCAReducer(ReducerMixin, TransformerMixin, BaseEstimator):
    """Keep `dim` components, or as many as explain `variance` (0..1) of the variance (default: 64 or fewer)."""

    def __init__(self, dim: int | None = None, variance: float | None = None, random_state: int | None = 0):
        self.dim = dim
        self.variance = variance
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        X = validate_data(self, X, dtype=np.float64)
        limit = min(X.shape)
        if self.dim is not None and self.variance is not None:
            raise ValueError("give either dim or variance, not both")
        if self.dim is not None:
            if not 1 <= self.dim <= limit:
                # the n_samples/n_features wording is what scikit-learn's estimator checks look for
                raise ValueError(f"dim must be between 1 and {limit} for PCA (images: n_samples = {X.shape[0]}, "
                                 f"features: n_features = {X.shape[1]}), got {self.dim}")
            n = int(self.dim)
        elif self.variance is not None:
            if not 0 < self.variance < 1:
                raise ValueError(f"variance must be between 0 and 1 (exclusive), got {self.variance}")
            n = float(self.variance)
        else:
            n = min(limit, 64)
        self.pca_ = PCA(n_components=n, svd_solver="full", random_state=self.random_state).fit(X)
        self.n_components_ = int(self.pca_.n_components_)
        self.explained_variance_ratio_ = float(np.sum(self.pca_.explained_variance_ratio_))
        return self

    def transform(self, X):
        check_is_fitted(self, "pca_")
        return self.pca_.transform(validate_data(self, X, reset=False, dtype=np.float64))

    def inverse_transform(self, X):
        check_is_fitted(self, "pca_")
        return self.pca_.inverse_transform(np.asarray(X, dtype=np.float64))
