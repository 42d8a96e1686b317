"""Walking a folder for image files and tar shards: every real folder once, nothing lost silently.

Symbolic links are followed (datasets are often assembled from links), but each real folder is read
once, recognised by (device, inode): a link back to a folder above it, or a second link to a folder
already read, is reported instead of being walked again. Folders and files that cannot be read, and
links that lead nowhere, are reported too. Real folders are walked before linked ones, so a link
never takes a folder's images away from their own path (and their own label folder). A file named like
an image that is no regular file (a FIFO would block its reader forever) or that is larger than any image
(`decode.MAX_IMAGE_BYTES`) is reported by its kind or size alone, never opened.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deepfake_cli.data.decode import MAX_IMAGE_BYTES
from deepfake_cli.data.skips import shorten
from deepfake_cli.errors import DeepfakeError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
TAR_EXTENSION = ".tar"


def is_image_file(path) -> bool:
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def is_tar_file(path) -> bool:
    return os.path.splitext(str(path))[1].lower() == TAR_EXTENSION


_SPECIAL = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
            (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_kind(mode: int) -> str:
    """What a file that is not a regular file is: "a FIFO", "a folder", ..."""
    return next((name for test, name in _SPECIAL if test(mode)), "not a regular file")


def too_large(size: int) -> str:
    """The skip reason of an encoded image over MAX_IMAGE_BYTES."""
    return f"too large for an image ({size / 1e6:.0f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB)"


def file_problem(st: os.stat_result, image: bool = True) -> str | None:
    """Why a file named like an image (or a tar shard) is left unread, or None; its stat says it all:
    not a regular file, or (an image) larger than any image."""
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({special_kind(st.st_mode)})"
    if image and st.st_size > MAX_IMAGE_BYTES:
        return too_large(st.st_size)
    return None


def require_regular_file(path, shown: str, expected: str) -> os.stat_result:
    """The stat of an input file, or one DeepfakeError when it is a FIFO, socket or device: opening one
    would block (a FIFO with no writer) or read forever (a device)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DeepfakeError(f"cannot read {shorten(shown)}: {why}.") from exc
    if not stat.S_ISREG(st.st_mode):
        raise DeepfakeError(f"{shorten(shown)} is {special_kind(st.st_mode)}, not a regular file; "
                            f"give {expected}.")
    return st


@dataclass
class FolderScan:
    """What a walk found below `root`: paths sorted by their relative path; `skipped` holds
    {path, reason} with paths relative to `root`."""

    root: Path
    images: list[Path] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)  # files the walk's `is_shard` took (.tar; .parquet too)
    skipped: list[dict] = field(default_factory=list)

    @property
    def tars(self) -> list[Path]:
        return [p for p in self.shards if is_tar_file(p)]


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def scan_folder(folder, is_shard: Callable[[str], bool] = is_tar_file) -> FolderScan:
    """Image files and shard files (`is_shard` by name: `.tar` ones, or every source kind's, see
    `data.sources`) below `folder`, recursively; hidden names are ignored."""
    root = Path(folder)
    try:
        st = os.stat(root)
    except OSError as exc:
        raise DeepfakeError(f"cannot read folder {folder}: {_why(exc)}.") from exc
    return _Walk(folder, root, st, is_shard).run()


