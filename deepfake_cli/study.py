"""The `study` stage: run a grid of (dataset, backbone, layers, transforms, reducer, classifier) cells.

Work is split into units that are each cached on disk under the study folder and reused on reruns:

  features/<dataset>__<backbone>__<transform>__<key>.h5   one per (dataset, backbone, weights, layers,
        transform, align, seed), written by `extract.extract` (a combined "a+b" backbone is built by
        concatenating its members' cached files, so a sweep never re-runs a backbone it has run);
  reducers/<key>.reducer   one per (training features, reducer), fitted by `reduce.reduce` on the
        training part only (the held-out test images never reach a reducer);
  models/<key>.model       one per cell: (training features, reducer, classifier), by `train.train`;
  cells/<key>.json         the cell's evaluation rows per test feature file, by `evaluate.evaluate`.

A cell trains on one dataset (with one train transform) and is tested on that dataset's held-out
split (`within`) and, with `cross_dataset`, on every other dataset (`cross`), under every test
transform. Stopping and rerunning redoes only what has no file yet; adding a test transform
re-evaluates without retraining. results.csv/.json hold one tidy row per cell x test dataset x test
transform; the figures and report.md are then drawn by `report.render_report`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.fileio import atomic_write_text

STUDY_KEYS = {"seed", "test_size", "val_size", "align", "cross_dataset", "device", "batch_size",
              "autoencoder_epochs", "weights"}
GRID_KEYS = {"backbones", "layers", "train_transforms", "test_transforms", "reducers", "classifiers"}
GRID_DEFAULTS = {"layers": ["last"], "train_transforms": ["none"], "test_transforms": None,
                 "reducers": ["none"]}
FACTOR_COLUMNS = ["cell", "train_dataset", "layers", "align", "seed", "test_size"]


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass
class DatasetEntry:
    name: str
    path: str | None = None
    real: str | None = None
    fake: str | None = None

    def source(self) -> dict:
        """What identifies the images (resolved paths), for cache keys."""
        return {"path": self.path, "real": self.real, "fake": self.fake}

    def extract_args(self) -> dict:
        if self.path is not None:
            return {"inputs": [f"{self.name}={self.path}"]}
        return {"inputs": [], "real": self.real, "fake": self.fake, "name": self.name}


@dataclass
class StudyConfig:
    path: Path
    datasets: list[DatasetEntry]
    backbones: list[str]
    layers: list[str]
    train_transforms: list[str]
    test_transforms: list[str]
    reducers: list[tuple[str, int | None]]   # (method, dim)
    classifiers: list[str]
    seed: int = 0
    test_size: float = 0.3
    val_size: float = 0.2
    align: str | None = None
    cross_dataset: bool = True
    device: str = "auto"
    batch_size: int = 32
    autoencoder_epochs: int | None = None
    weights: dict[str, str] = field(default_factory=dict)

    @property
    def singles(self) -> list[str]:
        """Every single backbone the grid needs (members of combinations included), in order."""
        out: dict[str, None] = {}
        for b in self.backbones:
            for m in b.split("+"):
                out.setdefault(m, None)
        return list(out)


def reducer_label(method: str, dim: int | None) -> str:
    return method if dim is None else f"{method}:{dim}"


def _parse_reducer(spec: str) -> tuple[str, int | None]:
    method, _, dim = str(spec).strip().lower().partition(":")
    if method not in ("none", "pca", "autoencoder"):
        raise DeepfakeError(f"unknown reducer '{spec}' in the study config: use none, pca:DIM or autoencoder:DIM.")
    if method == "none":
        if dim:
            raise DeepfakeError(f"reducer 'none' takes no dimension (got '{spec}').")
        return ("none", None)
    if not dim:
        return (method, None)
    try:
        d = int(dim)
    except ValueError:
        raise DeepfakeError(f"bad reducer '{spec}': the dimension must be an integer, e.g. pca:32.") from None
    if d < 1:
        raise DeepfakeError(f"bad reducer '{spec}': the dimension must be at least 1.")
    return (method, d)


def _str_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise DeepfakeError(f"'{key}' in the study config must be a non-empty list of strings.")
    return list(dict.fromkeys(v.strip() for v in value))


def load_config(config_path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study TOML (see examples/study.toml); paths are relative to its folder."""
    from deepfake_cli.backbones import get_config
    from deepfake_cli.classifiers import parse_classifier_names
    from deepfake_cli.transforms import normalize_transform, parse_align

    p = Path(config_path)
    if not p.is_file():
        raise DeepfakeError(f"study config not found: {config_path}")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DeepfakeError(f"{config_path} is not valid TOML: {exc}.") from None
    unknown = set(raw) - {"study", "datasets", "grid"}
    if unknown:
        raise DeepfakeError(f"unknown section(s) {', '.join(sorted(unknown))} in {config_path}: "
                            "expected [study], [datasets] and [grid].")
    study = raw.get("study", {})
    grid = raw.get("grid", {})
    for section, have, allowed in (("study", study, STUDY_KEYS), ("grid", grid, GRID_KEYS)):
        bad = set(have) - allowed
        if bad:
            raise DeepfakeError(f"unknown key(s) {', '.join(sorted(bad))} in [{section}] of {config_path}; "
                                f"allowed: {', '.join(sorted(allowed))}.")
    base = p.resolve().parent

    def resolve(path: str) -> str:
        q = Path(path).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    datasets = []
    for name, spec in (raw.get("datasets") or {}).items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise DeepfakeError(f"dataset name '{name}' may only use letters, digits, '_', '-' and '.'.")
        if isinstance(spec, str):
            datasets.append(DatasetEntry(name, path=resolve(spec)))
        elif isinstance(spec, dict) and set(spec) <= {"real", "fake"} and spec:
            datasets.append(DatasetEntry(name, real=resolve(spec["real"]) if "real" in spec else None,
                                         fake=resolve(spec["fake"]) if "fake" in spec else None))
        else:
            raise DeepfakeError(f"dataset '{name}' must be a path or {{ real = DIR, fake = DIR }}.")
    if not datasets:
        raise DeepfakeError(f"{config_path} lists no [datasets].")

    if "backbones" not in grid or "classifiers" not in grid:
        raise DeepfakeError(f"[grid] of {config_path} needs at least 'backbones' and 'classifiers'.")
    backbones = _str_list(grid["backbones"], "backbones")
    for b in backbones:
        members = [m.strip() for m in b.split("+")]
        if len(set(members)) != len(members) or not all(members):
            raise DeepfakeError(f"bad backbone combination '{b}': join distinct names with '+'.")
        for m in members:
            get_config(m)
    classifiers = parse_classifier_names(",".join(_str_list(grid["classifiers"], "classifiers")))
    train_t = [normalize_transform(t) for t in _str_list(grid.get("train_transforms", ["none"]), "train_transforms")]
    test_t = [normalize_transform(t) for t in _str_list(grid.get("test_transforms") or train_t, "test_transforms")]
    reducers = list(dict.fromkeys(_parse_reducer(r) for r in _str_list(grid.get("reducers", ["none"]), "reducers")))
    layers = _str_list(grid.get("layers", ["last"]), "layers")

    align = study.get("align")
    align_t = parse_align(align if align not in (False, None) else None)
    test_size = float(study.get("test_size", 0.3))
    val_size = float(study.get("val_size", 0.2))
    if not 0 < test_size < 1:
        raise DeepfakeError("test_size in [study] must be between 0 and 1 (a within-dataset test split is needed).")
    if not 0 <= val_size < 1:
        raise DeepfakeError("val_size in [study] must be in [0, 1).")
    weights = study.get("weights", {}) or {}
    if not isinstance(weights, dict):
        raise DeepfakeError("weights in [study] must be a table: { backbone-name = \"path\" }.")
    return StudyConfig(
        path=p.resolve(), datasets=datasets, backbones=backbones, layers=layers,
        train_transforms=list(dict.fromkeys(train_t)), test_transforms=list(dict.fromkeys(test_t)),
        reducers=reducers, classifiers=classifiers, seed=int(study.get("seed", 0)), test_size=test_size,
        val_size=val_size, align=None if align_t is None else f"{align_t[0]}:{align_t[1]}",
        cross_dataset=bool(study.get("cross_dataset", True)), device=str(study.get("device", "auto")),
        batch_size=int(study.get("batch_size", 32)),
        autoencoder_epochs=None if study.get("autoencoder_epochs") is None else int(study["autoencoder_epochs"]),
        weights={k: resolve(v) for k, v in weights.items()},
    )


