"""`PromptSimilarities`, the estimator of the `prompts` entry (prompts.py describes it).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.reducers._base import ReducerMixin
from deepfake_cli.registry import public_module


@public_module("deepfake_cli.reducers.prompts")
class PromptSimilarities(ReducerMixin, TransformerMixin, BaseEstimator):
    """X -> [X, cos(CLIP embedding, prompt) per prompt] (or only the similarities with `keep=False`).

    The prompts (file lines, labelled or not; default: the zero-shot pair) are embedded at `fit` from the
    text tower of the features' backbone (`backbone`, handed over by reduce/train from the feature file).
    """

    def __init__(self, prompts: str | None = None, keep: bool = True, weights: str | None = None,
                 backbone: dict | None = None):
        self.prompts = prompts
        self.keep = keep
        self.weights = weights
        self.backbone = backbone

    def fit(self, X, y=None):
        from deepfake_cli.backbones.prompts import embed_prompts, read_prompts

        validate_data(self, X, dtype=np.float64, ensure_min_samples=0)
        if self.backbone is None:
            raise ValueError("the prompts transform needs the backbone of its features (reduce passes it from the "
                             "feature file)")
        emb = embed_prompts(self.backbone, read_prompts(self.prompts, need_labels=False), self.weights)
        if emb.columns[1] > self.n_features_in_:
            raise ValueError(f"the backbone's embedding columns {emb.columns} do not fit n_features = "
                             f"{self.n_features_in_}")
        self.prompt_texts_ = list(emb.texts)
        self.prompt_embeddings_ = emb.embeddings
        self.columns_ = tuple(int(c) for c in emb.columns)
        self.n_components_ = (self.n_features_in_ if self.keep else 0) + len(self.prompt_texts_)
        return self

    def transform(self, X):
        from deepfake_cli.backbones.prompts import similarities

        check_is_fitted(self, "prompt_embeddings_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        S = similarities(X, self.columns_, self.prompt_embeddings_)
        return np.hstack([X, S]) if self.keep else S

    def inverse_transform(self, X):
        """The original features back (the similarity columns dropped); NaN where `keep=False` left none."""
        check_is_fitted(self, "prompt_embeddings_")
        X = np.asarray(X, dtype=np.float64)
        if self.keep:
            return X[:, :self.n_features_in_]
        return np.full((X.shape[0], self.n_features_in_), np.nan)

    def reconstruction_error(self, X) -> dict:
        if not self.keep:  # nothing of the features is kept, so there is nothing to reconstruct
            return {"mse": float("nan"), "relative": float("nan")}
        return super().reconstruction_error(X)

    def fit_info(self) -> dict:
        return {"prompts": list(self.prompt_texts_), "clip_columns": list(self.columns_)}
