"""Shortcut audit on real datasets: the format trap is flagged, a same-format set is not."""

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from deepfake_cli.audit import audit, estimate_jpeg_quality, file_metadata
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError

DATA = Path("/work/shared/data")
LDM = DATA / "imagenet_vs_ldm"
CIFAKE = DATA / "cifake_sd14"


def _subset(tmp_path: Path, src: Path, n: int, name: str) -> Path:
    """Copy the first n images per class into tmp_path/name/{real,fake}."""
    root = tmp_path / name
    for cls in ("real", "fake"):
        (root / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:n]:
            shutil.copy(f, root / cls / f.name)
    return root


def test_flags_imagenet_vs_ldm_not_cifake():
    ldm, cifake = audit([str(LDM), f"cifake={CIFAKE}"])
    assert ldm.dataset == "imagenet_vs_ldm" and cifake.dataset == "cifake"
    assert ldm.n == 640 and ldm.n_real == ldm.n_fake == 320
    assert ldm.flagged and ldm.ci_low > 0.9
    # Format alone (JPEG vs PNG) separates it; the audit must name a header cue as the giveaway.
    assert ldm.cues[0]["accuracy"] > 0.95
    assert ldm.formats == {"real": {"JPEG": 320}, "fake": {"PNG": 320}}
    assert not cifake.flagged
    assert cifake.n == 2000 and cifake.metadata_accuracy < 0.6
    assert cifake.ci_low <= cifake.metadata_accuracy <= cifake.ci_high


def test_jpeg_quality_estimate_matches_pillow_encoder():
    img = Image.open(next((CIFAKE / "real").iterdir())).convert("RGB").resize((64, 64))
    for q in (30, 75, 95):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q)
        buf.seek(0)
        est = estimate_jpeg_quality(Image.open(buf).quantization[0])
        assert est == pytest.approx(q, abs=2)


def test_align_removes_the_format_shortcut(tmp_path):
    root = _subset(tmp_path, LDM, 40, "ldm")
    plain = audit([str(root)])[0]
    aligned = audit([str(root)], align="64:90")[0]
    assert plain.flagged
    assert not aligned.flagged
    assert aligned.formats == {"real": {"JPEG": 40}, "fake": {"JPEG": 40}}
    feats, fmt, wh = file_metadata(root / "fake" / sorted((root / "fake").iterdir())[0].name, (64, 90))
    assert (fmt, wh) == ("JPEG", "64x64") and feats["jpeg_quality"] == pytest.approx(90, abs=2)


def test_unreadable_files_are_skipped_and_one_class_is_an_error(tmp_path):
    root = _subset(tmp_path, DATA / "forensynths_biggan", 6, "small")
    (root / "fake" / "broken.png").write_bytes(b"not a png at all")
    res = audit([str(root)])[0]
    assert res.n == 12 and len(res.skipped) == 1 and res.skipped[0]["path"] == "fake/broken.png"
    shutil.rmtree(root / "fake")
    with pytest.raises(DeepfakeError):
        audit([str(root)])


def test_cli_json_one_object_per_line(tmp_path):
    ldm = _subset(tmp_path, LDM, 20, "ldm")
    cif = _subset(tmp_path, CIFAKE, 20, "cif")
    result = CliRunner().invoke(app, ["audit", f"trap={ldm}", str(cif), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["dataset"] for r in lines] == ["trap", "cif"]
    for r in lines:
        assert set(r) >= {"dataset", "n", "metadata_accuracy", "flagged"}
        assert 0.0 <= r["metadata_accuracy"] <= 1.0 and isinstance(r["flagged"], bool)
    assert lines[0]["flagged"] is True and lines[1]["flagged"] is False


def test_cli_table_warns_loudly(tmp_path):
    ldm = _subset(tmp_path, LDM, 20, "ldm")
    result = CliRunner().invoke(app, ["audit", str(ldm)])
    assert result.exit_code == 0, result.output
    assert "FLAGGED" in result.stdout and "WARNING" in result.stdout
