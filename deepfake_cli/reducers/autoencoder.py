"""`autoencoder`: a small MLP autoencoder trained in PyTorch, applied in numpy.

The weights are kept as numpy arrays after `fit`, so skops saves the reducer without pickling and
applying it needs no torch.
"""

from __future__ import annotations

from deepfake_cli.reducers import register_reducer
from deepfake_cli.registry import Entry, Param, int_tuple, lazy_attributes, lazy_class

# the estimator lives in _autoencoder.py, imported (with scikit-learn) only when one is built or
# loaded, so listing the reducers stays fast; model files name it as a class of this module
__getattr__ = lazy_attributes("deepfake_cli.reducers._autoencoder", "AutoencoderReducer")

register_reducer(Entry(
    "autoencoder", "MLP autoencoder (PyTorch) with early stopping on a held-out part",
    lazy_class("deepfake_cli.reducers._autoencoder", "AutoencoderReducer"),
    params=(Param("dim", 32, "size of the code layer (the output dimension)", int),
            Param("hidden", (256,), "hidden layer sizes of the encoder, e.g. 512,128 (the decoder mirrors them)",
                  int_tuple),
            Param("epochs", 200, "maximum epochs", int),
            Param("lr", 1e-3, "Adam learning rate", float),
            Param("batch_size", 64, "images per step", int),
            Param("val_fraction", 0.1, "fraction held out to choose the best epoch and stop early", float),
            Param("patience", 20, "epochs without improvement before stopping", int),
            Param("dropout", 0.0, "dropout after each hidden layer while training", float)),
    trusted_types=frozenset({"deepfake_cli.reducers.autoencoder.AutoencoderReducer"}),
    capabilities=frozenset({"random_state", "device"})))
