"""Tar shards in the webdataset layout (what img2dataset writes), read in place, never unpacked.

A shard holds samples `KEY.jpg` (or another image extension) with optional `KEY.json` and
`KEY.cls`; the key is the member name up to the first dot of its file name. `.cls` holds 0 (real)
or 1 (fake). One pass over the tar headers records where each image's bytes lie (offset and size),
so a reader later fetches one image with a seek and a read; only the tiny `.cls` members are read
now. Members without a `.cls` take their label from label folders in their path, as images do.

Every member that is not used is reported in `skipped` with its reason, never dropped silently: links
and special files (a shard's links are not followed), repeated names, sparse members, images larger than
any image (`decode.MAX_IMAGE_BYTES`, judged by the header's size before a byte is read), files of a sample
without an image, and the end of a shard cut short or damaged (inside a header, too: the tar reader
takes a short or broken header for the end of the archive; a whole shard ends in a zero block).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from deepfake_cli.data.decode import MAX_IMAGE_BYTES
from deepfake_cli.data.items import FAKE, REAL, UNKNOWN, ImageItem, TarMember, label_from_rel
from deepfake_cli.data.skips import shorten
from deepfake_cli.data.walk import is_image_file, require_regular_file, too_large
from deepfake_cli.errors import DeepfakeError

CLS_LABELS = {"0": REAL, "1": FAKE}
_MAX_CLS_BYTES = 64  # a class index, not a payload
_BLOCK = tarfile.BLOCKSIZE
# Why a member that is not a regular file is left out (tarfile's type tests, in order).
_NOT_REGULAR = (("issym", "symbolic link member (links in a shard are not followed)"),
                ("islnk", "hard link member (links in a shard are not followed)"),
                ("isfifo", "FIFO member (not a regular file)"), ("ischr", "character device member (not a regular file)"),
                ("isblk", "block device member (not a regular file)"))


def sample_key(member_name: str) -> tuple[str, str]:
    """(key, extension) the way webdataset splits `dir/KEY.ext.more`: at the file name's first dot."""
    head, _, base = member_name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext


class TarScan:
    """The images of one shard, in tar order, and what could not be used."""

    def __init__(self):
        self.items: list[ImageItem] = []
        self.skipped: list[dict] = []
        self.odd_cls: int = 0  # .cls values other than 0/1 (the image is kept, unlabelled)


def scan_tar(path, rel_prefix: str) -> TarScan:
    """Scan one uncompressed tar's headers; item `rel`s are `<rel_prefix>/<member name>`.

    Raises DeepfakeError when the file is not an uncompressed tar (members could not be read by
    seeking); a shard cut short keeps the members whose headers were read and reports the rest.
    """
    path = Path(path)
    out = TarScan()
    require_regular_file(path, str(path), "a .tar shard")  # a FIFO would block tarfile.open forever
    try:
        tf = tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise DeepfakeError(f"{shorten(path)} is not an uncompressed tar file (a .tar.gz cannot be read in place): "
                            f"{shorten(exc)}.") from exc
    with tf:
        images, cls = _scan_members(tf, path, rel_prefix, out)
    labels = _read_cls(path, cls)
    for name, offset, size in images:
        rel = f"{rel_prefix}/{name}"
        label = labels.get(sample_key(name)[0])
        if label is None or label == UNKNOWN:
            if label == UNKNOWN:
                out.odd_cls += 1
            folder_label = label_from_rel(rel)
            label = folder_label if folder_label is not None else UNKNOWN
        out.items.append(ImageItem(path, rel, label, TarMember(name, offset, size)))
    return out


def _scan_members(tf: tarfile.TarFile, path: Path, rel_prefix: str,
                  out: TarScan) -> tuple[list[tuple[str, int, int]], dict[str, tuple[int, int]]]:
    """One pass over the headers: (images as (name, offset, size), .cls spans by key); every member
    left out goes into `out.skipped` with its reason."""
    images: list[tuple[str, int, int]] = []
    cls: dict[str, tuple[int, int]] = {}
    cls_names: dict[str, str] = {}
    others: dict[str, list[str]] = {}  # key -> regular members of the sample that are neither image nor .cls
    image_keys: set[str] = set()       # samples with an image member, used or not
    names: set[str] = set()

    def skip(name: str, reason: str) -> None:
        out.skipped.append({"path": f"{rel_prefix}/{name}", "reason": reason})

    try:
        while (m := tf.next()) is not None:
            name = _member_name(m.name)
            tf.members.clear()  # headers are not needed again: memory stays flat on big shards
            if m.isdir() or name.rpartition("/")[2].startswith("."):
                continue
            if not m.isreg():
                skip(name, _not_regular_reason(m))
                continue
            if name in names:
                skip(name, "member name repeated in the tar (the first one is kept)")
                continue
            names.add(name)
            if m.issparse():  # its bytes are not one contiguous span
                skip(name, "sparse tar member")
                continue
            key, ext = sample_key(name)
            if ext.lower() == "cls":
                cls[key], cls_names[key] = (m.offset_data, m.size), name
            elif is_image_file(name):
                image_keys.add(key)
                if m.size > MAX_IMAGE_BYTES:  # judged by the header: never read
                    skip(name, too_large(m.size))
                else:
                    images.append((name, m.offset_data, m.size))
            else:
                others.setdefault(key, []).append(name)
        end = _end_problem(path, tf.offset)
        if end:
            out.skipped.append({"path": rel_prefix, "reason": f"tar {end[0]} after {len(names)} members ({end[1]})"})
    except (tarfile.TarError, OSError) as exc:
        out.skipped.append({"path": rel_prefix, "reason": f"tar cut short after {len(names)} members "
                                                          f"({shorten(exc)})"})
    for key, name in cls_names.items():
        others.setdefault(key, []).append(name)
    for key, group in others.items():  # a .json or .cls alone: a sample that lost its image
        if key not in image_keys:
            for name in group:
                skip(name, "no image in its sample")
    return images, cls


def _member_name(raw: str) -> str:
    name = raw.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _not_regular_reason(m: tarfile.TarInfo) -> str:
    return next((why for test, why in _NOT_REGULAR if getattr(m, test)()), "not a regular file member")


def _end_problem(path: Path, offset: int) -> tuple[str, str] | None:
    """(kind, detail) of why the header pass stopped early, or None when it met the end-of-archive
    (zero) block at `offset`: tarfile stops without a word at a cut or damaged header."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        block = fh.read(_BLOCK)
    if len(block) == _BLOCK and not block.strip(b"\0"):
        return None
    if len(block) < _BLOCK:
        return "cut short", "no end-of-archive block" if not block else "inside a member header"
    return "damaged", "a member header that is not valid"


def _read_cls(path: Path, cls: dict[str, tuple[int, int]]) -> dict[str, int]:
    labels: dict[str, int] = {}
    if not cls:
        return labels
    with open(path, "rb") as fh:
        for key, (offset, size) in sorted(cls.items(), key=lambda kv: kv[1][0]):  # forward seeks only
            if size > _MAX_CLS_BYTES:
                labels[key] = UNKNOWN
                continue
            fh.seek(offset)
            text = fh.read(size).decode("ascii", "replace").strip()
            labels[key] = CLS_LABELS.get(text, UNKNOWN)
    return labels


def shard_rel(tar: Path, root: Path) -> str:
    return os.path.relpath(tar, root).replace(os.sep, "/")
