"""The one free-space rule: refuse a write that the disk cannot hold before it starts, and word a disk
that fills during a write as one line that names the output and how much to free.

How much a write needs is recorded in a `SpaceNeeds` ledger that lives as long as one guarded call
(`outputs.guard` opens it with `needs_scope`): `check_space` records into it, the full-disk line
(`disk_full`) and `nearly_full` read it, and nothing recorded for one call is read by the next.
A full disk during a write is a `DiskFullError` (a `DeepfakeError`), recognised by its type.
"""

from __future__ import annotations

import errno
import shutil
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from deepfake_cli.errors import DeepfakeError

MB = 1 << 20


class NotEnoughSpaceError(DeepfakeError):
    """A write refused before it started: its folder holds less than it needs (nothing was touched)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=1)


class DiskFullError(DeepfakeError):
    """The disk filled while `path` was being written; the file it replaces is unchanged."""

    def __init__(self, path, message: str | None = None):
        self.path = Path(path)
        super().__init__(message or f"no space left on device while writing {path}; existing files are unchanged: "
                         "free some space and rerun.", exit_code=1)

    def __reduce__(self):  # pickled whole (a forked writer, a Ray worker), not as its message alone
        return type(self), (self.path, str(self))


class SpaceNeeds:
    """Bytes that writing each output still needs, recorded by `check_space` during one guarded call."""

    def __init__(self):
        self._need: dict[Path, int] = {}

    def expect(self, out, n_bytes: int) -> None:
        self._need[_key(out)] = int(n_bytes)

    def get(self, out, default: int | None = None) -> int | None:
        return self._need.get(_key(out), default)


# the ledger of the guarded call running in this thread (a context variable: a thread or a nested call
# never sees another call's needs); None outside a guard
_needs: ContextVar[SpaceNeeds | None] = ContextVar("deepfake_space_needs", default=None)


@contextmanager
def needs_scope() -> Iterator[SpaceNeeds]:
    """A fresh ledger for the block (one guarded call)."""
    needs = SpaceNeeds()
    token = _needs.set(needs)
    try:
        yield needs
    finally:
        _needs.reset(token)


def current_needs() -> SpaceNeeds:
    """The running call's ledger; an empty one outside a guard (nothing known)."""
    return _needs.get() or SpaceNeeds()


def _key(out) -> Path:
    return Path(out).resolve()


def existing_folder(path) -> Path:
    """The nearest folder above `path` that exists (where its free space is counted)."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def mb(n: int) -> int:
    """`n` bytes in whole MB, rounded up, at least 1."""
    return max(1, -(-int(n) // MB))


def check_space(out, need: int) -> None:
    """Refuse (one line) before writing `out` when its folder has less than `need` bytes free, and record
    the need for the full-disk line: HDF5 can crash the whole process when the disk fills under it, and a
    refusal up front leaves every file as it was."""
    current_needs().expect(out, need)
    folder = existing_folder(out)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise NotEnoughSpaceError(f"not enough space to write {out}: about {mb(need)} MB needed, {mb(free)} MB "
                                  f"free in {folder}; existing files are unchanged: free {mb(need - free)} MB and "
                                  "rerun.")


def is_no_space(exc: BaseException | None) -> bool:
    """Is `exc` a full disk: our `DiskFullError`, or an OSError of ENOSPC (HDF5 sometimes only says it in words)?"""
    if isinstance(exc, DiskFullError):
        return True
    return isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or "No space left" in str(exc))


def disk_full(out) -> DiskFullError:
    """The full-disk line of a guarded output: what to free (from the recorded need) and where."""
    out = Path(out)
    need = current_needs().get(out)
    folder = existing_folder(out)
    free = "some space"
    if need:
        try:
            missing = need - shutil.disk_usage(folder).free
        except OSError:
            missing = need
        free = f"{mb(missing)} MB"
    return DiskFullError(out, f"no space left on device while writing {out}; the existing file is unchanged (finished "
                              f"work is kept to resume): free {free} in {folder} and rerun.")


def nearly_full(path) -> bool:
    """Does the folder of `path` hold less than writing it needs (as recorded; 1 MB if unknown)? A write that
    failed while this is so failed for the disk, whatever the library said."""
    try:
        return shutil.disk_usage(Path(path).parent).free < current_needs().get(path, MB)
    except OSError:
        return False
