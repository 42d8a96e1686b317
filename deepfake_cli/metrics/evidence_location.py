"""Where evidence maps put their evidence: in the border? at one fixed place across images?

A detector that rests on a shortcut -- a watermark, a logo, a frame, padding -- finds its evidence at the same
place in every image, whatever the image shows; a generator's trace sits where the content is and moves with
it. Given evidence maps (`deepfake_cli.explainers`: float HxW in each image's own frame, > 0 = evidence for fake,
NaN where the model never saw the pixel), this module measures, on the positive part of each map:

* border share: the share of the positive evidence that falls in the outer `BORDER` (10%) of each side of the
  image. That band is 1 - (1 - 2 * 0.1)^2 = 36% of the area, so evidence spread evenly gives 0.36 (less or
  more where part of the image was never seen: `expected_border_share` is worked out from each map's seen
  pixels).
* fixed-place concentration: every map is integrated over a common `GRID` x `GRID` (8 x 8) grid of cells in
  relative coordinates (exact area weights, so maps of any size and aspect compare). Each image's peak cell
  is the cell of highest evidence density (positive evidence over seen area). A place is a window of
  `PLACE` x `PLACE` (2 x 2) neighbouring cells, a quarter of the width by a quarter of the height; the
  modal place is the window that holds the peak cell of the most images, and `place_share` is that fraction
  of the images (chance: 4/64 per window when peaks fall at random). `place_mass` is the mean share of each
  image's positive evidence inside it (evenly spread: 4/64). Why a window, not one cell: a model's own
  grid does not line up with any fixed grid (effnet-lite0 at 224 px has 7 x 7 cells, offset by the centre
  crop), so evidence at one fixed spot peaks in one of two neighbouring cells from image to image, and a
  single-cell count would halve it.

Warning rule (`evidence_warnings`), with at least `MIN_IMAGES` maps that hold positive evidence:

* the mean border share exceeds `BORDER_WARN` (0.6, against 0.36 for evenly spread evidence), or
* one place (2 x 2 cells) holds the peak of more than `PEAK_WARN` (50%) of the images (against 4/64 by
  chance; with peaks at random cells, some window of the 49 holds over half of them with probability
  5e-4 for 10 images and below 1e-5 for 30, by simulation),
  unless that place is the centre: photos and generated images centre their subject, and a detector that
  looks where the subject is rests on no shortcut. A centre concentration is reported (`centred`), not
  warned.

Images without positive evidence (a map <= 0 or NaN everywhere) have no border share and no peak: they are
counted (`n_no_evidence`) and left out. An image whose top cells tie (a flat map) has no peak cell.

Limits: only the positive part counts, so the border share depends on where a map puts zero (the exact class
activation spreads the model's constant evenly over the cells: a large positive constant pulls the share
towards the even 0.36, a large negative one leaves only the strongest cells); the peak, and so the
fixed-place check, does not (a constant moves no cell's rank). A map as coarse as the model's grid (7 x 7
for effnet-lite0) cannot place evidence finer than one of its cells: a cell is 12.5% of the image side
(32 px of the 224 px crop of a 256 px resize), wider than the 10% band.

Pure numpy: no torch, no model; every function takes a list of 2-d arrays of any sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

BORDER = 0.10        # the border band: this fraction of the width (height) on each side
GRID = 8             # cells per side of the common relative grid
PLACE = 2            # cells per side of a place (a window of neighbouring cells, see the module docstring)
BORDER_WARN = 0.6    # mean border share above this: warn (evenly spread: 1 - (1 - 2 * BORDER) ** 2 = 0.36)
PEAK_WARN = 0.5      # one place the peak of more than this share of images: warn (chance: PLACE**2 / GRID**2)
MIN_IMAGES = 10      # fewer maps with evidence: report, never warn (one place holding 2 of 3 peaks is luck)
TIE_RTOL = 1e-6      # top cells within this relative difference tie: no single peak

RULE = (f"warned when the mean border share (outer {BORDER:.0%} of each side, "
        f"{1 - (1 - 2 * BORDER) ** 2:.0%} of the area) exceeds {BORDER_WARN}, or one place ({PLACE}x{PLACE} cells "
        f"of a {GRID}x{GRID} relative grid) holds the peak cell of more than {PEAK_WARN:.0%} of the images (chance "
        f"{PLACE * PLACE}/{GRID * GRID}) and is not the centre; at least {MIN_IMAGES} images with evidence")


def uniform_border_share(border: float = BORDER) -> float:
    """The border share of evidence spread evenly over a fully seen image: 1 - (1 - 2 * border)^2."""
    return 1.0 - (1.0 - 2.0 * border) ** 2


def _overlap(n: int, edges: np.ndarray) -> np.ndarray:
    """(len(edges) - 1, n): the fraction of pixel i (interval [i/n, (i+1)/n]) inside bin [edges[k], edges[k+1]]."""
    lo = np.arange(n) / n
    hi = (np.arange(n) + 1) / n
    inter = np.minimum(hi[None, :], edges[1:, None]) - np.maximum(lo[None, :], edges[:-1, None])
    return np.clip(inter, 0.0, None) * n


def _parts(m) -> tuple[np.ndarray, np.ndarray]:
    """(positive part, seen mask) as float64; NaN and inf are unseen, negative evidence counts as 0."""
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"an evidence map must be a non-empty 2-d array, got shape {a.shape}")
    seen = np.isfinite(a)
    pos = np.where(seen & (a > 0), a, 0.0)
    return pos, seen.astype(np.float64)


def cell_grid(m, grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """(mass, seen) per cell of a `grid` x `grid` relative grid: the positive evidence integrated over each cell
    (exact area weights: a pixel split by a cell edge counts in both, in proportion) and each cell's seen
    area as a fraction of the cell."""
    pos, seen = _parts(m)
    edges = np.linspace(0.0, 1.0, grid + 1)
    ay, ax = _overlap(pos.shape[0], edges), _overlap(pos.shape[1], edges)
    mass = ay @ pos @ ax.T
    cell_px = (pos.shape[0] / grid) * (pos.shape[1] / grid)
    return mass, (ay @ seen @ ax.T) / cell_px


def border_share(m, border: float = BORDER) -> tuple[float, float]:
    """(share of the map's positive evidence in the outer `border` of each side, the same share for evidence
    spread evenly over the map's seen pixels); (NaN, expected) when the map has no positive evidence."""
    pos, seen = _parts(m)
    edges = np.array([border, 1.0 - border])
    iy, ix = _overlap(pos.shape[0], edges)[0], _overlap(pos.shape[1], edges)[0]
    seen_total = seen.sum()
    expected = float(1.0 - (iy @ seen @ ix) / seen_total) if seen_total > 0 else float("nan")
    total = pos.sum()
    if total <= 0:
        return float("nan"), expected
    return float(max(0.0, 1.0 - (iy @ pos @ ix) / total)), expected


def peak_cell(mass: np.ndarray, seen: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the cell of highest evidence density, or None (no evidence, or the top cells tie)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(seen > 0, mass / seen, -np.inf)
    top = density.max()
    if not np.isfinite(top) or top <= 0:
        return None
    if np.count_nonzero(density >= top * (1.0 - TIE_RTOL)) > 1:
        return None
    r, c = np.unravel_index(int(np.argmax(density)), density.shape)
    return int(r), int(c)


def place_name(row: int, col: int, grid: int = GRID, size: int = 1) -> str:
    """A window of `size` x `size` cells whose top-left cell is (row, col), in words: "top-left corner",
    "top edge", "centre", ... by where its centre lies (within the outer quarter of a side: that side)."""
    def part(i: int, low: str, high: str) -> str:
        centre = (i + size / 2) / grid
        return low if centre <= 0.25 else high if centre >= 0.75 else ""

    v, h = part(row, "top", "bottom"), part(col, "left", "right")
    if v and h:
        return f"{v}-{h} corner"
    if v or h:
        return f"{v or h} edge"
    return "centre"


def place_extent(row: int, col: int, grid: int = GRID, size: int = 1) -> str:
    """Where a window of cells lies, in percent of the width and height: "x 0-25%, y 12-38%"."""
    def rng(i: int) -> str:
        return f"{round(100 * i / grid)}-{round(100 * (i + size) / grid)}%"
    return f"x {rng(col)}, y {rng(row)}"


@dataclass
class EvidenceLocation:
    """What `evidence_location` measures on a list of maps; `to_dict()` is plain JSON."""

    n_maps: int
    n_with_evidence: int
    n_no_evidence: int
    border: float = BORDER
    grid: int = GRID
    border_share_mean: float = float("nan")
    border_share_std: float = float("nan")
    border_share_median: float = float("nan")
    border_share_q90: float = float("nan")
    expected_border_share: float = float("nan")   # evenly spread evidence over the seen pixels (full view: 0.36)
    place: list[int] | None = None                 # [row, col]: the top-left cell of the modal place
    place_name: str = ""
    place_extent: str = ""
    place_count: int = 0
    place_share: float = float("nan")               # fraction of images with evidence whose peak cell is there
    chance_share: float = PLACE ** 2 / GRID ** 2    # the same for peaks that fall at random
    n_no_peak: int = 0                              # images whose top cells tie (flat maps)
    place_mass: float = float("nan")                # mean share of each image's positive evidence in that place
    uniform_place_mass: float = PLACE ** 2 / GRID ** 2
    mean_mass_grid: list[list[float]] = field(default_factory=list)  # mean share per cell, grid x grid
    border_warned: bool = False
    place_warned: bool = False
    centred: bool = False   # the modal place is the centre and holds over PEAK_WARN of the peaks: reported only
    rule: str = RULE

    @property
    def warned(self) -> bool:
        return self.border_warned or self.place_warned

    def to_dict(self) -> dict:
        return asdict(self)


def evidence_location(maps: Sequence, *, border: float = BORDER, grid: int = GRID, place: int = PLACE,
                      border_warn: float = BORDER_WARN, peak_warn: float = PEAK_WARN,
                      min_images: int = MIN_IMAGES) -> EvidenceLocation:
    """Border share and fixed-place concentration of `maps` (2-d arrays, each in its own image's frame)."""
    shares, expected, peaks, masses = [], [], [], []
    n_none = 0
    for m in maps:
        share, exp = border_share(m, border)
        if np.isnan(share):
            n_none += 1
            continue
        mass, seen = cell_grid(m, grid)
        shares.append(share)
        expected.append(exp)
        masses.append(mass / mass.sum())
        peaks.append(peak_cell(mass, seen))
    chance = place ** 2 / grid ** 2
    res = EvidenceLocation(n_maps=len(shares) + n_none, n_with_evidence=len(shares), n_no_evidence=n_none,
                           border=border, grid=grid, chance_share=chance, uniform_place_mass=chance)
    if not shares:
        return res
    s = np.asarray(shares)
    res.border_share_mean = float(s.mean())
    res.border_share_std = float(s.std(ddof=1)) if len(s) > 1 else 0.0
    res.border_share_median = float(np.median(s))
    res.border_share_q90 = float(np.quantile(s, 0.9))
    res.expected_border_share = float(np.nanmean(expected)) if np.isfinite(expected).any() else float("nan")
    mean_mass = np.mean(masses, axis=0)
    res.mean_mass_grid = [[float(v) for v in row] for row in mean_mass]
    res.n_no_peak = sum(p is None for p in peaks)
    hits = np.zeros((grid, grid))
    for p in peaks:
        if p is not None:
            hits[p] += 1
    if hits.sum():
        n_win = grid - place + 1
        count = np.array([[hits[r:r + place, c:c + place].sum() for c in range(n_win)] for r in range(n_win)])
        held = np.array([[mean_mass[r:r + place, c:c + place].sum() for c in range(n_win)] for r in range(n_win)])
        # the place holding the most peaks; among equals, the one holding more evidence (then reading order)
        r, c = max(np.ndindex(n_win, n_win), key=lambda rc: (count[rc], held[rc], -rc[0], -rc[1]))
        res.place = [int(r), int(c)]
        res.place_name = place_name(r, c, grid, place)
        res.place_extent = place_extent(r, c, grid, place)
        res.place_count = int(count[r, c])
        res.place_share = float(count[r, c] / len(shares))
        res.place_mass = float(held[r, c])
    enough = len(shares) >= min_images
    res.border_warned = bool(enough and res.border_share_mean > border_warn)
    concentrated = bool(enough and res.place is not None and res.place_share > peak_warn)
    res.centred = concentrated and res.place_name == "centre"
    res.place_warned = concentrated and not res.centred
    return res


def evidence_lines(loc: EvidenceLocation, what: str = "fake images", side: str = "fake") -> list[str]:
    """The numbers in words, one line each; `side`: the class the located evidence is for (the maps given
    were negated for "real")."""
    if loc.n_with_evidence == 0:
        return [f"evidence maps of {loc.n_maps} {what}: none holds evidence for {side}, nothing to locate"]
    lines = [f"evidence maps of {loc.n_with_evidence} {what}"
             + (f" ({loc.n_no_evidence} more without evidence for {side})" if loc.n_no_evidence else "")]
    lines.append(f"border share: {loc.border_share_mean:.2f} +- {loc.border_share_std:.2f} (median "
                 f"{loc.border_share_median:.2f}, 90th percentile {loc.border_share_q90:.2f}) of the evidence in the "
                 f"outer {loc.border:.0%} of each side; {loc.expected_border_share:.2f} if spread evenly")
    if loc.place is not None:
        lines.append(f"fixed place: the peak of {loc.place_share:.0%} of the images ({loc.place_count}/"
                     f"{loc.n_with_evidence}) lies in one place, the {loc.place_name} ({loc.place_extent}), "
                     f"which holds {loc.place_mass:.1%} of their evidence on average (chance: "
                     f"{loc.chance_share:.1%} of images, {loc.uniform_place_mass:.1%} of evidence)")
    if loc.centred:
        lines.append("the evidence gathers in the centre, where images put their subject: a content prior, not "
                     "counted as a shortcut")
    if loc.n_with_evidence < MIN_IMAGES:
        lines.append(f"too few images with evidence ({loc.n_with_evidence} < {MIN_IMAGES}) to warn")
    return lines


def evidence_warnings(loc: EvidenceLocation, what: str = "fake images", side: str = "fake") -> list[str]:
    """One sentence per warning that fired (see the module docstring for the rule); `side` as in
    `evidence_lines`."""
    out = []
    evidence, trace = ("evidence", "a generator trace") if side == "fake" else \
        ("evidence for real", "a trait of real photos")
    if loc.place_warned:
        out.append(f"{evidence} sits in the same place ({loc.place_name}, {loc.place_extent}) in "
                   f"{loc.place_share:.0%} of {what} (chance: {loc.chance_share:.0%}): a watermark or a border, "
                   f"not {trace}")
    if loc.border_warned:
        out.append(f"{loc.border_share_mean:.0%} of the {evidence} lies in the outer {loc.border:.0%} border of "
                   f"{what} ({loc.expected_border_share:.0%} if spread evenly): a frame, padding or a border "
                   f"artefact, not {trace}")
    return out
