"""The `predict` stage: raw image files -> p(fake) and a label, with one or more trained models.

The features are computed by the inference core (`inference.embed`: the same reader, mapper and
runner as `extract`) with the backbone, layers, weights and alignment the model was trained with.
The test-time transform is "none" unless asked for: the training transform is an
augmentation/robustness setting, not part of the detector. Unreadable files are reported as
skipped, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deepfake_cli.artifacts import Model, load_models
from deepfake_cli.data import iter_image_files
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.features import compatibility_key
from deepfake_cli.fileio import csv_text, to_json
from deepfake_cli.inference.device import resolve_device
from deepfake_cli.inference.embed import embed
from deepfake_cli.inference.mapper import BackboneSpec
from deepfake_cli.inference.runner import Runner
from deepfake_cli.transforms import normalize_transform

COLUMNS = ["path", "p_fake", "label", "model"]


@dataclass
class PredictResult:
    rows: list[dict] = field(default_factory=list)      # path, p_fake, label, model
    skipped: list[dict] = field(default_factory=list)   # path, reason
    n_images: int = 0
    models: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            c = out.setdefault(r["model"], {"real": 0, "fake": 0})
            c[r["label"]] += 1
        return out


def collect_inputs(inputs) -> tuple[list[Path], list[dict]]:
    """Files as given (any extension: a bad one is skipped later), folders recursively (image files only)."""
    files, missing, seen = [], [], set()
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            found = iter_image_files(p)
        elif p.is_file():
            found = [p]
        else:
            missing.append({"path": str(p), "reason": "no such file or folder"})
            continue
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, missing


def _check_backbone(model: Model, bb) -> None:
    if bb.weights_id != model.meta.get("weights_id"):
        raise DeepfakeError(f"Model {model.name} was trained with {model.meta.get('backbone')} weights "
                            f"{model.meta.get('weights_id')}, but the weights found are {bb.weights_id}; "
                            "pass the model's weights with --weights.")
    pre = dict(bb.preprocessing, align=(model.meta.get("preprocessing") or {}).get("align"))
    if json.dumps(pre, sort_keys=True) != json.dumps(model.meta.get("preprocessing"), sort_keys=True):
        raise DeepfakeError(f"Model {model.name} was trained with preprocessing {model.meta.get('preprocessing')}, "
                            f"but backbone {bb.name} now preprocesses with {bb.preprocessing}.")


def _backbone_spec(meta: dict, weights: str | None) -> BackboneSpec:
    # Random weights (speed runs) are rebuilt from their seed; a combination marks each member.
    pretrained = "random" not in str(meta.get("weights_id", "")).split("+")
    return BackboneSpec(meta["backbone"], weights if pretrained else None, meta.get("layers") or "last", pretrained)


def predict(model, inputs, weights: str | None = None, transform: str = "none", device: str = "auto",
            batch_size: int = 32, workers: int | None = None, runner: Runner | None = None,
            progress: Callable | None = None) -> PredictResult:
    """Score every image under `inputs` with the model file (or every model in a folder, or loaded `Model`s).

    `progress(done, total)` is called after each batch of each group of models sharing a backbone.
    """
    models = load_models(model)
    for m in models:
        if m.meta.get("features_reduced_by"):
            raise DeepfakeError(f"Model {m.name} was trained on features written by `deepfake reduce`; it cannot "
                                "score raw images. Train on the original features with --reducer instead.")
    transform = normalize_transform(transform)
    files, skipped = collect_inputs(inputs)
    result = PredictResult(skipped=skipped, models=[m.name for m in models])
    if not files:
        return result
    groups: dict[str, list[Model]] = {}
    for m in models:  # models that take the same features share one backbone pass
        groups.setdefault(compatibility_key(m.meta), []).append(m)
    rows_by_path: dict[Path, list[dict]] = {}
    bad: dict[Path, str] = {}
    for group in groups.values():
        _score_group(group, files, rows_by_path, bad, weights=weights, transform=transform, device=device,
                     batch_size=batch_size, workers=workers, runner=runner, progress=progress)
    for f in files:  # input order, models in the order given
        if f in rows_by_path:
            result.rows.extend(rows_by_path[f])
        elif f in bad:
            result.skipped.append({"path": str(f), "reason": bad[f]})
    result.n_images = len(rows_by_path)
    return result


def _score_group(group: list[Model], files: list[Path], rows_by_path: dict, bad: dict, weights, transform, device,
                 batch_size, workers, runner, progress) -> None:
    """Embed `files` once with the group's backbone; add each model's row per readable file."""
    meta = group[0].meta
    spec = _backbone_spec(meta, weights)
    bb = spec.build(resolve_device(device))
    for m in group:
        _check_backbone(m, bb)
    done = 0
    for batch in embed(bb, files, transform=transform, seed=int(meta.get("feature_seed") or 0),
                       align=(meta.get("preprocessing") or {}).get("align"), batch_size=batch_size, device=device,
                       workers=workers, runner=runner, spec=spec):
        bad.update(batch.skipped)
        if batch.paths:  # a batch of unreadable files only has nothing to score
            for m in group:
                for path, pf in zip(batch.paths, m.p_fake(batch.features).tolist()):
                    rows_by_path.setdefault(path, []).append(
                        {"path": str(path), "p_fake": pf, "label": "fake" if pf >= m.threshold else "real",
                         "model": m.name})
        done += len(batch.paths) + len(batch.skipped)
        if progress:
            progress(done, len(files))


def to_csv(rows: list[dict]) -> str:
    # repr keeps every digit of p_fake (str() of a numpy float may not)
    return csv_text(rows, COLUMNS, lambda col, v: repr(float(v)) if col == "p_fake" else ("" if v is None else str(v)))


def to_jsonl(rows: list[dict]) -> str:
    return "".join(to_json({k: r[k] for k in COLUMNS}) + "\n" for r in rows)
