"""`fusion`: a learned, gated combination of several backbones' features (for `a+b` feature files).

Each member backbone's columns (train hands the slices over from the file's metadata as `members`)
are standardised and projected to a common width; a gate looks at all projections and gives each
member a weight per image (softmax over members); the weighted sum goes through a linear layer to
the class logits. Trained in PyTorch (AdamW, mini-batches, cross-entropy) with early stopping on a
seeded, stratified validation part; the weights are kept as numpy arrays, so skops saves the
classifier without pickling and prediction needs no torch.
"""

from __future__ import annotations

from deepfake_cli.classifiers import register_classifier
from deepfake_cli.registry import Entry, Param, lazy_attributes, lazy_class

# the estimator lives in _fusion.py, imported (with scikit-learn) only when one is built or
# loaded, so listing the classifiers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.classifiers._fusion", "FusionClassifier")

register_classifier(Entry(
    "fusion", "per-backbone projections + learned gate (PyTorch, early stopping) for a+b features",
    lazy_class("deepfake_cli.classifiers._fusion", "FusionClassifier"),
    params=(Param("proj_dim", 64, "width each backbone is projected to", int),
            Param("gate", "gated", "gated (per-image softmax weights over backbones) | mean (equal weights)"),
            Param("dropout", 0.2, "dropout on the inputs and the fused vector while training", float),
            Param("epochs", 200, "maximum epochs", int),
            Param("lr", 1e-3, "AdamW learning rate", float),
            Param("weight_decay", 1e-3, "AdamW weight decay", float),
            Param("batch_size", 64, "images per step", int),
            Param("val_fraction", 0.2, "fraction of the fit part held out for early stopping", float),
            Param("patience", 20, "epochs without a lower validation loss before stopping", int)),
    trusted_types=frozenset({"deepfake_cli.classifiers.fusion.FusionClassifier"}),
    capabilities=frozenset({"combined", "device", "random_state", "opt_in"})))
