"""What every reducer shares: the reconstruction error and the metadata hook."""

from __future__ import annotations

import numpy as np


class ReducerMixin:
    def reconstruction_error(self, X) -> dict:
        """Mean squared reconstruction error, and relative to the feature variance (0 = perfect)."""
        X = np.asarray(X, dtype=np.float64)
        R = self.inverse_transform(self.transform(X))
        mse = float(np.mean((X - R) ** 2))
        var = float(np.mean((X - X.mean(axis=0)) ** 2))
        return {"mse": mse, "relative": mse / var if var > 0 else 0.0}

    def fit_info(self) -> dict:
        """JSON-able facts about the fit that `reduce` adds to the reducer file's metadata."""
        return {}
