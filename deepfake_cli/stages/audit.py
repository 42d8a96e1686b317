"""Shortcut audit: can real and fake be told apart from file metadata alone, without pixels?

Public fake-image benchmarks are often separable by file format, size or JPEG tables (real photos
as JPEGs of many sizes, fakes as PNGs of one size). A detector trained on such a set can score
high by learning the container, not the generator. This module reads only headers -- format,
JPEG quantisation tables, width, height, EXIF, file size, mode -- fits a small decision tree on
them with seeded, stratified 5-fold cross-validation and reports its accuracy with a 95% Wilson
interval, plus each single cue's accuracy so the user sees *which* cue gives the set away.

Flag rule: a dataset is flagged when the lower bound of the 95% Wilson interval of the
metadata-only CV accuracy exceeds max(0.6, chance + 0.1), where chance is the majority-class
fraction. The lower bound (not the point estimate) keeps small sets from being flagged by luck;
the 0.1 margin over chance keeps imbalanced sets from being flagged for their imbalance.

With `align=(SIZE, QUALITY)` the metadata is computed on the images as `extract --align` would
feed them (resized, centre-cropped, JPEG re-encoded), to show the shortcut is gone.

With a model (`audit --model`), the audit also asks where that model finds its evidence: evidence maps
(`deepfake_cli.explainers`) of each dataset's fake and real images -- at most `max_images` of each, picked
evenly along the dataset -- and `metrics.evidence_location` on them: the share of the evidence in the outer
border, and how often each image's peak sits in the same place of a common 8x8 relative grid. The fakes are
read for their evidence for "fake", the reals for their evidence for "real" (the maps' negative part):
evidence in the same corner of every fake (a generator's watermark) or of every real (a camera's or a photo
site's stamp) is a shortcut, not a generator trace; the rule is `metrics.evidence_location.RULE`.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from deepfake_cli import data as data_mod
from deepfake_cli.data.sources import item_header
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.metrics.stats import wilson_interval

FLAG_MIN_LOWER_BOUND = 0.6
FLAG_MARGIN_OVER_CHANCE = 0.1
FLAG_RULE = (f"flagged when the 95% Wilson lower bound of the metadata-only CV accuracy exceeds "
             f"max({FLAG_MIN_LOWER_BOUND}, chance + {FLAG_MARGIN_OVER_CHANCE}); chance = majority-class fraction")
TREE_DEPTH = 4          # deep enough for "PNG and 256 px", shallow enough to stay a header rule
SINGLE_CUE_DEPTH = 2    # one feature: a threshold or two
DEFAULT_FOLDS = 5
# `audit --model`: evidence maps per dataset when --max-images is not given. The exact and token paths cost
# one forward pass per image (effnet-lite0 on CPU: under 0.1 s); occlusion costs one per patch position
# (about 170 at the default grid: 5 minutes for 12 images on 2 busy CPU cores), so it maps fewer by default.
# 20 images still hold enough peaks for the fixed-place rule (it needs 10).
DEFAULT_MAX_MAPS = 200
DEFAULT_MAX_OCCLUSION_MAPS = 20

# IJG (libjpeg) standard luminance table at quality 50; JPEG quality is estimated from the ratio
# of a file's luma table to it (the scaling libjpeg and Pillow use when writing `quality=Q`).
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=float)

FORMATS = ("JPEG", "PNG", "WEBP")  # others fall in "other"

# Feature columns, each with the cue group it belongs to (shown to the user).
FEATURES: list[tuple[str, str]] = [
    ("is_jpeg", "file format"), ("is_png", "file format"), ("is_webp", "file format"),
    ("is_other_format", "file format"),
    ("jpeg_quality", "JPEG tables"), ("luma_table_mean", "JPEG tables"),
    ("chroma_table_mean", "JPEG tables"), ("n_quant_tables", "JPEG tables"),
    ("chroma_subsampling", "JPEG tables"), ("progressive", "JPEG tables"),
    ("width", "width"), ("height", "height"), ("aspect_ratio", "aspect ratio"),
    ("megapixels", "width x height"),
    ("exif_present", "EXIF"), ("exif_tags", "EXIF"),
    ("file_size", "file size"), ("bytes_per_pixel", "file size"),
    ("bits_per_pixel", "mode / bit depth"), ("n_bands", "mode / bit depth"),
    ("has_alpha", "mode / bit depth"),
    ("icc_profile", "other header fields"), ("dpi_present", "other header fields"),
    ("n_info_keys", "other header fields"),
]
FEATURE_NAMES = [f for f, _ in FEATURES]

_MODE_BITS = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32, "CMYK": 32, "YCbCr": 24, "LAB": 24,
              "HSV": 24, "I": 32, "F": 32, "LA": 16, "PA": 16, "RGBa": 32, "La": 16,
              "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}


@dataclass
class AuditResult:
    """One dataset's audit; `to_dict()` is what `audit --json` prints."""

    dataset: str
    root: str
    n: int
    n_real: int
    n_fake: int
    metadata_accuracy: float
    ci_low: float
    ci_high: float
    chance: float
    flagged: bool
    folds: int
    cues: list[dict] = field(default_factory=list)          # per cue group, best first
    features: list[dict] = field(default_factory=list)      # per feature column, best first
    formats: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> format -> count
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)    # class -> "WxH" -> count (top 3)
    skipped: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # from discovery, for the CLI to print
    align: str | None = None
    rule: str = FLAG_RULE
    # with a model: where its evidence lies, for fake in the fakes, for real in the reals (`evidence_audit`)
    evidence: dict | None = None
    evidence_lines: list[str] = field(default_factory=list)     # the numbers in words
    evidence_warnings: list[str] = field(default_factory=list)  # the shortcut warnings that fired

    @property
    def top_cue(self) -> dict | None:
        return self.cues[0] if self.cues else None

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_jpeg_quality(luma_table) -> float:
    """libjpeg-style quality (1..100) whose scaled standard table is closest to `luma_table`.

    Uses the ratio of sums, which does not depend on whether the table is in zigzag or natural
    order. Non-IJG tables (cameras, Photoshop) get the quality of the same average coarseness.
    """
    scale = 100.0 * float(np.sum(luma_table)) / float(_IJG_LUMA.sum())
    if scale <= 0:
        return 100.0
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(min(100.0, max(1.0, quality)))


