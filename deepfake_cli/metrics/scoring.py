"""Scoring shared by train (validation, threshold choice) and eval: the threshold rule and the metrics."""

from __future__ import annotations

import numpy as np


def choose_threshold(y, p_fake) -> float:
    """The p(fake) cut that maximises balanced accuracy on (y, p_fake); ties go to the cut nearest 0.5.

    Candidates are 0.5 and the midpoints between consecutive distinct scores, so the chosen cut never
    sits exactly on a validation score. With one class only, 0.5.
    """
    y = np.asarray(y)
    p = np.asarray(p_fake, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return 0.5
    u = np.unique(p)
    candidates = np.unique(np.clip(np.concatenate([[0.5], (u[:-1] + u[1:]) / 2, [u[0] - 1e-9, u[-1] + 1e-9]]), 0, 1))
    pos, neg = y == 1, y == 0
    best, best_t = -1.0, 0.5
    for t in sorted(candidates, key=lambda c: abs(c - 0.5)):
        pred = p >= t
        bal = 0.5 * (pred[pos].mean() + (~pred[neg]).mean())
        if bal > best + 1e-12:
            best, best_t = bal, float(t)
    return best_t


def binary_scores(y, p_fake, threshold: float = 0.5) -> dict:
    """Accuracy (overall, per class, balanced), ROC AUC and average precision; NaN where undefined."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y)
    p = np.asarray(p_fake, dtype=np.float64)
    n = len(y)
    pred = (p >= threshold).astype(int)
    correct = pred == y
    real, fake = y == 0, y == 1
    acc_real = float(correct[real].mean()) if real.any() else float("nan")
    acc_fake = float(correct[fake].mean()) if fake.any() else float("nan")
    both = real.any() and fake.any()
    return {
        "n": int(n), "n_real": int(real.sum()), "n_fake": int(fake.sum()),
        "n_correct": int(correct.sum()),
        "accuracy": float(correct.mean()) if n else float("nan"),
        "accuracy_real": acc_real, "accuracy_fake": acc_fake,
        "balanced_accuracy": 0.5 * (acc_real + acc_fake) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, p)) if both else float("nan"),
    }
