"""The study's units of work, each writing one cached file: combined features, the training part of a
feature file, a fitted reducer, a trained and evaluated cell.

They are top-level functions of plain arguments so that joblib can send them to worker processes. A unit
that cannot run returns its error instead of raising, so one bad corner of a long grid (e.g. pca:64 on 28
images) is reported while the rest goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import FeatureFileWriter, read_features, read_meta
from deepfake_cli.safety.fileio import atomic_write_text, json_safe, to_json
from deepfake_cli.study.plan import Cell


def complete_features(path: Path) -> bool:
    """Whether `path` is a feature file whose writing finished (else it is (re)made)."""
    if not path.is_file():
        return False
    try:
        return bool(read_meta(path).get("complete", True))
    except DeepfakeError:
        return False


def combine_features(member_files: list[Path], out: Path) -> Path:
    """Write the features of a combined backbone "a+b" by concatenating its members' files.

    Rows are matched by (dataset, path); an image missing from any member (unreadable there) is left
    out. The metadata mirrors what `extract` writes for a `CombinedBackbone`, so the result is
    interchangeable with extracting "a+b" directly (same numbers, same compatibility key).
    """
    from deepfake_cli.backbones import get_config

    sets = [read_features(f) for f in member_files]
    metas = [fs.meta for fs in sets]
    keys = [{(d, p): i for i, (d, p) in enumerate(zip(fs.dataset.tolist(), fs.path.tolist()))} for fs in sets]
    common = [k for k in keys[0] if all(k in km for km in keys[1:])]
    X = np.hstack([fs.X[[km[k] for k in common]] for fs, km in zip(sets, keys)]).astype(np.float32)
    first = sets[0].subset(np.array([keys[0][k] for k in common], dtype=int))
    for m in metas:
        get_config(m["backbone"])  # a renamed/removed backbone must not silently produce a file
    meta = _combined_meta(metas, member_files)
    with FeatureFileWriter(out, meta, X.shape[1], dtype=str(metas[0].get("dtype", "float32"))) as writer:
        writer.append(X, first.y, first.dataset, first.path, first.sha256)
        return writer.close(skipped=_union_skipped(metas), duplicates=metas[0].get("duplicates"))


def pool_features(member_files: list[Path], out: Path) -> Path:
    """Join the rows of feature files of one backbone setting (a leave-one-out fold's training set): one
    file holding each member's datasets, so `train` fits on all of them and records each as trained on.
    The files must agree on everything but their datasets (they come from one study row)."""
    sets = [read_features(f) for f in member_files]
    metas = [fs.meta for fs in sets]
    meta = {k: v for k, v in metas[0].items() if k not in ("skipped", "duplicates", "n", "roots", "reals_pools")}
    meta["roots"] = {k: v for m in metas for k, v in (m.get("roots") or {}).items()}
    meta["pooled_from"] = [str(f) for f in member_files]
    with FeatureFileWriter(out, meta, sets[0].X.shape[1], dtype=str(metas[0].get("dtype", "float32"))) as writer:
        for fs in sets:
            writer.append(fs.X, fs.y, fs.dataset, fs.path, fs.sha256)
        return writer.close(skipped=_union_skipped(metas), duplicates=[])


def _combined_meta(metas: list[dict], member_files: list[Path]) -> dict:
    names = [m["backbone"] for m in metas]
    # Weight-free members always run with "last" (see backbones.create_backbone); the others agree.
    specs = [m["layers"] for m in metas]
    align = (metas[0].get("preprocessing") or {}).get("align")
    members_pre = [{"backbone": n, **{k: v for k, v in (m.get("preprocessing") or {}).items() if k != "align"}}
                   for n, m in zip(names, metas)]
    meta = {k: v for k, v in metas[0].items() if k not in ("skipped", "duplicates", "n", "dim", "roots")}
    meta.update({
        "backbone": "+".join(names), "layers": specs[0] if len(set(specs)) == 1 else "+".join(specs),
        "weights_id": "+".join(m["weights_id"] for m in metas),
        "preprocessing": {"input_size": max(p.get("input_size", 0) for p in members_pre), "members": members_pre,
                          "align": align},
        "combined_from": [str(f) for f in member_files], "roots": metas[0].get("roots", {}),
        "members": [{"backbone": n, "dim": int(m["dim"]), "layers": m["layers"]} for n, m in zip(names, metas)],
    })
    return meta


def _union_skipped(metas: list[dict]) -> list[dict]:
    skipped, seen = [], set()
    for m in metas:
        for s in m.get("skipped") or []:
            k = (s.get("dataset"), s.get("path"))
            if k not in seen:
                seen.add(k)
                skipped.append(s)
    return skipped


def train_split_file(train_file: Path, out: Path, test_size: float, seed: int) -> Path:
    """The training part of a feature file (train's own held-out split removed), for fitting reducers."""
    from deepfake_cli.stages.splits import heldout_split

    fs = read_features(train_file)
    train_mask, _ = heldout_split(fs, test_size, seed)
    sub = fs.subset(train_mask)
    meta = dict(fs.meta, split={"part": "train", "test_size": test_size, "seed": seed, "source": str(train_file)})
    with FeatureFileWriter(out, meta, fs.X.shape[1], dtype="float32") as writer:
        writer.append(sub.X, sub.y, sub.dataset, sub.path, sub.sha256)
        return writer.close(skipped=fs.meta.get("skipped"), duplicates=fs.meta.get("duplicates"))


def fit_reducer_unit(split_file: str, method: str, params: dict, out: str, seed: int, device: str) -> dict:
    """Fit one reducer with the `reduce` stage: {"out", "error"} (error None when it was written)."""
    from deepfake_cli.stages.reduce import reduce

    try:
        # the split file already lacks the held-out part, so a reducer that uses labels may fit on all of it
        reduce(split_file, method, out, params=params, seed=seed, device=device, test_size=0.0)
    except DeepfakeError as exc:
        return {"out": out, "error": str(exc)}
    return {"out": out, "error": None}


def run_cell_unit(cell: Cell, study_dir: str, test_size: float, val_size: float, seed: int, factors: dict) -> dict:
    """Train (or reuse) one cell's model, evaluate it on the test files it lacks; returns the cell record."""
    d = Path(study_dir)
    model_path = d / "models" / f"{cell.key}.model"
    cell_path = d / "cells" / f"{cell.key}.json"
    record = json.loads(cell_path.read_text()) if cell_path.is_file() else {"key": cell.key, "rows": {}}
    todo = [k for k in cell.test_fkeys if k not in record["rows"]]
    try:
        trained = _train_if_missing(cell, d, model_path, test_size, val_size, seed)
        rows, images = _evaluate(model_path, d, todo, cell.reals)
    except DeepfakeError as exc:  # reported with the cell's factors; the rest of the grid goes on
        return {"key": cell.key, "trained": False, "evaluated": 0, "record": None, "error": str(exc)}
    if todo:
        by_file: dict[str, list] = {k: [] for k in todo}
        for r in rows:
            by_file[Path(r["features"]).name[:-3]].append(r)
        # JSON-safe at once (NaN -> None), so this run's rows equal those a rerun reads back
        for k, rs in by_file.items():
            record["rows"][k] = [json_safe(dict(r, **factors, features=f"features/{k}.h5")) for r in rs]
        record["factors"] = factors
        if images:  # first, so that a finished record always has its per-image scores beside it
            _write_images(d / "cells" / "images" / f"{cell.key}.json", images)
        atomic_write_text(cell_path, to_json(record, indent=1))
    return {"key": cell.key, "trained": trained, "evaluated": len(todo), "record": record, "error": None}


def _train_if_missing(cell: Cell, d: Path, model_path: Path, test_size: float, val_size: float, seed: int) -> bool:
    from deepfake_cli.stages.train import train

    if model_path.is_file():
        return False
    if cell.zoo:  # a published model is written by the runner (study.zoo), never trained
        raise DeepfakeError(f"the model file of zoo:{cell.zoo} ({model_path}) is missing.")
    reducer = str(d / "reducers" / f"{cell.reducer_key}.reducer") if cell.reducer_key else None
    model_path.parent.mkdir(parents=True, exist_ok=True)
    train(str(d / "features" / f"{cell.train_fkey}.h5"), [cell.classifier], str(model_path),
          reducer=reducer, test_size=test_size, val_size=val_size, seed=seed, device="cpu")
    return True


def _evaluate(model_path: Path, d: Path, test_fkeys: list[str], reals: dict | None = None) -> tuple[list[dict], dict]:
    """The rows, and the per-image scores as {test file key: {test dataset: {"sha256": [16-hex prefixes],
    "label": [...], "p_fake": [...]}}} (for the report's ROC curves, histograms and image-level intervals)."""
    from deepfake_cli.stages.evaluate import evaluate

    if not test_fkeys:
        return [], {}
    per_image: list = []
    files = {k: str(d / "features" / f"{k}.h5") for k in test_fkeys}
    pools = {files[k]: str(d / "features" / f"{p}.h5") for k, p in (reals or {}).items() if k in files}
    rows = evaluate([str(model_path)], list(files.values()), per_image=per_image, pool_files=pools)
    images: dict = {}
    for p in per_image:
        ds = images.setdefault(Path(p["features"]).name[:-3], {}).setdefault(
            p["test_dataset"], {"sha256": [], "label": [], "p_fake": []})
        ds["sha256"].append(p["sha256"][:16])
        ds["label"].append(p["label"])
        ds["p_fake"].append(p["p_fake"])
    return rows, images


def _write_images(path: Path, images: dict) -> None:
    """Add a cell's new per-image scores to its cells/images/<key>.json (compact JSON: it is large)."""
    old = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:  # a damaged file is rewritten from what this run has
            old = {}
    old.update(images)
    atomic_write_text(path, to_json(old))
