"""Input sources: one registry entry per kind of input, so a new kind is one file in this package.

A `Source` is everything the rest of the code needs to know about one kind: whether a path is one
(`matches`, by its name; a folder by being one), its items with their labels and what it left out
(`datasets` for extract/audit/study, `loose` for predict, `scan` for a shard file found in a folder),
the bytes of one of its items (`read`, for items whose `member` is its `member_type`), what the audit
opens for an item's header (`header`), and where a spec of it lives (`location`: the file or folder an
output must not be, or lie in). `decode.item_bytes`, `audit.item_metadata`, `discover`, the output guards
and predict's checks all dispatch through here. Built-ins: `image`, `folder`, `tar`, `list`, `parquet`.

A spec may carry options after `?` (`data/train.parquet?image=img&label=y`); only a kind that declares
them (`options`) takes them: a folder takes those of its shard kinds and hands them on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deepfake_cli.data.items import ImageItem
from deepfake_cli.data.skips import shorten
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.registry import import_modules


class UnreadableSource(DeepfakeError):
    """A file that is not of its kind after all (a `.tar` that is no uncompressed tar): in a folder of shards
    it is a skipped row (the entry's `unreadable`); given by itself, one error line."""


@dataclass
class Found:
    """Items of one input with labels (UNKNOWN where none), what was left ({path, reason}) and warnings;
    `odd`: items kept unlabelled because their source's label was no label (the entry's `odd_note`)."""

    items: list[ImageItem] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    odd: int = 0


@dataclass(frozen=True)
class Source:
    name: str
    description: str                                   # in messages: "a .tar shard"
    matches: Callable[[Path], bool]                    # by the name alone (never opened)
    datasets: Callable[..., list] | None = None        # (path, shown, name, allow_unlabelled, options) -> [DatasetSpec]
    loose: Callable[..., Found] | None = None          # (path, options) -> Found, `rel`s spelled from the path as given
    scan: Callable[..., Found] | None = None           # (path, prefix, options) -> Found of one file: `rel` prefix/...
    read: Callable[[ImageItem], bytes] | None = None   # the encoded bytes of an item it made (at most MAX_IMAGE_BYTES)
    header: Callable[[ImageItem], tuple] | None = None  # audit: (what open_image reads, size); default: read
    member_type: type | None = None                    # the ImageItem.member of its items (None: a plain file)
    folder: bool = False                               # matches folders (else files)
    shard: bool = False                                # also read from a folder that holds no image
    short: str = ""                                    # its extension as messages show it (".tar")
    unreadable: str = ""                               # skip reason of a shard in a folder that cannot be opened
    odd_note: str = ""                                 # warning about Found.odd items, "{n}" their number
    named: bool = True                                 # does the name alone say what it is (output refusals)
    no_label: str = ""                                 # why a member of a labelled dataset has no label
    options: tuple[str, ...] = ()                      # the `?key=value` options it takes

    @property
    def noun(self) -> str:
        """Its description without the detail in brackets: "an image", "a .parquet file"."""
        return self.description.split(" (")[0]


SOURCES: dict[str, Source] = {}
_BY_MEMBER: dict[type | None, Source] = {}


def register_source(entry: Source) -> Source:
    if entry.name in SOURCES and SOURCES[entry.name] is not entry:
        raise ValueError(f"source {entry.name!r} is registered twice")
    SOURCES[entry.name] = entry
    if entry.read is not None:
        _BY_MEMBER[entry.member_type] = entry
    return entry


def list_sources() -> list[dict]:
    """[{name, description, shard, options}] of every source kind, in registration order."""
    return [{"name": e.name, "description": e.description, "shard": e.shard, "options": list(e.options)}
            for e in SOURCES.values()]


def kinds_text() -> str:
    """What an input may be, for messages: "an image (...), a folder, ... or a .parquet file"."""
    words = [e.description for e in SOURCES.values()]
    return ", ".join(words[:-1]) + ", or " + words[-1]


def source_for(path: Path) -> Source | None:
    """The entry of an existing path: a folder's, or the first file kind its name matches (None: none)."""
    folder = Path(path).is_dir()
    return next((e for e in SOURCES.values() if e.folder == folder and e.matches(Path(path))), None)


def shard_source(path) -> Source | None:
    """The shard kind (tar, parquet) a file found in a folder is, by its name, or None."""
    return next((e for e in SOURCES.values() if e.shard and e.matches(Path(path))), None)


def is_shard_file(path) -> bool:
    return shard_source(path) is not None


def item_source(item: ImageItem) -> Source:
    """The entry that reads `item`: by the type of its `member` (a plain file has none)."""
    member = getattr(item, "member", None)
    return _BY_MEMBER[None if member is None else type(member)]


def read_bytes(item: ImageItem) -> bytes:
    return item_source(item).read(item)


def item_header(item: ImageItem) -> tuple:
    """(what `open_image` reads, the encoded size) of an item: its file, or its bytes in memory."""
    import io

    entry = item_source(item)
    if entry.header is not None:
        return entry.header(item)
    data = entry.read(item)
    return io.BytesIO(data), len(data)


# --- `PATH?key=value&key=value` options --------------------------------------------------------------

_OPTIONS = re.compile(r"^[A-Za-z_][\w-]*=[^&=]*(&[A-Za-z_][\w-]*=[^&=]*)*$")


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """`PATH?k=v&k=v` -> (PATH, {k: v}); any other text (a file whose name holds '?') -> (text, {})."""
    text = str(text)
    head, sep, tail = text.rpartition("?")
    if not sep or not head or not _OPTIONS.match(tail) or os.path.exists(text):
        return text, {}
    return head, dict(pair.split("=", 1) for pair in tail.split("&"))


def location(text) -> str:
    """The file or folder a spec (PATH or PATH?options) reads: what no output may be, or lie in."""
    return split_options(str(text))[0]


def check_options(entry: Source, options: dict, shown: str) -> None:
    """Refuse options the kind does not take (a folder takes those of its shard kinds)."""
    if not options:
        return
    takes = entry.options or (tuple(k for e in SOURCES.values() if e.shard for k in e.options) if entry.folder else ())
    unknown = [k for k in options if k not in takes]
    if unknown:
        what = f"takes {', '.join(takes)}" if takes else "takes no ?options"
        raise DeepfakeError(f"{shorten(shown)}: unknown option '{shorten(unknown[0], 40)}'; {entry.noun} {what}.")


import_modules(__name__, __path__, first=("image", "folder", "tar", "listfile"))
