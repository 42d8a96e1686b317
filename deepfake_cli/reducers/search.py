"""`autoencoder-search`: a seeded random search over the autoencoder's hyper-parameters.

Each trial draws a code size, depth, width, dropout, learning rate and epoch budget, fits an
`AutoencoderReducer` on the fit part of the images and scores it on a seeded validation part: by the
relative reconstruction error there (`scoring="reconstruction"`, lower is better) or by the accuracy of
an LDA trained on the codes of the fit part and tested on the codes of the validation part
(`scoring="accuracy"`, needs labels). The search stops after `trials` trials or when `time_budget`
seconds have passed (a trial that has started finishes), keeps the best trial's fitted autoencoder
and applies it; `trials_` holds every trial (`deepfake reduce --search` writes them as CSV).
"""

from __future__ import annotations

from deepfake_cli.reducers import register_reducer
from deepfake_cli.registry import Entry, Param, float_tuple, int_tuple, lazy_attributes, lazy_class, optional

# the estimator lives in _search.py, imported (with scikit-learn) only when one is built or
# loaded, so listing the reducers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.reducers._search", "AutoencoderSearch")

register_reducer(Entry(
    "autoencoder-search", "random search over autoencoder settings, keeping the best trial "
                          "(reduce --method autoencoder --search)",
    lazy_class("deepfake_cli.reducers._search", "AutoencoderSearch"),
    params=(Param("trials", 8, "number of trials", int),
            Param("time_budget", None, "seconds after which no new trial starts (none: no limit)", optional(float)),
            Param("scoring", "reconstruction", "reconstruction (validation reconstruction error) | accuracy "
                                             "(validation accuracy of LDA on the codes; uses labels)"),
            Param("dims", (8, 16, 32, 64, 128), "code sizes to draw from", int_tuple),
            Param("depths", (1, 2, 3), "numbers of hidden layers to draw from", int_tuple),
            Param("widths", (64, 128, 256, 512), "widths of the first hidden layer (each next one is half)",
                  int_tuple),
            Param("dropouts", (0.0, 0.1, 0.2, 0.3), "dropout rates to draw from", float_tuple),
            Param("lr_range", (1e-4, 3e-3), "learning rate range, drawn log-uniformly (LOW,HIGH)", float_tuple),
            Param("epoch_choices", (25, 50, 100, 200), "maximum epochs to draw from", int_tuple),
            Param("dim", None, "fix the code size instead of searching it", optional(int)),
            Param("hidden", None, "fix the hidden layers (e.g. 256,64) instead of searching depth and width",
                  optional(int_tuple)),
            Param("dropout", None, "fix the dropout instead of searching it", optional(float)),
            Param("lr", None, "fix the learning rate instead of searching it", optional(float)),
            Param("epochs", None, "fix the maximum epochs instead of searching them", optional(int)),
            Param("val_fraction", 0.2, "fraction of the images that scores the trials", float),
            Param("batch_size", 64, "images per step", int),
            Param("patience", 20, "epochs without improvement before a trial stops", int)),
    trusted_types=frozenset({"deepfake_cli.reducers.search.AutoencoderSearch"}),
    capabilities=frozenset({"random_state", "device", "labels"})))
