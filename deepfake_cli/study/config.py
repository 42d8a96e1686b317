"""The study TOML: reading it, validating every key, and the `StudyConfig` the rest of the study uses.

Paths in the file are relative to its folder. Every error names the file and the section it is about.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.study.reducer_specs import LEGACY_REDUCER_KEYS, ReducerSpec, parse_reducer

SECTIONS = ("study", "datasets", "grid")


def _engine_keys() -> set[str]:
    """`engine` and every option an engine declares (inference/engines.py): the study takes the same names as
    `deepfake extract --engine ... --ray-address ...` and `dfc.extract(engine=..., ray_address=...)`."""
    from deepfake_cli.inference.engines import engine_options

    return {"engine"} | {o.name for o in engine_options()}


STUDY_KEYS = {"seed", "test_size", "val_size", "align", "cross_dataset", "device", "batch_size",
              "weights", "protocol"} | set(LEGACY_REDUCER_KEYS) | _engine_keys()
GRID_KEYS = {"backbones", "layers", "train_transforms", "test_transforms", "reducers", "classifiers", "laundering",
             "zoo"}
DATASET_KEYS = {"real", "fake", "path", "reals"}
# which models a study trains and what each is tested on (`protocol` in [study]; study.plan builds the cells)
PROTOCOLS = {
    "matrix": "train on each dataset alone, test on every dataset (within and cross)",
    "train-on-one": "train on each dataset alone, test on every other dataset (the UnivFD / CNNDetection table)",
    "leave-one-out": "train on every dataset but one (pooled), test on the one left out, for each in turn",
}


@dataclass
class DatasetEntry:
    name: str
    path: str | None = None
    real: str | None = None
    fake: str | None = None
    reals: str | None = None   # a fake-only set: the entry whose reals it is scored against (test only)

    def source(self) -> dict:
        """What identifies the images (resolved paths), for cache keys."""
        return {"path": self.path, "real": self.real, "fake": self.fake}

    def test_only(self, datasets: list["DatasetEntry"]) -> bool:
        """A fake-only set with a real pool, or a pool of reals: scored as a test set, never trained on."""
        return self.reals is not None or any(d.reals == self.name for d in datasets)

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
    reducers: list[ReducerSpec]
    classifiers: list[str]
    seed: int = 0
    test_size: float = 0.3
    val_size: float = 0.2
    align: str | None = None
    cross_dataset: bool = True
    protocol: str = "matrix"               # study.plan.PROTOCOLS: which models are trained, on what they are tested
    device: str = "auto"
    batch_size: int = 32
    autoencoder_epochs: int | None = None
    weights: dict[str, str] = field(default_factory=dict)
    engine: str = "local"                  # where the features phase extracts (see `deepfake extract --engine`)
    engine_options: dict = field(default_factory=dict)   # the engine's options, by its factory's keywords
    # zoo entries (`deepfake models`) scored beside the grid: not trained, tested on every dataset
    zoo: list[str] = field(default_factory=list)

    @property
    def singles(self) -> list[str]:
        """Every single backbone the grid needs (members of combinations included), in order."""
        out: dict[str, None] = {}
        for b in self.backbones:
            for m in b.split("+"):
                out.setdefault(m, None)
        return list(out)

    def reducer_params(self, spec: ReducerSpec) -> dict:
        """The parameters `reduce` gets for `spec`: its own, over the [study] defaults for its method."""
        params = {}
        for key, (method, param) in LEGACY_REDUCER_KEYS.items():
            value = getattr(self, key)
            if method == spec.method and value is not None:
                params[param] = value
        params.update(spec.params_dict)
        return params


def load_config(config_path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study TOML (see examples/study.toml); paths are relative to its folder."""
    p = Path(config_path)
    raw = _read_toml(p, config_path)
    study, grid = raw.get("study", {}), raw.get("grid", {})
    base = p.resolve().parent
    datasets = _datasets(raw.get("datasets", {}), base, config_path)
    grid_values = _grid(grid, config_path)
    grid_values["zoo"] = _zoo(grid, config_path)
    trained = (bool(grid_values["backbones"]), bool(grid_values["classifiers"]))
    if trained[0] != trained[1] or not (trained[0] or grid_values["zoo"]):
        raise DeepfakeError(f"[grid] of {config_path} needs at least 'backbones' and 'classifiers' (or only 'zoo': "
                            "published detectors to score).")
    return StudyConfig(path=p.resolve(), datasets=datasets, **grid_values, **_study(study, base))


