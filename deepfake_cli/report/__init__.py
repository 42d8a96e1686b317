"""Figures, report.md and report.html drawn from a results table alone (results.csv of study or eval).

Every figure is a pure function of the table (and of the per-image scores kept beside it, when there are
any), so a report can be redrawn later, elsewhere. A figure whose factor has one level in the table is
skipped and the report says so. Pooled accuracies count each test image once (stats.pooled_accuracy).

  inputs.py    read_results: the table, or one line saying what the file is instead
  images.py    per-image scores beside the table (study cells/images/, eval_images.csv)
  pooling.py   Pooling: pooled accuracy, n and chance level of groups of rows, cached
  figures.py   the figures (PNG + SVG under figures/)
  document.py  what both reports say; markdown.py and html.py lay it out
"""

from __future__ import annotations

import os
from pathlib import Path

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.safety.fileio import atomic_write_text
from deepfake_cli.store.outputs import Target, writes
from deepfake_cli.report.document import build_document
from deepfake_cli.report.figures import FIGURE_FORMATS, MATRIX_CMAP, Figure, levels
from deepfake_cli.report.html import html_report
from deepfake_cli.report.images import attach_scores
from deepfake_cli.report.inputs import read_results
from deepfake_cli.report.markdown import markdown_report
from deepfake_cli.report.pooling import Pooling

CONFIG_NAMES = ("config.toml", "study.toml")

__all__ = ["FIGURE_FORMATS", "MATRIX_CMAP", "Figure", "levels", "read_results", "render_report"]


def _find_config(results_csv: Path, config_path: str | os.PathLike | None) -> Path | None:
    if config_path:
        return Path(config_path)
    for name in CONFIG_NAMES:
        p = results_csv.parent / name
        if p.is_file():
            return p
    return None


# what it writes and reads (the output guards, `store.outputs.writes`)

def report_targets(a: dict) -> list[Target]:
    out = Path(a["out_dir"])
    if out.exists() and not out.is_dir():
        raise DeepfakeError(f"--out {out} is a file; report writes figures/, report.md and report.html into "
                            "the folder --out names: give a folder name.")
    # locked through report.md, not the folder: a study holds the folder's own lock while it reports
    return [Target(out / name, "report", lock=out / "report.md") for name in ("report.md", "report.html")]


def report_inputs(a: dict) -> list:
    return [a.get("results_csv"), a.get("config_path")]


@writes(report_targets, report_inputs)  # never over its inputs or a foreign file; one writer per --out
def render_report(results_csv: str | os.PathLike, out_dir: str | os.PathLike,
                  config_path: str | os.PathLike | None = None) -> Path:
    """Draw DIR/figures/*.png|svg from `results_csv`, write DIR/report.md and DIR/report.html; returns
    the path of report.md (report.html is beside it).

    `config_path` (default: config.toml or study.toml beside the CSV) is embedded when present.
    """
    results_csv = Path(results_csv)
    rows = read_results(results_csv)
    source = attach_scores(results_csv, rows)
    pool = Pooling(rows)
    out = Path(out_dir)
    from deepfake_cli.report.figures import draw_figures

    figures = draw_figures(rows, out / "figures", pool)
    doc = build_document(results_csv, rows, pool, figures, source, _find_config(results_csv, config_path))
    atomic_write_text(out / "report.html", html_report(doc, out / "figures"))
    return atomic_write_text(out / "report.md", markdown_report(doc))
