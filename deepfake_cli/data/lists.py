"""List files: a `.txt` of image paths (one per line) or a `.csv` with a `path` column and optional
`label` (real/fake/0/1) and `dataset` columns. Relative paths are relative to the list's folder.

The whole list is checked before any work starts. A list that cannot be parsed (a NUL byte, an
unterminated quote, a field longer than the CSV reader takes) is one error. Each listed path is looked
up once (one `stat`, never opened): a missing file, a path no file can have, a FIFO or device (opening
one would block), and a file larger than any image are skipped rows with their line, as are entries
that do not name an image by its extension. A path listed again is one skipped row however often it
repeats (how many times, and the first lines). A list naming no usable image is refused.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_cli.data.items import FAKE, REAL, UNKNOWN, label_from_rel
from deepfake_cli.data.skips import MAX_STORED_PATH, shorten, summary_lines
from deepfake_cli.data.walk import file_problem, is_image_file, require_regular_file
from deepfake_cli.errors import DeepfakeError

LIST_EXTENSIONS = {".txt", ".csv"}
LABEL_VALUES = {"real": REAL, "0": REAL, "fake": FAKE, "1": FAKE, "": None}
_FIRST_LINES = 3  # line numbers named in the skipped row of a repeated path


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
    """Entries of a `.txt` or `.csv` list, in list order, each path once; what was left in `skipped`."""
    path = Path(path)
    root = Path(os.path.abspath(path.parent))
    text = _list_text(path)
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _txt_rows(text)
    out = ListRead(root)
    repeats: dict[str, tuple[int, list[int]]] = {}   # rel -> (its row in skipped, lines that list it again)
    seen: set[str] = set()
    resolve, name = _resolver(root), shorten(path.name)
    for line_no, raw, label_text, dataset in rows:
        full, rel = resolve(raw)
        if rel in seen:  # one row per path however often it repeats, where it first repeats
            if rel not in repeats:
                repeats[rel] = (len(out.skipped), [])
                out.skipped.append({"path": shorten(rel, MAX_STORED_PATH), "reason": ""})
            repeats[rel][1].append(line_no)
            continue
        seen.add(rel)
        label = _parse_label(label_text, path, line_no)  # a bad cell is a bad list, whatever the file
        problem = _entry_problem(full)
        if problem:
            out.skipped.append({"path": shorten(rel, MAX_STORED_PATH), "reason": f"{problem} (line {line_no} of {name})"})
            continue
        if label is None:
            from_folders = label_from_rel(rel)
            label = UNKNOWN if from_folders is None else from_folders
        out.entries.append(ListEntry(Path(full), rel, label, dataset or None))
    for row, lines in repeats.values():
        out.skipped[row]["reason"] = _repeat_reason(lines, path)
    if not out.entries:
        raise DeepfakeError(_nothing_usable(path, out.skipped))
    return out


def _resolver(root: Path):
    """raw -> (absolute normalised path, path relative to `root` with '/'), on strings and memoised:
    a list of 100,000 lines must parse in well under a second, and repeated lines cost nothing."""
    base = str(root)
    prefix = base.rstrip(os.sep) + os.sep
    memo: dict[str, tuple[str, str]] = {}

    def resolve(raw: str) -> tuple[str, str]:
        found = memo.get(raw)
        if found is None:
            full = os.path.normpath(os.path.join(base, os.path.expanduser(raw)))
            rel = full[len(prefix):] if full.startswith(prefix) else os.path.relpath(full, base)
            found = memo[raw] = (full, rel.replace(os.sep, "/"))
        return found

    return resolve


def _list_text(path: Path) -> str:
    """The list's text; a FIFO or device, an unreadable or binary file is one error."""
    require_regular_file(path, str(path), "a .txt or .csv list file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeepfakeError(f"cannot read the list {shorten(path)}: {shorten(exc)}.") from exc
    nul = text.find("\0")
    if nul >= 0:  # no path holds one: a binary file, or a list damaged beyond guessing what it meant
        raise DeepfakeError(f"{shorten(path)} line {text.count(chr(10), 0, nul) + 1} holds a NUL byte: a list is "
                            "text, one image path per line (.txt) or a 'path' column (.csv).")
    return text


def _entry_problem(full: Path) -> str | None:
    """Why a listed path is not read (one stat, never opened), or None."""
    if not is_image_file(full):
        return "not an image file by extension"
    try:
        st = os.stat(full)
    except FileNotFoundError:
        return "missing file"
    except OSError as exc:
        return f"cannot read file: {exc.strerror or type(exc).__name__}"
    return file_problem(st)


def _repeat_reason(lines: list[int], path: Path) -> str:
    if len(lines) == 1:
        return f"listed again (line {lines[0]} of {shorten(path.name)})"
    shown = ", ".join(map(str, lines[:_FIRST_LINES])) + (", …" if len(lines) > _FIRST_LINES else "")
    return f"listed again {len(lines)} times (lines {shown} of {shorten(path.name)})"


def _nothing_usable(path: Path, skipped: list[dict]) -> str:
    if not skipped:
        return f"{shorten(path)} lists no image file: a .txt list holds one image path per line, a .csv list a 'path' column."
    by_extension = all(s["reason"].startswith("not an image file by extension") for s in skipped)
    first = "; ".join(summary_lines(skipped[:2]))
    more = f" and {len(skipped) - 2} more" if len(skipped) > 2 else ""
    if by_extension:
        return (f"{shorten(path)} lists no image file ({first}{more}): a .txt list holds one image path per line, "
                "a .csv list a 'path' column.")
    entries = "1 entry" if len(skipped) == 1 else f"{len(skipped)} entries"
    return f"{shorten(path)} lists no usable image: {entries} skipped ({first}{more})."


def _txt_rows(text: str):
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield line_no, line, "", None


def _csv_rows(path: Path, text: str):
    """(line, path, label, dataset) per row; a file the CSV reader cannot parse is one error, not a
    shorter list (strict: an unterminated quote would otherwise swallow every row after it)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    done = 0  # lines of the rows read so far: a bad row starts on the next one
    try:
        columns = {(c or "").strip().lower(): c for c in (reader.fieldnames or [])}
        if "path" not in columns:
            names = ", ".join(shorten(c, 40) for c in (reader.fieldnames or [])[:20]) or "none"
            raise DeepfakeError(f"{shorten(path)} has no 'path' column (columns: {names}); "
                                "a .csv list needs 'path' and may have 'label' and 'dataset'.")
        done = reader.line_num
        for row in reader:
            raw = (row.get(columns["path"]) or "").strip()
            label = (row.get(columns["label"]) or "").strip() if "label" in columns else ""
            dataset = (row.get(columns["dataset"]) or "").strip() if "dataset" in columns else ""
            if raw:
                yield reader.line_num, raw, label, dataset
            done = reader.line_num
    except csv.Error as exc:
        hint = ("a path is at most 4096 characters" if "field limit" in str(exc)
                else "an unterminated quote makes the rest of the file one field")
        raise DeepfakeError(f"{shorten(path)} is not valid CSV in the row starting at line {done + 1}: "
                            f"{shorten(exc)} ({hint}).") from None


def _parse_label(text: str, path: Path, line_no: int) -> int | None:
    key = text.strip().lower()
    if key not in LABEL_VALUES:
        raise DeepfakeError(f"{shorten(path)} line {line_no}: label '{shorten(text, 40)}' is not real, fake, 0 or 1.")
    return LABEL_VALUES[key]


def has_dataset_column(read: ListRead) -> bool:
    return any(e.dataset for e in read.entries)