def _read_toml(p: Path, config_path) -> dict:
    if not p.is_file():
        raise DeepfakeError(f"study config not found: {config_path}")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DeepfakeError(f"{config_path} is not valid TOML: {exc}.") from None
    except RecursionError:  # the parser recurses once per level of nested arrays / inline tables
        raise DeepfakeError(f"{config_path} nests arrays or tables too deeply to be a study config.") from None
    except UnicodeDecodeError:
        raise DeepfakeError(f"{config_path} is not UTF-8 text, so not a TOML study config.") from None
    # A key written above the first [section] lands at the top level: say so, not "unknown section".
    loose = sorted(k for k, v in raw.items() if not isinstance(v, dict))
    if loose:
        raise DeepfakeError(f"key(s) {', '.join(loose)} of {config_path} stand outside any section: "
                            "put them under [study], [datasets] or [grid].")
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise DeepfakeError(f"unknown section(s) {', '.join(sorted(unknown))} in {config_path}: "
                            "expected [study], [datasets] and [grid].")
    for section, allowed in (("study", STUDY_KEYS), ("grid", GRID_KEYS)):
        _check_keys(raw.get(section, {}), allowed, f"[{section}]", config_path)
    return raw


def _check_keys(table: dict, allowed: set[str], where: str, config_path) -> None:
    bad = set(table) - allowed
    if bad:
        raise DeepfakeError(f"unknown key(s) {', '.join(sorted(bad))} in {where} of {config_path}; "
                            f"allowed: {', '.join(sorted(allowed))}.")


def _resolver(base: Path):
    def resolve(path: str) -> str:
        q = Path(path).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    return resolve


def _datasets(table: dict, base: Path, config_path) -> list[DatasetEntry]:
    resolve = _resolver(base)
    datasets = []
    for name, spec in table.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise DeepfakeError(f"dataset name '{name}' may only use letters, digits, '_', '-' and '.'.")
        if isinstance(spec, str):
            expanded = _layout_entries(name, resolve(spec))
            datasets.extend(expanded or [DatasetEntry(name, path=resolve(spec))])
            continue
        if not isinstance(spec, dict) or not spec:
            raise DeepfakeError(f"dataset '{name}' must be a path or {{ real = DIR, fake = DIR }}.")
        _check_keys(spec, DATASET_KEYS, f"[datasets] {name}", config_path)
        if not all(isinstance(v, str) for v in spec.values()):
            raise DeepfakeError(f"dataset '{name}' of {config_path}: its values must be strings (paths, or the "
                                "name of the entry whose reals a fake-only set is scored against).")
        if "path" in spec and ("real" in spec or "fake" in spec):
            raise DeepfakeError(f"dataset '{name}' of {config_path}: give path, or real and/or fake, not both.")
        datasets.append(DatasetEntry(name, path=resolve(spec["path"]) if "path" in spec else None,
                                     real=resolve(spec["real"]) if "real" in spec else None,
                                     fake=resolve(spec["fake"]) if "fake" in spec else None, reals=spec.get("reals")))
    if not datasets:
        raise DeepfakeError(f"{config_path} lists no [datasets].")
    names = [d.name for d in datasets]
    for d in datasets:
        if names.count(d.name) > 1:
            raise DeepfakeError(f"{config_path}: two datasets are named '{d.name}' (a benchmark folder expands "
                                "into one entry per generator, named <entry>-<generator>).")
        if d.reals is not None and (d.reals not in names or d.reals == d.name):
            raise DeepfakeError(f"dataset '{d.name}' of {config_path}: reals = '{d.reals}' names no other dataset "
                                f"of the config (they are: {', '.join(names)}).")
    return datasets


