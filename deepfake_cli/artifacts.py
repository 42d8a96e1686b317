"""Saving and loading models and reducers safely (skops, explicit allowlist, atomic write).

An artifact file is a skops archive of one dict: `{"format", "kind", "format_version", "meta_json",
"estimator"}`. `meta_json` is a JSON string (so metadata never needs object types); `estimator` is a
scikit-learn Pipeline (models) or a reducer. Loading first reads the archive's schema and refuses any
type outside `TRUSTED_TYPES` — stricter than skops' own defaults — and then loads with skops, which
never unpickles or executes code from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake_cli.errors import DeepfakeError

FORMAT = "deepfake-cli"
FORMAT_VERSION = 1
MODEL_SUFFIX = ".model"
REDUCER_SUFFIX = ".reducer"

# Every type a model or reducer file may contain. Anything else in a file is refused before loading.
TRUSTED_TYPES: frozenset[str] = frozenset({
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
    # scikit-learn pieces of our pipelines
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.decomposition._pca.PCA",
    "sklearn.ensemble._bagging.BaggingClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.svm._classes.SVC",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn.preprocessing._label.LabelEncoder",
    # ours
    "deepfake_cli.classifiers.LinearProbe",
    "deepfake_cli.reducers.IdentityReducer",
    "deepfake_cli.reducers.PCAReducer",
    "deepfake_cli.reducers.AutoencoderReducer",
})


@dataclass
class Artifact:
    """A loaded model or reducer: the estimator, its metadata and where it came from."""

    estimator: object
    meta: dict
    kind: str
    path: Path | None = None
    name: str = field(default="")

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
        return p_fake(self.estimator, np.asarray(X, dtype=np.float32))


def p_fake(estimator, X) -> np.ndarray:
    """p(fake) of each row: the predict_proba column of class 1 (labels are 0 = real, 1 = fake)."""
    proba = estimator.predict_proba(X)
    return np.asarray(proba[:, list(estimator.classes_).index(1)], dtype=np.float64)


def save_artifact(path: str | os.PathLike, estimator, meta: dict, kind: str) -> Path:
    """Write atomically: dump to a temporary file in the same folder, then rename over `path`."""
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "kind": kind, "format_version": FORMAT_VERSION,
               "meta_json": json.dumps(meta, default=_json_default), "estimator": estimator}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        sio.dump(payload, tmp)
        untrusted = untrusted_types(tmp)
        if untrusted:  # never write a file that we would refuse to load
            raise DeepfakeError(f"Cannot save {kind}: it contains types outside the allowlist: {', '.join(untrusted)}.")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def untrusted_types(path: str | os.PathLike) -> list[str]:
    """Types named anywhere in a skops archive's schema that are not in TRUSTED_TYPES."""
    with zipfile.ZipFile(path) as zf:
        schema = json.loads(zf.read("schema.json"))
    found: set[str] = set()
    _collect_types(schema, found)
    return sorted(found - TRUSTED_TYPES)


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
                            f"({', '.join(untrusted[:5])}{', ...' if len(untrusted) > 5 else ''}).")
    try:
        payload = sio.load(path, trusted=sorted(TRUSTED_TYPES))
    except Exception as exc:  # skops raises many types on corrupt content; all mean the same to the user
        raise DeepfakeError(f"{path} is not a readable deepfake-cli {what} file ({type(exc).__name__}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DeepfakeError(f"{path} is a skops file but not a deepfake-cli {what}.")
    if payload.get("kind") != kind:
        raise DeepfakeError(f"{path} is a deepfake-cli {payload.get('kind')}, not a {what}.")
    if payload.get("format_version") != FORMAT_VERSION:
        raise DeepfakeError(f"{path} has format version {payload.get('format_version')}; "
                            f"this deepfake-cli reads version {FORMAT_VERSION}.")
    try:
        meta = json.loads(payload["meta_json"])
    except (KeyError, TypeError, ValueError):
        raise DeepfakeError(f"{path} has unreadable metadata.") from None
    cls = Model if kind == "model" else Artifact
    return cls(estimator=payload.get("estimator"), meta=meta, kind=kind, path=path)


def save_model(path, pipeline, meta: dict) -> Path:
    return save_artifact(path, pipeline, meta, "model")


def load_model(path) -> Model:
    return load_artifact(path, "model")


def save_reducer(path, reducer, meta: dict) -> Path:
    return save_artifact(path, reducer, meta, "reducer")


def load_reducer(path) -> Artifact:
    return load_artifact(path, "reducer")


def load_models(models) -> list[Model]:
    """Models from any mix of loaded `Model`s, model files and folders of `*.model` files, in order."""
    items = models if isinstance(models, (list, tuple)) else [models]
    out: list[Model] = []
    for m in items:
        if isinstance(m, Model):
            out.append(m)
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
