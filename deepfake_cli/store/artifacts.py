"""Saving and loading models and reducers safely (skops, explicit allowlist, atomic write).

An artifact file is a skops archive of one dict: `{"format", "kind", "format_version", "meta_json",
"estimator"}`. `meta_json` is a JSON string (so metadata never needs object types); `estimator` is a
scikit-learn Pipeline (models) or a reducer. Loading first reads the archive's schema and refuses any
type outside `trusted_types()` — stricter than skops' own defaults — and then loads with skops, which
never unpickles or executes code from the file. A file this version cannot read is refused in one line
that names the version that wrote it.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake_cli import __version__
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.safety.atomic import atomic_path

FORMAT = "deepfake-cli"
FORMAT_VERSION = 1
MODEL_SUFFIX = ".model"
REDUCER_SUFFIX = ".reducer"

# The types every model or reducer file may contain, whatever its classifier and reducer: containers,
# numpy, and the pipeline around the estimators. Each registry entry adds the types of its own estimator
# (`Entry.trusted_types`); anything else in a file is refused before loading.
BASE_TYPES: frozenset[str] = frozenset({
    # containers and scalars
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType", "builtins.slice", "builtins.type",
    # numpy
    "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32",
    "numpy.int8", "numpy.uint8", "numpy.bool_", "numpy.bool", "numpy.intp", "numpy.str_",
    "numpy.uint64", "numpy.random._generator.Generator",
    "numpy.dtypes.Float64DType", "numpy.dtypes.Float32DType", "numpy.dtypes.Int64DType",
    "numpy.dtypes.Int32DType", "numpy.dtypes.Int8DType", "numpy.dtypes.UInt8DType", "numpy.dtypes.IntDType",
    "numpy.dtypes.BoolDType", "numpy.dtypes.StrDType",
    # the pipeline: reduce (frozen) -> scale -> clf
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.frozen._frozen.FrozenEstimator",
})

# Where files of deepfake-cli 0.1.0 (single-module classifiers.py / reducers.py) recorded our classes;
# the packages re-export the classes under these names, so those files still load.
LEGACY_TYPES: frozenset[str] = frozenset({
    "deepfake_cli.classifiers.LinearProbe",
    "deepfake_cli.reducers.IdentityReducer",
    "deepfake_cli.reducers.PCAReducer",
    "deepfake_cli.reducers.AutoencoderReducer",
})


def trusted_types() -> frozenset[str]:
    """The allowlist: the base, the legacy names, and every registered classifier's and reducer's types.

    Computed on each call (it is cheap) so that entries registered at run time count, and so that
    importing this module does not import the registries.
    """
    from deepfake_cli.classifiers import CLASSIFIERS
    from deepfake_cli.reducers import REDUCERS

    found = set(BASE_TYPES | LEGACY_TYPES)
    for registry in (CLASSIFIERS, REDUCERS):
        for entry in registry.entries():
            found |= entry.trusted_types
    return frozenset(found)


def __getattr__(name: str):
    # `artifacts.TRUSTED_TYPES` (the name of 0.1.0) stays readable; it is the computed allowlist
    if name == "TRUSTED_TYPES":
        return trusted_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Artifact:
    """A loaded model or reducer: the estimator, its metadata and where it came from."""

    estimator: object
    meta: dict
    kind: str
    path: Path | None = None
    name: str = field(default="")
    extras: dict = field(default_factory=dict)  # arrays kept beside the estimator (a model's novelty reference)

    def __post_init__(self):
        if not self.name:
            self.name = self.meta.get("name") or (self.path.stem if self.path else self.kind)


@dataclass
class Model(Artifact):
    """A trained detector: `estimator` is the Pipeline (reduce -> scale -> clf), column 1 = p(fake)."""

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    def p_fake(self, X) -> np.ndarray:
        """p(fake) through the calibration recorded at train time (`meta["calibration"]`, see
        `deepfake_cli.metrics.calibration`); models without one (0.1.0 files, `--calibration none`) give `score`."""
        from deepfake_cli.metrics.calibration import calibrated_p_fake

        return calibrated_p_fake(self.estimator, self.meta.get("calibration"), np.asarray(X, dtype=np.float32))

    def score(self, X) -> np.ndarray:
        """The classifier's own p(fake), before calibration."""
        return p_fake(self.estimator, np.asarray(X, dtype=np.float32))

    def novelty(self, X) -> np.ndarray | None:
        """Each row's distance to the training features over the stored 99th-percentile cut-off (> 1: beyond
        it; `deepfake_cli.metrics.novelty`), or None for a model without a novelty reference."""
        from deepfake_cli.metrics.novelty import beyond

        ref = self.extras.get("novelty")
        if ref is None:
            return None
        Z = self.estimator[:1].transform(np.asarray(X, dtype=np.float32))
        return beyond(ref, self.meta.get("novelty"), Z)


