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

And what the verdict rests on, from the model's card (`evidence`): the sets and image counts it was trained on,
its held-out accuracy with n and the 95% interval, how its threshold was chosen and on how many images, what it
was never tested on, and for a zoo model its published figures with the citation. Keys a file written before
they existed lacks are "not recorded". Thin evidence is a warning: a validation part under THIN_VAL_PER_CLASS
images per class, a held-out interval whose lower bound is under THIN_CI_LOW, or a threshold more than
FAR_THRESHOLD from 0.5 chosen on fewer than THIN_VAL_PER_CLASS images per class.
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
THIN_VAL_PER_CLASS = 30   # as train's MIN_VAL_PER_CLASS: below it a threshold and a calibration are guesses
THIN_CI_LOW = 0.7         # a held-out interval reaching below this does not exclude a weak detector
FAR_THRESHOLD = 0.2       # |threshold - 0.5| beyond this, chosen on a handful of images, is likely noise
NOT_RECORDED = "not recorded"


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


# ------------------------------------------------------------------------------------------- evidence

def evidence(meta: dict, inputs=None) -> dict:
    """What a model's verdicts rest on, from its metadata (see the module docstring); `inputs`: predict's
    inputs, to say which of them come from outside its training sets. JSON-ready; "warnings" lists the thin
    evidence."""
    zoo = meta.get("zoo") if isinstance(meta.get("zoo"), dict) else None
    sets = list(meta.get("train_datasets") or [])
    by_class = meta.get("n_by_class") if isinstance(meta.get("n_by_class"), dict) else None
    roots = meta.get("train_roots") if isinstance(meta.get("train_roots"), dict) else None
    val = meta.get("validation") if isinstance(meta.get("validation"), dict) else {}
    val_n = {"real": val.get("n_real"), "fake": val.get("n_fake")} if "n_real" in val else (
        by_class.get("val") if by_class else None)
    heldout = meta.get("heldout") if isinstance(meta.get("heldout"), dict) else None
    if heldout is None:
        heldout_value = NOT_RECORDED if "heldout" not in meta else "nothing held out"
    else:
        heldout_value = heldout
    ev = {
        "model": meta.get("name"),
        "classifier": meta.get("classifier"),
        "backbone": meta.get("backbone"),
        "trained_on": {"datasets": sets or NOT_RECORDED,
                       "roots": roots or NOT_RECORDED,
                       "n_train": meta.get("n_train", NOT_RECORDED),
                       "by_class": (by_class or {}).get("train", NOT_RECORDED)} if not zoo or sets else
                      {"datasets": zoo.get("training_data", NOT_RECORDED)},
        "heldout": heldout_value if not zoo or heldout else "not measured here",
        "threshold": {"value": meta.get("threshold"), "rule": meta.get("threshold_rule", NOT_RECORDED),
                      "n_val": val_n or ("not chosen on images here" if zoo else NOT_RECORDED),
                      "calibration": (meta.get("calibration") or {}).get("method", "none" if zoo else NOT_RECORDED)},
        "never_tested_on": (f"any generator other than {', '.join(sets)} (only their held-out images were scored)"
                            if sets else NOT_RECORDED) if not zoo else
                           "any generator outside its published test sets (nothing measured with this tool)",
        "inputs_outside_training": _outside(inputs, roots) if roots else [],
        "published": _published(zoo) if zoo else None,
        "recipe": meta.get("recipe"),
    }
    ev["warnings"] = _thin(ev)
    return ev


def _published(zoo: dict) -> dict:
    return {"name": zoo.get("zoo_name") or zoo.get("name"), "citation": zoo.get("citation", NOT_RECORDED),
            "figures": zoo.get("published") if isinstance(zoo.get("published"), dict) else {},
            "measured_here": zoo.get("measured_here") or "nothing yet"}


