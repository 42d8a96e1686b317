"""Inputs that tests build themselves: bomb PNGs and webdataset tar shards made of example images."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path


def png_1bit(width: int, height: int, rows: int | None = None) -> bytes:
    """A black 1-bit PNG, fully decodable (a compressed bomb when large, a few KB on disk), or with
    only `rows` rows of pixel data (rows=0: a header-only bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height if rows is None else rows)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def add_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def write_shard(path: Path, images: list[Path], labels: list[int | None], start: int = 0,
                with_json: bool = True) -> list[str]:
    """A shard as img2dataset writes it: `KEY.<ext>`, `KEY.json` and (where the label is known)
    `KEY.cls` per sample. Returns the image member names in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = []
    with tarfile.open(path, "w") as tf:
        for i, (img, label) in enumerate(zip(images, labels), start):
            key = f"{i:06d}"
            names.append(f"{key}{img.suffix.lower()}")
            add_member(tf, names[-1], img.read_bytes())
            if with_json:
                add_member(tf, f"{key}.json", json.dumps({"key": key, "url": img.name}).encode())
            if label is not None:
                add_member(tf, f"{key}.cls", str(label).encode())
    return names