def header_features(img: Image.Image, file_size: int) -> dict[str, float]:
    """Metadata features of an opened (not decoded) image; never reads pixel values."""
    fmt = (img.format or "").upper()
    w, h = img.size
    q = getattr(img, "quantization", None) or {}
    tables = [np.asarray(q[k], dtype=float) for k in sorted(q)]
    sampling = -1
    if fmt == "JPEG":
        try:
            sampling = JpegImagePlugin.get_sampling(img)
        except Exception:  # unusual sampling factors: keep the image, lose this one field
            sampling = -1
    try:
        exif = img.getexif()
        n_exif = len(exif)
    except Exception:
        n_exif = 0
    mode = img.mode
    return {
        "is_jpeg": float(fmt == "JPEG"),
        "is_png": float(fmt == "PNG"),
        "is_webp": float(fmt == "WEBP"),
        "is_other_format": float(fmt not in FORMATS),
        "jpeg_quality": estimate_jpeg_quality(tables[0]) if tables else -1.0,
        "luma_table_mean": float(tables[0].mean()) if tables else -1.0,
        "chroma_table_mean": float(tables[1].mean()) if len(tables) > 1 else -1.0,
        "n_quant_tables": float(len(tables)),
        "chroma_subsampling": float(sampling),
        "progressive": float(bool(img.info.get("progressive") or img.info.get("progression"))),
        "width": float(w),
        "height": float(h),
        "aspect_ratio": float(w) / float(h) if h else 0.0,
        "megapixels": w * h / 1e6,
        "exif_present": float(n_exif > 0 or "exif" in img.info),
        "exif_tags": float(n_exif),
        "file_size": float(file_size),
        "bytes_per_pixel": float(file_size) / max(1, w * h),
        "bits_per_pixel": float(_MODE_BITS.get(mode, 8 * len(img.getbands()))),
        "n_bands": float(len(img.getbands())),
        "has_alpha": float("A" in mode or "transparency" in img.info),
        "icc_profile": float(bool(img.info.get("icc_profile"))),
        "dpi_present": float("dpi" in img.info),
        "n_info_keys": float(len(img.info)),
    }


