"""Dataset layouts and decoding of every odd image format, on real images."""

from __future__ import annotations

import io
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from deepfake_cli.data import FAKE, MAX_PIXELS, REAL, UNKNOWN, UnreadableImage, check_pixels, decode_image, \
    discover, discover_many, iter_image_files, read_image
from deepfake_cli.errors import DeepfakeError
from tests.conftest import copy_subset, example_set
from tests.imagegen import png_1bit


def _real_png():
    return sorted((example_set("forensynths_biggan") / "real").iterdir())[0]


def test_real_fake_layout_labels_every_image(tmp_path):
    root = copy_subset(example_set("forensynths_stylegan"), tmp_path / "stylegan", 3)
    ds = discover(str(root))
    assert ds.name == "stylegan" and ds.skipped == [] and ds.warnings == []
    assert ds.counts == {"real": 3, "fake": 3, "unknown": 0}
    assert all(it.rel.startswith(("real/", "fake/")) for it in ds.items)
    assert {it.label for it in ds.items if it.rel.startswith("fake/")} == {FAKE}


def test_cnndetection_layout_recursive(tmp_path):
    src = example_set("forensynths_biggan")
    for cls, label_dir in (("real", "0_real"), ("fake", "1_fake")):
        for sub in ("airplane", "cat"):
            d = tmp_path / "progan" / sub / label_dir
            d.mkdir(parents=True)
            for p in sorted((src / cls).iterdir())[:2]:
                shutil.copy(p, d / p.name)
    ds = discover(f"pg={tmp_path / 'progan'}")
    assert ds.name == "pg"
    assert ds.counts == {"real": 4, "fake": 4, "unknown": 0}
    assert any(it.rel.startswith("cat/1_fake/") and it.label == FAKE for it in ds.items)


def test_only_fake_and_explicit_real_fake(tmp_path):
    src = example_set("forensynths_stylegan")
    only = copy_subset(src, tmp_path / "onlyfake", 4, classes=("fake",))
    assert discover(str(only)).counts == {"real": 0, "fake": 4, "unknown": 0}
    ds = discover(None, real=str(src / "real"), fake=str(src / "fake"), name="sg")
    assert ds.name == "sg" and ds.counts == {"real": 20, "fake": 20, "unknown": 0}
    assert len({it.rel for it in ds.items}) == 40  # real/x and fake/x never collide


def test_genimage_ai_and_nature_folders_are_labelled(tmp_path):
    src = example_set("cifake_sd14")
    for cls, folder in (("real", "nature"), ("fake", "ai")):
        d = tmp_path / "genimage" / "imagenet_ai_0419_sdv4" / "train" / folder
        d.mkdir(parents=True)
        for p in sorted((src / cls).iterdir())[:3]:
            shutil.copy(p, d / p.name)
    ds = discover(str(tmp_path / "genimage"))  # GenImage's layout: one dataset per generator and split
    assert ds.name == "imagenet_ai_0419_sdv4-train" and ds.counts == {"real": 3, "fake": 3, "unknown": 0}
    assert {it.label for it in ds.items if it.rel.startswith("nature/")} == {REAL}
    assert {it.label for it in ds.items if it.rel.startswith("ai/")} == {FAKE}


