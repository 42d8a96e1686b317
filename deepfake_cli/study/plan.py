"""The plan of a study: every feature file and cell the grid needs, and the cache key of each.

A key holds every factor that changes a file's numbers and nothing else, so a rerun with the same
config finds its files, and extending the grid only adds keys. Keys are stable across versions:
results.csv carries the cell key, and caches of earlier runs stay usable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deepfake_cli.safety.digest import json_digest
from deepfake_cli.study.config import DatasetEntry, StudyConfig
from deepfake_cli.study.reducer_specs import ReducerSpec


def _hash(obj: Any, n: int = 12) -> str:
    return json_digest(obj, n, default=str)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:40] or "x"


def feature_key(cfg: StudyConfig, dataset: DatasetEntry, backbone: str, layers: str, transform: str) -> str:
    """Cache key of one feature file: every factor that changes its numbers, nothing else."""
    weights = {m: cfg.weights.get(m) for m in backbone.split("+")}
    ident = {"dataset": dataset.name, "source": dataset.source(), "backbone": backbone, "weights": weights,
             "layers": layers, "transform": transform, "align": cfg.align, "seed": cfg.seed}
    return f"{_slug(dataset.name)}__{_slug(backbone)}__{_slug(layers)}__{_slug(transform)}__{_hash(ident)}"


def reducer_key(cfg: StudyConfig, train_fkey: str, reducer: ReducerSpec) -> str:
    ident = {"features": train_fkey, "reducer": reducer.key_ident(), "test_size": cfg.test_size, "seed": cfg.seed,
             "epochs": cfg.reducer_params(reducer).get("epochs")}
    return f"{_slug(reducer.label)}__{_hash(ident)}"


def model_key(cfg: StudyConfig, train_fkey: str, reducer: ReducerSpec, classifier: str) -> str:
    ident = {"features": train_fkey, "reducer": reducer_key(cfg, train_fkey, reducer) if reducer.fitted else None,
             "classifier": classifier, "test_size": cfg.test_size, "val_size": cfg.val_size, "seed": cfg.seed}
    # readable part: dataset, backbone and transform from the feature key, then reducer and classifier
    ds, bb, _layers, tr, _ = train_fkey.split("__")
    return f"{ds}__{bb}__{tr}__{_slug(reducer.label)}__{_slug(classifier)}__{_hash(ident)}"


def train_split_key(cfg: StudyConfig, train_fkey: str) -> str:
    """Name of the training part of a feature file (held-out split removed), on which reducers fit."""
    return f"{train_fkey}.train-{_hash([cfg.test_size, cfg.seed], 8)}"


@dataclass
class FeatureJob:
    key: str
    dataset: DatasetEntry
    backbone: str
    layers: str
    transform: str

    @property
    def combined(self) -> bool:
        return "+" in self.backbone


@dataclass
class Cell:
    key: str
    dataset: str
    backbone: str
    layers: str
    train_transform: str
    reducer: ReducerSpec
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
                        rk = reducer_key(cfg, train_k, red) if red.fitted else None
                        for clf in cfg.classifiers:
                            cells.append(Cell(model_key(cfg, train_k, red, clf), ds.name, bb, ly, tr, red, clf,
                                              train_k, rk, test_ks))
    return features, cells


@dataclass(frozen=True)
class GridSize:
    """How big a study's grid is, counted from the config alone (no keys, no files): cheap for any size,
    so a run can state it, and refuse a huge one, before building the plan."""

    factors: tuple[tuple[str, int], ...]  # (what, singular; how many) per axis of the cells, in plan order
    cells: int                            # models to train and evaluate
    feature_files: int                    # feature files to extract or combine (members of combinations too)
    rows: int                             # rows of results.csv: cells x test transforms x test datasets

    def describe(self) -> str:
        axes = " x ".join(_count(n, what) for what, n in self.factors)
        return (f"study grid: {_count(self.cells, 'cell')} ({axes}), {_count(self.feature_files, 'feature file')}, "
                f"{_count(self.rows, 'result row')}")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def grid_size(cfg: StudyConfig) -> GridSize:
    """The numbers of cells, feature files and result rows `plan(cfg)` gives, without building it."""
    factors = (("backbone", len(cfg.backbones)), ("layer setting", len(cfg.layers)), ("dataset", len(cfg.datasets)),
               ("train transform", len(cfg.train_transforms)), ("reducer", len(cfg.reducers)),
               ("classifier", len(cfg.classifiers)))
    cells = 1
    for _what, n in factors:
        cells *= n
    # every dataset is extracted with every train and test transform (it is tested on itself at least)
    transforms = len(set(cfg.train_transforms) | set(cfg.test_transforms))
    members = {m for b in cfg.backbones if "+" in b for m in b.split("+")} - set(cfg.backbones)
    per_backbone = len(cfg.layers) * len(cfg.datasets) * transforms
    test_sets = len(cfg.datasets) if cfg.cross_dataset else 1
    return GridSize(factors, cells, (len(cfg.backbones) + len(members)) * per_backbone,
                    cells * len(cfg.test_transforms) * test_sets)


def member_jobs(cfg: StudyConfig, features: dict[str, FeatureJob]) -> list[FeatureJob]:
    """The single-backbone files that combined files are built from and the grid does not list itself."""
    members: dict[str, FeatureJob] = {}
    for j in features.values():
        if not j.combined:
            continue
        for m in j.backbone.split("+"):
            k = feature_key(cfg, j.dataset, m, j.layers, j.transform)
            if k not in features:
                members.setdefault(k, FeatureJob(k, j.dataset, m, j.layers, j.transform))
    return list(members.values())


def member_keys(cfg: StudyConfig, job: FeatureJob) -> list[str]:
    """Keys of the single-backbone files a combined file concatenates, in member order."""
    return [feature_key(cfg, job.dataset, m, job.layers, job.transform) for m in job.backbone.split("+")]


FACTOR_COLUMNS = ["cell", "train_dataset", "layers", "align", "seed", "test_size"]


def cell_factors(cfg: StudyConfig, cell: Cell) -> dict:
    """The columns (FACTOR_COLUMNS) results.csv adds to evaluate's rows for this cell."""
    return {"cell": cell.key, "train_dataset": cell.dataset, "layers": cell.layers, "align": cfg.align or "none",
            "seed": cfg.seed, "test_size": cfg.test_size}