def _outside(inputs, roots: dict) -> list[str]:
    """The path inputs that lie under none of the training sets' folders (its accuracy there is unmeasured)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    homes = [os.path.realpath(r) for r in roots.values() if r]
    out = []
    for spec in inputs if isinstance(inputs, (list, tuple)) else []:
        if not isinstance(spec, (str, os.PathLike)):
            continue
        real = os.path.realpath(sources.location(str(spec)))
        if not any(real == h or real.startswith(h.rstrip(os.sep) + os.sep) for h in homes):
            out.append(str(spec))
    return out


def _per_class(counts) -> tuple[int, int] | None:
    if isinstance(counts, dict) and isinstance(counts.get("real"), int) and isinstance(counts.get("fake"), int):
        return counts["real"], counts["fake"]
    return None


def _thin(ev: dict) -> list[str]:
    """One sentence per way the evidence is too thin to take the labels at face value."""
    out = []
    name = ev["model"]
    val = _per_class(ev["threshold"]["n_val"])
    if val and min(val) < THIN_VAL_PER_CLASS:
        out.append(f"{name}: thin evidence: its threshold and calibration were chosen on {val[0]} real and {val[1]} "
                   f"fake validation images (under {THIN_VAL_PER_CLASS} per class)")
    held = ev["heldout"]
    if isinstance(held, dict) and held.get("ci_low") is not None and held["ci_low"] < THIN_CI_LOW:
        out.append(f"{name}: thin evidence: held-out accuracy {held['accuracy']:.3f} on {held['n']} images, 95% "
                   f"interval {held['ci_low']:.2f}-{held['ci_high']:.2f} (its lower end is under {THIN_CI_LOW}: "
                   "it does not rule out a weak detector)")
    thr = ev["threshold"]["value"]
    if isinstance(thr, (int, float)) and abs(thr - 0.5) > FAR_THRESHOLD and val and min(val) < THIN_VAL_PER_CLASS:
        out.append(f"{name}: thin evidence: threshold {thr:.3f}, far from 0.5, was chosen on {sum(val)} validation "
                   "images; it may be fitted to their noise")
    return out


def evidence_lines(ev: dict) -> list[str]:
    """The evidence as plain sentences for stderr and the CSV's `# ` lines (warnings not included)."""
    name = ev["model"]
    lines = []
    pub = ev.get("published")
    if pub:
        figures = ", ".join(f"{k.replace('_pct', ' (%)').replace('_', ' ')} {_text(v)}"
                            for k, v in pub["figures"].items()) or NOT_RECORDED
        lines.append(f"{name}: zoo model {pub['name']}; published (not measured here): {figures}; "
                     f"source: {str(pub['citation']).rstrip('.')}; measured with this tool: {pub['measured_here']}")
    tr = ev["trained_on"]
    if "n_train" in tr:
        counts = _per_class(tr["by_class"])
        n = (f"{tr['n_train']} images ({counts[0]} real, {counts[1]} fake)" if counts else
             f"{tr['n_train']} images" if isinstance(tr["n_train"], int) else f"images: {NOT_RECORDED}")
        sets = ", ".join(tr["datasets"]) if isinstance(tr["datasets"], list) else tr["datasets"]
        note = (ev.get("recipe") or {}).get("note") if isinstance(ev.get("recipe"), dict) else None
        lines.append(f"{name}: trained on {sets}, {n}" + (f"; {note}" if note else ""))
    else:
        lines.append(f"{name}: trained on {_text(tr['datasets'])}")
    held = ev["heldout"]
    if isinstance(held, dict):
        lines.append(f"{name}: held-out accuracy {held['accuracy']:.3f} ({held['n_correct']}/{held['n']}; "
                     f"{held['n_real']} real, {held['n_fake']} fake), 95% interval {held['ci_low']:.2f}-"
                     f"{held['ci_high']:.2f}; measured by {held.get('measured_by', NOT_RECORDED)}")
    else:
        lines.append(f"{name}: held-out accuracy: {held}" + (" (`deepfake eval MODEL --features FILE` measures it)"
                                                             if held == NOT_RECORDED else ""))
    th = ev["threshold"]
    val = _per_class(th["n_val"])
    on = (f"on {val[0]} real and {val[1]} fake validation images" if val else
          th["n_val"] if th["n_val"] != NOT_RECORDED else f"on images: {NOT_RECORDED}")
    value = f"{th['value']:.3f}" if isinstance(th["value"], (int, float)) else NOT_RECORDED
    lines.append(f"{name}: threshold {value}: {th['rule']}, {on} (calibration: {th['calibration']})")
    lines.append(f"{name}: never tested on {ev['never_tested_on']}")
    if ev["inputs_outside_training"]:
        shown = ", ".join(ev["inputs_outside_training"][:3]) + (", ..." if len(ev["inputs_outside_training"]) > 3 else "")
        lines.append(f"{name}: these inputs are not from its training sets, so its accuracy on them is unmeasured: "
                     f"{shown}")
    return [" ".join(line.split()) for line in lines]  # one line each, whatever a name holds


def _text(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k} {_text(x)}" for k, x in v.items())
    return str(v)
