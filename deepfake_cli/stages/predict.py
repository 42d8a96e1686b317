"""The `predict` stage: raw image files -> p(fake) and a label, with one or more trained models.

The features are computed by the inference core (`inference.embed`: the same reader, mapper and
runner as `extract`) with the backbone, layers, weights and alignment the model was trained with.
The test-time transform is "none" unless asked for: the training transform is an
augmentation/robustness setting, not part of the detector. Inputs are found by `data.collect_files`
(image files, folders, .tar shards, .txt/.csv lists); a row's `path` is the item's `rel` (a plain
file's path as found, `<shard>.tar/<member>` for a tar member). Unreadable images are reported as
skipped, never fatal; a missing input, a file of no known kind or an input holding no image is an error.

Every result also carries the evidence of each model (`prediction_checks.evidence`: what it was trained on,
its held-out accuracy, how its threshold was chosen, what it was never tested on), with a warning when that
evidence is thin. The heavy imports (torch, the backbones, skops) happen inside `predict`, so the output guards
(`predict_targets`) can refuse an input folder without an image before any of them, in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from typing import TYPE_CHECKING

from deepfake_cli.data import LABEL_NAMES, ImageItem
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.safety.fileio import csv_text, to_json
from deepfake_cli.stages.image_inputs import model_and_image_inputs, refuse_empty_folders, refuse_feature_files
from deepfake_cli.store.outputs import Target

if TYPE_CHECKING:  # torch comes with these; predict imports them when it runs
    from deepfake_cli.inference.runner import Runner
    from deepfake_cli.store.artifacts import Model

# p_fake: calibrated (the model's `p_fake`); label: p_fake >= threshold; score: the classifier's own p(fake)
# before calibration; novelty: distance to the training features over their 99th percentile (> 1: beyond;
# empty for models without a reference); true_label (only when some input carries labels): real | fake | "".
COLUMNS = ["path", "p_fake", "label", "model", "threshold", "score", "novelty"]
LABELLED_COLUMNS = COLUMNS + ["true_label"]


def columns(rows: list[dict]) -> list[str]:
    """COLUMNS, plus true_label when any row's input says its class."""
    return LABELLED_COLUMNS if any(r.get("true_label") for r in rows) else COLUMNS


@dataclass
class PredictResult:
    rows: list[dict] = field(default_factory=list)      # COLUMNS + true_label
    skipped: list[dict] = field(default_factory=list)   # path, reason
    n_images: int = 0
    models: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)    # per model: accuracy on the labelled inputs, n, 95% CI
    warnings: list[str] = field(default_factory=list)   # inputs unlike the training data; one label per folder
    notes: list[str] = field(default_factory=list)
    accuracy: dict = field(default_factory=dict)        # model -> {n, n_correct, accuracy, ci_low, ci_high}
    evidence: dict = field(default_factory=dict)        # model -> prediction_checks.evidence(...)
    evidence_lines: list[str] = field(default_factory=list)  # the evidence as sentences (stderr, CSV `# ` lines)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            c = out.setdefault(r["model"], {"real": 0, "fake": 0})
            c[r["label"]] += 1
        return out


# what it writes and reads (the output guards, `store.outputs.writes`)

def predict_targets(a: dict) -> list[Target]:
    refuse_feature_files(a.get("model"), a.get("paths") or [])
    refuse_empty_folders(a.get("paths") or [])
    targets = [] if a.get("out") is None else [Target(a["out"], "predictions")]
    o = a.get("o")  # api._predict's PredictOptions
    if getattr(o, "html", None) is not None:  # the page of the run (report.predict_page)
        targets.append(Target(o.html, "page", option="--html"))
    if getattr(o, "explain", None) is not None:  # the maps' folder (stages.explain): never an input, nor in one
        targets.append(Target(o.explain, "folder", option="--explain"))
    return targets


def predict_inputs(a: dict) -> list:
    return model_and_image_inputs(a)


