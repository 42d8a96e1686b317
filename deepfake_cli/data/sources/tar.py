"""Tar shards in the webdataset layout, read in place (`data.tars` scans them): a `.tar` file, or the shards
of a folder that holds no image. A member is read by seek + read of its span."""

from __future__ import annotations

from pathlib import Path

from deepfake_cli.data.decode import UnreadableImage
from deepfake_cli.data.items import ImageItem, TarMember
from deepfake_cli.data.sources import Found, Source, UnreadableSource, register_source
from deepfake_cli.data.sources._datasets import shard_datasets, shard_loose
from deepfake_cli.data.tars import scan_tar
from deepfake_cli.data.walk import is_tar_file
from deepfake_cli.errors import DeepfakeError


def _scan(path: Path, prefix: str, options: dict) -> Found:
    try:
        shard = scan_tar(path, prefix)
    except DeepfakeError as exc:  # not an uncompressed tar (or no regular file)
        raise UnreadableSource(str(exc)) from exc
    return Found(shard.items, shard.skipped, odd=shard.odd_cls)


def _read(item: ImageItem) -> bytes:
    try:
        with open(item.path, "rb") as fh:
            fh.seek(item.member.offset)
            data = fh.read(item.member.size)
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror or exc})") from exc
    if len(data) != item.member.size:
        raise UnreadableImage("truncated tar member (the shard is shorter than its header says)")
    return data


TAR = register_source(Source(
    name="tar", description="a .tar shard", matches=is_tar_file, scan=_scan, read=_read, member_type=TarMember,
    shard=True, short=".tar", unreadable="not an uncompressed tar file", no_label="no .cls 0/1 and no label folder",
    odd_note="{n} .cls file(s) hold a value other than 0 (real) or 1 (fake): their images are unlabelled.",
    datasets=lambda path, shown, name, allow_unlabelled, options: shard_datasets(TAR, path, shown, name,
                                                                                 allow_unlabelled, options),
    loose=lambda path, options: shard_loose(TAR, path, options)))
