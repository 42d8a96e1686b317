"""The zoo's entries, read from `entries.toml` (data, not code): one frozen `ZooEntry` per ready detector.

Reading the catalogue loads no torch, so `deepfake models` answers at once; the heads are read only when a
model is built (`zoo.model`).

More entries, without editing the package: files of the same `[[entry]]` format named by the environment
variable `DEEPFAKE_ZOO_ENTRIES` (paths joined by the OS path separator), read after the shipped ones. Their
`head_file` and `licence_file` are relative to the file's own folder. An environment variable, not a call,
so that every process sees them (a study's worker processes, a `deepfake` run from a script).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from deepfake_cli.errors import DeepfakeError

HERE = Path(__file__).resolve().parent
ENTRIES_FILE = HERE / "entries.toml"
ENTRIES_ENV = "DEEPFAKE_ZOO_ENTRIES"
PREFIX = "zoo:"
NOTHING_MEASURED = "nothing measured yet"


@dataclass(frozen=True)
class ZooEntry:
    """One ready detector: a registered backbone (the paper's own preprocessing) and a fixed linear head."""

    name: str
    title: str
    backbone: str              # a registered backbone name (deepfake backbones)
    layers: str
    backbone_weights: str      # which weights, in words (they are fetched or supplied, never shipped)
    weights_sha256: str        # the published backbone weights file's sha256 ("" when not published)
    head_file: str             # relative to this package
    head_sha256: str
    head_weight: str           # "a.b.c": where the (1, dim) weight tensor is in the head file
    head_bias: str
    head_source: str           # where the head file comes from (repository, commit, path)
    licence: str
    licence_file: str          # relative to this package, shipped beside the head
    training_data: str
    preprocessing: str
    threshold: float
    published: dict            # the paper's figures (name -> value), labelled as published wherever shown
    citation: str
    measured_here: str | None = None  # None: nothing measured yet with this tool
    # the folder head_file and licence_file are relative to: the package's, or an extra entries file's
    root: Path = field(default=HERE, repr=False, compare=False)

    @property
    def published_text(self) -> str:
        return "; ".join(f"{k.replace('_pct', ' (%)').replace('_', ' ')} {v}" for k, v in self.published.items())

    @property
    def head_path(self) -> Path:
        return self.root / self.head_file

    @property
    def licence_path(self) -> Path:
        return self.root / self.licence_file

    @property
    def zoo_name(self) -> str:
        return PREFIX + self.name

    def card(self) -> dict:
        """What `deepfake models --json` prints and a zoo model's metadata keeps under "zoo"."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "root"}
        row["zoo_name"] = self.zoo_name
        row["measured_here"] = self.measured_here or NOTHING_MEASURED
        row["head_file"] = str(self.head_path)
        row["licence_file"] = str(self.licence_path)
        return row


def extra_files() -> tuple[Path, ...]:
    """The extra entries files `DEEPFAKE_ZOO_ENTRIES` names, in its order."""
    value = os.environ.get(ENTRIES_ENV, "")
    return tuple(Path(v).expanduser().resolve() for v in value.split(os.pathsep) if v.strip())


def entries() -> tuple[ZooEntry, ...]:
    """Every entry: those of `entries.toml`, in file order, then those of the extra files (`ENTRIES_ENV`)."""
    return _entries(tuple((p, _stamp(p)) for p in extra_files()))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=8)  # keyed on the extra files as they are now: a changed variable or file is read again
def _entries(stamped: tuple[tuple[Path, tuple | None], ...]) -> tuple[ZooEntry, ...]:
    extra = [p for p, _ in stamped]
    out = list(_read(ENTRIES_FILE, HERE, ValueError))
    for path in extra:  # the user's files: a mistake in one is one line naming it
        if not path.is_file():
            raise DeepfakeError(f"{ENTRIES_ENV} names {path}, which is not a file.")
        out.extend(_read(path, path.parent, DeepfakeError))
    names = [e.name for e in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise (DeepfakeError if extra else ValueError)(
            f"zoo entry name(s) {', '.join(twice)} used twice (in {ENTRIES_FILE}"
            + "".join(f", {p}" for p in extra) + ").")
    return tuple(out)


def _read(path: Path, root: Path, error: type[Exception]) -> list[ZooEntry]:
    """The entries of one file; `error` is ValueError for the shipped file (a typo there is a bug of ours:
    say where) and DeepfakeError for a user's."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh).get("entry", [])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"zoo entries file {path} cannot be read as TOML: {exc}") from None
    data = [f.name for f in fields(ZooEntry) if f.name != "root"]
    required = [k for k in data if k != "measured_here"]
    out = []
    for item in raw if isinstance(raw, list) else [raw]:
        if not isinstance(item, dict):
            raise error(f"{path}: each [[entry]] must be a table of keys.")
        where = f"{path}: entry {item.get('name')!r}"
        unknown, missing = sorted(set(item) - set(data)), [k for k in required if k not in item]
        if unknown or missing:
            what = [f"has unknown keys {unknown}"] * bool(unknown) + [f"lacks keys {missing}"] * bool(missing)
            raise error(f"{where} {' and '.join(what)}.")
        texts = [k for k in data if k not in ("threshold", "published", "measured_here")]
        if not all(isinstance(item[k], str) for k in texts) or not isinstance(item["published"], dict):
            raise error(f"{where}: {', '.join(texts)} must be strings and published a table.")
        if isinstance(item["threshold"], bool) or not isinstance(item["threshold"], int | float):
            raise error(f"{where}: threshold must be a number.")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", item["name"]):  # it is typed as zoo:NAME and names cache files
            raise error(f"{where}: a name may only use letters, digits, '_', '-' and '.'.")
        out.append(ZooEntry(**{**item, "threshold": float(item["threshold"])}, root=root))
    return out


def is_zoo_name(value) -> bool:
    """True for "zoo:NAME" (a str or a path written so); such a name is never read as a file."""
    return isinstance(value, str | Path) and str(value).startswith(PREFIX)


def get_entry(name: str) -> ZooEntry:
    """The entry of "NAME" or "zoo:NAME"; DeepfakeError naming the known ones."""
    bare = str(name)[len(PREFIX):] if is_zoo_name(name) else str(name)
    for e in entries():
        if e.name == bare:
            return e
    raise DeepfakeError(f"Unknown zoo model {bare!r}: known are {', '.join(e.zoo_name for e in entries())} "
                        "(see `deepfake models`).")
