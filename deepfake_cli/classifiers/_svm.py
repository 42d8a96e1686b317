"""`SVMClassifier`: a kernel SVM with calibrated probabilities that stays affordable on large training sets.

An exact kernel SVM (libsvm's `SVC`) costs between O(n^2) and O(n^3) in the number of training images
and keeps up to all of them as support vectors: on 1,280-d features and 2 cores it fits 1,000 images in
0.6 s, 5,000 in 19 s and 20,000 in 440 s (about n^2.2; benchmarks/bench_train.py, docs/RESULTS.md), so
50,000 would take about an hour. Past `max_exact` training images (`solver="auto"`)
the kernel is approximated instead: a Nystroem feature map of `n_components` landmarks drawn from the
training images, then a linear SVM (liblinear, hinge loss) on the mapped features, which is linear in n.
This is the same trade as scikit-learn's own `"auto"` solvers (PCA's, HistGradientBoosting's early
stopping): the choice depends on the data size, is made in `fit`, and is recorded (`solver_`, and
`fit_info()` for the model file's metadata). Both paths give probabilities through the same 3-fold
sigmoid calibration (`CalibratedClassifierCV`, what `SVC(probability=True)` did).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

SOLVERS = ("auto", "exact", "nystroem")
KERNELS = ("rbf", "linear", "poly", "sigmoid")


class SVMClassifier(ClassifierMixin, BaseEstimator):
    """Kernel SVM, sigmoid-calibrated; `solver="auto"` approximates the kernel past `max_exact` images.

    `C`, `gamma` ("scale", "auto" or a number), `kernel` mean what they mean for `sklearn.svm.SVC`
    (degree 3 and coef0 0 for poly/sigmoid, as SVC's defaults). `solver`: "exact" (SVC), "nystroem"
    (Nystroem map with `n_components` landmarks + linear SVM; for the linear kernel, the linear SVM on the
    features themselves) or "auto" (exact up to `max_exact` training images, nystroem above).
    """

    def __init__(self, C: float = 1.0, gamma="scale", kernel: str = "rbf", solver: str = "auto",
                 max_exact: int = 20_000, n_components: int = 2000, random_state: int | None = None):
        self.C = C
        self.gamma = gamma
        self.kernel = kernel
        self.solver = solver
        self.max_exact = max_exact
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.calibration import CalibratedClassifierCV

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = unique_labels(y)
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        n = X.shape[0]
        solver = self.solver if self.solver != "auto" else ("exact" if n <= int(self.max_exact) else "nystroem")
        base = self._exact() if solver == "exact" else self._approximate(X)
        self.estimator_ = CalibratedClassifierCV(base, method="sigmoid", cv=3, ensemble=False).fit(X, y)
        self.solver_ = solver
        self.n_fit_ = int(n)
        return self

    def _exact(self):
        from sklearn.svm import SVC

        return SVC(kernel=self.kernel, C=float(self.C), gamma=self.gamma, random_state=self.random_state)

    def _approximate(self, X):
        from sklearn.kernel_approximation import Nystroem
        from sklearn.pipeline import make_pipeline
        from sklearn.svm import LinearSVC

        # hinge loss, as the exact SVM; liblinear's dual solver needs more than its default 1,000 passes here
        linear = LinearSVC(C=float(self.C), loss="hinge", dual=True, max_iter=10_000, random_state=self.random_state)
        if self.kernel == "linear":
            return linear
        self.gamma_ = _gamma(self.gamma, X)
        # the calibration folds fit on two thirds of the images; more landmarks than rows is the full kernel
        self.n_landmarks_ = max(1, min(int(self.n_components), (2 * X.shape[0]) // 3))
        return make_pipeline(Nystroem(kernel=self.kernel, gamma=self.gamma_, n_components=self.n_landmarks_,
                                      random_state=self.random_state), linear)

    def predict_proba(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(validate_data(self, X, reset=False, dtype=np.float64))

    def predict(self, X):
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def fit_info(self) -> dict:
        """What the model file's metadata records: which solver ran, on how many images, and why."""
        check_is_fitted(self, "estimator_")
        why = (f"{self.n_fit_} training images {'<=' if self.solver_ == 'exact' else '>'} max_exact="
               f"{int(self.max_exact)}" if self.solver == "auto" else f"solver={self.solver}")
        info = {"solver": self.solver_, "n_fit": self.n_fit_, "why": why}
        if self.solver_ == "nystroem" and self.kernel != "linear":
            info.update(n_components=int(self.n_landmarks_), gamma=float(self.gamma_))
        if self.solver == "auto" and self.solver_ == "nystroem":
            approx = (f"Nystroem kernel approximation ({info['n_components']} landmarks) + linear SVM"
                      if self.kernel != "linear" else "linear SVM (liblinear)")
            info["note"] = (f"svm: {self.n_fit_} training images > max_exact={int(self.max_exact)}, so {approx}; "
                            "--param solver=exact for the exact SVM")
        return info


def _gamma(gamma, X) -> float:
    """SVC's reading of gamma: "scale" = 1 / (n_features * X.var()), "auto" = 1 / n_features, or the number."""
    if gamma == "scale":
        var = float(X.var())
        return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
    if gamma == "auto":
        return 1.0 / X.shape[1]
    return float(gamma)
