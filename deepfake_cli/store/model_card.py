"""A model's card: the metadata stored in every model file, built in one place for every model kind.

`train` (frozen features + a classifier) and `finetune` (a network trained end to end) write the same keys,
so `eval` and `predict` read any model alike: what the model takes (`model_inputs`), the content-hash split
it was trained on (`split_fields`), where its features came from, and what its validation part decided
(`calibration.Decision`: calibration, threshold, validation scores) with its novelty reference
(`novelty.fit_reference`). Key names and order are those of the files written before this module existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from deepfake_cli import __version__
from deepfake_cli.metrics.calibration import Decision

CLASSES = {"classes": {"0": "real", "1": "fake"}, "class_names": ["real", "fake"]}


def model_inputs(*, backbone, dim, input_dim: int, layers, weights_id, preprocessing, transform, feature_seed,
                 align, reducer: dict, features_reduced_by=None) -> dict:
    """What the model takes: the features (backbone, layers, preprocessing, ...) and its reducer."""
    return {"backbone": backbone, "dim": dim, "input_dim": int(input_dim), "layers": layers,
            "weights_id": weights_id, "preprocessing": preprocessing, "transform": transform,
            "feature_seed": feature_seed, "align": align, "reducer": reducer,
            "features_reduced_by": features_reduced_by}


def split_fields(sha256: np.ndarray, dataset: np.ndarray, split, train_sets: list[str], test_size: float,
                 val_size: float, seed: int, y: np.ndarray, roots: dict | None) -> dict:
    """The split keys (held-out hashes per dataset, training hashes, counts), so `eval` scores only held-out
    images; `split` is a `splits.TrainSplit` over the rows whose hashes, datasets and labels `y` are given.
    Also what a verdict cites (`class_counts`, and `train_roots`: the folder each training set came from)."""
    test_mask, tr_idx = split.test_mask, split.tr_idx
    roots = roots if isinstance(roots, dict) else {}
    return {
        **class_counts(y, split), "train_roots": {d: roots.get(d) for d in train_sets},
        "train_datasets": list(train_sets),
        "heldout_sha256": {d: sorted(set(sha256[test_mask & (dataset == d)].tolist())) for d in train_sets},
        "train_sha256": sorted(set(sha256[tr_idx].tolist())),
        "n_train": int(len(tr_idx)), "n_fit": int(len(split.fit_idx)), "n_val": int(len(split.val_idx)),
        "n_heldout": {d: int((test_mask & (dataset == d)).sum()) for d in train_sets},
        "test_size": float(test_size), "val_size": float(val_size), "split_seed": int(seed),
    }


@dataclass
class ModelCard:
    """What every model of one training run shares; `meta` adds one model's own part."""

    inputs: dict                        # model_inputs(...)
    split: dict                         # split_fields(...)
    features_file: str | None = None    # None: features computed by the run itself (finetune)
    features_created: str | None = None
    sample_warnings: list | None = None  # train's small-sample warnings (None: the key is not written)

    def common(self) -> dict:
        meta = {**self.inputs, **CLASSES, **self.split, "features_file": self.features_file,
                "features_created": self.features_created, "tool_version": __version__}
        if self.sample_warnings is not None:
            meta["sample_warnings"] = list(self.sample_warnings)
        return meta

    def meta(self, *, name: str, classifier: str, classifier_params: dict, decision: Decision, novelty: dict,
             notes: list, extra: dict | None = None, created: str | None = None) -> dict:
        """The model file's metadata: the shared part, the classifier, what validation decided, the novelty
        reference's description, notes, the kind's own keys (`extra`) and the time it was made."""
        return {**self.common(), "name": name, "classifier": classifier, "classifier_params": classifier_params,
                "threshold": float(decision.threshold), "threshold_rule": decision.rule,
                "calibration": decision.calibration, "novelty": novelty, "validation": decision.validation,
                "notes": notes, **(extra or {}),
                "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds")}


# The evidence a verdict rests on (read back by `stages.prediction_checks.evidence`). Files written before
# these keys existed lack them: predict then says "not recorded" rather than guessing.

def class_counts(y: np.ndarray, split) -> dict:
    """Images per class in each part of the split: train (fit + validation), fit, val(idation), heldout."""
    def count(mask_or_idx) -> dict:
        part = y[mask_or_idx]
        return {"real": int((part == 0).sum()), "fake": int((part == 1).sum())}

    return {"n_by_class": {"train": count(split.tr_idx), "fit": count(split.fit_idx), "val": count(split.val_idx),
                           "heldout": count(split.test_mask)}}


def heldout_record(y: np.ndarray, p_fake: np.ndarray, threshold: float, datasets: list[str], measured_by: str) -> dict:
    """The saved model's accuracy on its held-out test part at its own threshold, with the 95% Wilson interval;
    `measured_by` says how (the held-out part of this very model, or of a twin trained with a part held out)."""
    from deepfake_cli.metrics.stats import wilson_interval

    y = np.asarray(y).astype(int)
    n = int(len(y))
    k = int(((np.asarray(p_fake) >= threshold).astype(int) == y).sum()) if n else 0
    low, high = wilson_interval(k, n) if n else (float("nan"), float("nan"))
    return {"n": n, "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()), "n_correct": k,
            "accuracy": k / n if n else None, "ci_low": float(low) if n else None, "ci_high": float(high) if n else None,
            "datasets": list(datasets), "measured_by": measured_by}
