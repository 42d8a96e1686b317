"""The one atomic write: a file is written under a temporary name beside its target, flushed to disk
(fsync) and renamed over the target, so a crash never leaves a file that looks finished, and a failed
write leaves the previous file as it was. Files get the permissions any other tool would give them
(0666 less the umask), not mkstemp's private 0600, so a team can share them.

Temporary names follow one of two schemes, and `remove_stale_temporaries` (the one cleaner) knows both:
* `PARTIAL`, `.NAME.XXXXXXXX.partial`: every artifact, shard, figure and text file;
* `STORE`, `NAME.tmp-XXXXXXXX`: the feature store's merged file (resume, `recovery` and the fault tests
  know these names).
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class TempScheme:
    """How the temporaries of a target named NAME are named: `prefix` and `suffix` around mkstemp's 8
    random characters (`{name}` stands for NAME); `rest` matches what a stale one has between them."""

    prefix: str
    suffix: str
    rest: str

    def matches(self, target: Path, name: str) -> bool:
        pattern = (re.escape(self.prefix.format(name=target.name)) + self.rest + re.escape(self.suffix))
        return re.fullmatch(pattern, name) is not None


PARTIAL = TempScheme(".{name}.", ".partial", "[a-z0-9_]{8}")
STORE = TempScheme("{name}.tmp-", "", ".*")


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shared_mode(path) -> None:
    """Give a file made by mkstemp (mode 0600) the mode an ordinary `open` would have given it."""
    os.chmod(path, 0o666 & ~_umask())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A temporary file beside `target` (parent folders created): write `path` by any means, then
    `commit()` puts it in place complete; `discard()` removes it (a no-op after a commit)."""

    def __init__(self, target, scheme: TempScheme = PARTIAL):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=scheme.prefix.format(name=self.target.name), suffix=scheme.suffix,
                                   dir=self.target.parent)
        os.close(fd)
        self.path = Path(tmp)

    def commit(self) -> Path:
        _fsync(self.path)
        shared_mode(self.path)  # mkstemp's 0600 -> what the umask gives any other file
        os.replace(self.path, self.target)
        return self.target

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path, scheme: TempScheme = PARTIAL) -> Iterator[Path]:
    """Yield a temporary path beside `path`; put it over `path` if the block succeeds, else delete it.

    The caller writes the temporary file by any means (h5py, skops, numpy). Parent folders are created.
    """
    f = AtomicFile(path, scheme)
    try:
        yield f.path
        f.commit()
    finally:
        f.discard()


def remove_stale_temporaries(target, schemes: tuple[TempScheme, ...] = (PARTIAL,)) -> list[Path]:
    """Delete the temporaries of `target` (named by `schemes`) that a killed writer left beside it; returns
    what was removed. Only while holding `target`'s lock (`safety.locks.output_lock`): a live writer's
    temporaries have the same names."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    removed = [p for p in sorted(target.parent.iterdir())
               if any(s.matches(target, p.name) for s in schemes) and p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
