"""`linear-probe`: a linear layer trained with cross-entropy in PyTorch, kept as numpy arrays.

The weights are numpy arrays after `fit`, so skops saves the probe without pickling and prediction
needs no torch.
"""

from __future__ import annotations

from deepfake_cli.classifiers import register_classifier
from deepfake_cli.registry import Entry, Param, lazy_attributes, lazy_class

# the estimator lives in _linear_probe.py, imported (with scikit-learn) only when one is built or
# loaded, so listing the classifiers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.classifiers._linear_probe", "LinearProbe")

register_classifier(Entry(
    "linear-probe", "linear layer trained with cross-entropy (PyTorch, full batch)",
    lazy_class("deepfake_cli.classifiers._linear_probe", "LinearProbe"),
    params=(Param("epochs", 300, "full-batch AdamW steps", int),
            Param("lr", 0.01, "AdamW learning rate", float),
            Param("weight_decay", 1e-3, "AdamW weight decay", float)),
    trusted_types=frozenset({"deepfake_cli.classifiers.linear_probe.LinearProbe"}),
    capabilities=frozenset({"scaled", "device", "random_state"})))