# ---------------------------------------------------------------------------------------------
# cache keys


def _hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:40] or "x"


def feature_key(cfg: StudyConfig, dataset: DatasetEntry, backbone: str, layers: str, transform: str) -> str:
    """Cache key of one feature file: every factor that changes its numbers, nothing else."""
    weights = {m: cfg.weights.get(m) for m in backbone.split("+")}
    ident = {"dataset": dataset.name, "source": dataset.source(), "backbone": backbone, "weights": weights,
             "layers": layers, "transform": transform, "align": cfg.align, "seed": cfg.seed}
    return f"{_slug(dataset.name)}__{_slug(backbone)}__{_slug(layers)}__{_slug(transform)}__{_hash(ident)}"


def reducer_key(cfg: StudyConfig, train_fkey: str, reducer: tuple[str, int | None]) -> str:
    ident = {"features": train_fkey, "reducer": reducer, "test_size": cfg.test_size, "seed": cfg.seed,
             "epochs": cfg.autoencoder_epochs if reducer[0] == "autoencoder" else None}
    return f"{_slug(reducer_label(*reducer))}__{_hash(ident)}"


def model_key(cfg: StudyConfig, train_fkey: str, reducer: tuple[str, int | None], classifier: str) -> str:
    ident = {"features": train_fkey, "reducer": reducer_key(cfg, train_fkey, reducer) if reducer[0] != "none" else None,
             "classifier": classifier, "test_size": cfg.test_size, "val_size": cfg.val_size, "seed": cfg.seed}
    # readable part: dataset, backbone and transform from the feature key, then reducer and classifier
    ds, bb, _layers, tr, _ = train_fkey.split("__")
    return f"{ds}__{bb}__{tr}__{_slug(reducer_label(*reducer))}__{_slug(classifier)}__{_hash(ident)}"


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class FeatureJob:
    key: str
    dataset: DatasetEntry
    backbone: str
    layers: str
    transform: str


