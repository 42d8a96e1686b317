"""The one copy of each file format helper: whole text and byte files written atomically (through
`safety.atomic`, the one atomic write), JSON encoding, CSV text (cells guarded against spreadsheet
formulas), Markdown tables and text (names escaped).
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import re
from pathlib import Path
from typing import Callable, Iterable

from deepfake_cli.safety.atomic import atomic_path


def atomic_write_text(path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def json_safe(obj):
    """A copy of `obj` that `json.dumps` accepts and that is valid JSON: NaN/inf become null, numpy
    scalars and arrays become Python numbers and lists, paths and tuples become strings and lists."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(obj, indent: int | None = None, **kwargs) -> str:
    """JSON text of `obj` after `json_safe` (strict: never emits NaN)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False, **kwargs)


def csv_text(rows: Iterable[dict], columns: list[str], format_value: Callable | None = None,
             raw: bool = False) -> str:
    """CSV text with a header; columns not in a row are empty, keys not in `columns` are ignored.

    `format_value(column, value) -> str` formats each cell (default: str, None and NaN as empty).
    Text cells (any value but a number) pass through `guard_cell`, so a spreadsheet never runs a file
    name as a formula; `raw=True` writes them as they are.
    """
    fmt = format_value or _plain
    guard = _as_is if raw else guard_cell
    buf = io.StringIO()
    minimal = csv.writer(buf, lineterminator="\n")
    # csv quotes a cell holding \n but not one holding only \r (not in our line terminator), and every
    # reader ends the row at a bare \r: a row with a CR in it (a file name can hold one) is quoted whole
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def write(cells: list[str]) -> None:
        (quoted if any("\r" in c for c in cells) else minimal).writerow(cells)

    write([guard(str(c)) for c in columns])
    for r in rows:
        write([_cell(fmt(c, v), v, guard) for c, v in ((c, r.get(c)) for c in columns)])
    return buf.getvalue()


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP "CSV
# injection"); a leading ' makes it text. A cell already starting with ' gets one more, so that
# `unguard_cell` gives back exactly what was written.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_GUARDED_STARTS = FORMULA_STARTS + ("'",)
# a plain decimal number ("-0.5", "+3", "-1e-05") is read as a number, never as a formula
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def guard_cell(text: str) -> str:
    """`text` as a CSV cell that a spreadsheet shows as text: a ' before a leading =, +, -, @, tab, CR
    (or '), unless the whole cell is a plain number."""
    if text.startswith(_GUARDED_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def unguard_cell(text):
    """The text `guard_cell` was given, for a cell of a CSV this tool wrote (anything else as it is)."""
    if isinstance(text, str) and text.startswith("'") and guard_cell(text[1:]) == text:
        return text[1:]
    return text


def _as_is(text: str) -> str:
    return text


def _cell(text: str, value, guard: Callable[[str], str]) -> str:
    # numbers stay numbers: a score of -0.5 is written -0.5, whatever the formatter made of it
    return text if isinstance(value, numbers.Number) else guard(text)


def _plain(_column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def number_format(digits: int | None = None) -> Callable[[str, object], str]:
    """A `csv_text` formatter: floats with `digits` decimals (None: repr, which reads back exactly) and
    NaN as "nan"; None as empty; anything else as str."""
    def fmt(_column: str, value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            if math.isnan(value):
                return "nan"
            return repr(value) if digits is None else f"{value:.{digits}f}"
        return str(value)

    return fmt


# Markdown: every table cell of report.md and eval.md, and the names in their prose, go through these,
# so a name can neither add a table column nor bring HTML (a Markdown viewer renders raw HTML).
_MD_CELL = str.maketrans({"\\": "\\\\", "|": "\\|", "&": "&amp;", "<": "&lt;", ">": "&gt;"})
_MD_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def md_cell(value) -> str:
    """`value` as one Markdown table cell: \\ and | escaped, &, <, > as HTML entities, line breaks as <br>."""
    return _LINE_BREAK.sub("<br>", str(value).translate(_MD_CELL))


def md_table(table: list[list]) -> str:
    """A Markdown table of `table` (first row the header), every cell through `md_cell`; "" when empty."""
    if not table:
        return ""
    head, *body = table
    return "\n".join([_md_row(head), "|" + "---|" * len(head)] + [_md_row(row) for row in body])


def _md_row(cells) -> str:
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def md_text(value) -> str:
    """`value` (a name, a reason) inside Markdown prose: &, <, > as HTML entities, line breaks as spaces."""
    return _LINE_BREAK.sub(" ", str(value).translate(_MD_TEXT))


def md_code(value) -> str:
    """`value` as a Markdown code span (shown as it is, never markup): fenced by more backticks than it holds."""
    text = _LINE_BREAK.sub(" ", str(value))
    ticks = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_fence(text: str, info: str = "") -> str:
    """`text` as a fenced code block whose fence is longer than any run of backticks inside it."""
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _longest_run(text: str, char: str) -> int:
    return max((len(m) for m in re.findall(f"{re.escape(char)}+", text)), default=0)