def _layout_entries(name: str, path: str) -> list[DatasetEntry]:
    """A benchmark folder (`data.layouts`) as one entry per generator (and split): `<name>-<generator>`,
    fake-only sets pointing at their real pool; [] for any other path."""
    from deepfake_cli.data.layouts import recognise

    layout = recognise(Path(path)) if os.path.isdir(path) else None
    if layout is None:
        return []
    out = []
    for ds in layout.datasets(Path(path), name):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", ds.name):
            raise DeepfakeError(f"{path} holds a set whose name '{ds.name}' is not a dataset name (letters, digits, "
                                "'_', '-', '.'): list its folders one by one in [datasets].")
        c = ds.counts
        if ds.layout == "synthbuster":  # no label folders: the folder's role gives the class
            entry = DatasetEntry(ds.name, real=str(ds.root)) if c["real"] else DatasetEntry(ds.name, fake=str(ds.root))
        else:
            entry = DatasetEntry(ds.name, path=str(ds.root))
        entry.reals = ds.reals_pool
        out.append(entry)
    return out


def check_paths(cfg: StudyConfig) -> None:
    """Every dataset path of the study exists: checked before anything is extracted, one line naming the
    first missing path and where the config gives it."""
    from deepfake_cli.data.sources import location

    for d in cfg.datasets:
        for key, path in (("", d.path), (".real", d.real), (".fake", d.fake)):
            if path is not None and not os.path.exists(location(path)):  # `x.parquet?label=y` reads x.parquet
                raise DeepfakeError(f"[datasets] {d.name}{key} of {cfg.path}: no such file or folder: {path} "
                                    "(relative paths are relative to the config's folder).")


def _str_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise DeepfakeError(f"'{key}' in the study config must be a non-empty list of strings.")
    return list(dict.fromkeys(v.strip() for v in value))


def _backbones(grid: dict) -> list[str]:
    from deepfake_cli.backbones import get_config

    backbones = _str_list(grid["backbones"], "backbones")
    for b in backbones:
        members = [m.strip() for m in b.split("+")]
        if len(set(members)) != len(members) or not all(members):
            raise DeepfakeError(f"bad backbone combination '{b}': join distinct names with '+'.")
        for m in members:
            get_config(m)
    return backbones


def _grid(grid: dict, config_path) -> dict:
    from deepfake_cli.classifiers import parse_classifier_names
    from deepfake_cli.data.transforms import normalize_transform

    # neither: a study of zoo models alone (load_config refuses a grid with neither and no zoo)
    backbones = _backbones(grid) if "backbones" in grid else []
    classifiers = (parse_classifier_names(",".join(_str_list(grid["classifiers"], "classifiers")))
                   if "classifiers" in grid else [])
    train_t = [normalize_transform(t) for t in _str_list(grid.get("train_transforms", ["none"]), "train_transforms")]
    test_t = [normalize_transform(t) for t in _str_list(grid.get("test_transforms") or train_t, "test_transforms")]
    laundering = grid.get("laundering", False)
    if not isinstance(laundering, bool):
        raise DeepfakeError("laundering in [grid] must be true or false.")
    if laundering:  # the sweep of issue 19: every severity of every family, at test time
        from deepfake_cli.data.transforms import LAUNDERING

        test_t = ["none", *test_t, *(s for specs in LAUNDERING.values() for s in specs)]
    reducers = [parse_reducer(r) for r in _str_list(grid.get("reducers", ["none"]), "reducers")]
    return {"backbones": backbones, "layers": _str_list(grid.get("layers", ["last"]), "layers"),
            "train_transforms": list(dict.fromkeys(train_t)), "test_transforms": list(dict.fromkeys(test_t)),
            "reducers": list(dict.fromkeys(reducers)), "classifiers": classifiers}


