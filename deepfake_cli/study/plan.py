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
from deepfake_cli.study.reducer_specs import NO_REDUCER, ReducerSpec


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
    zoo: str | None = None   # a zoo entry's name: its published model, written (not trained) as the cell's model

    @property
    def model_name(self) -> str | None:
        """What results.csv names the model: the zoo name of a zoo cell (None: the model file's name)."""
        return f"zoo:{self.zoo}" if self.zoo else None


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
    return features, cells + zoo_cells(cfg, need)


# --- zoo entries: published models, not trained, tested on every dataset ------------------------------

NOT_TRAINED = "published, not trained here"


def zoo_label(name: str) -> str:
    """The training-set text of a zoo entry's rows (train_dataset, train_datasets): its own name, so the
    report keeps two entries on one backbone apart, and that it was not trained on this study's data."""
    return f"zoo:{name} ({NOT_TRAINED})"


def zoo_key(cfg: StudyConfig, entry) -> str:
    """Cache key of a zoo cell: the entry's head and the weights its features are made with (as a feature key
    has them), nothing of the grid; its rows are kept per test feature file, whose keys hold the rest."""
    ident = {"zoo": entry.name, "backbone": entry.backbone, "layers": entry.layers, "head_sha256": entry.head_sha256,
             "threshold": entry.threshold, "weights": cfg.weights.get(entry.backbone), "align": cfg.align}
    return f"zoo__{_slug(entry.name)}__{_hash(ident)}"


def zoo_cells(cfg: StudyConfig, need=None) -> list[Cell]:
    """One cell per zoo entry of the config: tested on every dataset under every test transform, whatever the
    protocol (it trains nothing, so there is nothing to leave out), on features of the entry's own recipe
    (backbone and layers; the files are those of the grid when it has the same backbone and layers, and one
    set of files serves every entry of one backbone). `need(dataset, backbone, layers, transform)` -> the
    feature key, registering the job (plan's); without it, the keys alone."""
    from deepfake_cli.zoo.catalog import get_entry

    need = need or (lambda ds, bb, ly, tr: feature_key(cfg, ds, bb, ly, tr))
    cells = []
    for name in getattr(cfg, "zoo", None) or []:
        e = get_entry(name)
        test_ks = [need(t, e.backbone, e.layers, te) for te in cfg.test_transforms for t in cfg.datasets]
        reals = {need(t, e.backbone, e.layers, te): need(pool, e.backbone, e.layers, te) for te in cfg.test_transforms
                 for t in cfg.datasets if t.reals for pool in cfg.datasets if pool.name == t.reals}
        cells.append(Cell(zoo_key(cfg, e), zoo_label(e.name), e.backbone, e.layers, "none", ReducerSpec(NO_REDUCER),
                          "linear-head", "", None, test_ks, reals, zoo=e.name))
    return cells


@dataclass(frozen=True)
class GridSize:
    """How big a study's grid is, counted from the config alone (no keys, no files): cheap for any size,
    so a run can state it, and refuse a huge one, before building the plan."""

    factors: tuple[tuple[str, int], ...]  # (what, singular; how many) per axis of the cells, in plan order
    cells: int                            # models to train and evaluate
    feature_files: int                    # feature files to extract or combine (members of combinations too)
    rows: int                             # rows of results.csv: cells x test transforms x test datasets
    zoo: int = 0                          # zoo entries scored beside the cells (rows and files counted above)

    def describe(self) -> str:
        axes = " x ".join(_count(n, what) for what, n in self.factors)
        parts = [f"{_count(self.cells, 'cell')} ({axes})"] if self.cells or not self.zoo else []
        if self.zoo:
            parts.append(f"{_count(self.zoo, 'zoo model')} (published, tested on every dataset)")
        return (f"study grid: {' + '.join(parts)}, {_count(self.feature_files, 'feature file')}, "
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
    files = (len(cfg.backbones) + len(members)) * per_backbone + pooled
    zoo = _zoo_recipes(cfg)
    grid_singles = set(cfg.backbones) | members
    # a zoo recipe the grid also runs (same backbone and layers) shares its files; any other adds its own
    files += sum(len(cfg.datasets) * len(cfg.test_transforms) for bb, ly in set(zoo.values())
                 if not (bb in grid_singles and ly in cfg.layers))
    rows += len(zoo) * len(cfg.datasets) * len(cfg.test_transforms)
    return GridSize(factors, cells, files, rows, zoo=len(zoo))


def _zoo_recipes(cfg: StudyConfig) -> dict[str, tuple[str, str]]:
    """{zoo entry name: (backbone, layers)} of the config's zoo entries."""
    from deepfake_cli.zoo.catalog import get_entry

    return {n: (get_entry(n).backbone, get_entry(n).layers) for n in getattr(cfg, "zoo", None) or []}


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
    """The columns (FACTOR_COLUMNS) results.csv adds to evaluate's rows for this cell; a zoo cell's rows also
    get its zoo name as the model and its label as the training sets (evaluate leaves those empty)."""
    factors = {"cell": cell.key, "train_dataset": cell.dataset, "layers": cell.layers, "align": cfg.align or "none",
               "seed": cfg.seed, "test_size": cfg.test_size, "protocol": getattr(cfg, "protocol", "matrix")}
    if cell.zoo:
        factors.update(model=cell.model_name, train_datasets=cell.dataset)
    return factors
