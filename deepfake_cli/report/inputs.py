"""Reading the results table, and saying in one line what a file is when it is not one.

Our own artifacts (feature files, models, reducers) and HDF5 in general are recognised by
`outputs.artifact_kind` / `outputs.is_hdf5`, the sniffing every command's output checks use; this module
only adds the wording for the report and the common formats nobody passes on purpose (images, archives).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import zipfile
from pathlib import Path

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.safety.fileio import unguard_cell
from deepfake_cli.store.outputs import artifact_kind, is_hdf5

# Columns that stay text; every other column is parsed as a float (NaN when empty).
TEXT_COLUMNS = {"model", "classifier", "backbone", "reducer", "train_datasets", "test_dataset", "kind",
                "train_transform", "test_transform", "layers", "align", "cell", "weights_id", "status", "features",
                "train_dataset", "protocol", "reals_pool"}
REQUIRED = {"classifier", "backbone", "reducer", "train_datasets", "test_dataset", "kind",
            "train_transform", "test_transform", "n", "accuracy"}
NUMERIC_REQUIRED = ("n", "accuracy")
EXPECTS = "report expects a results table: results.csv of `deepfake study` or eval.csv of `deepfake eval`"

_HDF5 = "an HDF5 file (feature files of `deepfake extract` are HDF5)"
_SKOPS = "a model or reducer file (a skops archive of `deepfake train` or `deepfake reduce`)"
# our artifacts that cannot be a results table; the rest (eval.csv, predictions, ...) are told apart below
_OUR_KINDS = {"features": _HDF5, "model": _SKOPS, "reducer": _SKOPS}
_MAGIC = [  # (offset, bytes, what the file is)
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"\x1f\x8b", "a gzip-compressed file"),
    (0, b"BZh", "a bzip2-compressed file"),
    (0, b"\xfd7zXZ\x00", "an xz-compressed file"),
    (0, b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (0, b"\x93NUMPY", "a NumPy array file"),
    (0, b"\x80", "a Python pickle"),
    (257, b"ustar", "a tar archive"),
]
_CONFIG_SECTION = re.compile(r"^\s*\[(study|grid|datasets)\]\s*$", re.MULTILINE)


def describe_file(path: Path) -> str | None:
    """What `path` is when it cannot be a CSV results table ("an HDF5 file ..."), else None."""
    kind = artifact_kind(path)
    if kind in _OUR_KINDS:
        return _OUR_KINDS[kind]
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        return "an empty file"
    if is_hdf5(path, head):  # not ours (no feature-file format attribute), still HDF5
        return _HDF5
    for offset, magic, what in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return what
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _describe_zip(path)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if b"\x00" in head:
        return "binary data, not text"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the 4096 bytes
            return "binary data, not UTF-8 text"
        text = head[:exc.start].decode("utf-8")
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        return "a file of blank lines"
    if stripped[0] in "[{" and not _CONFIG_SECTION.search(text):
        return _describe_json(path)
    if _CONFIG_SECTION.search(text):
        return "a study configuration (TOML); run `deepfake study` on it, then report its results.csv"
    return None


def _describe_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return "a damaged zip archive"
    if "schema.json" in names:  # a skops archive that artifact_kind could not read as ours (damaged, foreign)
        return _SKOPS
    return "a zip archive"


def _describe_json(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "JSON-like text that is not valid JSON"
    if isinstance(data, list) and data and isinstance(data[0], dict) and "accuracy" in data[0]:
        return "JSON result rows (results.json or eval.json); pass the .csv written beside it"
    return "a JSON file"


def _known_csv(fields: list[str]) -> str:
    cols = set(fields)
    if {"sha256", "p_fake", "test_dataset"} <= cols:
        return "per-image scores of `deepfake eval` (eval_images.csv); pass eval.csv from the same folder"
    if {"path", "p_fake"} <= cols:
        return "predictions of `deepfake predict`"
    shown = ", ".join(fields[:6]) + (", ..." if len(fields) > 6 else "")
    return f"a CSV with other columns ({shown})" if fields else "a CSV without a header"


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results CSV with numeric columns as floats; DeepfakeError (one line) if it is not one."""
    p = Path(path)
    if p.is_dir():
        hint = next((p / n for n in ("results.csv", "eval.csv") if (p / n).is_file()), None)
        raise DeepfakeError(f"{path} is a folder, not a results table; {EXPECTS}"
                            + (f" (there is {hint})." if hint else "."))
    if not p.is_file():
        raise DeepfakeError(f"results table not found: {path}")
    try:
        what = describe_file(p)
        if what:
            raise DeepfakeError(f"{path} is not a results table but {what}; {EXPECTS}.")
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DeepfakeError(f"{path} is not a results table but binary data (not UTF-8 text); {EXPECTS}.") from None
    except OSError as exc:
        raise DeepfakeError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    try:
        return _parse(path, text)
    except csv.Error as exc:
        raise DeepfakeError(f"{path} is not a results table (unreadable CSV: {exc}); {EXPECTS}.") from None


def _parse(path, text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = list(reader.fieldnames or [])
    missing = REQUIRED - set(fields)
    if missing:
        # name the missing columns when the file looks like a results table that lost some
        lacks = f" (missing columns: {', '.join(sorted(missing))})" if missing != REQUIRED else ""
        raise DeepfakeError(f"{path} is not a results table but {_known_csv(fields)}{lacks}; {EXPECTS}.")
    rows = []
    for raw in reader:
        row = {}
        for k, v in raw.items():
            if k is None:  # more cells than header columns
                raise DeepfakeError(f"{path}, line {reader.line_num}: more cells than columns; {EXPECTS}.")
            if k in TEXT_COLUMNS:
                # names as they were, without the ' that guards them against spreadsheet formulas
                row[k] = unguard_cell(v) if v is not None else ""
            else:
                try:
                    row[k] = float(v) if v not in ("", None) else math.nan
                except ValueError:
                    if k in NUMERIC_REQUIRED:
                        raise DeepfakeError(f"{path}, line {reader.line_num}: {k} is {v!r}, not a number; "
                                            f"{EXPECTS}.") from None
                    row[k] = unguard_cell(v)
        rows.append(row)
    if not rows:
        raise DeepfakeError(f"{path} has no result rows (only a header).")
    return rows