@dataclass
class Cell:
    key: str
    dataset: str
    backbone: str
    layers: str
    train_transform: str
    reducer: tuple[str, int | None]
    classifier: str
    train_fkey: str
    reducer_key: str | None
    test_fkeys: list[str]


def plan(cfg: StudyConfig) -> tuple[dict[str, FeatureJob], list[Cell]]:
    """Every feature file and cell the grid needs, with their keys."""
    features: dict[str, FeatureJob] = {}

    def need(ds: DatasetEntry, bb: str, ly: str, tr: str) -> str:
        k = feature_key(cfg, ds, bb, ly, tr)
        features.setdefault(k, FeatureJob(k, ds, bb, ly, tr))
        return k

    cells = []
    for bb in cfg.backbones:
        for ly in cfg.layers:
            for ds in cfg.datasets:
                test_sets = cfg.datasets if cfg.cross_dataset else [ds]
                for tr in cfg.train_transforms:
                    train_k = need(ds, bb, ly, tr)
                    test_ks = [need(t, bb, ly, te) for te in cfg.test_transforms for t in test_sets]
                    for red in cfg.reducers:
                        rk = reducer_key(cfg, train_k, red) if red[0] != "none" else None
                        for clf in cfg.classifiers:
                            cells.append(Cell(model_key(cfg, train_k, red, clf), ds.name, bb, ly, tr, red, clf,
                                              train_k, rk, test_ks))
    return features, cells


# ---------------------------------------------------------------------------------------------
# file helpers


