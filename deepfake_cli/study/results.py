"""The study's tidy table: results.csv and results.json, one row per cell x test dataset x test transform."""

from __future__ import annotations

from pathlib import Path

from deepfake_cli.safety.fileio import atomic_write_text, csv_text, number_format, to_json
from deepfake_cli.study.plan import FACTOR_COLUMNS, Cell


def collect_rows(cells: list[Cell], records: dict[str, dict]) -> list[dict]:
    """The rows of the current grid, in grid order (cached rows of cells no longer in it are left out)."""
    rows = []
    for c in cells:
        rec = records.get(c.key)
        if rec is None:
            continue
        for k in c.test_fkeys:
            for r in rec["rows"].get(k, []):
                # the label as written in the config (pca:16), not as recomputed from the fitted model
                rows.append(dict(r, reducer=c.reducer.label))
    return rows


def result_columns(rows: list[dict]) -> list[str]:
    """evaluate's columns, then the study's factors, then any other key of the rows, in first-seen order."""
    from deepfake_cli.stages.evaluate import COLUMNS

    cols = list(COLUMNS) + [c for c in FACTOR_COLUMNS if c not in COLUMNS]
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def write_results(rows: list[dict], csv_path: Path, json_path: Path, raw_csv: bool = False) -> None:
    """results.csv (text cells guarded against spreadsheet formulas unless `raw_csv`) and results.json."""
    # floats as repr: a rerun's CSV is byte-identical and reads back to the same numbers
    atomic_write_text(csv_path, csv_text(rows, result_columns(rows), number_format(None), raw=raw_csv))
    atomic_write_text(json_path, to_json(rows, indent=1) + "\n")