def _zoo(grid: dict, config_path) -> list[str]:
    """The zoo entries of `zoo` in [grid], by their bare names ("univfd" or "zoo:univfd"); an unknown one is
    one line listing the known ones."""
    from deepfake_cli.zoo.catalog import get_entry

    if "zoo" not in grid:
        return []
    out = []
    for name in _str_list(grid["zoo"], "zoo"):
        try:
            out.append(get_entry(name).name)
        except DeepfakeError as exc:
            raise DeepfakeError(f"zoo in [grid] of {config_path}: {exc}") from None
    return list(dict.fromkeys(out))


def _number(study: dict, key: str, default, kind=int):
    """study[key] (or `default`) as `kind`; a value of another type is one line naming the key, not a
    TypeError from deep inside a phase."""
    value = study.get(key, default)
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise DeepfakeError(f"{key} in [study] must be {'an integer' if kind is int else 'a number'}, "
                            f"got {shown}.") from None


def _study(study: dict, base: Path) -> dict:
    from deepfake_cli.data.transforms import parse_align

    align = study.get("align")
    if align not in (False, None) and not isinstance(align, str):
        raise DeepfakeError("align in [study] must be \"SIZE:QUALITY\" (e.g. \"256:90\") or false.")
    align_t = parse_align(align if align not in (False, None) else None)
    test_size = _number(study, "test_size", 0.3, float)
    val_size = _number(study, "val_size", 0.2, float)
    if not 0 < test_size < 1:
        raise DeepfakeError("test_size in [study] must be between 0 and 1 (a within-dataset test split is needed).")
    if not 0 <= val_size < 1:
        raise DeepfakeError("val_size in [study] must be in [0, 1).")
    if _number(study, "batch_size", 32) < 1:
        raise DeepfakeError("batch_size in [study] must be at least 1.")
    weights = study.get("weights", {}) or {}
    if not isinstance(weights, dict) or not all(isinstance(v, str) for v in weights.values()):
        raise DeepfakeError("weights in [study] must be a table: { backbone-name = \"path\" }.")
    resolve = _resolver(base)
    engine, engine_options = _engine(study)
    return {
        "engine": engine, "engine_options": engine_options,
        "seed": _number(study, "seed", 0), "test_size": test_size, "val_size": val_size,
        "align": None if align_t is None else f"{align_t[0]}:{align_t[1]}",
        "cross_dataset": bool(study.get("cross_dataset", True)), "device": str(study.get("device", "auto")),
        "protocol": _protocol(study),
        "batch_size": _number(study, "batch_size", 32),
        **{key: _number(study, key, None) for key in LEGACY_REDUCER_KEYS},
        "weights": {k: resolve(v) for k, v in weights.items()},
    }


def _protocol(study: dict) -> str:
    protocol = study.get("protocol", "matrix")
    if protocol not in PROTOCOLS:
        raise DeepfakeError(f"protocol in [study] must be one of {', '.join(PROTOCOLS)}; got {protocol!r}.")
    return protocol


def _engine(study: dict) -> tuple[str, dict]:
    """The [study] engine and its options, each read by the type its engine declares."""
    from deepfake_cli.inference.engines import ENGINES, engine_options

    engine = str(study.get("engine", "local"))
    if engine not in ENGINES:
        raise DeepfakeError(f"engine '{engine}' in [study] is not one of {', '.join(ENGINES)}.")
    options = {}
    for o in engine_options():
        if study.get(o.name) is None:
            continue
        if o.type is str:
            if not isinstance(study[o.name], str):
                raise DeepfakeError(f"{o.name} in [study] must be a string.")
            value = study[o.name]
        else:
            value = _number(study, o.name, None, o.type)
        options[o.factory_kwarg] = value
    return engine, options
