"""Outputs shared by our classifiers that compute class logits (`_logits(X)`): the binary margin,
softmax probabilities and the arg-max class, computed in numpy so prediction needs no torch."""

from __future__ import annotations

import numpy as np


class SoftmaxOutputsMixin:
    """`decision_function`, `predict_proba` and `predict` from `self._logits(X)` and `self.classes_`."""

    def decision_function(self, X):
        logits = self._logits(X)
        # two classes: the margin of class 1 over class 0, as scikit-learn's binary classifiers give it
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        logits = self._logits(X)  # first: it raises NotFittedError before classes_ is looked up
        return self.classes_[np.argmax(logits, axis=1)]
