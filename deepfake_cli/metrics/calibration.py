"""Calibrated p(fake): a map from a classifier's raw score to a probability, fitted on the validation part.

A classifier's own `predict_proba` is often not a probability one can read: LDA on thousands of dimensions,
naive Bayes and trees give 0.0 or 1.0 for most images, so "p_fake 0.99" says nothing about how often such
an image is fake. `train` and `finetune` fit, on the validation part (images the saved classifier did not
see), a monotone map from the classifier's *margin* to p(fake), record it in the model's metadata
(`meta["calibration"]`), and choose the decision threshold on the calibrated validation scores: one step
for every model kind, `calibrate_and_threshold`.
`artifacts.Model.p_fake` applies it; `Model.score` is still the classifier's raw p(fake).

The margin is the classifier's own unbounded score for "fake": `decision_function` where the final step
has one (LDA, the linear probe, gradient boosting), else the logit of its
`predict_proba` clipped to [1e-15, 1 - 1e-15] (kNN, forests, naive Bayes, the sigmoid-calibrated SVM).
Using the decision function keeps apart the images whose `predict_proba` rounds to exactly 1.0.

Methods (`train --calibration`):
* `sigmoid` (the default): Platt scaling, p = 1 / (1 + exp(-(a * margin + b))), fitted by maximum
  likelihood with Platt's smoothed targets ((n_fake + 1) / (n_fake + 2) for fakes, 1 / (n_real + 2) for
  reals), so a validation part that the classifier separates perfectly does not yield a = infinity, and
  with a >= 1e-3 (in units of the margin's spread): the map never reverses the classifier's ranking, so
  ROC AUC is unchanged and a classifier that ranks validation images no better than chance gets p close to
  the validation base rate. Two parameters are what a validation part of tens of images can support.
* `isotonic`: a monotone step function (scikit-learn's IsotonicRegression, interpolated linearly between
  its knots, clipped outside them). More flexible, but it needs hundreds of validation images per class:
  on tens it memorises them, maps ranges of scores to one value (ties: AUC and the threshold change) and
  reports 0 or 1 on the edges. Offered for large validation parts.
* `none`: p_fake is the classifier's own probability (as in models written before calibration existed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("sigmoid", "isotonic", "none")
DEFAULT = "sigmoid"
EPS = 1e-15
MIN_SLOPE = 1e-3  # in units of the validation margins' standard deviation


def margin(estimator, X) -> tuple[np.ndarray, str]:
    """(the raw score for "fake" on an unbounded scale, where it came from: "decision_function" | "logit_p")."""
    classes = list(getattr(estimator, "classes_", []))
    if hasattr(estimator, "decision_function") and classes == [0, 1]:
        m = np.asarray(estimator.decision_function(X), dtype=np.float64)
        if m.ndim == 1:
            return m, "decision_function"
    return logit(raw_p_fake(estimator, X)), "logit_p"


def raw_p_fake(estimator, X) -> np.ndarray:
    proba = estimator.predict_proba(X)
    return np.asarray(proba[:, list(estimator.classes_).index(1)], dtype=np.float64)


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _margin_of(estimator, X, source: str) -> np.ndarray:
    if source == "decision_function":
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    return logit(raw_p_fake(estimator, X))


def fit(method: str, margins, y) -> dict:
    """Fit a calibration map on (margins, labels 0/1); a JSON-able dict that `apply` reads back."""
    from deepfake_cli.errors import DeepfakeError

    if method not in METHODS:
        raise DeepfakeError(f"Unknown calibration '{method}'; choose from {', '.join(METHODS)}.")
    m = np.asarray(margins, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if method == "none":
        return {"method": "none"}
    if method == "sigmoid":
        a, b = _platt(m, y)
        return {"method": "sigmoid", "a": a, "b": b}
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(m, y)
    return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def _platt(m: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling with smoothed targets and a slope bounded below by MIN_SLOPE (on standardised margins)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    c = float(m.mean())
    s = float(m.std())
    s = s if s > 0 and np.isfinite(s) else 1.0
    z = (m - c) / s

    def nll(w):
        f = w[0] * z + w[1]
        loss = -(t * log_expit(f) + (1 - t) * log_expit(-f)).sum()
        r = expit(f) - t
        return loss, np.array([(r * z).sum(), r.sum()])

    prior = (n_pos + 1.0) / (n_pos + n_neg + 2.0)
    res = minimize(nll, x0=np.array([1.0, np.log(prior / (1 - prior))]), jac=True, method="L-BFGS-B",
                   bounds=[(MIN_SLOPE, None), (None, None)])
    A, B = (float(v) for v in res.x)
    return A / s, B - A * c / s


def apply(calibration: dict | None, margins) -> np.ndarray:
    """p(fake) from margins through a fitted map (`fit`); the margins' sigmoid when there is none."""
    from scipy.special import expit

    m = np.asarray(margins, dtype=np.float64)
    method = (calibration or {}).get("method", "none")
    if method == "sigmoid":
        return expit(float(calibration["a"]) * m + float(calibration["b"]))
    if method == "isotonic":
        return np.interp(m, np.asarray(calibration["x"], dtype=np.float64), np.asarray(calibration["y"], dtype=np.float64))
    return expit(m)


