"""What `predict`'s labels rest on: accuracy where the inputs carry labels, and warnings where they mislead.

Given predict's rows (path, p_fake, label, model, threshold, score, novelty, true_label) and its inputs:

* summary: per model, on the images whose input says their class (`real/`, `fake/` folders, tar `.cls`,
  list labels), "accuracy A on n labelled images (95% Wilson interval)" at the model's threshold;
* novelty: per model, the share of images whose distance to the training features is beyond the training
  set's 99th percentile (`novelty.py`); a warning when that share exceeds NOVEL_SHARE (and at least
  NOVEL_MIN images): about 1% is expected on images like the training data;
* one label: per model and per input folder (or shard file: .tar, .parquet) of at least MIN_FOLDER images, a
  warning when ONE_LABEL_SHARE or more of them get the same label (a model trained on one generator calls everything
  from another "fake", the real photos included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_cli.data import sources
from deepfake_cli.metrics.stats import wilson_interval

NOVEL_SHARE = 0.10
NOVEL_MIN = 2
ONE_LABEL_SHARE = 0.95
MIN_FOLDER = 10


@dataclass
class Checks:
    summary: list[str] = field(default_factory=list)    # one line per model with labelled inputs
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    accuracy: dict = field(default_factory=dict)          # model -> {n, n_correct, accuracy, ci_low, ci_high}


def check(rows: list[dict], inputs, no_reference: list[str] = ()) -> Checks:
    """The summary lines, warnings and notes for predict's rows; `no_reference`: models without a novelty
    reference (trained before it existed)."""
    out = Checks()
    models = list(dict.fromkeys(r["model"] for r in rows))
    for m in models:
        mine = [r for r in rows if r["model"] == m]
        _accuracy(m, mine, out)
        _novelty(m, mine, out)
        for prefix, shown in _folders(inputs):
            group = [r for r in mine if str(r["path"]).startswith(prefix)]
            _one_label(m, group, shown, out)
    for m in no_reference:
        out.notes.append(f"{m}: no novelty reference in this model (written before deepfake-cli stored one); "
                         "it cannot tell whether these images look like its training data")
    return out


def _accuracy(model: str, rows: list[dict], out: Checks) -> None:
    lab = [r for r in rows if r.get("true_label") in ("real", "fake")]
    if not lab:
        return
    n = len(lab)
    k = sum(r["label"] == r["true_label"] for r in lab)
    low, high = wilson_interval(k, n)
    n_real = sum(r["true_label"] == "real" for r in lab)
    thr = lab[0].get("threshold")
    out.accuracy[model] = {"n": n, "n_correct": k, "accuracy": k / n, "ci_low": low, "ci_high": high}
    out.summary.append(f"{model}: accuracy {k / n:.3f} ({k}/{n}) on {n} labelled image(s) ({n_real} real, "
                       f"{n - n_real} fake), 95% CI {low:.2f}-{high:.2f}"
                       + (f", at threshold {thr:.3g}" if isinstance(thr, float) else ""))


def _novelty(model: str, rows: list[dict], out: Checks) -> None:
    measured = [r["novelty"] for r in rows if isinstance(r.get("novelty"), float)]
    if not measured:
        return
    far = sum(v > 1 for v in measured)
    share = far / len(measured)
    if far >= NOVEL_MIN and share > NOVEL_SHARE:
        out.warnings.append(f"{model}: {far} of {len(measured)} image(s) ({share:.0%}) lie farther from the training "
                            "features than 99% of the training images do (novelty > 1): they look unlike the data "
                            "the model was trained on, and its p_fake and labels may not hold for them")


def _one_label(model: str, rows: list[dict], where: str, out: Checks) -> None:
    if len(rows) < MIN_FOLDER:
        return
    fakes = sum(r["label"] == "fake" for r in rows)
    for label, count in (("fake", fakes), ("real", len(rows) - fakes)):
        if count / len(rows) >= ONE_LABEL_SHARE:
            out.warnings.append(f"{model}: {count} of {len(rows)} image(s) in {where} ({count / len(rows):.0%}) are "
                                f"labelled {label}; a detector that gives one label to a whole folder is often "
                                "responding to the source (size, format, content) rather than to real vs fake")


def _folders(inputs) -> list[tuple[str, str]]:
    """(path prefix of its rows, the input as given) of each input that is a folder or a shard file (a .tar,
    a .parquet: whatever `data.sources` reads from a folder that holds no image)."""
    out = []
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    for spec in inputs if isinstance(inputs, (list, tuple)) else []:
        if not isinstance(spec, (str, os.PathLike)):  # an image in memory (the Python API), an ImageItem
            continue
        p = Path(sources.location(str(spec)))  # `x.parquet?label=y` names its rows from x.parquet
        try:
            entry = sources.source_for(p) if p.is_dir() or p.is_file() else None
        except (OSError, ValueError):  # a name too long or with a NUL byte is no folder of ours
            continue
        if entry is None or not (entry.folder or entry.shard):
            continue
        base = str(p)
        out.append(("" if base == "." else base + (os.sep if entry.folder else "/"), str(spec)))
    return out
