"""The one copy of each file-writing mechanism: atomic replacement, JSON encoding, CSV text.

Every artifact is written to a temporary name in its final folder and renamed into place when
complete, so a crash never leaves a file that looks finished. Files get the permissions any other
tool would give them (0666 less the umask), not mkstemp's private 0600, so a team can share them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shared_mode(path) -> None:
    """Give a file made by mkstemp (mode 0600) the mode an ordinary `open` would have given it."""
    os.chmod(path, 0o666 & ~_umask())


@contextmanager
def atomic_path(path, tmp_prefix: str | None = None, tmp_suffix: str = ".partial") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` if the block succeeds, else delete it.

    The caller writes the temporary file by any means (h5py, skops, numpy). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix or f".{path.name}.", suffix=tmp_suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        shared_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def csv_text(rows: Iterable[dict], columns: list[str], format_value: Callable | None = None) -> str:
    """CSV text with a header; columns not in a row are empty, keys not in `columns` are ignored.

    `format_value(column, value) -> str` formats each cell (default: str, None and NaN as empty).
    """
    fmt = format_value or _plain
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([fmt(c, r.get(c)) for c in columns])
    return buf.getvalue()


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
