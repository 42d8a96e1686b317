"""`IdentityReducer`, the estimator of the `none` entry (identity.py).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.reducers._base import ReducerMixin
from deepfake_cli.registry import public_module


@public_module("deepfake_cli.reducers.identity")
class IdentityReducer(ReducerMixin, TransformerMixin, BaseEstimator):
    """Returns its input (validated, never copied or converted when already a numeric array)."""

    def fit(self, X, y=None):
        X = validate_data(self, X)
        self.n_components_ = self.n_features_in_
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        return validate_data(self, X, reset=False)

    def inverse_transform(self, X):
        check_is_fitted(self, "n_features_in_")
        return validate_data(self, X, reset=False)
