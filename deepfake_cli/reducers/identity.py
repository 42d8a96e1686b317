"""`none`: features pass through unchanged, so that every model has the same pipeline shape."""

from __future__ import annotations

from deepfake_cli.reducers import register_reducer
from deepfake_cli.registry import Entry, lazy_attributes, lazy_class

# the estimator lives in _identity.py, imported (with scikit-learn) only when one is built or
# loaded, so listing the reducers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.reducers._identity", "IdentityReducer")

register_reducer(Entry(
    "none", "no reduction: features pass through unchanged",
    lazy_class("deepfake_cli.reducers._identity", "IdentityReducer"),
    trusted_types=frozenset({"deepfake_cli.reducers.identity.IdentityReducer"})))
