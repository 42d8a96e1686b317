"""Shortcut audit on real images: a format trap is flagged, a same-format set is not; bombs, loops and
tar shards are handled the way the readers handle them."""

import io
import json
import random
import shutil
import warnings
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from deepfake_cli.stages.audit import audit, estimate_jpeg_quality, file_metadata
from deepfake_cli.cli import app
from deepfake_cli.data import MAX_PIXELS
from deepfake_cli.errors import DeepfakeError
from tests.conftest import copy_subset, example_set
from tests.imagegen import png_1bit, write_shard

CIFAKE = example_set("cifake_sd14")
GANS = ("forensynths_biggan", "forensynths_stylegan")


def _format_trap(tmp_path: Path, n: int, name: str = "trap") -> Path:
    """The imagenet_vs_ldm trap, made from real images: reals are JPEGs of many sizes and
    qualities, fakes 256x256 PNGs, so the container alone gives the label away."""
    root = tmp_path / name
    rng = random.Random(0)
    for cls in ("real", "fake"):
        (root / cls).mkdir(parents=True)
        sources = [p for s in GANS for p in sorted((example_set(s) / cls).iterdir())][:n]
        for i, src in enumerate(sources):
            img = Image.open(src).convert("RGB")
            if cls == "real":
                img.resize((rng.randint(120, 400), rng.randint(120, 400))).save(
                    root / cls / f"{i:03d}.jpg", quality=rng.choice([75, 85, 95]))
            else:
                img.resize((256, 256)).save(root / cls / f"{i:03d}.png")
    return root


def test_flags_the_format_trap_not_cifake(tmp_path):
    trap = _format_trap(tmp_path, 40)
    res_trap, res_cifake = audit([str(trap), f"cifake={CIFAKE}"])
    assert res_trap.dataset == "trap" and res_cifake.dataset == "cifake"
    assert res_trap.n == 80 and res_trap.n_real == res_trap.n_fake == 40
    assert res_trap.flagged and res_trap.ci_low > 0.9
    # Format alone (JPEG vs PNG) separates it; the audit must name a header cue as the giveaway.
    assert res_trap.cues[0]["accuracy"] > 0.95
    assert res_trap.formats == {"real": {"JPEG": 40}, "fake": {"PNG": 40}}
    assert not res_cifake.flagged
    assert res_cifake.n == 48 and res_cifake.metadata_accuracy < 0.6
    assert res_cifake.ci_low <= res_cifake.metadata_accuracy <= res_cifake.ci_high


def test_jpeg_quality_estimate_matches_pillow_encoder():
    img = Image.open(sorted((CIFAKE / "real").iterdir())[0]).convert("RGB").resize((64, 64))
    for q in (30, 75, 95):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q)
        buf.seek(0)
        est = estimate_jpeg_quality(Image.open(buf).quantization[0])
        assert est == pytest.approx(q, abs=2)


def test_align_removes_the_format_shortcut(tmp_path):
    root = _format_trap(tmp_path, 40)
    plain = audit([str(root)])[0]
    aligned = audit([str(root)], align="64:90")[0]
    assert plain.flagged
    assert not aligned.flagged
    assert aligned.formats == {"real": {"JPEG": 40}, "fake": {"JPEG": 40}}
    feats, fmt, wh = file_metadata(sorted((root / "fake").iterdir())[0], (64, 90))
    assert (fmt, wh) == ("JPEG", "64x64") and feats["jpeg_quality"] == pytest.approx(90, abs=2)


def test_unreadable_files_are_skipped_and_one_class_is_an_error(tmp_path):
    root = copy_subset(example_set("forensynths_biggan"), tmp_path / "small", 6)
    (root / "fake" / "broken.png").write_bytes(b"not a png at all")
    res = audit([str(root)])[0]
    assert res.n == 12 and len(res.skipped) == 1 and res.skipped[0]["path"] == "fake/broken.png"
    shutil.rmtree(root / "fake")
    with pytest.raises(DeepfakeError):
        audit([str(root)])


def test_unlabelled_dataset_names_the_accepted_layouts(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    for p in sorted((CIFAKE / "real").iterdir())[:4]:
        shutil.copy(p, loose / p.name)
    with pytest.raises(DeepfakeError, match="no labelled image.*real/ and fake/.*nature/ and ai/"):
        audit([str(loose)])


@pytest.mark.parametrize("bomb", [
    pytest.param(lambda: png_1bit(14_000, 14_000), id="compressed-over-2x-pillow-limit"),
    pytest.param(lambda: png_1bit(10_000, 10_000), id="compressed-100MP"),
    pytest.param(lambda: png_1bit(60_000, 60_000, rows=0), id="header-only"),
])
def test_decompression_bombs_are_skipped_without_crash_or_warning(tmp_path, bomb):
    root = copy_subset(example_set("forensynths_biggan"), tmp_path / "bombs", 4)
    (root / "fake" / "bomb.png").write_bytes(bomb())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = audit([str(root)])[0]
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert res.n == 8
    assert [s["path"] for s in res.skipped] == ["fake/bomb.png"]
    assert "decompression bomb" in res.skipped[0]["reason"]
    assert str(MAX_PIXELS) in res.skipped[0]["reason"] or "over" in res.skipped[0]["reason"]


def test_discovery_skips_and_tar_members_reach_the_audit(tmp_path):
    root = copy_subset(example_set("forensynths_biggan"), tmp_path / "linked", 4)
    (root / "fake" / "dirloop").symlink_to(".")
    res = audit([str(root)])[0]
    assert res.n == 8  # the loop is not walked again
    assert res.skipped == [{"dataset": "linked", "path": "fake/dirloop",
                            "reason": "symlink loop (links to a folder above it)"}]
    # The same images as a webdataset shard: the audit reads headers from inside the tar.
    shard = tmp_path / "shards" / "00000.tar"
    pngs = sorted(root.glob("*/*.png"))
    write_shard(shard, pngs, [1 if p.parent.name == "fake" else 0 for p in pngs])
    from_tar = audit([str(shard.parent)])[0]
    assert (from_tar.dataset, from_tar.n, from_tar.n_real) == ("shards", 8, 4)
    assert from_tar.formats == res.formats and from_tar.sizes == res.sizes


def test_cli_json_one_object_per_line(tmp_path):
    trap = _format_trap(tmp_path, 20)
    cif = copy_subset(CIFAKE, tmp_path / "cif", 20)
    result = CliRunner().invoke(app, ["audit", f"trap={trap}", str(cif), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["dataset"] for r in lines] == ["trap", "cif"]
    for r in lines:
        assert set(r) >= {"dataset", "n", "metadata_accuracy", "flagged"}
        assert 0.0 <= r["metadata_accuracy"] <= 1.0 and isinstance(r["flagged"], bool)
    assert lines[0]["flagged"] is True and lines[1]["flagged"] is False


def test_cli_table_warns_loudly(tmp_path):
    trap = _format_trap(tmp_path, 20)
    result = CliRunner().invoke(app, ["audit", str(trap)])
    assert result.exit_code == 0, result.output
    assert "FLAGGED" in result.stdout and "WARNING" in result.stdout
