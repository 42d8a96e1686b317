"""Seeded transforms and --align on real images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepfake_cli.data import read_image
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.data.transforms import Transform, align_image, normalize_transform, parse_align
from tests.conftest import example_set


def _img():
    return read_image(sorted((example_set("forensynths_biggan") / "real").iterdir())[0])


def test_normalize_spec():
    assert normalize_transform(None) == "none"
    assert normalize_transform("Blur") == "blur@0.5"
    assert normalize_transform("blur+jitter@1") == "blur@0.5+jitter@1"
    assert normalize_transform("jpeg:75") == "jpeg:75"
    for bad in ("sharpen", "jpeg:0", "jpeg:abc", "blur@2", "resize:2"):
        with pytest.raises(DeepfakeError):
            normalize_transform(bad)


def test_random_transforms_are_reproducible_per_image():
    img, digest = _img()
    a = np.asarray(Transform("blur@1+jitter@1", seed=3)(img, digest))
    b = np.asarray(Transform("blur@1+jitter@1", seed=3)(img, digest))
    c = np.asarray(Transform("blur@1+jitter@1", seed=4)(img, digest))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.asarray(img))


def test_blur_removes_high_frequencies():
    img, digest = _img()
    g0 = np.asarray(img.convert("L"), dtype=float)
    g1 = np.asarray(Transform("blur@1")(img, digest).convert("L"), dtype=float)
    assert np.abs(np.diff(g1, axis=1)).mean() < 0.8 * np.abs(np.diff(g0, axis=1)).mean()


def test_probability_zero_is_identity_and_p_half_mixes():
    img, _ = _img()
    assert np.array_equal(np.asarray(Transform("blur@0")(img, "ab" * 32)), np.asarray(img))
    changed = sum(not np.array_equal(np.asarray(Transform("blur")(img, f"{i:064x}")), np.asarray(img))
                  for i in range(40))
    assert 8 < changed < 32


def test_jpeg_and_resize():
    img, digest = _img()
    assert Transform("resize:64")(img, digest).size == (64, 64)
    q10 = np.asarray(Transform("jpeg:10")(img, digest), dtype=float)
    q95 = np.asarray(Transform("jpeg:95")(img, digest), dtype=float)
    ref = np.asarray(img, dtype=float)
    assert np.abs(q10 - ref).mean() > np.abs(q95 - ref).mean()


def test_align_gives_one_size_and_encoding():
    assert parse_align(None) is None and parse_align("256:90") == (256, 90)
    with pytest.raises(DeepfakeError):
        parse_align("big")
    wide = Image.new("RGB", (300, 120), (10, 200, 30))
    out = align_image(wide, (64, 90))
    assert out.size == (64, 64) and out.mode == "RGB"


def test_laundering_transforms_do_what_they_say():
    """Issue 19 item 4: downscale by a factor, a fixed-sigma blur, and the chains of the laundering sweep."""
    import numpy as np
    from PIL import Image

    from deepfake_cli.data.transforms import LAUNDERING, Transform, laundering_family, normalize_transform

    src = Image.open(sorted((example_set("forensynths_biggan") / "fake").iterdir())[0]).convert("RGB")
    half = Transform("scale:0.5")(src, "00" * 8)
    assert half.size == (round(src.width / 2), round(src.height / 2))
    a = np.asarray(src, dtype=float)
    blurred = [np.asarray(Transform(f"blur:{s}")(src, "00" * 8), dtype=float) for s in (1, 3)]
    # more sigma, less high-frequency energy (sum of squared neighbour differences)
    energy = [np.square(np.diff(x, axis=1)).sum() for x in (a, *blurred)]
    assert energy[0] > energy[1] > energy[2]
    # deterministic: no randomness in a fixed-severity step
    assert np.array_equal(np.asarray(Transform("blur:2")(src, "00" * 8)), np.asarray(Transform("blur:2")(src, "ff" * 8)))
    chain = Transform("scale:0.5+jpeg:75")(src, "00" * 8)
    assert chain.size == half.size and not np.array_equal(np.asarray(chain), np.asarray(half))
    for family, specs in LAUNDERING.items():
        assert [laundering_family(normalize_transform(s)) for s in specs] == [(family, i + 1) for i in range(len(specs))]
    for bad in ("scale:1", "scale:0", "blur:0", "blur:-1", "scale:half"):
        with pytest.raises(DeepfakeError):
            normalize_transform(bad)
