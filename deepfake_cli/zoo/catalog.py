"""The zoo's entries, read from `entries.toml` (data, not code): one frozen `ZooEntry` per ready detector.

Reading the catalogue loads no torch, so `deepfake models` answers at once; the heads are read only when a
model is built (`zoo.model`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

from deepfake_cli.errors import DeepfakeError

HERE = Path(__file__).resolve().parent
ENTRIES_FILE = HERE / "entries.toml"
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

    @property
    def published_text(self) -> str:
        return "; ".join(f"{k.replace('_pct', ' (%)').replace('_', ' ')} {v}" for k, v in self.published.items())

    @property
    def head_path(self) -> Path:
        return HERE / self.head_file

    @property
    def licence_path(self) -> Path:
        return HERE / self.licence_file

    @property
    def zoo_name(self) -> str:
        return PREFIX + self.name

    def card(self) -> dict:
        """What `deepfake models --json` prints and a zoo model's metadata keeps under "zoo"."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["zoo_name"] = self.zoo_name
        row["measured_here"] = self.measured_here or NOTHING_MEASURED
        row["head_file"] = str(self.head_path)
        row["licence_file"] = str(self.licence_path)
        return row


@lru_cache(maxsize=1)
def entries() -> tuple[ZooEntry, ...]:
    """Every entry of `entries.toml`, in file order."""
    with open(ENTRIES_FILE, "rb") as fh:
        raw = tomllib.load(fh).get("entry", [])
    known = {f.name for f in fields(ZooEntry)}
    out = []
    for item in raw:
        unknown = set(item) - known
        if unknown:  # a typo in the data file is a bug of ours: say where
            raise ValueError(f"{ENTRIES_FILE}: entry {item.get('name')!r} has unknown keys {sorted(unknown)}")
        out.append(ZooEntry(**{**item, "threshold": float(item["threshold"])}))
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{ENTRIES_FILE}: an entry name is used twice: {names}")
    return tuple(out)


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
