"""Pooling result rows for the report's tables and figures, each test image counted once.

A `Pooling` wraps `stats.pooled_accuracy` for the rows of one results table: it hands each row's
per-image scores (when they were kept) to the bootstrap, caches each pooled group (figures and tables
pool the same groups), and words n and chance level for captions.
"""

from __future__ import annotations

import math

import numpy as np

from deepfake_cli.report.images import SCORES
from deepfake_cli.metrics.stats import N_BOOT, Pooled, distinct_images, format_accuracy, pooled_accuracy

INDEX = "_i"  # the key under which a row carries its position in the table


class Pooling:
    def __init__(self, rows: list[dict], n_boot: int = N_BOOT, seed: int = 0):
        for i, r in enumerate(rows):
            r[INDEX] = i
            r.setdefault(SCORES, None)
        self.n_boot, self.seed = n_boot, seed
        self.with_scores = sum(r[SCORES] is not None for r in rows)
        self.n_rows = len(rows)
        self._cache: dict[tuple[int, ...], Pooled] = {}

    def __call__(self, rows: list[dict]) -> Pooled:
        key = tuple(sorted(r[INDEX] for r in rows))
        if key not in self._cache:
            self._cache[key] = pooled_accuracy(
                [r["accuracy"] for r in rows], [r["n"] for r in rows], [r["test_dataset"] for r in rows],
                [_images(r) for r in rows], n_boot=self.n_boot, seed=self.seed)
        return self._cache[key]

    def fmt(self, rows: list[dict]) -> str:
        """'0.912 [0.871, 0.941] n=200' of the pooled rows (n: distinct images)."""
        return format_accuracy(*self(rows))

    def distinct(self, rows: list[dict]) -> dict[str, int]:
        return distinct_images([r["n"] for r in rows], [r["test_dataset"] for r in rows], [_images(r) for r in rows])

    def n_text(self, rows: list[dict]) -> str:
        """'n = 840 distinct test images (biggan 12, cifake 600)' for a caption."""
        per = self.distinct(rows)
        total = sum(per.values())
        if len(per) == 1:
            (name, n), = per.items()
            return f"n = {n} distinct test images ({name})"
        return f"n = {total} distinct test images ({', '.join(f'{k} {v}' for k, v in per.items())})"

    def method_text(self) -> str:
        """How the intervals were computed, for the report's introduction."""
        base = ("A pooled accuracy is the mean of the accuracies of the rows it summarises (a row is one cell "
                "-- backbone, reducer, classifier, training set and transform -- on one test set under one test "
                "transform), so every row weighs the same whatever its test-set size. `n` is the number of "
                "distinct test images behind it: every cell and every test transform sees the same images, so "
                "each is counted once (per test set, ")
        base += ("the union of the rows' image hashes). " if self.with_scores == self.n_rows else
                 "the largest test set among its rows; within-dataset rows test the same held-out split). ")
        base += (f"The 95% interval comes from a bootstrap ({self.n_boot} draws, seed {self.seed}) that resamples "
                 f"test images within each test set, recomputes every row's accuracy on the draw and takes their "
                 f"mean; the test sets themselves are held fixed, so the interval is about these test sets, not "
                 f"about other datasets. The spread of those means gives an effective number of images "
                 f"(n_eff = p(1-p) / variance: how many independent images would make a proportion this "
                 f"uncertain), and the interval is the Wilson interval on n_eff, which stays inside [0, 1] and "
                 f"for a single row is that row's own Wilson interval. ")
        if self.with_scores == self.n_rows:
            base += ("Per-image scores were kept for every row, so the draws resample the actual images "
                     "(identified by test set and sha256). ")
        else:
            some = (f" ({self.with_scores} of {self.n_rows} rows have per-image scores; test sets where any "
                    "row lacks them use the counts)") if self.with_scores else ""
            base += ("This table has no per-image scores" + some + ", so the draws work from each row's count of "
                     "correct images and assume the rows agree image by image as far as their accuracies allow "
                     "(an image missed by one row is missed by every less accurate row): the strongest dependence "
                     "between rows that the counts permit, so these intervals are the widest the counts are "
                     "consistent with. ")
        base += "A single row (the best-cells table) keeps its own 95% Wilson interval."
        return base


def _images(r: dict):
    s = r.get(SCORES)
    return None if s is None else (s.ids, s.correct)


def chance_level(rows: list[dict]) -> float:
    """The accuracy of always answering the majority class, averaged over rows (0.5 on balanced sets)."""
    vals = []
    for r in rows:
        n, real, fake = r.get("n", math.nan), r.get("n_real", math.nan), r.get("n_fake", math.nan)
        if all(isinstance(v, float) and math.isfinite(v) for v in (n, real, fake)) and n > 0:
            vals.append(max(real, fake) / n)
    return float(np.mean(vals)) if vals else 0.5