def predict(model, inputs, weights: str | None = None, transform: str = "none", device: str = "auto",
            batch_size: int = 32, workers: int | None = None, runner: "Runner | None" = None,
            progress: Callable | None = None, backbones: dict | None = None) -> PredictResult:
    """Score every image under `inputs` with the model file (or every model in a folder, or loaded `Model`s).

    `inputs`: paths (files, folders, tar shards, lists), or images already in memory (PIL images, arrays,
    tensors: `inference.memory.collect_images`, named `<image I>` in the rows).
    `progress(done, total)` is called after each batch of each group of models sharing a backbone.
    `backbones`: a dict the built backbones are kept in and taken from (key: how they were built), so a
    caller scoring many small inputs (`api.Detector`) builds each backbone once.
    """
    from deepfake_cli.data.transforms import normalize_transform
    from deepfake_cli.inference.memory import collect_images
    from deepfake_cli.stages.prediction_checks import check, evidence, evidence_lines
    from deepfake_cli.store.artifacts import load_models
    from deepfake_cli.store.features import compatibility_key

    refuse_empty_folders(inputs)  # as the output guards do, for callers that come here directly
    items, skipped = collect_images(inputs)  # every input checked (lists parsed) before any model loads
    models = load_models(model, weights=weights)  # a zoo model records the weights it will be given
    for m in models:
        if m.meta.get("features_reduced_by"):
            raise DeepfakeError(f"Model {m.name} was trained on features written by `deepfake reduce`; it cannot "
                                "score raw images. Train on the original features with --reducer instead.")
    transform = normalize_transform(transform)
    result = PredictResult(skipped=list(skipped), models=[m.name for m in models])
    for m in models:  # what each verdict rests on; thin evidence is a warning, as unlike inputs are
        ev = evidence(dict(m.meta, name=m.name), inputs)
        result.evidence[m.name] = ev
        result.evidence_lines += evidence_lines(ev)
    thin = [w for ev in result.evidence.values() for w in ev["warnings"]]
    if not items:
        result.warnings = thin
        return result
    groups: dict[str, list[Model]] = {}
    for m in models:  # models that take the same features share one backbone pass
        groups.setdefault(compatibility_key(m.meta), []).append(m)
    rows_by_item: dict[int, list[dict]] = {}
    bad: dict[int, str] = {}
    for group in groups.values():
        _score_group(group, items, rows_by_item, bad, weights=weights, transform=transform, device=device,
                     batch_size=batch_size, workers=workers, runner=runner, progress=progress, backbones=backbones)
    for i, it in enumerate(items):  # input order, models in the order given
        if i in rows_by_item:
            result.rows.extend(rows_by_item[i])
        elif i in bad:
            result.skipped.append({"path": it.rel, "reason": bad[i]})
    result.n_images = len(rows_by_item)
    checks = check(result.rows, inputs, [m.name for m in models if "novelty" not in m.extras])
    result.summary, result.warnings, result.notes = checks.summary, thin + checks.warnings, checks.notes
    result.accuracy = checks.accuracy
    return result


def _score_group(group: "list[Model]", items: list[ImageItem], rows_by_item: dict, bad: dict, weights, transform,
                 device, batch_size, workers, runner, progress, backbones=None) -> None:
    """Embed `items` once with the group's backbone; add each model's row per readable image."""
    from deepfake_cli.inference.device import resolve_device
    from deepfake_cli.inference.embed import embed
    from deepfake_cli.inference.mapper import check_model_backbone, model_backbone_spec

    meta = group[0].meta
    spec = model_backbone_spec(meta, weights)
    # a runner that keeps the model elsewhere (Ray actors) needs it here only for checks: build it on the CPU
    where = "cpu" if getattr(runner, "remote", False) else resolve_device(device)
    key = repr((spec, str(where)))  # weights may be a dict: key on the text
    bb = backbones.get(key) if backbones is not None else None
    if bb is None:
        bb = spec.build(where)
        if backbones is not None:
            backbones[key] = bb
    for m in group:
        check_model_backbone(m, bb)
    done = 0
    for batch in embed(bb, items, transform=transform, seed=int(meta.get("feature_seed") or 0),
                       align=(meta.get("preprocessing") or {}).get("align"), batch_size=batch_size, device=device,
                       workers=workers, runner=runner, spec=spec):
        bad.update(batch.skipped)
        if batch.indices:  # a batch of unreadable files only has nothing to score
            for m in group:
                nov = m.novelty(batch.features)
                nov = [None] * len(batch.indices) if nov is None else [round(float(v), 4) for v in nov]
                for i, pf, sc, nv in zip(batch.indices, m.p_fake(batch.features).tolist(),
                                         m.score(batch.features).tolist(), nov):
                    rows_by_item.setdefault(i, []).append(
                        {"path": items[i].rel, "p_fake": pf, "label": "fake" if pf >= m.threshold else "real",
                         "model": m.name, "threshold": m.threshold, "score": sc, "novelty": nv,
                         "true_label": LABEL_NAMES[items[i].label] if items[i].label in (0, 1) else ""})
        done += len(batch.indices) + len(batch.skipped)
        if progress:
            progress(done, len(items))


def to_csv(rows: list[dict], raw: bool = False, evidence: "PredictResult | None" = None) -> str:
    """The rows as CSV; a path that a spreadsheet would run as a formula gets a leading ' unless `raw`.
    With `evidence` (a PredictResult): its evidence lines and warnings after the rows, each as a `# ` line
    (after, not before: the header stays the first line, which is how a predictions file is recognised;
    pandas reads the file with `comment="#"`)."""
    # repr keeps every digit of p_fake (str() of a numpy float may not)
    text = csv_text(rows, columns(rows), lambda col, v: repr(float(v)) if col in ("p_fake", "score", "threshold")
                    else ("" if v is None else str(v)), raw=raw)
    if evidence is None:
        return text
    lines = evidence.evidence_lines + [f"warning: {w}" for w in evidence.warnings]
    return text + "".join(f"# {' '.join(str(line).split())}\n" for line in lines)


def to_jsonl(rows: list[dict], evidence: "PredictResult | None" = None) -> str:
    """One JSON object per row; with `evidence` (a PredictResult), a last line `{"evidence": {model: ...},
    "warnings": [...]}` (the rows before it are unchanged)."""
    cols = columns(rows)
    text = "".join(to_json({k: r.get(k) for k in cols}) + "\n" for r in rows)
    if evidence is None:
        return text
    return text + to_json({"evidence": evidence.evidence, "warnings": evidence.warnings}) + "\n"
