"""The plan of a study: every feature file and cell the grid needs, and the cache key of each.

A key holds every factor that changes a file's numbers and nothing else, so a rerun with the same
config finds its files, and extending the grid only adds keys. Keys are stable across versions:
results.csv carries the cell key, and caches of earlier runs stay usable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
    dataset: DatasetEntry | None   # None for a pooled file
    backbone: str
    layers: str
    transform: str
    pool: tuple[str, ...] = ()     # a pooled file (leave-one-out training): the keys of the files it joins

    @property
    def combined(self) -> bool:
        return "+" in self.backbone and not self.pool

    @property
    def pooled(self) -> bool:
        return bool(self.pool)


def trainable_sets(cfg: StudyConfig) -> list[DatasetEntry]:
    """The sets models are trained on: all but fake-only sets with a real pool and the pools themselves."""
    return [d for d in cfg.datasets if not d.test_only(cfg.datasets)]


def test_sets_of(cfg: StudyConfig, ds: DatasetEntry) -> list[DatasetEntry]:
    """What a model trained on `ds` (or, leave-one-out, on all trainable sets but `ds`) is tested on, by the
    protocol; a fake-only set brings its real pool along (eval pairs them)."""
    protocol = getattr(cfg, "protocol", "matrix")
    if protocol == "leave-one-out":  # the set left out, and the test-only sets every fold meets
        sets = [ds] + [t for t in cfg.datasets if t.test_only(cfg.datasets)]
    elif protocol == "train-on-one":
        sets = [t for t in cfg.datasets if t.name != ds.name]
    else:
        sets = list(cfg.datasets) if cfg.cross_dataset else [ds]
    names = {s.name for s in sets}
    pools = [p for s in sets if s.reals for p in cfg.datasets if p.name == s.reals and p.name not in names]
    return sets + list({p.name: p for p in pools}.values())


def pooled_key(member_keys: list[str], left_out: str) -> str:
    """Cache key of the rows of several feature files joined (the training set of a leave-one-out fold);
    its parts read like a feature key's, with the dataset part naming the fold."""
    _ds, bb, ly, tr, _ = member_keys[0].split("__")
    return f"{_slug('all-but-' + left_out)}__{bb}__{ly}__{tr}__{_hash(sorted(member_keys))}"


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
    reals: dict = field(default_factory=dict)   # fake-only test set -> the file key of its real pool (eval pairs them)


def plan(cfg: StudyConfig) -> tuple[dict[str, FeatureJob], list[Cell]]:
    """Every feature file and cell the grid needs, with their keys."""
    features: dict[str, FeatureJob] = {}

    def need(ds: DatasetEntry, bb: str, ly: str, tr: str) -> str:
        k = feature_key(cfg, ds, bb, ly, tr)
        features.setdefault(k, FeatureJob(k, ds, bb, ly, tr))
        return k

    protocol = getattr(cfg, "protocol", "matrix")
    trainable = trainable_sets(cfg)
    cells = []
    for bb in cfg.backbones:
        for ly in cfg.layers:
            for ds in trainable:
                others = [o for o in trainable if o.name != ds.name]
                test_sets = test_sets_of(cfg, ds)
                for tr in cfg.train_transforms:
                    if protocol == "leave-one-out":
                        members = [need(o, bb, ly, tr) for o in others]
                        train_k = pooled_key(members, ds.name)
                        features.setdefault(train_k, FeatureJob(train_k, None, bb, ly, tr, tuple(members)))
                        label = f"all-but-{ds.name}"
                    else:
                        train_k, label = need(ds, bb, ly, tr), ds.name
                    test_ks = [need(t, bb, ly, te) for te in cfg.test_transforms for t in test_sets]
                    # a fake-only set meets its pool's reals under the same test transform
                    reals = {need(t, bb, ly, te): need(pool, bb, ly, te) for te in cfg.test_transforms
                             for t in test_sets if t.reals for pool in cfg.datasets if pool.name == t.reals}
                    for red in cfg.reducers:
                        rk = reducer_key(cfg, train_k, red) if red.fitted else None
                        for clf in cfg.classifiers:
                            cells.append(Cell(model_key(cfg, train_k, red, clf), label, bb, ly, tr, red, clf,
                                              train_k, rk, test_ks, reals))
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
    trainable = trainable_sets(cfg)
    factors = (("backbone", len(cfg.backbones)), ("layer setting", len(cfg.layers)), ("dataset", len(trainable)),
               ("train transform", len(cfg.train_transforms)), ("reducer", len(cfg.reducers)),
               ("classifier", len(cfg.classifiers)))
    cells = 1
    for _what, n in factors:
        cells *= n
    # every dataset is extracted with every train and test transform (it is tested on itself at least)
    transforms = len(set(cfg.train_transforms) | set(cfg.test_transforms))
    members = {m for b in cfg.backbones if "+" in b for m in b.split("+")} - set(cfg.backbones)
    per_backbone = len(cfg.layers) * len(cfg.datasets) * transforms
    pooled = (len(cfg.backbones) * len(cfg.layers) * len(trainable) * len(cfg.train_transforms)
              if getattr(cfg, "protocol", "matrix") == "leave-one-out" else 0)
    per_set = [len(test_sets_of(cfg, ds)) for ds in trainable]  # test sets of each training set's cells
    rows = sum(per_set) * (cells // max(len(trainable), 1)) * len(cfg.test_transforms)
    return GridSize(factors, cells, (len(cfg.backbones) + len(members)) * per_backbone + pooled, rows)


def member_jobs(cfg: StudyConfig, features: dict[str, FeatureJob]) -> list[FeatureJob]:
    """The single-backbone files that combined files are built from and the grid does not list itself."""
    members: dict[str, FeatureJob] = {}
    for j in features.values():
        if not j.combined or j.dataset is None:
            continue
        for m in j.backbone.split("+"):
            k = feature_key(cfg, j.dataset, m, j.layers, j.transform)
            if k not in features:
                members.setdefault(k, FeatureJob(k, j.dataset, m, j.layers, j.transform))
    return list(members.values())


def member_keys(cfg: StudyConfig, job: FeatureJob) -> list[str]:
    """Keys of the single-backbone files a combined file concatenates, in member order."""
    return [feature_key(cfg, job.dataset, m, job.layers, job.transform) for m in job.backbone.split("+")]


FACTOR_COLUMNS = ["cell", "train_dataset", "layers", "align", "seed", "test_size", "protocol"]


def cell_factors(cfg: StudyConfig, cell: Cell) -> dict:
    """The columns (FACTOR_COLUMNS) results.csv adds to evaluate's rows for this cell."""
    return {"cell": cell.key, "train_dataset": cell.dataset, "layers": cell.layers, "align": cfg.align or "none",
            "seed": cfg.seed, "test_size": cfg.test_size, "protocol": getattr(cfg, "protocol", "matrix")}
