"""`ZeroShotClassifier`, the estimator of the `zero-shot` entry (zero_shot.py describes it).

Imported only when one is built or a model file names it, so that listing the registry loads no
scikit-learn; the class keeps the public module's name (`registry.public_module`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from deepfake_cli.registry import public_module



@public_module("deepfake_cli.classifiers.zero_shot")
class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Scores CLIP image embeddings against text prompts; classes are fixed: 0 real, 1 fake.

    `prompts`: a prompts file (see `deepfake_cli.backbones.prompts`), None for the defaults; `weights`: the CLIP
    checkpoint when the usual lookup would not find it; `backbone`: the features' backbone identity
    (set by train). `y` given to `fit` is ignored.
    """

    def __init__(self, prompts: str | None = None, weights: str | None = None, backbone: dict | None = None):
        self.prompts = prompts
        self.weights = weights
        self.backbone = backbone

    def fit(self, X, y=None):
        from deepfake_cli.backbones.prompts import clip_columns, embed_prompts, read_prompts

        validate_data(self, X, dtype=np.float64, ensure_min_samples=0)
        if self.backbone is None:
            raise ValueError("the zero-shot classifier needs the backbone of its features (train passes it from "
                             "the feature file); it cannot learn prompts from data")
        _, _, columns = clip_columns(self.backbone)
        if columns[1] > self.n_features_in_:
            raise ValueError(f"the backbone's embedding columns {columns} do not fit n_features = {self.n_features_in_}")
        emb = embed_prompts(self.backbone, read_prompts(self.prompts, need_labels=True), self.weights)
        self.prompt_texts_ = list(emb.texts)
        self.prompt_labels_ = np.array([1 if lab == "fake" else 0 for lab in emb.labels], dtype=np.int64)
        self.prompt_embeddings_ = emb.embeddings
        self.logit_scale_ = float(emb.logit_scale)
        self.columns_ = tuple(int(c) for c in emb.columns)
        self.text_weights_id_ = emb.weights_id
        self.classes_ = np.array([0, 1])
        return self

    def _logits(self, X) -> np.ndarray:
        from deepfake_cli.backbones.prompts import similarities

        check_is_fitted(self, "prompt_embeddings_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.logit_scale_ * similarities(X, self.columns_, self.prompt_embeddings_)

    def similarities(self, X) -> np.ndarray:
        """(n, prompts) cosine similarity of each image with each prompt."""
        return self._logits(X) / self.logit_scale_

    def predict_proba(self, X):
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        p = e / e.sum(axis=1, keepdims=True)
        fake = p[:, self.prompt_labels_ == 1].sum(axis=1)
        return np.column_stack([1.0 - fake, fake])

    def decision_function(self, X):
        p = np.clip(self.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
        return np.log(p) - np.log1p(-p)

    def predict(self, X):
        p = self.predict_proba(X)[:, 1]
        return self.classes_[(p > 0.5).astype(int)]
