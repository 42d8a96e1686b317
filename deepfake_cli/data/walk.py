"""Walking a folder for image files and tar shards: every real folder once, nothing lost silently.

Symbolic links are followed (datasets are often assembled from links), but each real folder is read
once, recognised by (device, inode): a link back to a folder above it, or a second link to a folder
already read, is reported instead of being walked again. Folders and files that cannot be read, and
links that lead nowhere, are reported too. Real folders are walked before linked ones, so a link
never takes a folder's images away from their own path (and their own label folder).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_cli.errors import DeepfakeError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
TAR_EXTENSION = ".tar"


def is_image_file(path) -> bool:
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def is_tar_file(path) -> bool:
    return os.path.splitext(str(path))[1].lower() == TAR_EXTENSION


@dataclass
class FolderScan:
    """What a walk found below `root`: paths sorted by their relative path; `skipped` holds
    {path, reason} with paths relative to `root`."""

    root: Path
    images: list[Path] = field(default_factory=list)
    tars: list[Path] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def scan_folder(folder) -> FolderScan:
    """Image files and `.tar` files below `folder`, recursively; hidden names are ignored."""
    root = Path(folder)
    try:
        st = os.stat(root)
    except OSError as exc:
        raise DeepfakeError(f"cannot read folder {folder}: {_why(exc)}.") from exc
    scan = FolderScan(root)
    seen = {(st.st_dev, st.st_ino): "."}
    real_dirs: list[tuple[Path, str]] = [(root, "")]
    linked_dirs: list[tuple[Path, str]] = []
    images: list[tuple[str, Path]] = []
    tars: list[tuple[str, Path]] = []
    while real_dirs or linked_dirs:
        if real_dirs:
            path, rel = real_dirs.pop()
        else:
            path, rel = linked_dirs.pop(0)
            try:
                st = os.stat(path)
            except OSError as exc:
                scan.skipped.append({"path": rel, "reason": f"unreadable folder ({_why(exc)})"})
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                scan.skipped.append({"path": rel, "reason": _repeat_reason(path, seen[key])})
                continue
            seen[key] = rel
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not rel:
                raise DeepfakeError(f"cannot read folder {folder}: {_why(exc)}.") from exc
            scan.skipped.append({"path": rel, "reason": f"unreadable folder ({_why(exc)})"})
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            child = Path(entry.path)
            if entry.is_symlink():
                try:
                    os.stat(child)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        scan.skipped.append({"path": child_rel, "reason": "symlink loop"})
                    elif is_image_file(entry.name) or is_tar_file(entry.name):
                        scan.skipped.append({"path": child_rel, "reason": "broken symlink (its target is missing)"})
                    continue
            if entry.is_dir():
                if entry.is_symlink():
                    linked_dirs.append((child, child_rel))
                    continue
                st = entry.stat(follow_symlinks=False)
                key = (st.st_dev, st.st_ino)
                if key in seen:  # a bind mount can loop without any symlink
                    scan.skipped.append({"path": child_rel, "reason": _repeat_reason(child, seen[key])})
                    continue
                seen[key] = child_rel
                real_dirs.append((child, child_rel))
            elif is_image_file(entry.name) or is_tar_file(entry.name):
                if not os.access(child, os.R_OK):
                    scan.skipped.append({"path": child_rel, "reason": "unreadable file (permission denied)"})
                    continue
                (images if is_image_file(entry.name) else tars).append((child_rel, child))
    scan.images = [p for _, p in sorted(images, key=lambda t: t[0])]
    scan.tars = [p for _, p in sorted(tars, key=lambda t: t[0])]
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
