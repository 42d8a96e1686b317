"""deepfake-cli: frozen pretrained backbones + classical classifiers to detect generated images."""

__version__ = "0.1.0"