def test_require_labels_warns_naming_the_layouts(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    for p in sorted((example_set("cifake_sd14") / "real").iterdir())[:2]:
        shutil.copy(p, loose / p.name)
    labelled = copy_subset(example_set("cifake_sd14"), tmp_path / "labelled", 1)
    quiet = discover_many([str(loose)])
    assert quiet[0].warnings == [] and quiet[0].counts["unknown"] == 2
    ds_loose, ds_labelled = discover_many([str(loose), str(labelled)], require_labels=True)
    assert len(ds_loose.warnings) == 1
    for layout in ("real/ and fake/", "0_real/ and 1_fake/", "nature/ and ai/", "label", ".cls"):
        assert layout in ds_loose.warnings[0]
    assert "'loose'" in ds_loose.warnings[0] and ds_labelled.warnings == []


def test_unlabelled_folder_and_single_file(tmp_path):
    d = tmp_path / "loose" / "nested"
    d.mkdir(parents=True)
    for p in sorted((example_set("cifake_sd14") / "fake").iterdir())[:3]:
        shutil.copy(p, d / p.name.upper())  # upper-case extensions still count
    ds = discover(str(tmp_path / "loose"))
    assert ds.counts == {"real": 0, "fake": 0, "unknown": 3}
    one = discover(str(next(d.iterdir())))
    assert [it.label for it in one.items] == [UNKNOWN]


def test_bad_dataset_inputs_are_clear_errors(tmp_path):
    with pytest.raises(DeepfakeError, match="does not exist"):
        discover(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeepfakeError, match="no images"):
        discover(str(tmp_path / "empty"))
    a = copy_subset(example_set("cifake_sd14"), tmp_path / "x" / "same", 1)
    b = copy_subset(example_set("cifake_sd14"), tmp_path / "y" / "same", 1)
    with pytest.raises(DeepfakeError, match="two datasets are named 'same'"):
        discover_many([str(a), str(b)])


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_every_format_and_mode_decodes_to_the_same_rgb():
    base = Image.open(_real_png()).convert("RGB")
    ref = np.asarray(base, dtype=np.int16)
    lossless = {
        "png": _encode(base, "PNG"), "bmp": _encode(base, "BMP"), "tiff": _encode(base, "TIFF"),
        "webp-lossless": _encode(base, "WEBP", lossless=True),
    }
    for name, data in lossless.items():
        out = decode_image(data)
        assert out.mode == "RGB" and out.size == base.size, name
        assert np.array_equal(np.asarray(out, dtype=np.int16), ref), name
    # Lossy / reduced encodings: same size, RGB, close to the original.
    rgba = base.convert("RGBA")
    lossy = {
        "jpeg": _encode(base, "JPEG", quality=95),
        "cmyk-jpeg": _encode(base.convert("CMYK"), "JPEG", quality=95),
        "palette": _encode(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
        "rgba-opaque": _encode(rgba, "PNG"),
        "webp": _encode(base, "WEBP", quality=95),
    }
    for name, data in lossy.items():
        out = decode_image(data)
        assert out.mode == "RGB" and out.size == base.size, name
        assert np.abs(np.asarray(out, dtype=np.int16) - ref).mean() < 8, name
    gray = base.convert("L")
    g = decode_image(_encode(gray, "PNG"))
    assert g.mode == "RGB" and np.array_equal(np.asarray(g)[..., 0], np.asarray(gray))
    # 16-bit grayscale: scaled down to 8 bits, not clipped to white.
    arr16 = (np.asarray(gray, dtype=np.uint16) * 257).astype(np.uint16)
    img16 = Image.fromarray(arr16)
    assert img16.mode.startswith("I;16")
    d16 = np.asarray(decode_image(_encode(img16, "PNG")))[..., 0].astype(int)
    assert np.abs(d16 - np.asarray(gray, dtype=int)).max() <= 1


def test_transparency_is_composited_on_white():
    base = Image.open(_real_png()).convert("RGBA")
    base.putalpha(0)
    out = decode_image(_encode(base, "PNG"))
    assert np.asarray(out).min() == 255


def test_exif_orientation_is_applied():
    base = Image.open(_real_png()).convert("RGB").crop((0, 0, 200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    out = decode_image(_encode(base, "JPEG", exif=exif.tobytes()))
    assert out.size == (100, 200)


def _png_with_size(width: int, height: int) -> bytes:
    data = bytearray(_encode(Image.new("L", (4, 4)), "PNG"))
    ihdr = 8  # the IHDR chunk follows the 8-byte signature
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 8 + 13]))
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("make, reason", [
    (lambda p: b"", "empty"),
    (lambda p: p.read_bytes()[: len(p.read_bytes()) // 3], "truncated"),
    (lambda p: b"this is a text file, not an image\n" * 10, "not an image"),
    (lambda p: _png_with_size(60_000, 60_000), "decompression bomb"),
    (lambda p: png_1bit(10_000, 10_000), "decompression bomb"),  # decodable, 100 MP: over the one limit
])
def test_unreadable_files_raise_with_a_reason(tmp_path, make, reason):
    src = sorted((example_set("cifake_sd14") / "real").iterdir())[0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(make(src))
    with pytest.raises(UnreadableImage) as exc:
        read_image(bad)
    assert reason in exc.value.reason


def test_one_bomb_rule():
    check_pixels(9459, 9459)  # 89,472,681 pixels: at most MAX_PIXELS
    assert 9459 * 9459 <= MAX_PIXELS < 9460 * 9460
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        check_pixels(9460, 9460)


def test_iter_image_files_skips_non_images_and_hidden(tmp_path):
    copy_subset(example_set("cifake_sd14"), tmp_path, 2)
    (tmp_path / "real" / "notes.txt").write_text("x")
    (tmp_path / "real" / ".hidden.png").write_bytes(b"x")
    files = iter_image_files(tmp_path)
    assert len(files) == 4 and all(p.suffix.lower() in (".jpg", ".png") for p in files)
    assert discover(str(tmp_path)).counts["real"] == 2 and REAL == 0
