"""What was not used, said in bounded text: names cut to a sane length, many skipped rows summarised.

A hostile list can name a million-character path or the same missing file 100,000 times; neither may
turn into megabytes of output. Every line about an input goes through `shorten`, and `summary_lines`
prints a long skipped list as the first few rows of each reason plus a count of the rest.
"""

from __future__ import annotations

from typing import Callable, Iterable

MAX_NAME = 200          # characters of a name or reason printed in one line
MAX_STORED_PATH = 4096  # PATH_MAX: a longer listed path names no file, so skipped rows keep at most this much
SHOW_ALL_UP_TO = 20     # skipped rows printed one by one up to this many ...
FIRST_PER_REASON = 3    # ... beyond it, the first rows of each kind of reason and a count of the rest
MAX_REASONS = 10        # kinds of reasons shown; the others only counted

_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127)} | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def one_line(text) -> str:
    """`text` with line breaks and other control characters escaped, so it prints as one line."""
    return str(text).translate(_CONTROL)


def shorten(text, limit: int = MAX_NAME) -> str:
    """`text` on one line and at most `limit` characters: the middle of a longer one becomes '…' (the start
    and the end of a path, where its folder and its file name are, stay)."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def reason_kind(reason: str) -> str:
    """The kind of a skip reason, what groups it with others: its text before any '(' detail."""
    return reason.split(" (", 1)[0].strip()


def summary_lines(rows: Iterable[dict], name: Callable[[dict], str] = lambda r: r["path"]) -> list[str]:
    """Bounded lines about skipped rows ({path, reason}), without the word 'skipped' the caller prints.

    Up to SHOW_ALL_UP_TO rows: one line each (`name: reason`). More: for each kind of reason (in order of
    first appearance, at most MAX_REASONS kinds) its first FIRST_PER_REASON rows and `N more: kind`; the
    rows of further kinds are counted in one last line."""
    rows = list(rows)
    if len(rows) <= SHOW_ALL_UP_TO:
        return [_row_line(r, name) for r in rows]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(reason_kind(str(r.get("reason", ""))), []).append(r)
    lines: list[str] = []
    for i, (kind, group) in enumerate(groups.items()):
        if i == MAX_REASONS:
            rest = list(groups.values())[i:]
            lines.append(f"{sum(map(len, rest))} more, for {len(rest)} other reason(s)")
            break
        lines.extend(_row_line(r, name) for r in group[:FIRST_PER_REASON])
        if len(group) > FIRST_PER_REASON:
            lines.append(f"{len(group) - FIRST_PER_REASON} more: {shorten(kind)}")
    return lines


def _row_line(row: dict, name: Callable[[dict], str]) -> str:
    return f"{shorten(name(row))}: {shorten(row.get('reason', ''))}"
