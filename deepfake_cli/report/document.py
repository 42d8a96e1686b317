"""What report.md and report.html both say, gathered once: the introduction, the overall numbers, the
best cells, the figures, the configuration and the versions. markdown.py and html.py only lay it out."""

from __future__ import annotations

import datetime as _dt
import math
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from deepfake_cli import __version__
from deepfake_cli.report.figures import Figure, group, levels, within_matched
from deepfake_cli.report.images import ImageSource
from deepfake_cli.report.pooling import Pooling, chance_level
from deepfake_cli.metrics.stats import format_accuracy

TITLE = "Detection study report"


@dataclass
class Document:
    results_csv: Path
    generated: str
    summary: str                      # one sentence: rows and levels of the table
    method: str                       # how accuracies are pooled
    scores_note: str | None           # where per-image scores came from, if anywhere
    scores_where: str | None          # the path the note quotes in backticks
    overall: str                      # the headline pooled accuracy
    per_test_set: list[list[str]]     # table, first row the header
    best_cells: list[list[str]]
    figures: list[Figure]
    config_path: Path | None = None
    config_text: str | None = None
    versions: list[list[str]] = field(default_factory=list)

    @property
    def drawn(self) -> list[Figure]:
        return [f for f in self.figures if not f.skipped]

    @property
    def skipped(self) -> list[Figure]:
        return [f for f in self.figures if f.skipped]


def build_document(results_csv: Path, rows: list[dict], pool: Pooling, figures: list[Figure],
                   source: ImageSource, config: Path | None) -> Document:
    overall = within_matched(rows)
    note = None
    if source.where:
        note = f"Per-image scores: read from `{source.where}` for {source.rows} of {len(rows)} rows"
        note += (f"; {source.mismatched} row(s) whose scores did not reproduce their n and accuracy were left out."
                 if source.mismatched else ".")
    return Document(
        results_csv=results_csv,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        summary=(f"{len(rows)} result rows: {len(levels(rows, 'backbone'))} backbone(s), "
                 f"{len(levels(rows, 'classifier'))} classifier(s), {len(levels(rows, 'reducer'))} reducer(s), "
                 f"{len(levels(rows, 'test_dataset'))} test set(s)"),
        method=pool.method_text(),
        scores_note=note,
        scores_where=source.where or None,
        # a study of zoo models alone has no within-dataset row: say what the line pools instead
        overall=(("Within-dataset, test transform = train transform" if any(r["kind"] == "within" for r in overall)
                  else "No within-dataset rows (published models, tested only): all rows")
                 + f": {pool.fmt(overall)} (mean of {len(overall)} rows; chance {chance_level(overall):.2f})"),
        per_test_set=_per_test_set(overall, pool),
        best_cells=_best_cells(overall),
        figures=figures,
        config_path=config,
        config_text=config.read_text().rstrip() if config is not None and config.is_file() else None,
        versions=[["package", "version"]] + [[k, v] for k, v in _versions().items()],
    )


def _per_test_set(rows: list[dict], pool: Pooling) -> list[list[str]]:
    table = [["test set", "rows", "accuracy [95% CI] n", "chance"]]
    for (ds,), rs in group(rows, "test_dataset").items():
        table.append([ds, str(len(rs)), pool.fmt(rs), f"{chance_level(rs):.2f}"])
    return table


def _best_cells(overall: list[dict]) -> list[list[str]]:
    best = sorted(overall, key=lambda r: (-r["accuracy"], -r["n"]))[:10]
    table = [["backbone", "reducer", "classifier", "train", "test", "transform", "accuracy [95% CI] n", "ROC AUC"]]
    for r in best:
        transform = (r["train_transform"] if r["train_transform"] == r["test_transform"]
                     else f"{r['train_transform']} -> {r['test_transform']}")
        low, high = r.get("accuracy_ci_low", math.nan), r.get("accuracy_ci_high", math.nan)
        if not (isinstance(low, float) and math.isfinite(low) and isinstance(high, float) and math.isfinite(high)):
            from deepfake_cli.metrics.stats import wilson_interval

            low, high = wilson_interval(min(max(r["accuracy"] * r["n"], 0.0), r["n"]), r["n"])
        auc = r.get("roc_auc")
        auc_text = f"{auc:.3f}" if isinstance(auc, float) and not math.isnan(auc) else "n/a"
        table.append([r["backbone"], r["reducer"], r["classifier"], r["train_datasets"], r["test_dataset"],
                      transform, format_accuracy(r["accuracy"], r["n"], low, high), auc_text])
    return table


def _versions() -> dict[str, str]:
    out = {"deepfake-cli": __version__, "python": platform.python_version()}
    for pkg in ("numpy", "scikit-learn", "torch", "timm", "open_clip_torch", "matplotlib", "h5py"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


BEST_CELLS_NOTE = ("The top of many small cells, picked on their own test sets: expect these to be optimistic. "
                   "Each row carries its own 95% Wilson interval.")
PER_TEST_SET_NOTE = ("The overall number is the mean over rows, so each test set weighs by its number of rows, not "
                     "by its size; here it is per test set.")