def _complete_features(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        from deepfake_cli.features import read_meta

        return bool(read_meta(path).get("complete", True))
    except DeepfakeError:
        return False


def _json_safe(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, (np.floating,)):
        return _json_safe(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# units of work (top-level functions so joblib can send them to worker processes)


def combine_features(member_files: list[Path], out: Path) -> Path:
    """Write the features of a combined backbone "a+b" by concatenating its members' files.

    Rows are matched by (dataset, path); an image missing from any member (unreadable there) is left
    out. The metadata mirrors what `extract` writes for a `CombinedBackbone`, so the result is
    interchangeable with extracting "a+b" directly (same numbers, same compatibility key).
    """
    from deepfake_cli.backbones import get_config
    from deepfake_cli.features import FeatureFileWriter, read_features

    sets = [read_features(f) for f in member_files]
    metas = [fs.meta for fs in sets]
    keys = [{(d, p): i for i, (d, p) in enumerate(zip(fs.dataset.tolist(), fs.path.tolist()))} for fs in sets]
    common = [k for k in keys[0] if all(k in km for km in keys[1:])]
    X = np.hstack([fs.X[[km[k] for k in common]] for fs, km in zip(sets, keys)]).astype(np.float32)
    first = sets[0].subset(np.array([keys[0][k] for k in common], dtype=int))
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
    })
    for n in names:
        get_config(n)  # a renamed/removed backbone must not silently produce a file
    skipped, seen = [], set()
    for m in metas:
        for s in m.get("skipped") or []:
            k = (s.get("dataset"), s.get("path"))
            if k not in seen:
                seen.add(k)
                skipped.append(s)
    with FeatureFileWriter(out, meta, X.shape[1], dtype=str(metas[0].get("dtype", "float32"))) as writer:
        writer.append(X, first.y, first.dataset, first.path, first.sha256)
        return writer.close(skipped=skipped, duplicates=metas[0].get("duplicates"))


def _train_split_file(train_file: Path, out: Path, test_size: float, seed: int) -> Path:
    """The training part of a feature file (train's own held-out split removed), for fitting reducers."""
    from deepfake_cli.features import FeatureFileWriter, read_features
    from deepfake_cli.splits import heldout_split

    fs = read_features(train_file)
    train_mask, _ = heldout_split(fs, test_size, seed)
    sub = fs.subset(train_mask)
    meta = dict(fs.meta, split={"part": "train", "test_size": test_size, "seed": seed, "source": str(train_file)})
    with FeatureFileWriter(out, meta, fs.X.shape[1], dtype="float32") as writer:
        writer.append(sub.X, sub.y, sub.dataset, sub.path, sub.sha256)
        return writer.close(skipped=fs.meta.get("skipped"), duplicates=fs.meta.get("duplicates"))


def fit_reducer_unit(split_file: str, reducer: tuple[str, int | None], out: str, seed: int,
                     epochs: int | None, device: str) -> str:
    from deepfake_cli.reduce import reduce

    method, dim = reducer
    # One reducer that cannot be fitted (e.g. pca:64 on 28 images) must not end a long grid:
    # it is reported, and the cells that need it are left out.
    try:
        reduce(split_file, method, out, dim=dim, epochs=epochs if method == "autoencoder" else None, seed=seed,
               device=device)
    except DeepfakeError as exc:
        return {"out": out, "error": str(exc)}
    return {"out": out, "error": None}


def run_cell_unit(cell: dict, study_dir: str, test_size: float, val_size: float, seed: int,
                  factors: dict) -> dict:
    """Train (or reuse) one cell's model, evaluate it on the test files it lacks; returns the cell record."""
    from deepfake_cli.evaluate import evaluate
    from deepfake_cli.train import train

    d = Path(study_dir)
    model_path = d / "models" / f"{cell['key']}.model"
    cell_path = d / "cells" / f"{cell['key']}.json"
    record = json.loads(cell_path.read_text()) if cell_path.is_file() else {"key": cell["key"], "rows": {}}
    trained = False
    try:
        if not model_path.is_file():
            reducer = str(d / "reducers" / f"{cell['reducer_key']}.reducer") if cell["reducer_key"] else None
            model_path.parent.mkdir(parents=True, exist_ok=True)
            train(str(d / "features" / f"{cell['train_fkey']}.h5"), [cell["classifier"]], str(model_path),
                  reducer=reducer, test_size=test_size, val_size=val_size, seed=seed, device="cpu")
            trained = True
        todo = [k for k in cell["test_fkeys"] if k not in record["rows"]]
        files = [str(d / "features" / f"{k}.h5") for k in todo]
        rows = evaluate([str(model_path)], files) if todo else []
    except DeepfakeError as exc:  # reported with the cell's factors; the rest of the grid goes on
        return {"key": cell["key"], "trained": False, "evaluated": 0, "record": None, "error": str(exc)}
    if todo:
        by_file: dict[str, list] = {k: [] for k in todo}
        for r in rows:
            by_file[Path(r["features"]).name[:-3]].append(r)
        for k, rs in by_file.items():
            record["rows"][k] = [_json_safe(dict(r, **factors, features=f"features/{k}.h5")) for r in rs]
        record["factors"] = factors
        atomic_write_text(cell_path, json.dumps(record, indent=1))
    return {"key": cell["key"], "trained": trained, "evaluated": len(todo), "record": record, "error": None}