def p_fake(estimator, X) -> np.ndarray:
    """p(fake) of each row: the predict_proba column of class 1 (labels are 0 = real, 1 = fake)."""
    proba = estimator.predict_proba(X)
    return np.asarray(proba[:, list(estimator.classes_).index(1)], dtype=np.float64)


def save_artifact(path: str | os.PathLike, estimator, meta: dict, kind: str, extras: dict | None = None) -> Path:
    """Write atomically: dump to a temporary file in the same folder, then rename over `path`. The archive
    is deflate-compressed (a forest's schema or a float array of noise-like weights is stored in a
    fraction of its size; loading reads both forms). `extras`: a dict of arrays and numbers kept beside
    the estimator (e.g. a model's novelty reference), given back as `Artifact.extras`."""
    import skops.io as sio

    path = Path(path)
    payload = {"format": FORMAT, "kind": kind, "format_version": FORMAT_VERSION,
               "meta_json": json.dumps(meta, default=_json_default), "estimator": estimator}
    if extras:
        payload["extras"] = extras
    with atomic_path(path) as tmp:
        sio.dump(payload, tmp, compression=zipfile.ZIP_DEFLATED)
        untrusted = untrusted_types(tmp)
        if untrusted:  # never write a file that we would refuse to load
            raise DeepfakeError(f"Cannot save {kind}: it contains types outside the allowlist: {', '.join(untrusted)}.")
    return path


def untrusted_types(path: str | os.PathLike) -> list[str]:
    """Types named anywhere in a skops archive's schema that are not in `trusted_types()`."""
    found: set[str] = set()
    _collect_types(_schema(path), found)
    return sorted(found - trusted_types())


def _schema(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("schema.json"))


def _written_by(path) -> str:
    """" (written by deepfake-cli X; retrain it with this version, Y)" from the metadata in the schema,
    read without loading anything; "" when the file does not say."""
    try:
        node = _schema(path)["content"]["meta_json"]["content"]
        version = json.loads(json.loads(node) if isinstance(node, str) else node).get("tool_version")
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile, AttributeError):
        return ""
    if not version:
        return ""
    return f" (written by deepfake-cli {version}; retrain it with this version, {__version__})"