def file_metadata(path: Path, align: tuple[int, int] | None = None) -> tuple[dict[str, float], str, str]:
    """(features, format, "WxH") of one plain file; raises data.UnreadableImage (see item_metadata)."""
    return item_metadata(data_mod.ImageItem(Path(path), Path(path).name, data_mod.UNKNOWN), align)


def item_metadata(item: data_mod.ImageItem, align: tuple[int, int] | None = None) -> tuple[dict[str, float], str, str]:
    """(features, format, "WxH") of one item (of any `data.sources` kind); raises data.UnreadableImage.

    Without `align` only the header is parsed. With it, the image is decoded and re-encoded the
    way `extract --align` prepares it, and the features describe those bytes. Either way the
    readers' one bomb rule applies (data.open_image), so audit skips what extract skips.
    """
    try:
        if align is None:
            source, size = item_header(item)  # its file, or its bytes (a tar member, a Parquet row)
            with data_mod.open_image(source) as img:
                feats = header_features(img, size)
                return feats, (img.format or "?").upper(), f"{img.width}x{img.height}"
        from deepfake_cli.data.transforms import align_image

        rgb, _ = data_mod.read_item(item)
        aligned = align_image(rgb, align)
        aligned.info = {}  # a JPEG comment would be carried over; the backbone never sees it
        buf = io.BytesIO()
        aligned.save(buf, format="JPEG", quality=int(align[1]))
        with data_mod.open_image(io.BytesIO(buf.getvalue())) as img:
            feats = header_features(img, len(buf.getvalue()))
            return feats, (img.format or "?").upper(), f"{img.width}x{img.height}"
    except data_mod.UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise data_mod.UnreadableImage(f"unreadable header ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc


def _cv_correct(X: np.ndarray, y: np.ndarray, depth: int, folds: int, seed: int) -> int:
    """Number of images whose held-out prediction is right under stratified k-fold CV."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    clf = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=2, random_state=seed)
    pred = cross_val_predict(clf, X, y, cv=cv)
    return int((pred == y).sum())


def is_flagged(ci_low: float, chance: float) -> bool:
    """The flag rule (see the module docstring)."""
    return bool(ci_low > max(FLAG_MIN_LOWER_BOUND, chance + FLAG_MARGIN_OVER_CHANCE))


def audit_dataset(ds: data_mod.DatasetSpec, seed: int = 0, folds: int = DEFAULT_FOLDS,
                  align: tuple[int, int] | None = None) -> AuditResult:
    """Audit one discovered dataset (labelled items only; unknown labels are ignored)."""
    rows, labels = [], []
    # What discovery could not use (loops, unreadable folders) is reported with what reading could not.
    skipped = [{"dataset": ds.name, "path": s["path"], "reason": s["reason"]} for s in ds.skipped]
    formats: dict[str, Counter] = {"real": Counter(), "fake": Counter()}
    sizes: dict[str, Counter] = {"real": Counter(), "fake": Counter()}
    for item in ds.items:
        if item.label not in (data_mod.REAL, data_mod.FAKE):
            continue
        try:
            feats, fmt, wh = item_metadata(item, align)
        except data_mod.UnreadableImage as exc:
            skipped.append({"dataset": ds.name, "path": item.rel, "reason": exc.reason})
            continue
        cls = data_mod.LABEL_NAMES[item.label]
        formats[cls][fmt] += 1
        sizes[cls][wh] += 1
        rows.append([feats[f] for f in FEATURE_NAMES])
        labels.append(item.label)
    y = np.asarray(labels, dtype=int)
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    if min(n_real, n_fake) < 2:
        raise DeepfakeError(f"dataset '{ds.name}' needs at least 2 readable real and 2 fake images "
                            f"to audit (has {n_real} real, {n_fake} fake).")
    X = np.asarray(rows, dtype=float)
    n = len(y)
    k_folds = min(folds, n_real, n_fake)  # every fold must hold both classes
    correct = _cv_correct(X, y, TREE_DEPTH, k_folds, seed)
    low, high = wilson_interval(correct, n)
    chance = max(n_real, n_fake) / n

    features = []
    for j, (fname, group) in enumerate(FEATURES):
        col = X[:, j:j + 1]
        if np.all(col == col[0]):
            k = max(n_real, n_fake)  # a constant column can only predict the majority class
        else:
            k = _cv_correct(col, y, SINGLE_CUE_DEPTH, k_folds, seed)
        lo, hi = wilson_interval(k, n)
        features.append({"feature": fname, "cue": group, "accuracy": k / n, "ci_low": lo, "ci_high": hi})
    features.sort(key=lambda r: -r["accuracy"])
    cues: dict[str, dict] = {}
    for r in features:  # sorted, so the first of each group is its best column
        cues.setdefault(r["cue"], {"cue": r["cue"], "feature": r["feature"], "accuracy": r["accuracy"],
                                   "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
    return AuditResult(
        dataset=ds.name, root=str(ds.root), n=n, n_real=n_real, n_fake=n_fake,
        metadata_accuracy=correct / n, ci_low=low, ci_high=high, chance=chance,
        flagged=is_flagged(low, chance), folds=k_folds, cues=list(cues.values()), features=features,
        formats={c: dict(v.most_common()) for c, v in formats.items()},
        sizes={c: dict(v.most_common(3)) for c, v in sizes.items()},
        skipped=skipped, warnings=list(ds.warnings), align=None if align is None else f"{align[0]}:{align[1]}",
    )


def even_sample(items: list, k: int) -> list:
    """At most `k` of `items`, spread evenly along the list (first and last included), in order."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    # spacing (n - 1) / (k - 1) >= 1, so the rounded positions are distinct
    return [items[int(i)] for i in np.round(np.linspace(0, len(items) - 1, k))]


def evidence_audit(model, ds: data_mod.DatasetSpec, *, max_images: int | None = None, weights: str | None = None,
                   device: str = "auto", batch_size: int = 32) -> tuple[dict, list[str], list[str]]:
    """(evidence summary, lines, warnings): evidence maps of the dataset's fake and real images (at most
    `max_images` of each, picked evenly; None: `DEFAULT_MAX_MAPS`, or `DEFAULT_MAX_OCCLUSION_MAPS` when the
    model is explained by occlusion) and where their evidence lies (`metrics.evidence_location`): the evidence
    for fake in the fakes (the summary's top-level keys), the evidence for real in the reals (its "real" key:
    a watermark on the real photos is as much a shortcut)."""
    import time

    from deepfake_cli.explainers import explain_images

    by_class = {"fake": [it for it in ds.items if it.label == data_mod.FAKE],
                "real": [it for it in ds.items if it.label == data_mod.REAL]}
    limit = DEFAULT_MAX_MAPS if max_images is None else max_images
    samples = {c: even_sample(items, limit) for c, items in by_class.items()}
    t0 = time.perf_counter()

    def start():
        # one run for both classes (one backbone); the sample is the bound, so explain's own refusal is off
        return explain_images(model, samples["fake"] + samples["real"], weights=weights, device=device,
                              batch_size=batch_size, max_images=None)

    run = start()
    if max_images is None and getattr(run, "method", "") == "occlusion" and \
            any(len(s) > DEFAULT_MAX_OCCLUSION_MAPS for s in samples.values()):
        limit = DEFAULT_MAX_OCCLUSION_MAPS  # the method is known once the run is set up; nothing is computed yet
        samples = {c: even_sample(items, limit) for c, items in by_class.items()}
        run = start()
    side = {it.rel: c for c, items in samples.items() for it in items}
    maps: dict[str, list] = {"fake": [], "real": []}
    agree = {"fake": 0, "real": 0}  # images the model gives their true class
    methods, exact, seconds = set(), True, 0.0
    threshold = float(model.meta.get("threshold", 0.5))
    for ex in run:
        c = side[ex.rel]
        m = np.asarray(ex.map, dtype=np.float32)
        maps[c].append(m if c == "fake" else -m)  # a real image's evidence for real is its map's negative part
        methods.add(ex.method)
        exact = exact and bool(ex.exact)
        seconds += float(ex.seconds)
        label = getattr(ex, "label", "") or ("fake" if float(ex.p_fake) >= threshold else "real")
        agree[c] += int(label == c)
    wall = time.perf_counter() - t0
    skipped = [{"dataset": ds.name, "path": s["path"], "reason": s["reason"]} for s in getattr(run, "skipped", [])]
    n_maps = len(maps["fake"]) + len(maps["real"])
    method = ",".join(sorted(methods)) or getattr(run, "method", None)
    is_exact = bool(n_maps) and exact
    summary = {"model": model.name, "method": method, "exact": is_exact,
               "method_note": getattr(run, "method_note", ""), "skipped": skipped, "seconds": round(wall, 3),
               "seconds_per_image": round(seconds / n_maps, 4) if n_maps else None}
    lines, warnings = [], []
    for c in ("fake", "real"):
        part, what = _class_evidence(ds, model, c, maps[c], by_class[c], samples[c], agree[c], limit, method,
                                     is_exact)
        if c == "fake":
            summary.update(images="fake", n_fake=len(by_class[c]), n_called_fake=agree[c], **part["summary"])
        else:
            summary["real"] = dict(n_real=len(by_class[c]), n_called_real=agree[c], **part["summary"])
        lines += part["lines"]
        warnings += part["warnings"]
    return summary, lines, warnings


def _class_evidence(ds, model, c: str, maps: list, items: list, sample: list, agree: int, limit: int,
                    method, exact: bool) -> tuple[dict, str]:
    """The evidence location of one class's maps, in numbers and words (see `evidence_audit`)."""
    from deepfake_cli.metrics.evidence_location import evidence_lines, evidence_location, evidence_warnings

    loc = evidence_location(maps)
    what = f"{c} images"
    n_skipped = len(sample) - len(maps)
    head = (f"{ds.name}: {model.name}'s evidence maps ({method or 'none'}{', exact' if exact else ''}) of "
            f"{len(maps)} of {len(items)} {what}"
            + (f", picked evenly (--max-images {limit})" if len(sample) < len(items) else "")
            + (f", {n_skipped} unreadable" if n_skipped else "")
            + (f"; the model calls {agree} of them {c}" if maps else "")
            + (f"; {loc.n_no_evidence} {'holds' if loc.n_no_evidence == 1 else 'hold'} no evidence for {c}"
               if loc.n_no_evidence else ""))
    words = evidence_lines(loc, what, side=c)
    # the fakes' lines name the dataset alone (evidence for fake is what the audit is about); the reals' say so
    prefix = f"{ds.name}: " if c == "fake" else f"{ds.name} (real images, evidence for real): "
    # the first line counts the maps, which the head already says (unless none holds evidence)
    lines = [head] + [prefix + line for line in (words[1:] if loc.n_with_evidence else words)]
    warnings = [f"{ds.name}: {w}" for w in evidence_warnings(loc, what, side=c)]
    return {"summary": dict(n_sampled=len(sample), n_skipped=n_skipped, **loc.to_dict()), "lines": lines,
            "warnings": warnings}, what


def audit(specs: list[str], seed: int = 0, folds: int = DEFAULT_FOLDS, align: str | None = None, *,
          model=None, max_images: int | None = None, weights: str | None = None, device: str = "auto",
          batch_size: int = 32) -> list[AuditResult]:
    """Audit every `[NAME=]PATH` dataset; `align` is `SIZE:QUALITY` as for `extract --align`.

    `model` (a model file, a zoo name or a loaded `Model`): also where its evidence lies in each dataset's fake
    images (`evidence_audit`; at most `max_images` maps per dataset)."""
    from deepfake_cli.data.transforms import parse_align

    if folds < 2:
        raise DeepfakeError("--folds must be at least 2.")
    if max_images is not None and max_images < 1:
        raise DeepfakeError("--max-images must be at least 1.")
    align_t = parse_align(align)
    datasets = data_mod.discover_many(list(specs))
    for ds in datasets:  # every dataset checked before any model loads or map is computed
        if not ds.labelled:
            raise DeepfakeError(f"dataset '{ds.name}' has no labelled image to audit: label it with "
                                f"{data_mod.LABEL_LAYOUTS}.")
    loaded = None
    if model is not None:
        from deepfake_cli.store.artifacts import load_models

        found = load_models(model, weights=weights)
        if len(found) != 1:
            raise DeepfakeError(f"audit --model takes one model; {model} holds {len(found)} "
                                f"({', '.join(m.name for m in found)}): name one model file.")
        loaded = found[0]
    results = []
    for ds in datasets:
        res = audit_dataset(ds, seed=seed, folds=folds, align=align_t)
        if loaded is not None:
            res.evidence, res.evidence_lines, res.evidence_warnings = evidence_audit(
                loaded, ds, max_images=max_images, weights=weights, device=device, batch_size=batch_size)
        results.append(res)
    return results

