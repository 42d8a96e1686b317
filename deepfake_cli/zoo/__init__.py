"""The model zoo: ready detectors named "zoo:NAME", usable wherever a model file is (predict, eval, study,
`dfc.load_model("zoo:univfd")`).

Each entry is data (`entries.toml`): a backbone whose preprocessing is the paper's, a published linear head
shipped under `heads/` with its licence, provenance and sha256, the training data, the published figures
with their citation, and what this tool measured (nothing yet). `catalog` reads the entries (no torch),
`heads` reads and checks a head file, `model` turns an entry into a `Model`.
"""

from __future__ import annotations

from deepfake_cli.zoo.catalog import NOTHING_MEASURED, PREFIX, ZooEntry, entries, get_entry, is_zoo_name


def list_models() -> list[dict]:
    """One dict per zoo entry (`ZooEntry.card`), in catalogue order."""
    return [e.card() for e in entries()]


def zoo_model(name, weights=None, head=None):
    """`zoo.model.zoo_model`, imported on first use (it loads torch and scikit-learn)."""
    from deepfake_cli.zoo.model import zoo_model as build

    return build(name, weights=weights, head=head)


def import_head(name, head, out, weights=None, overwrite: bool = False):
    """`zoo.model.import_head`, imported on first use."""
    from deepfake_cli.zoo.model import import_head as write

    return write(name, head, out, weights=weights, overwrite=overwrite)


__all__ = ["NOTHING_MEASURED", "PREFIX", "ZooEntry", "entries", "get_entry", "import_head", "is_zoo_name",
           "list_models", "zoo_model"]