def _collect_types(node, found: set[str]) -> None:
    if isinstance(node, dict):
        if "__module__" in node and "__class__" in node:
            found.add(f"{node['__module__']}.{node['__class__']}")
        content = node.get("content")
        # function and type references name their target inside `content`
        if node.get("__loader__") in {"TypeNode", "FunctionNode", "MethodNode"} and isinstance(content, dict):
            if "__module__" in content and "__class__" in content:
                found.add(f"{content['__module__']}.{content['__class__']}")
            elif "module_path" in content and "function" in content:
                found.add(f"{content['module_path']}.{content['function']}")
        for value in node.values():
            _collect_types(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect_types(value, found)


def load_artifact(path: str | os.PathLike, kind: str) -> Artifact:
    """Load a model or reducer; any foreign, tampered or wrong-kind file gives one DeepfakeError."""
    import skops.io as sio

    path = Path(path)
    what = "model" if kind == "model" else "reducer"
    if not path.is_file():
        raise DeepfakeError(f"No {what} file at {path}.")
    try:
        untrusted = untrusted_types(path)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, UnicodeDecodeError):
        raise DeepfakeError(f"{path} is not a deepfake-cli {what} file (not a skops archive).") from None
    if untrusted:
        raise DeepfakeError(f"Refusing to load {path}: it contains types outside the allowlist "
                            f"({', '.join(untrusted[:5])}{', ...' if len(untrusted) > 5 else ''}){_written_by(path)}.")
    try:
        payload = sio.load(path, trusted=sorted(trusted_types()))
    except Exception as exc:  # skops raises many types on corrupt content; all mean the same to the user
        raise DeepfakeError(f"{path} is not a readable deepfake-cli {what} file ({type(exc).__name__})"
                            f"{_written_by(path)}.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DeepfakeError(f"{path} is a skops file but not a deepfake-cli {what}.")
    if payload.get("kind") != kind:
        raise DeepfakeError(f"{path} is a deepfake-cli {payload.get('kind')}, not a {what}.")
    if payload.get("format_version") != FORMAT_VERSION:
        raise DeepfakeError(f"{path} has format version {payload.get('format_version')}; "
                            f"this deepfake-cli reads version {FORMAT_VERSION}{_written_by(path)}.")
    try:
        meta = json.loads(payload["meta_json"])
    except (KeyError, TypeError, ValueError):
        raise DeepfakeError(f"{path} has unreadable metadata.") from None
    cls = Model if kind == "model" else Artifact
    return cls(estimator=payload.get("estimator"), meta=meta, kind=kind, path=path,
               extras=payload.get("extras") if isinstance(payload.get("extras"), dict) else {})


def save_model(path, pipeline, meta: dict, extras: dict | None = None) -> Path:
    return save_artifact(path, pipeline, meta, "model", extras)


def load_model(path, weights=None) -> Model:
    """A model file, or a zoo entry "zoo:NAME" (`deepfake models`) built in memory. `weights`: the backbone
    weights file that will be used, when given explicitly; a zoo model records its id (a file's id is fixed)."""
    from deepfake_cli.zoo.catalog import is_zoo_name

    if is_zoo_name(path):  # "zoo:" names an entry, never a file
        from deepfake_cli.zoo import zoo_model

        return zoo_model(str(path), weights=weights)
    model = load_artifact(path, "model")
    if isinstance(model.meta.get("finetune"), dict):  # its network moves with it: find it where the model is now
        from deepfake_cli.backbones.finetuned import locate_trunk

        model.meta["backbone"] = locate_trunk(model.meta, model.path)
    return model


def save_reducer(path, reducer, meta: dict) -> Path:
    return save_artifact(path, reducer, meta, "reducer")


def load_reducer(path) -> Artifact:
    return load_artifact(path, "reducer")


def load_models(models, weights=None) -> list[Model]:
    """Models from any mix of loaded `Model`s, model files, folders of `*.model` files and zoo names
    ("zoo:NAME"), in order; `weights` as for `load_model`."""
    from deepfake_cli.zoo.catalog import is_zoo_name

    items = models if isinstance(models, (list, tuple)) else [models]
    out: list[Model] = []
    for m in items:
        if isinstance(m, Model):
            out.append(m)
        elif is_zoo_name(m):
            out.append(load_model(m, weights=weights))
        else:
            out.extend(load_model(p) for p in model_paths(m))
    return out


def model_paths(path: str | os.PathLike) -> list[Path]:
    """A model file, or every `*.model` in a folder (what `train` writes for several classifiers)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(f"*{MODEL_SUFFIX}"))
        if not found:
            raise DeepfakeError(f"No *{MODEL_SUFFIX} files in folder {path}.")
        return found
    return [path]


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
