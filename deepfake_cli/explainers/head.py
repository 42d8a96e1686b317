"""A model's pipeline as one affine function of the backbone feature, where it is one: margin(f) = w . f + b.

The map of the exact and token paths decomposes the model's *margin*: the unbounded score its calibration
reads (`metrics.calibration`: the final step's `decision_function`, or the logit of its `predict_proba`),
so that p_fake = calibration(margin) and the calibration is monotone. The pipeline is reduce -> scale ->
clf (`stages.train`); it is affine when the reduce step is the identity (`passthrough` or the `none`
reducer), the scale step a StandardScaler (or `passthrough`), and the classifier linear: LDA, the linear
probe (two logits: their difference), a zoo model's linear head, or the SVM with `kernel=linear` (its
sigmoid calibration is affine in the SVM's decision value). The folded (w, b) are checked against the
model's own margin on random features before use: a pipeline this module misreads is not explained as
exact, it falls to occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SATURATED = 30.0  # |logit| past this: predict_proba rounds to 0 or 1 and the logit is clipped, not linear


@dataclass
class Affine:
    """margin(f) = f @ w + b on the backbone's feature f (before reduce and scale)."""

    w: np.ndarray      # (dim,) float64
    b: float
    source: str        # "decision_function" | "logit_p": which margin it reproduces
    classifier: str    # what the classifier was read as


def margin_source(model) -> str:
    """Which margin the model's p_fake goes through: the calibration's input, else the logit of the
    classifier's own p(fake) (`Model.p_fake` without calibration)."""
    cal = model.meta.get("calibration") or {}
    if cal and cal.get("method", "none") != "none":
        return str(cal.get("input", "logit_p"))
    return "logit_p"


def model_margin(model, X: np.ndarray) -> np.ndarray:
    """The margin `margin_source(model)` names, of feature rows X (float32, as `Model.p_fake` feeds them)."""
    from deepfake_cli.metrics.calibration import _margin_of

    return _margin_of(model.estimator, np.asarray(X, dtype=np.float32), margin_source(model))


def _reduce_is_identity(step) -> bool:
    if step in (None, "passthrough"):
        return True
    inner = getattr(step, "estimator", step)  # FrozenEstimator wraps the fitted reducer
    return type(inner).__name__ == "IdentityReducer"


def _classifier_affine(clf) -> tuple[np.ndarray, float, str, str] | None:
    """(w, b, which margin it is, name) of the final step, on its own input; None when it is not linear."""
    name = type(clf).__name__
    classes = list(getattr(clf, "classes_", []))
    if classes != [0, 1]:
        return None
    if name == "SVMClassifier":
        if getattr(clf, "kernel", None) != "linear":
            return None
        try:
            cc = clf.estimator_.calibrated_classifiers_[0]
            base, cal = cc.estimator, cc.calibrators[0]
            coef, icpt = np.asarray(base.coef_, dtype=np.float64), np.asarray(base.intercept_, dtype=np.float64)
            a, c = float(cal.a_), float(cal.b_)
        except (AttributeError, IndexError):
            return None
        if coef.ndim != 2 or coef.shape[0] != 1:
            return None
        # scikit-learn's sigmoid calibration: p = 1 / (1 + exp(a * d + c)), so logit p = -(a * d + c)
        return -a * coef[0], -(a * float(icpt[0]) + c), "logit_p", "linear SVM (sigmoid-calibrated)"
    coef, icpt = getattr(clf, "coef_", None), getattr(clf, "intercept_", None)
    if coef is None or icpt is None or name not in ("ShrinkageLDA", "LinearDiscriminantAnalysis", "LinearProbe",
                                                    "LinearHead"):
        return None
    coef, icpt = np.asarray(coef, dtype=np.float64), np.atleast_1d(np.asarray(icpt, dtype=np.float64))
    if coef.ndim == 1:
        coef = coef[None]
    if coef.shape[0] == 2:  # one logit per class (the linear probe): the margin is their difference
        return coef[1] - coef[0], float(icpt[1] - icpt[0]), "decision_function", name
    if coef.shape[0] != 1:
        return None
    # binary LDA and linear heads: decision = X @ coef[0] + intercept[0], and predict_proba its sigmoid
    return coef[0], float(icpt[0]), "decision_function", name


def affine_head(model, dim: int) -> tuple[Affine | None, str]:
    """(the model's margin as an affine function of a `dim`-wide backbone feature, or None; why not)."""
    pipe = model.estimator
    try:
        steps = dict(pipe.named_steps)
    except AttributeError:
        return None, "the model is not a reduce -> scale -> classifier pipeline"
    if not _reduce_is_identity(steps.get("reduce")):
        return None, "a reducer sits between the backbone and the classifier"
    scale = steps.get("scale")
    clf = steps.get("clf")
    found = _classifier_affine(clf)
    if found is None:
        return None, f"classifier {model.meta.get('classifier') or type(clf).__name__} is not linear"
    w, b, _, name = found
    if w.shape[0] != dim:
        return None, f"the classifier takes {w.shape[0]} features, the backbone gives {dim}"
    if scale not in (None, "passthrough"):
        if type(scale).__name__ != "StandardScaler":
            return None, f"scale step {type(scale).__name__} is not a StandardScaler"
        mean = np.zeros(dim) if getattr(scale, "mean_", None) is None else np.asarray(scale.mean_, dtype=np.float64)
        sd = np.ones(dim) if getattr(scale, "scale_", None) is None else np.asarray(scale.scale_, dtype=np.float64)
        b = b - float(np.sum(w * mean / sd))
        w = w / sd
    source = margin_source(model)
    head = Affine(w=w, b=b, source=source, classifier=name)
    ok, why = _verified(model, head, dim)
    return (head, "") if ok else (None, why)


def _verified(model, head: Affine, dim: int) -> tuple[bool, str]:
    """Check the folded head against the model's own margin on random features around the training mean."""
    pipe = model.estimator
    scale = dict(pipe.named_steps).get("scale")
    rng = np.random.default_rng(0)
    centre = getattr(scale, "mean_", None)
    spread = getattr(scale, "scale_", None)
    centre = np.zeros(dim) if centre is None else np.asarray(centre)
    spread = np.ones(dim) if spread is None else np.asarray(spread)
    X = (centre + rng.normal(0, 0.5, size=(16, dim)) * spread).astype(np.float32)
    try:
        want = model_margin(model, X)
    except Exception as exc:  # a model this module misreads: say so, never fail the run
        return False, f"its margin could not be evaluated ({type(exc).__name__})"
    got = X.astype(np.float64) @ head.w + head.b
    keep = np.abs(want) < SATURATED if head.source == "logit_p" else np.ones(len(want), dtype=bool)
    if not keep.any():
        return False, "its probabilities saturate, so the margin is not recoverable"
    err = np.abs(got[keep] - want[keep]).max()
    if err > 1e-6 * (1 + np.abs(want[keep]).max()) + 1e-7:
        return False, f"the classifier's margin is not the affine function read from it (off by {err:.2g})"
    return True, ""
