"""Per-image scores behind a results table, when they were kept: the study's cells/images/<cell>.json
or eval's eval_images.csv beside the table. They give the ROC curves and score histograms, and let
the pooled intervals resample the actual images (see stats.pooled_accuracy)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_cli.safety.fileio import unguard_cell

SCORES = "_scores"  # the key under which a row carries its RowScores (or None)


@dataclass
class RowScores:
    ids: np.ndarray      # (n,) bytes: the first 16 hex digits of the image's sha256, its identity in the test set
    label: np.ndarray    # (n,) int: 0 real, 1 fake
    p_fake: np.ndarray   # (n,) float
    correct: np.ndarray  # (n,) bool: (p_fake >= the row's threshold) == label


@dataclass
class ImageSource:
    where: str | None = None  # what the scores were read from, None when there were none
    rows: int = 0             # rows that got their per-image scores
    mismatched: int = 0       # rows whose scores did not reproduce their n and accuracy (left out)


def attach_scores(results_csv: Path, rows: list[dict]) -> ImageSource:
    """Set row[SCORES] on every row: its RowScores when found and consistent with the row, else None."""
    for r in rows:
        r[SCORES] = None
    folder = results_csv.parent
    if (folder / "cells" / "images").is_dir() and any(r.get("cell") for r in rows):
        found = _study_scores(folder / "cells" / "images", rows)
        where = f"{folder / 'cells' / 'images'}/<cell>.json"
    elif (folder / "eval_images.csv").is_file() and any(r.get("model") for r in rows):
        found = _eval_scores(folder / "eval_images.csv", rows)
        where = str(folder / "eval_images.csv")
    else:
        return ImageSource()
    src = ImageSource(where=where)
    for r, raw in zip(rows, found):
        if raw is None:
            continue
        scores = _scores(raw, r.get("threshold", math.nan))
        # the same count of images and of correct ones (eval.csv's 6 decimals allow a tiny rounding)
        if (scores is None or len(scores.ids) != int(r["n"])
                or abs(scores.correct.sum() - r["accuracy"] * r["n"]) >= 0.5):
            src.mismatched += 1
            continue
        r[SCORES] = scores
        src.rows += 1
    return src if src.rows or src.mismatched else ImageSource()


def _scores(raw: dict, threshold: float) -> RowScores | None:
    try:
        label = np.asarray(raw["label"], dtype=int)
        p = np.asarray(raw["p_fake"], dtype=float)
        # 16 hex digits (64 bits) identify an image within its test set, in 16 bytes instead of 256
        ids = np.array([str(h)[:16] for h in raw["sha256"]], dtype="S16")
    except (KeyError, TypeError, ValueError):
        return None
    if not (len(label) == len(p) == len(ids)) or not len(ids) or not math.isfinite(threshold):
        return None
    return RowScores(ids, label, p, (p >= threshold).astype(int) == label)


def _feature_key(features: str) -> str:
    name = Path(str(features)).name
    return name[:-3] if name.endswith(".h5") else name


def _study_scores(folder: Path, rows: list[dict]) -> list[dict | None]:
    records: dict[str, dict | None] = {}
    out = []
    for r in rows:
        cell = r.get("cell") or ""
        if cell not in records:
            path = folder / f"{cell}.json"
            try:
                records[cell] = json.loads(path.read_text()) if cell and path.is_file() else None
            except (OSError, ValueError):
                records[cell] = None
        rec = records[cell]
        out.append(None if not isinstance(rec, dict) else
                   (rec.get(_feature_key(r.get("features", ""))) or {}).get(r["test_dataset"]))
    return out


def _eval_scores(path: Path, rows: list[dict]) -> list[dict | None]:
    by_key: dict[tuple, dict] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for p in csv.DictReader(fh):
                # keys as results.csv's rows read them: without the guard against spreadsheet formulas
                key = (unguard_cell(p["model"]), unguard_cell(p["features"]), unguard_cell(p["test_dataset"]))
                d = by_key.setdefault(key, {"sha256": [], "label": [], "p_fake": []})
                d["sha256"].append(p["sha256"])
                d["label"].append(p["label"])
                d["p_fake"].append(p["p_fake"])
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return [None] * len(rows)
    return [by_key.get((r.get("model"), r.get("features"), r["test_dataset"])) for r in rows]
