"""deepfake-cli: frozen pretrained backbones + classical classifiers to detect generated images.

The Python API mirrors the commands (see `deepfake_cli.api` and docs/API.md)::

    import deepfake_cli as dfc
    dfc.extract(["cifake=examples/data/cifake_sd14"], out="feats.h5")
    dfc.train("feats.h5", classifier="lda", out="lda.model")
    detector = dfc.load_model("lda.model")
    detector.predict_proba(["photo.jpg", pil_image, numpy_array])

Importing the package is fast: the API's functions are resolved on first access, and torch,
scikit-learn, h5py and the rest are imported only when a function needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

# name -> module it comes from; resolved on first access (PEP 562), then kept
_LAZY = {name: "deepfake_cli.api" for name in (
    "extract", "reduce", "train", "evaluate", "predict", "explain", "audit", "load_model", "Detector", "Scores", "Evaluation",
    "embed", "read_features", "list_backbones", "list_classifiers", "list_reducers", "list_models", "import_head", "fit", "list_datasets")}
_LAZY["DeepfakeError"] = "deepfake_cli.errors"
_LAZY["FeatureSet"] = "deepfake_cli.store.features"

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

