"""`ShrinkageLDA`: scikit-learn's shrinkage LDA (`solver="lsqr"`), solved without a d x d matrix, kept as coef_.

scikit-learn's `LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)` builds the pooled within-class
covariance (d x d), solves it with an SVD least-squares routine and keeps it in `covariance_`. On 3,088-d
features that is a 76 MB array in every model file and half a minute of O(d^3) work, while prediction
needs only `coef_` and `intercept_`.

This estimator computes the same covariance estimate, term by term (per-class empirical covariance,
Ledoit-Wolf shrinkage on per-class standardised features for "auto", `shrunk_covariance` for a number,
none for None), but uses its structure: the pooled covariance is `U U^T + diag(delta)` with U holding the
centred training rows (d x n) and delta > 0 whenever there is shrinkage. With fewer images than
dimensions the solve goes through the Woodbury identity (an n x n Cholesky, O(n^2 d)); otherwise through
a d x d Cholesky (the matrix is symmetric positive definite, so no SVD is needed). Without shrinkage the
covariance is singular when n <= d and the minimum-norm least-squares solution is used, as scikit-learn's
`lstsq` gives. The fitted estimator keeps `coef_`, `intercept_`, `classes_`, `priors_` and
`shrinkage_` (the per-class shrinkage used): what `decision_function` / `predict_proba` need and what
describes the fit, nothing of size d x d.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from deepfake_cli.metrics.shrinkage import ledoit_wolf_shrinkage

_TINY = 10 * np.finfo(np.float64).eps  # scikit-learn's `_handle_zeros_in_scale` limit


class ShrinkageLDA(ClassifierMixin, BaseEstimator):
    """Linear discriminant analysis with a shrunk covariance; stores only the linear decision function.

    `shrinkage`: "auto" (Ledoit-Wolf), a number in [0, 1], or None. Gives the decision function of
    `LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage)` (to floating-point rounding; the fit
    is done in float64 whatever the input dtype).
    """

    def __init__(self, shrinkage="auto"):
        self.shrinkage = shrinkage

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_min_samples=2, dtype=[np.float64, np.float32])
        X = np.asarray(X, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = unique_labels(y)
        n, d = X.shape
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"ShrinkageLDA needs at least two classes; got {k} class")
        if n == k:
            raise ValueError("The number of samples must be more than the number of classes.")
        shrink = self.shrinkage
        if not (shrink is None or shrink == "auto" or (isinstance(shrink, Real) and 0 <= shrink <= 1)):
            raise ValueError(f"shrinkage must be 'auto', a number in [0, 1] or None; got {shrink!r}")
        idx = np.searchsorted(self.classes_, y)
        counts = np.bincount(idx, minlength=k)
        self.priors_ = counts / n
        means = np.zeros((k, d))
        blocks, delta, used = [], np.zeros(d), []
        for g in range(k):
            Xg = X[idx == g]
            means[g] = Xg.mean(axis=0)
            Xc = Xg - means[g]
            ng = len(Xg)
            if shrink == "auto":
                std = np.sqrt((Xc * Xc).mean(axis=0))
                scale = np.where(std < _TINY, 1.0, std)
                Z = Xc / scale
                s = ledoit_wolf_shrinkage(Z)
                mu = float((Z * Z).sum() / ng / d)
                delta += self.priors_[g] * s * mu * scale ** 2
            elif shrink is None:
                s = 0.0
            else:
                s = float(shrink)
                mu = float((Xc * Xc).sum() / ng / d)
                delta += self.priors_[g] * s * mu
            used.append(float(s))
            blocks.append(np.sqrt(self.priors_[g] * (1.0 - s) / ng) * Xc)
        U = np.concatenate(blocks, axis=0).T  # (d, n): covariance = U U^T + diag(delta)
        C = self._solve(U, delta, means.T)    # (d, k) = covariance^-1 means^T
        coef = C.T
        intercept = -0.5 * np.einsum("kd,kd->k", means, coef) + np.log(self.priors_)
        if k == 2:
            coef = (coef[1] - coef[0])[None, :]
            intercept = np.array([intercept[1] - intercept[0]])
        self.coef_ = coef
        self.intercept_ = intercept
        self.shrinkage_ = used
        return self

    @staticmethod
    def _solve(U: np.ndarray, delta: np.ndarray, B: np.ndarray) -> np.ndarray:
        from scipy import linalg

        d, n = U.shape
        if np.all(delta > 0):
            if n < d:  # Woodbury: (D + U U^T)^-1 = D^-1/2 (I - V (I + V^T V)^-1 V^T) D^-1/2, V = D^-1/2 U
                r = 1.0 / np.sqrt(delta)
                V = U * r[:, None]
                Bs = B * r[:, None]
                G = np.eye(n) + V.T @ V
                return (Bs - V @ linalg.cho_solve(linalg.cho_factor(G, lower=True), V.T @ Bs)) * r[:, None]
            cov = U @ U.T
            cov[np.diag_indices(d)] += delta
            try:
                return linalg.cho_solve(linalg.cho_factor(cov, lower=True), B)
            except linalg.LinAlgError:
                return linalg.lstsq(cov, B)[0]
        # no shrinkage: covariance U U^T, singular when n <= d; the minimum-norm least-squares solution
        Q, s, _ = linalg.svd(U, full_matrices=False)
        ev = s ** 2
        keep = ev > ev.max(initial=0.0) * max(d, n) * np.finfo(np.float64).eps
        Q, ev = Q[:, keep], ev[keep]
        return Q @ ((Q.T @ B) / ev[:, None])

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X):
        decision = self.decision_function(X)
        if len(self.classes_) == 2:
            from scipy.special import expit

            p = expit(decision)
            return np.stack([1 - p, p], axis=1)
        from scipy.special import softmax

        return softmax(decision, axis=1)

    def predict_log_proba(self, X):
        proba = self.predict_proba(X)
        proba[proba == 0.0] += np.finfo(proba.dtype).smallest_normal
        return np.log(proba)

    def predict(self, X):
        decision = self.decision_function(X)
        if decision.ndim == 1:
            return self.classes_[(decision > 0).astype(int)]
        return self.classes_[np.argmax(decision, axis=1)]
