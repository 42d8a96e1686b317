"""`linear-head`: a fixed, published linear head (p_fake = sigmoid(w.x + b)), as the model zoo ships them.

It learns nothing: its weights come from a paper's checkpoint (`deepfake models`, `deepfake import-head`),
so it is opt-in and never among `all`; `train --classifier linear-head` is refused in `fit`. Kept as numpy
arrays, so a model file holding one loads without torch and skops saves it without pickling.
"""

from __future__ import annotations

from deepfake_cli.classifiers import register_classifier
from deepfake_cli.registry import Entry, lazy_attributes, lazy_class

# the estimator lives in _linear_head.py, imported (with scikit-learn) only when one is built or loaded, so
# listing the classifiers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.classifiers._linear_head", "LinearHead")

register_classifier(Entry(
    "linear-head", "a published linear head with fixed weights (model zoo: `deepfake models`); not trained here",
    lazy_class("deepfake_cli.classifiers._linear_head", "LinearHead"),
    trusted_types=frozenset({"deepfake_cli.classifiers.linear_head.LinearHead"}),
    capabilities=frozenset({"opt_in"})))
