"""Operating points: what a detector does at a false-alarm budget, the way the field reports it.

A detector is deployed at a false-positive rate (reals flagged as fake), not at p = 0.5. Two readings,
both named wherever they are shown:

* **oracle**: the threshold is set on the test set's own reals: TPR at FPR <= 1% / 5% is read off the
  test set's ROC curve. It needs no threshold from the model and is comparable to AUC, but no deployed
  detector could pick it (it looks at the answers).
* **deployed**: the threshold the model stored for that FPR (chosen on its validation reals at train
  time, `thresholds_at_fpr`); the output reports the TPR and the FPR that actually occurred on the
  test reals, which is what a user of the model would see.

Every figure has a percentile bootstrap 95% interval over images (reals and fakes resampled apart, so
both classes stay in every draw); one pass over the draws computes AUC, AP, EER and the oracle TPRs.
"""

from __future__ import annotations

import math

import numpy as np

FPR_TARGETS = (0.01, 0.05)


def fpr_key(fpr: float) -> str:
    """The name of a target in column and JSON keys: 0.01 -> "1", 0.05 -> "5" (percent)."""
    pct = fpr * 100
    return f"{pct:g}".replace(".", "_")


def _curve(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, threshold) at each distinct score, from the highest down; a sample is called fake when
    its score >= the threshold. Starts at (0, 0)."""
    s = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-s, kind="mergesort")
    s, is_pos = s[order], is_pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(is_pos)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / len(pos)]
    fpr = np.r_[0.0, fp / len(neg)]
    return fpr, tpr, np.r_[np.inf, s[last]]


def _figures(neg: np.ndarray, pos: np.ndarray, targets) -> dict:
    fpr, tpr, _ = _curve(neg, pos)
    out = {"roc_auc": float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))}
    # AP as scikit-learn computes it: precision at each threshold weighted by the recall step
    tp, fp = tpr * len(pos), fpr * len(neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    out["average_precision"] = float(np.sum(np.diff(tpr) * precision[1:]))
    # EER: where the miss rate crosses the false-alarm rate, interpolated on the segment that crosses
    fnr = 1.0 - tpr
    i = int(np.argmax(fnr <= fpr))
    if i == 0:
        out["eer"] = 0.0
    else:
        d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
        w = d0 / (d0 - d1) if d0 != d1 else 0.0
        out["eer"] = float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))
    for t in targets:
        ok = fpr <= t + 1e-12
        out[f"tpr_at_fpr_{fpr_key(t)}"] = float(tpr[ok].max())
    return out


def operating_points(y, p_fake, targets=FPR_TARGETS, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUC, AP, EER and the oracle TPR at each FPR target, each with `<name>_ci_low/_ci_high` (percentile
    bootstrap, `n_boot` draws, reals and fakes resampled apart). NaN throughout without both classes."""
    y = np.asarray(y)
    p = np.asarray(p_fake, dtype=np.float64)
    neg, pos = p[y == 0], p[y == 1]
    names = ["roc_auc", "average_precision", "eer", *(f"tpr_at_fpr_{fpr_key(t)}" for t in targets)]
    if len(neg) == 0 or len(pos) == 0:
        return {k: math.nan for n in names for k in (n, f"{n}_ci_low", f"{n}_ci_high")}
    point = _figures(neg, pos, targets)
    rng = np.random.default_rng(seed)
    draws = {n: np.empty(n_boot) for n in names}
    for b in range(n_boot):
        f = _figures(neg[rng.integers(0, len(neg), len(neg))], pos[rng.integers(0, len(pos), len(pos))], targets)
        for n in names:
            draws[n][b] = f[n]
    out = {}
    for n in names:
        low, high = np.quantile(draws[n], [0.025, 0.975]) if n_boot else (math.nan, math.nan)
        out[n], out[f"{n}_ci_low"], out[f"{n}_ci_high"] = point[n], float(low), float(high)
    return out


def thresholds_at_fpr(p_real, targets=FPR_TARGETS) -> dict:
    """The p(fake) cut for each FPR target on validation reals: the smallest cut that flags at most that
    share of them (an image is called fake when p > cut). Keys as `fpr_key`; {} without reals."""
    r = np.sort(np.asarray(p_real, dtype=np.float64))
    if len(r) == 0:
        return {}
    out = {}
    for t in targets:
        k = int(math.floor(t * len(r)))  # at most k reals may lie above the cut
        out[fpr_key(t)] = float(r[len(r) - 1 - k]) if k < len(r) else float(r[0])
    return out


def deployed_points(y, p_fake, thresholds: dict) -> dict:
    """At each threshold the model stored (`thresholds_at_fpr`): the TPR on the test fakes and the FPR
    that actually occurred on the test reals, `tpr_deployed_fpr_K` / `fpr_deployed_fpr_K` (NaN where a
    class is absent; their n are the row's n_fake and n_real)."""
    y = np.asarray(y)
    p = np.asarray(p_fake, dtype=np.float64)
    neg, pos = p[y == 0], p[y == 1]
    out = {}
    for key, cut in thresholds.items():
        out[f"tpr_deployed_fpr_{key}"] = float((pos > cut).mean()) if len(pos) else math.nan
        out[f"fpr_deployed_fpr_{key}"] = float((neg > cut).mean()) if len(neg) else math.nan
    return out


def columns(targets=FPR_TARGETS) -> list[str]:
    """The result columns these functions fill, in order."""
    cols = []
    for n in ("roc_auc", "average_precision"):
        cols += [f"{n}_ci_low", f"{n}_ci_high"]
    cols += ["eer", "eer_ci_low", "eer_ci_high"]
    for t in targets:
        k = fpr_key(t)
        cols += [f"tpr_at_fpr_{k}", f"tpr_at_fpr_{k}_ci_low", f"tpr_at_fpr_{k}_ci_high"]
    for t in targets:
        k = fpr_key(t)
        cols += [f"tpr_deployed_fpr_{k}", f"fpr_deployed_fpr_{k}"]
    return cols
