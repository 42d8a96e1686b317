"""Tar shards in the webdataset layout (what img2dataset writes), read in place, never unpacked.

A shard holds samples `KEY.jpg` (or another image extension) with optional `KEY.json` and
`KEY.cls`; the key is the member name up to the first dot of its file name. `.cls` holds 0 (real)
or 1 (fake). One pass over the tar headers records where each image's bytes lie (offset and size),
so a reader later fetches one image with a seek and a read; only the tiny `.cls` members are read
now. Members without a `.cls` take their label from label folders in their path, as images do.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from deepfake_cli.data.items import FAKE, REAL, UNKNOWN, ImageItem, TarMember, label_from_rel
from deepfake_cli.data.walk import is_image_file
from deepfake_cli.errors import DeepfakeError

CLS_LABELS = {"0": REAL, "1": FAKE}
_MAX_CLS_BYTES = 64  # a class index, not a payload


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
    images: list[tuple[str, int, int]] = []
    cls: dict[str, tuple[int, int]] = {}
    names: set[str] = set()
    try:
        tf = tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise DeepfakeError(f"{path} is not an uncompressed tar file (a .tar.gz cannot be read in place): "
                            f"{exc}.") from exc
    with tf:
        try:
            while (m := tf.next()) is not None:
                name = m.name.lstrip("/")
                while name.startswith("./"):
                    name = name[2:]
                base = name.rpartition("/")[2]
                tf.members.clear()  # headers are not needed again: memory stays flat on big shards
                if not m.isreg() or base.startswith("."):
                    continue
                if name in names:
                    out.skipped.append({"path": f"{rel_prefix}/{name}", "reason": "member name repeated in the tar "
                                        "(the first one is kept)"})
                    continue
                names.add(name)
                if m.issparse():  # its bytes are not one contiguous span
                    out.skipped.append({"path": f"{rel_prefix}/{name}", "reason": "sparse tar member"})
                    continue
                key, ext = sample_key(name)
                if ext.lower() == "cls":
                    cls[key] = (m.offset_data, m.size)
                elif is_image_file(name):
                    images.append((name, m.offset_data, m.size))
        except (tarfile.TarError, OSError) as exc:
            out.skipped.append({"path": rel_prefix, "reason": f"tar cut short after {len(names)} members ({exc})"})
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