class _Walk:
    """One `scan_folder`: the folders still to read and every real folder seen, by (device, inode)."""

    def __init__(self, folder, root: Path, root_stat: os.stat_result, is_shard: Callable[[str], bool]):
        self.folder = folder
        self.is_shard = is_shard
        self.scan = FolderScan(root)
        self.seen = {(root_stat.st_dev, root_stat.st_ino): "."}
        self.real_dirs: list[tuple[Path, str]] = [(root, "")]
        self.linked_dirs: list[tuple[Path, str]] = []
        self.images: list[tuple[str, Path]] = []
        self.shards: list[tuple[str, Path]] = []

    def run(self) -> FolderScan:
        while self.real_dirs or self.linked_dirs:
            # real folders first, so a link never takes a folder's images away from their own path
            if self.real_dirs:
                path, rel = self.real_dirs.pop()
            else:
                path, rel = self.linked_dirs.pop(0)
                if not self._claim_linked(path, rel):
                    continue
            for entry in self._entries(path, rel):
                self._visit(entry, rel)
        return self._result()

    def _skip(self, rel: str, reason: str) -> None:
        self.scan.skipped.append({"path": rel, "reason": reason})

    def _claim_linked(self, path: Path, rel: str) -> bool:
        """Is the folder a link leads to readable and not read yet? (It is then marked as read.)"""
        try:
            st = os.stat(path)
        except OSError as exc:
            self._skip(rel, f"unreadable folder ({_why(exc)})")
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.seen:
            self._skip(rel, _repeat_reason(path, self.seen[key]))
            return False
        self.seen[key] = rel
        return True

    def _entries(self, path: Path, rel: str) -> list[os.DirEntry]:
        """The folder's entries by name; an unreadable folder is reported (the root one refused)."""
        try:
            with os.scandir(path) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not rel:
                raise DeepfakeError(f"cannot read folder {self.folder}: {_why(exc)}.") from exc
            self._skip(rel, f"unreadable folder ({_why(exc)})")
            return []

    def _visit(self, entry: os.DirEntry, rel: str) -> None:
        if entry.name.startswith("."):
            return
        child_rel = f"{rel}/{entry.name}" if rel else entry.name
        child = Path(entry.path)
        if entry.is_symlink() and not self._link_resolves(entry, child, child_rel):
            return
        if entry.is_dir():
            self._add_folder(entry, child, child_rel)
        elif is_image_file(entry.name) or self.is_shard(entry.name):
            self._add_file(entry, child, child_rel)

    def _link_resolves(self, entry: os.DirEntry, child: Path, child_rel: str) -> bool:
        """Does the link lead somewhere? A loop is reported, and a broken link when it names an image or tar."""
        try:
            os.stat(child)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._skip(child_rel, "symlink loop")
            elif is_image_file(entry.name) or self.is_shard(entry.name):
                self._skip(child_rel, "broken symlink (its target is missing)")
            return False
        return True

    def _add_folder(self, entry: os.DirEntry, child: Path, child_rel: str) -> None:
        if entry.is_symlink():  # read after every real folder, and only when its target is new
            self.linked_dirs.append((child, child_rel))
            return
        st = entry.stat(follow_symlinks=False)
        key = (st.st_dev, st.st_ino)
        if key in self.seen:  # a bind mount can loop without any symlink
            self._skip(child_rel, _repeat_reason(child, self.seen[key]))
            return
        self.seen[key] = child_rel
        self.real_dirs.append((child, child_rel))

    def _add_file(self, entry: os.DirEntry, child: Path, child_rel: str) -> None:
        image = is_image_file(entry.name)
        try:
            problem = file_problem(entry.stat(), image)  # follows a link: what the reader would open
        except OSError as exc:
            problem = f"unreadable file ({_why(exc)})"
        if problem is None and not os.access(child, os.R_OK):
            problem = "unreadable file (permission denied)"
        if problem:
            self._skip(child_rel, problem)
            return
        (self.images if image else self.shards).append((child_rel, child))

    def _result(self) -> FolderScan:
        """The scan with its lists sorted by relative path (the walk order depends on links)."""
        scan = self.scan
        scan.images = [p for _, p in sorted(self.images, key=lambda t: t[0])]
        scan.shards = [p for _, p in sorted(self.shards, key=lambda t: t[0])]
        scan.skipped.sort(key=lambda s: s["path"])
        return scan


def _repeat_reason(path: Path, first_rel: str) -> str:
    target, parent = os.path.realpath(path), os.path.realpath(path.parent)
    if parent == target or parent.startswith(target.rstrip(os.sep) + os.sep):
        return "symlink loop (links to a folder above it)"
    return f"same folder as {first_rel} (read once)"


def iter_image_files(folder) -> list[Path]:
    """All image files below `folder`, recursively, any case of extension, in a stable order."""
    return scan_folder(folder).images
