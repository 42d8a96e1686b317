"""List files: a `.txt` of image paths (one per line) or a `.csv` with a `path` column and optional
`label` (real/fake/0/1) and `dataset` columns. Relative paths are relative to the list's folder.

Listed files are not opened or even looked up here (a list of millions would cost as many disk
round trips); one that is missing or broken is reported by the reader, like any unreadable image.
A listed path must name an image by its extension, as everywhere else in the tool; other entries are
reported as skipped, and a list naming no image at all is refused (it is most likely not a list).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_cli.data.items import FAKE, REAL, UNKNOWN, label_from_rel
from deepfake_cli.data.walk import is_image_file
from deepfake_cli.errors import DeepfakeError

LIST_EXTENSIONS = {".txt", ".csv"}
LABEL_VALUES = {"real": REAL, "0": REAL, "fake": FAKE, "1": FAKE, "": None}


def is_list_file(path) -> bool:
    return os.path.splitext(str(path))[1].lower() in LIST_EXTENSIONS


@dataclass
class ListEntry:
    path: Path          # absolute, normalised, links not resolved
    rel: str            # relative to the list's folder (may start with ../)
    label: int
    dataset: str | None


@dataclass
class ListRead:
    root: Path
    entries: list[ListEntry] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def read_list(path) -> ListRead:
    """Entries of a `.txt` or `.csv` list, in list order, each path once."""
    path = Path(path)
    root = Path(os.path.abspath(path.parent))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeepfakeError(f"cannot read the list {path}: {exc}.") from exc
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _txt_rows(text)
    out = ListRead(root)
    seen: set[str] = set()
    for line_no, raw, label_text, dataset in rows:
        full = Path(os.path.normpath(root / os.path.expanduser(raw)))
        rel = os.path.relpath(full, root).replace(os.sep, "/")
        if not is_image_file(full):
            out.skipped.append({"path": rel, "reason": f"not an image file by extension (line {line_no} of {path.name})"})
            continue
        if rel in seen:
            out.skipped.append({"path": rel, "reason": f"listed again (line {line_no} of {path.name})"})
            continue
        seen.add(rel)
        label = _parse_label(label_text, path, line_no)
        if label is None:
            from_folders = label_from_rel(rel)
            label = UNKNOWN if from_folders is None else from_folders
        out.entries.append(ListEntry(full, rel, label, dataset or None))
    if not out.entries:
        example = f"; e.g. {out.skipped[0]['path']!r}" if out.skipped else ""
        raise DeepfakeError(f"{path} lists no image file{example}: a .txt list holds one image path per line, "
                            "a .csv list a 'path' column.")
    return out


def _txt_rows(text: str):
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield line_no, line, "", None


def _csv_rows(path: Path, text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = {(c or "").strip().lower(): c for c in (reader.fieldnames or [])}
    if "path" not in columns:
        raise DeepfakeError(f"{path} has no 'path' column (columns: {', '.join(reader.fieldnames or []) or 'none'}); "
                            "a .csv list needs 'path' and may have 'label' and 'dataset'.")
    for row in reader:
        raw = (row.get(columns["path"]) or "").strip()
        if not raw:
            continue
        label = (row.get(columns["label"]) or "").strip() if "label" in columns else ""
        dataset = (row.get(columns["dataset"]) or "").strip() if "dataset" in columns else ""
        yield reader.line_num, raw, label, dataset


def _parse_label(text: str, path: Path, line_no: int) -> int | None:
    key = text.strip().lower()
    if key not in LABEL_VALUES:
        raise DeepfakeError(f"{path} line {line_no}: label '{text}' is not real, fake, 0 or 1.")
    return LABEL_VALUES[key]


def has_dataset_column(read: ListRead) -> bool:
    return any(e.dataset for e in read.entries)