def calibrated_p_fake(estimator, calibration: dict | None, X) -> np.ndarray:
    """The model's p(fake): through the recorded calibration, else the classifier's own predict_proba."""
    if not calibration or calibration.get("method", "none") == "none":
        return raw_p_fake(estimator, X)
    return apply(calibration, _margin_of(estimator, X, calibration.get("input", "logit_p")))


def expected_calibration_error(y, p, bins: int = 10) -> float:
    """ECE: over equal-width bins of p, the mean |share of fakes - mean p| weighted by the bin's size."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(y):
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        sel = which == b
        total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / len(y))


NO_VALIDATION_NOTE = ("too few images for a validation part with both classes; p_fake not calibrated, threshold fixed "
                      "at 0.5")


@dataclass
class Decision:
    """What the validation part decides for a model: its calibration, threshold and validation scores."""

    threshold: float
    calibration: dict
    validation: dict
    rule: str
    notes: list = field(default_factory=list)


def calibrate_and_threshold(estimator, X_val, y_val, method: str = DEFAULT) -> Decision:
    """Fit `method`'s calibration on the validation rows (X_val, y_val), then choose the threshold on the
    calibrated p_fake: the one step every model kind (train, finetune) takes. Without both classes in the
    validation part: no calibration, threshold 0.5, and a note saying so."""
    from deepfake_cli.metrics.operating import thresholds_at_fpr
    from deepfake_cli.metrics.scoring import binary_scores, choose_threshold

    y_val = np.asarray(y_val).astype(int)
    if len(set(y_val.tolist())) < 2:
        validation = {"threshold": 0.5}
        cal = {"method": "none", "reason": "no validation part with both classes"}
        return Decision(0.5, cal, validation, _rule(cal), [NO_VALIDATION_NOTE])
    raw = raw_p_fake(estimator, X_val)
    margins, source = margin(estimator, X_val)
    cal = dict(fit(method, margins, y_val), input=source, fitted_on="validation",
               n=int(len(y_val)), n_real=int((y_val == 0).sum()), n_fake=int((y_val == 1).sum()))
    p_val = raw if method == "none" else apply(cal, margins)
    threshold = choose_threshold(y_val, p_val)
    validation = binary_scores(y_val, p_val, threshold)
    validation["accuracy_at_0_5"] = binary_scores(y_val, p_val, 0.5)["accuracy"]
    # reliability on the validation part (in-sample for the calibration): 10 equal-width bins
    validation["ece"] = expected_calibration_error(y_val, p_val)
    validation["ece_uncalibrated"] = expected_calibration_error(y_val, raw)
    validation["threshold"] = threshold
    # the cuts that keep false alarms at 1% / 5% of the validation reals: eval's deployed reading
    validation["operating_thresholds"] = thresholds_at_fpr(p_val[y_val == 0])
    return Decision(float(threshold), cal, validation, _rule(cal))


def _rule(cal: dict) -> str:
    return "max balanced accuracy on validation p_fake" + (" (calibrated)" if cal["method"] != "none" else "")
