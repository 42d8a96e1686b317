"""Parquet files in the layout image datasets are published in on the Hugging Face hub: one `.parquet`
file, or the `.parquet` files of a folder that holds no image (`data/train-00000-of-00002.parquet`, ...).

Columns: `image`, a struct of `bytes` and `path` (what `datasets.Image` writes) or plain binary, and an
optional `label`: 0/1 or real/fake (a `ClassLabel`'s names, from the file's `huggingface` metadata, are
read by name: `["fake", "real"]` makes 0 fake); a null label is no label (then a label folder in the file's
path, as for a tar shard). Other names: `data.parquet?image=img&label=y` (also on a folder of them). An item
is `<file>.parquet/<row>` (the row's number in the file).

Listing reads the label column and the footer only; an image's bytes are read when the item is: its row
group's image column, one row group at a time per process (`_RowGroups`), never the whole file. A row
group whose image column is over MAX_ROW_GROUP_BYTES (by the footer) is skipped unread; a null image, or
one over `decode.MAX_IMAGE_BYTES`, is a skipped row, as a file that is no image is. A label that is not
real/fake/0/1 is one error naming its row. pyarrow is imported only here, and only when a file is read.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from deepfake_cli.data.decode import MAX_IMAGE_BYTES, UnreadableImage
from deepfake_cli.data.items import FAKE, LABEL_DIRS, REAL, UNKNOWN, ImageItem, label_from_rel
from deepfake_cli.data.lists import LABEL_VALUES
from deepfake_cli.data.skips import shorten
from deepfake_cli.data.sources import Found, Source, UnreadableSource, register_source
from deepfake_cli.data.sources._datasets import shard_datasets, shard_loose
from deepfake_cli.data.walk import require_regular_file, too_large
from deepfake_cli.errors import DeepfakeError

# The most image data (uncompressed, by the footer) one row group may hold: a reader keeps one group's image
# column in memory. The hub's image datasets write 100 rows a group; pandas' default (one group per file of
# up to a million rows) stays readable up to this size.
MAX_ROW_GROUP_BYTES = 1 << 30
IMAGE_COLUMN, LABEL_COLUMN = "image", "label"
_LABEL_WORDS = {**LABEL_DIRS, "0": REAL, "1": FAKE}  # a ClassLabel's names: real/fake, 0_real/1_fake, nature/ai


@dataclass(frozen=True)
class ParquetRow:
    """Where an image lies in a Parquet file: row `index` of row group `row_group`, in column `column`
    (its `bytes` field when `field` is set: a struct of bytes and path)."""

    name: str       # the row's number in the file: the item is `<file>.parquet/<name>`
    row_group: int
    index: int
    column: str
    field: str | None = None


def is_parquet_file(path) -> bool:
    return os.path.splitext(str(path))[1].lower() == ".parquet"


def _arrow():
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def _open(path: Path):
    pa, pq = _arrow()
    require_regular_file(path, str(path), "a .parquet file")  # a FIFO would block the reader forever
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableSource(f"{shorten(path)} is not a Parquet file: {shorten(_first_line(exc))}.") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _columns(schema) -> str:
    return ", ".join(shorten(n, 40) for n in schema.names[:20]) or "none"


def _bytes_field(typ) -> str | None | bool:
    """None for a binary column, "bytes" for a struct with a binary `bytes` field, False otherwise."""
    pa, _ = _arrow()
    binary = (pa.types.is_binary, pa.types.is_large_binary)
    if any(t(typ) for t in binary):
        return None
    if pa.types.is_struct(typ):
        i = typ.get_field_index("bytes")
        if i >= 0 and any(t(typ.field(i).type) for t in binary):
            return "bytes"
    return False


def _image_column(schema, options: dict, path: Path) -> tuple[str, str | None]:
    name = options.get("image")
    if name is None:
        usable = [n for n in schema.names if _bytes_field(schema.field(n).type) is not False]
        name = IMAGE_COLUMN if IMAGE_COLUMN in schema.names else usable[0] if len(usable) == 1 else None
        if name is None:
            raise DeepfakeError(f"{shorten(path)} has no '{IMAGE_COLUMN}' column (columns: {_columns(schema)}); "
                                f"name the image column with {shorten(path.name)}?image=COLUMN.")
    elif name not in schema.names:
        raise DeepfakeError(f"{shorten(path)} has no column '{shorten(name, 40)}' (columns: {_columns(schema)}).")
    field = _bytes_field(schema.field(name).type)
    if field is False:
        raise DeepfakeError(f"column '{shorten(name, 40)}' of {shorten(path)} holds {schema.field(name).type}, not "
                            "images: give a binary column or a struct of bytes and path (?image=COLUMN).")
    return name, field


def _label_column(schema, options: dict, path: Path) -> str | None:
    name = options.get("label")
    if name is None:
        return LABEL_COLUMN if LABEL_COLUMN in schema.names else None
    if name and name not in schema.names:
        raise DeepfakeError(f"{shorten(path)} has no column '{shorten(name, 40)}' (columns: {_columns(schema)}).")
    return name or None  # `?label=` reads no labels


def _class_names(schema, column: str) -> list[str] | None:
    """The names of a `ClassLabel` column, from the `huggingface` schema metadata the hub's files carry."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        feats = json.loads(raw)["info"]["features"] if raw else {}
        names = feats.get(column, {}).get("names") if isinstance(feats, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _labeller(schema, column: str | None, path: Path):
    """value -> REAL | FAKE | None (no label); a value that is no label is one error naming its row."""
    if column is None:
        return lambda value, row: None
    names = _class_names(schema, column)

    def bad(value, row):
        raise DeepfakeError(f"{shorten(path)} row {row}: label '{shorten(value, 40)}' is not real, fake, 0 or 1"
                            + (f" (class names {', '.join(map(str, names))})" if names else "") + ".")

    def label(value, row):
        if isinstance(value, float) and value.is_integer():  # pandas writes an int column with gaps as floats
            value = int(value)
        if value is None:
            return None
        if names is not None and isinstance(value, int) and not isinstance(value, bool):
            word = names[value].strip().lower() if 0 <= value < len(names) else None
            return _LABEL_WORDS[word] if word in _LABEL_WORDS else bad(value, row)
        key = str(value).strip().lower() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        return LABEL_VALUES[key] if key in LABEL_VALUES else bad(value, row)

    return label


def _group_bytes(meta, group: int, column: str, field: str | None) -> int:
    """Uncompressed size of the image data of one row group, from the footer."""
    leaf = f"{column}.{field}" if field else column
    rg = meta.row_group(group)
    return sum(rg.column(j).total_uncompressed_size for j in range(rg.num_columns)
               if rg.column(j).path_in_schema == leaf)


def _scan(path: Path, prefix: str, options: dict) -> Found:
    """The rows of one file: labels read a row group at a time (the label column only), images not at all."""
    pf = _open(path)
    schema = pf.schema_arrow
    column, field = _image_column(schema, options, path)
    label_column = _label_column(schema, options, path)
    label = _labeller(schema, label_column, path)
    found, row = Found(), 0
    for group in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(group).num_rows
        size = _group_bytes(pf.metadata, group, column, field)
        if size > MAX_ROW_GROUP_BYTES:
            found.skipped.append({"path": f"{prefix}/{row}-{row + n - 1}", "reason": (
                f"row group {group} too large to read ({size / 1e6:.0f} MB of images; the limit is "
                f"{MAX_ROW_GROUP_BYTES / 1e6:.0f} MB)")})
            row += n
            continue
        values = (pf.read_row_group(group, columns=[label_column]).column(0).to_pylist() if label_column
                  else [None] * n)
        for index, value in enumerate(values):
            rel = f"{prefix}/{row}"
            got = label(value, row)
            if got is None:
                from_folders = label_from_rel(rel)
                got = UNKNOWN if from_folders is None else from_folders
            found.items.append(ImageItem(path, rel, got, ParquetRow(str(row), group, index, column, field)))
            row += 1
    return found


class _RowGroups:
    """The image column of the last row group read, per process: items come in row order, so each group is
    read once, and a reader holds at most one group (MAX_ROW_GROUP_BYTES) of images in memory."""

    def __init__(self):
        self.lock = threading.Lock()
        self.key = None
        self.values = None

    def get(self, path: Path, m: ParquetRow):
        st = os.stat(path)
        key = (str(path), st.st_mtime_ns, st.st_size, m.row_group, m.column, m.field)
        with self.lock:
            if key != self.key:
                self.key, self.values = None, None  # the old group goes before the new one is read
                self.values, self.key = self._read(path, m), key
            return self.values

    @staticmethod
    def _read(path: Path, m: ParquetRow):
        _, pq = _arrow()
        with open(path, "rb") as fh:
            col = pq.ParquetFile(fh).read_row_group(m.row_group, columns=[m.column]).column(0).combine_chunks()
        return (col, col.field(m.field)) if m.field else (col, col)


_GROUPS = _RowGroups()


def _read(item: ImageItem) -> bytes:
    pa, _ = _arrow()
    m: ParquetRow = item.member
    try:
        outer, inner = _GROUPS.get(Path(item.path), m)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableImage(f"cannot read row group {m.row_group} ({shorten(_first_line(exc))})") from exc
    if m.index >= len(inner):
        raise UnreadableImage("row missing from its row group (the file changed since it was listed)")
    if not (outer[m.index].is_valid and inner[m.index].is_valid):
        return _no_image(outer, m)
    data = inner[m.index].as_buffer()
    if data.size > MAX_IMAGE_BYTES:
        raise UnreadableImage(too_large(data.size))
    return data.to_pybytes()


def _no_image(outer, m: ParquetRow):
    cell = outer[m.index]
    where = ""
    if m.field and cell.is_valid and "path" in [f.name for f in outer.type]:
        where = f"; its path {shorten(cell['path'].as_py(), 80)!r} is not read" if cell["path"].is_valid else ""
    raise UnreadableImage(f"no image in this row (its '{shorten(m.column, 40)}' cell holds no bytes{where})")


PARQUET = register_source(Source(
    name="parquet", description="a .parquet file (an 'image' column of bytes and an optional 'label' column)",
    matches=is_parquet_file, scan=_scan, read=_read, member_type=ParquetRow, shard=True, short=".parquet",
    unreadable="not a Parquet file", options=("image", "label"), no_label="no label in its row and no label folder",
    datasets=lambda path, shown, name, allow_unlabelled, options: shard_datasets(PARQUET, path, shown, name,
                                                                                 allow_unlabelled, options),
    loose=lambda path, options: shard_loose(PARQUET, path, options)))