# ---------------------------------------------------------------------------------------------
# the runner


@dataclass
class StudySummary:
    out: Path
    results_csv: Path
    results_json: Path
    report: Path | None
    n_rows: int
    features_extracted: int = 0
    features_combined: int = 0
    features_reused: int = 0
    reducers_fitted: int = 0
    reducers_reused: int = 0
    cells_trained: int = 0
    cells_evaluated: int = 0
    cells_reused: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)  # {"what", "key", "error"} of units that could not run


def _parallel(fn, jobs: int, arg_list: list[tuple], on_done):
    """Run fn(*args) for each args, in worker processes when jobs > 1; on_done(result) as each ends."""
    if jobs <= 1 or len(arg_list) <= 1:
        for args in arg_list:
            on_done(fn(*args))
        return
    from joblib import Parallel, delayed

    for res in Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(fn)(*a) for a in arg_list):
        on_done(res)


def run_study(config_path: str | os.PathLike, out_dir: str | os.PathLike, jobs: int = 1,
              progress: bool = True) -> StudySummary:
    """Run (or resume) the study of `config_path` into `out_dir`; see the module docstring."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepfake_cli.extract import extract

    t0 = time.perf_counter()
    if jobs < 1:
        raise DeepfakeError("--jobs must be at least 1.")
    cfg = load_config(config_path)
    out = Path(out_dir)
    for sub in ("features", "reducers", "models", "cells"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", cfg.path.read_text())
    features, cells = plan(cfg)
    fdir = out / "features"
    summary = StudySummary(out, out / "results.csv", out / "results.json", None, 0)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not progress, transient=False) as prog:
        # 1. features: singles by extraction, combinations by concatenation of cached singles
        singles = [j for j in features.values() if "+" not in j.backbone]
        combos = [j for j in features.values() if "+" in j.backbone]
        member_jobs: dict[str, FeatureJob] = {}
        for j in combos:
            for m in j.backbone.split("+"):
                k = feature_key(cfg, j.dataset, m, j.layers, j.transform)
                if k not in features:
                    member_jobs.setdefault(k, FeatureJob(k, j.dataset, m, j.layers, j.transform))
        to_extract = singles + list(member_jobs.values())
        t_feat = prog.add_task("features", total=len(to_extract) + len(combos))
        t_img = None
        for j in to_extract:
            path = fdir / f"{j.key}.h5"
            if _complete_features(path):
                summary.features_reused += 1
            else:
                prog.update(t_feat, description=f"features: {j.dataset.name} / {j.backbone} / {j.transform}")
                if t_img is None:
                    t_img = prog.add_task("  images", total=None)
                prog.reset(t_img, total=None)
                extract(**j.dataset.extract_args(), backbone=j.backbone, out=str(path), transform=j.transform,
                        batch_size=cfg.batch_size, device=cfg.device, weights=cfg.weights.get(j.backbone),
                        layers=j.layers, seed=cfg.seed, align=cfg.align,
                        on_start=lambda total, done: prog.update(t_img, total=total, completed=done),
                        progress=lambda done, total: prog.update(t_img, completed=done))
                summary.features_extracted += 1
            prog.advance(t_feat)
        if t_img is not None:
            prog.remove_task(t_img)
        for j in combos:
            path = fdir / f"{j.key}.h5"
            if _complete_features(path):
                summary.features_reused += 1
            else:
                members = [fdir / f"{feature_key(cfg, j.dataset, m, j.layers, j.transform)}.h5"
                           for m in j.backbone.split("+")]
                combine_features(members, path)
                summary.features_combined += 1
            prog.advance(t_feat)
        prog.update(t_feat, description="features")

        # 2. reducers, fitted on the training part of each training file
        red_units: dict[str, tuple] = {}
        for c in cells:
            if c.reducer_key and c.reducer_key not in red_units:
                red_units[c.reducer_key] = (c.train_fkey, c.reducer)
        t_red = prog.add_task("reducers", total=len(red_units))
        todo_red = []
        for rk, (fk, red) in red_units.items():
            if (out / "reducers" / f"{rk}.reducer").is_file():
                summary.reducers_reused += 1
                prog.advance(t_red)
                continue
            split = fdir / f"{fk}.train-{_hash([cfg.test_size, cfg.seed], 8)}.h5"
            if not _complete_features(split):
                _train_split_file(fdir / f"{fk}.h5", split, cfg.test_size, cfg.seed)
            todo_red.append((str(split), red, str(out / "reducers" / f"{rk}.reducer"), cfg.seed,
                             cfg.autoencoder_epochs, "cpu" if jobs > 1 else cfg.device))

        failed_reducers: dict[str, str] = {}

        def red_done(res):
            if res["error"]:
                rk = Path(res["out"]).stem
                failed_reducers[rk] = res["error"]
                summary.failures.append({"what": "reducer", "key": rk, "error": res["error"]})
            else:
                summary.reducers_fitted += 1
            prog.advance(t_red)

        _parallel(fit_reducer_unit, jobs, todo_red, red_done)

        # 3. cells: train + evaluate what is missing
        t_cells = prog.add_task("cells", total=len(cells))
        records: dict[str, dict] = {}
        todo_cells = []
        for c in cells:
            cell_path = out / "cells" / f"{c.key}.json"
            if cell_path.is_file():
                rec = json.loads(cell_path.read_text())
                if all(k in rec.get("rows", {}) for k in c.test_fkeys) and (out / "models" / f"{c.key}.model").is_file():
                    records[c.key] = rec
                    summary.cells_reused += 1
                    prog.advance(t_cells)
                    continue
            if c.reducer_key in failed_reducers:
                summary.failures.append({"what": "cell", "key": c.key,
                                         "error": f"its reducer could not be fitted: {failed_reducers[c.reducer_key]}"})
                prog.advance(t_cells)
                continue
            factors = {"cell": c.key, "train_dataset": c.dataset, "layers": c.layers, "align": cfg.align or "none",
                       "seed": cfg.seed, "test_size": cfg.test_size}
            cdict = {"key": c.key, "classifier": c.classifier, "train_fkey": c.train_fkey,
                     "reducer_key": c.reducer_key, "test_fkeys": c.test_fkeys}
            todo_cells.append((cdict, str(out), cfg.test_size, cfg.val_size, cfg.seed, factors))

        def cell_done(res):
            if res["error"]:
                summary.failures.append({"what": "cell", "key": res["key"], "error": res["error"]})
                prog.advance(t_cells)
                return
            records[res["key"]] = res["record"]
            summary.cells_trained += int(res["trained"])
            summary.cells_evaluated += 1
            prog.advance(t_cells)

        _parallel(run_cell_unit, jobs, todo_cells, cell_done)

    # 4. the tidy table, in grid order, only rows of the current grid
    rows = []
    for c in cells:
        rec = records.get(c.key)
        if rec is None:
            continue
        for k in c.test_fkeys:
            for r in rec["rows"].get(k, []):
                r = dict(r)
                # the label as written in the config (pca:16), not as recomputed from the fitted model
                r["reducer"] = reducer_label(*c.reducer)
                rows.append(r)
    write_results(rows, summary.results_csv, summary.results_json)
    atomic_write_text(out / "failures.json", json.dumps(summary.failures, indent=1) + "\n")
    summary.n_rows = len(rows)
    if rows:
        from deepfake_cli.report import render_report

        summary.report = render_report(summary.results_csv, out, config_path=out / "config.toml")
    summary.seconds = time.perf_counter() - t0
    return summary


def result_columns(rows: list[dict]) -> list[str]:
    from deepfake_cli.evaluate import COLUMNS

    cols = list(COLUMNS) + [c for c in FACTOR_COLUMNS if c not in COLUMNS]
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def write_results(rows: list[dict], csv_path: Path, json_path: Path) -> None:
    cols = result_columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (repr(r[k]) if isinstance(r.get(k), float) else r.get(k)))
                    for k in cols})
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(json_path, json.dumps([_json_safe(r) for r in rows], indent=1) + "\n")

