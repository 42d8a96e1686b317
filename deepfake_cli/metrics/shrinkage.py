"""The Ledoit-Wolf shrinkage intensity from an n x n Gram matrix: what `sklearn.covariance.ledoit_wolf_shrinkage`
gives, in O(n^2 d) instead of O(n d^2) (features of thousands of dimensions, tens to thousands of images).
Used by the LDA classifier (`classifiers/_lda.py`) and the novelty reference (`novelty.py`)."""

from __future__ import annotations

import numpy as np


def ledoit_wolf_shrinkage(X: np.ndarray, gram: np.ndarray | None = None) -> float:
    """The shrinkage s of (1 - s) * cov + s * mu * I, mu = trace(cov) / d, for the rows of X (centred here).

    `gram`: X X^T or X^T X of the *centred* X when the caller has it (their squared entries sum to the same);
    else the smaller of the two is computed.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    if d == 1:
        return 0.0
    X = X - X.mean(axis=0)
    rows = (X * X).sum(axis=1)                    # per image: sum of squares over features
    trace = rows.sum() / n                        # trace of the empirical covariance
    mu = trace / d
    beta_ = float((rows * rows).sum())            # sum of the entries of X2^T X2 (X2 = X**2)
    if gram is None:
        gram = X @ X.T if n <= d else X.T @ X
    delta_ = float((gram * gram).sum()) / n ** 2  # sum of the squared entries of X^T X, / n^2
    beta = 1.0 / (d * n) * (beta_ / n - delta_)
    delta = (delta_ - 2.0 * mu * trace + d * mu ** 2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)
