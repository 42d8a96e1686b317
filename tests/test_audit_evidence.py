"""Evidence maps as a shortcut check (`audit --model`): the location numbers on synthetic maps first, then the
whole path on a generated set whose fakes carry a bright marker -- in one fixed corner (a watermark: warned)
or at a random place in each (not warned)."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_cli.metrics import evidence_location as el


def _blob(h: int, w: int, cy: float, cx: float, sigma: float = 0.04, noise: float = 0.0, rng=None) -> np.ndarray:
    """A map of one Gaussian blob of evidence at relative (cy, cx), in an image of h x w pixels."""
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.exp(-(((yy + 0.5) / h - cy) ** 2 + ((xx + 0.5) / w - cx) ** 2) / (2 * sigma ** 2))
    if noise:
        m = m + rng.normal(0, noise, size=m.shape)
    return m.astype(np.float32)


def test_uniform_evidence_gives_the_stated_border_share_and_cell_mass():
    assert el.uniform_border_share() == pytest.approx(0.36)
    for h, w in ((100, 100), (37, 91), (3, 5), (480, 640)):  # sizes that do not divide into the grid
        share, expected = el.border_share(np.ones((h, w)))
        assert share == pytest.approx(0.36, abs=1e-9) and expected == pytest.approx(0.36, abs=1e-9)
        mass, seen = el.cell_grid(np.full((h, w), 2.0))
        assert mass.sum() == pytest.approx(2.0 * h * w)
        np.testing.assert_allclose(mass / mass.sum(), 1 / 64, rtol=1e-9)
        np.testing.assert_allclose(seen, 1.0)
        assert el.peak_cell(mass, seen) is None  # a flat map has no peak, not "the top-left cell"


def test_border_share_of_a_frame_and_of_a_centre_blob():
    frame = np.zeros((200, 300), np.float32)
    frame[:10], frame[-10:], frame[:, :15], frame[:, -15:] = 1, 1, 1, 1   # inside the outer 10%
    assert el.border_share(frame)[0] == pytest.approx(1.0)
    assert el.border_share(_blob(200, 300, 0.5, 0.5))[0] < 0.01
    # negative evidence (for real) is not evidence for fake: only the positive part counts
    m = -np.ones((50, 50), np.float32)
    m[20:30, 20:30] = 1
    assert el.border_share(m)[0] == pytest.approx(0.0)
    assert np.isnan(el.border_share(-np.ones((8, 8)))[0])


def test_unseen_pixels_change_the_expected_share_not_the_measure():
    # A centre crop of a wide image: the left and right thirds were never seen (NaN).
    m = np.ones((90, 270), np.float32)
    m[:, :90] = np.nan
    m[:, 180:] = np.nan
    share, expected = el.border_share(m)
    # the seen square holds the 10% bands at top and bottom only: 2 * 9 rows of 90
    assert share == pytest.approx(0.2) and expected == pytest.approx(0.2)
    mass, seen = el.cell_grid(m)
    assert np.all(mass[:, :2] == 0) and seen[:, 0].max() == 0


def test_places_are_named_in_words():
    assert el.place_name(0, 0) == el.place_name(1, 1) == "top-left corner"  # single cells
    assert el.place_name(7, 7) == "bottom-right corner"
    assert el.place_name(0, 7) == "top-right corner" and el.place_name(7, 0) == "bottom-left corner"
    assert el.place_name(0, 4) == "top edge" and el.place_name(4, 0) == "left edge"
    assert el.place_name(3, 4) == "centre"
    # 2 x 2 windows, named by their centre: (1, 1) spans 12-38% and is centred at 25%
    assert el.place_name(1, 1, size=2) == "top-left corner" and el.place_name(5, 5, size=2) == "bottom-right corner"
    assert el.place_name(2, 3, size=2) == "centre" and el.place_name(0, 3, size=2) == "top edge"
    assert el.place_extent(0, 1) == "x 12-25%, y 0-12%"
    assert el.place_extent(1, 0, size=2) == "x 0-25%, y 12-38%"


def test_fixed_corner_is_warned_with_its_place():
    rng = np.random.default_rng(0)
    # 30 images of different sizes, each with evidence at the same relative place near the top-left corner
    maps = [_blob(int(rng.integers(80, 300)), int(rng.integers(80, 300)), 0.15, 0.15, noise=0.02, rng=rng)
            for _ in range(30)]
    loc = el.evidence_location(maps)
    assert loc.n_with_evidence == 30 and loc.place == [0, 0] and loc.place_name == "top-left corner"
    assert loc.place_share > 0.9 and loc.place_mass > 5 * loc.uniform_place_mass
    assert loc.place_warned and not loc.border_warned  # the marker sits inside the border band's edge
    (warning,) = el.evidence_warnings(loc)
    assert warning.startswith("evidence sits in the same place (top-left corner, x 0-25%, y 0-25%) in ")
    assert "of fake images" in warning and "a watermark or a border, not a generator trace" in warning
    text = "\n".join(el.evidence_lines(loc))
    assert "border share: " in text and "0.36 if spread evenly" in text and "top-left corner" in text


def test_one_place_split_between_neighbouring_cells_is_still_one_place():
    # evidence on a cell edge (12.5% of each side): half the peaks fall in one cell, half in its neighbours
    rng = np.random.default_rng(3)
    maps = [_blob(128, 128, 0.125 + d, 0.125 + d, noise=0.01, rng=rng) for d in rng.uniform(-0.02, 0.02, 30)]
    loc = el.evidence_location(maps)
    assert loc.place_share > 0.9 and loc.place_warned and loc.place_name == "top-left corner"


def test_random_places_are_not_warned():
    rng = np.random.default_rng(1)
    maps = [_blob(128, 128, *rng.uniform(0.1, 0.9, size=2), noise=0.02, rng=rng) for _ in range(30)]
    loc = el.evidence_location(maps)
    assert not loc.warned and el.evidence_warnings(loc) == []
    assert loc.place_share < 0.3
    assert 0.1 < loc.border_share_mean < 0.6


def test_evidence_in_the_centre_is_reported_not_warned():
    rng = np.random.default_rng(4)
    maps = [_blob(100, 150, 0.5, 0.5, noise=0.01, rng=rng) for _ in range(20)]
    loc = el.evidence_location(maps)
    assert loc.place_name == "centre" and loc.place_share > 0.9
    assert loc.centred and not loc.warned and el.evidence_warnings(loc) == []
    assert any("in the centre" in line for line in el.evidence_lines(loc))


def test_border_evidence_is_warned():
    rng = np.random.default_rng(2)
    maps = []
    for _ in range(20):  # a thin frame of evidence, a different side bright in each
        m = rng.uniform(0, 0.01, size=(120, 160)).astype(np.float32)
        side = int(rng.integers(4))
        [m[:6], m[-6:], m[:, :8], m[:, -8:]][side][...] = 1.0
        maps.append(m)
    loc = el.evidence_location(maps)
    assert loc.border_warned and loc.border_share_mean > 0.9
    assert any("outer 10% border" in w for w in el.evidence_warnings(loc))


def test_too_few_images_or_no_evidence_never_warn():
    maps = [_blob(64, 64, 0.1, 0.1) for _ in range(el.MIN_IMAGES - 1)]
    loc = el.evidence_location(maps)
    assert loc.place_share == 1.0 and not loc.warned
    assert any("too few images" in line for line in el.evidence_lines(loc))
    loc = el.evidence_location([np.zeros((10, 10)), np.full((5, 5), np.nan), -np.ones((4, 4))])
    assert loc.n_maps == 3 and loc.n_no_evidence == 3 and not loc.warned and loc.place is None
    assert "none holds evidence" in el.evidence_lines(loc)[0]
    assert el.evidence_location([]).n_maps == 0
    with pytest.raises(ValueError):
        el.border_share(np.ones(5))


def test_even_sample_spreads_along_the_dataset():
    from deepfake_cli.stages.audit import even_sample

    assert even_sample(list(range(10)), 4) == [0, 3, 6, 9]
    assert even_sample(list(range(10)), 1) == [0]
    assert even_sample(list(range(3)), 200) == [0, 1, 2]
    picked = even_sample(list(range(1000)), 200)
    assert len(set(picked)) == 200 and picked == sorted(picked) and picked[-1] == 999


def test_module_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, deepfake_cli.metrics.evidence_location; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------ end to end: audit --model on marker sets

# Marked slow: one extraction of 120 images with effnet-lite0, three trainings, four evidence-map passes (each
# building the backbone, fakes and reals): about 16 s on 2 idle cores.
SLOW = pytest.mark.slow
N_EACH = 20      # real and fake images per set
SIDE = 96        # small images: effnet-lite0 still sees them at 224 (resize 256, centre crop), the marker 12 px


@pytest.fixture(scope="module")
def marker_models(tmp_path_factory):
    """Three generated sets whose classes differ only by a bright marker -- in the same top-left corner of
    every fake, at a random place in each fake, or in the corner of every real -- and an `lda` on effnet-lite0
    features of each."""
    import deepfake_cli as dfc
    from tests.markers import make_marker_set

    work = tmp_path_factory.mktemp("audit_evidence")
    sets = {"corner": work / "corner", "moving": work / "moving", "stamped": work / "stamped"}
    make_marker_set(sets["corner"], N_EACH, N_EACH, corner=True, seed=1, size=SIDE)
    make_marker_set(sets["moving"], N_EACH, N_EACH, corner=False, seed=2, size=SIDE)
    # "stamped": the marker in the corner of every REAL image (a camera's or a photo site's stamp), none on
    # the fakes: marked images made as fakes become the reals, plain ones the fakes
    make_marker_set(work / "marked", 0, N_EACH, corner=True, seed=3, size=SIDE)
    make_marker_set(work / "plain", N_EACH, 0, seed=4, size=SIDE)
    sets["stamped"].mkdir()
    (work / "marked" / "fake").rename(sets["stamped"] / "real")
    (work / "plain" / "real").rename(sets["stamped"] / "fake")
    dfc.extract([f"{k}={v}" for k, v in sets.items()], out=work / "feats.h5", backbone="effnet-lite0", device="cpu",
                workers=0)
    models = {}
    for name in sets:
        (res,) = dfc.train(work / "feats.h5", classifier="lda", datasets=name, out=work / f"{name}.model")
        models[name] = res.path
    return sets, models


@SLOW
def test_a_marker_in_a_fixed_corner_is_warned_a_moving_one_is_not(marker_models):
    import json

    import deepfake_cli as dfc
    from deepfake_cli.safety.fileio import to_json

    sets, models = marker_models
    (corner,) = dfc.audit([f"corner={sets['corner']}"], model=models["corner"], device="cpu")
    ev = corner.evidence
    assert ev["images"] == "fake" and ev["n_sampled"] == N_EACH and ev["n_with_evidence"] >= 14
    assert ev["method"] == "cam" and ev["exact"]
    # the marker spans 8-20% of each side: the top-left place (x 0-25%, y 0-25%)
    assert ev["place_name"] == "top-left corner" and ev["place_share"] > 0.8, ev
    assert ev["place_mass"] > 4 * ev["uniform_place_mass"]
    assert ev["place_warned"]
    assert any(w.startswith("corner: evidence sits in the same place (top-left corner") and
               "of fake images" in w and "a watermark or a border, not a generator trace" in w
               for w in corner.evidence_warnings), corner.evidence_warnings
    assert not corner.flagged  # the metadata audit sees nothing: PNGs of one size on both sides
    row = json.loads(to_json(corner.to_dict()))  # what `audit --json` prints for the dataset
    assert row["evidence"]["place_warned"] and row["evidence_warnings"] == corner.evidence_warnings
    assert row["evidence_lines"][0].startswith("corner: corner's evidence maps (cam, exact) of 20 of 20 fake images")

    (moving,) = dfc.audit([f"moving={sets['moving']}"], model=models["moving"], device="cpu")
    assert moving.evidence["n_with_evidence"] >= 14
    assert not moving.evidence["place_warned"] and not moving.evidence["border_warned"], moving.evidence
    assert moving.evidence_warnings == [] and moving.evidence["place_share"] < 0.5


@SLOW
def test_cli_prints_the_evidence_lines_and_the_warning(marker_models):
    from typer.testing import CliRunner

    from deepfake_cli.cli import app

    sets, models = marker_models
    res = CliRunner().invoke(app, ["audit", f"corner={sets['corner']}", "--model", str(models["corner"]),
                                   "--max-images", "12", "--device", "cpu"], terminal_width=400)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert ("corner: corner's evidence maps (cam, exact) of 12 of 20 fake images, picked evenly (--max-images 12); "
            "the model calls 12 of them fake") in text
    assert "corner: border share:" in text and "if spread evenly" in text
    assert "WARNING: corner: evidence sits in the same place (top-left corner" in text
    assert "Evidence rule: warned when the mean border share" in text


@SLOW
def test_a_stamp_in_the_corner_of_every_real_is_warned_as_evidence_for_real(marker_models):
    """The reals are read for their evidence for "real": a stamp on every real photo is a shortcut too."""
    import deepfake_cli as dfc

    sets, models = marker_models
    (stamped,) = dfc.audit([f"stamped={sets['stamped']}"], model=models["stamped"], device="cpu")
    real = stamped.evidence["real"]
    assert real["n_real"] == N_EACH and real["n_sampled"] == N_EACH and real["n_with_evidence"] >= 14
    assert real["place_name"] == "top-left corner" and real["place_share"] > 0.8 and real["place_warned"], real
    assert not stamped.evidence["place_warned"]  # the fakes carry nothing in one place
    assert any(w.startswith("stamped: evidence for real sits in the same place (top-left corner") and
               "of real images" in w and "not a trait of real photos" in w for w in stamped.evidence_warnings), \
        stamped.evidence_warnings
    assert any(line.startswith("stamped (real images, evidence for real): fixed place:")
               for line in stamped.evidence_lines), stamped.evidence_lines
