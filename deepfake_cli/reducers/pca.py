"""`pca`: principal component analysis, by number of components or by explained variance."""

from __future__ import annotations

from deepfake_cli.reducers import register_reducer
from deepfake_cli.registry import Entry, Param, lazy_attributes, lazy_class, optional

# the estimator lives in _pca.py, imported (with scikit-learn) only when one is built or
# loaded, so listing the reducers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.reducers._pca", "PCAReducer")

register_reducer(Entry(
    "pca", "principal component analysis", lazy_class("deepfake_cli.reducers._pca", "PCAReducer"),
    params=(Param("dim", None, "components to keep (default: 64, or fewer when there are fewer images or "
                               "features)", optional(int)),
            Param("variance", None, "instead of dim: keep the fewest components explaining this fraction (0..1)",
                  optional(float))),
    trusted_types=frozenset({"deepfake_cli.reducers.pca.PCAReducer",
                             "sklearn.decomposition._pca.PCA"}),
    capabilities=frozenset({"random_state"})))
