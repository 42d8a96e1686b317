"""A zoo entry as a `Model` (store/artifacts.py): the same metadata keys a trained model has, so predict,
eval, study and the API need no special case.

The meta says which backbone, layers and preprocessing make its input features (the backbone is the
paper's recipe, registered in backbones/clip.py); the estimator is the pipeline train writes
(reduce -> scale -> clf), both passthrough, with the fixed head as clf. p_fake = sigmoid(w.x + b), no
calibration, threshold the paper's 0.5.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.artifacts import Model
from deepfake_cli.metrics.calibration import Decision
from deepfake_cli.store.model_card import ModelCard, model_inputs
from deepfake_cli.store.outputs import Target, writes
from deepfake_cli.zoo.catalog import ZooEntry, get_entry
from deepfake_cli.zoo.heads import read_head


def backbone_weights_id(entry: ZooEntry, weights: str | os.PathLike | None = None) -> tuple[str, list[str]]:
    """The weights id the features will be made with, and notes.

    Found the way the backbone will find them (the given file, the environment variable, the caches; no
    download), so predict's check that features come from the model's weights compares like with like;
    when none is here, the published file's id (building the backbone then says where to get it). A file
    other than the published one gets a note: a converted copy of the same weights scores the same,
    other weights do not."""
    from deepfake_cli.backbones import get_config
    from deepfake_cli.backbones.weights import find_local, weights_id

    cfg = get_config(entry.backbone)
    published = f"sha256:{entry.weights_sha256[:16]}" if entry.weights_sha256 else ""
    path = Path(weights).expanduser() if weights is not None else find_local(cfg.weights)
    if path is None or not path.is_file():
        return published, []
    found = weights_id(path)
    if not published or found == published:
        return found, []
    return found, [f"the {cfg.name} weights found ({path}, {found}) are not the published file ({published}) the "
                   f"head was trained on: a converted copy of the same weights scores the same, other weights do not"]


def zoo_model(name: str, weights: str | os.PathLike | None = None, head: str | os.PathLike | None = None) -> Model:
    """The `Model` of zoo entry `name` ("univfd" or "zoo:univfd"); `head`: a head file to use instead of the
    shipped one (it must be the same file: its sha256 is checked); `weights`: the backbone weights file that
    will be used, when it is given explicitly (`--weights`)."""
    from sklearn.pipeline import Pipeline

    from deepfake_cli.backbones import get_config
    from deepfake_cli.classifiers.linear_head import LinearHead

    entry = get_entry(name)
    cfg = get_config(entry.backbone)
    w, b = read_head(entry, head, dim=cfg.dim if entry.layers == "last" else None)
    dim = int(w.shape[1])
    clf = LinearHead(weight=w[0], bias=b, source=f"{entry.zoo_name} ({entry.head_source}; sha256 {entry.head_sha256})")
    clf.fit(np.zeros((0, dim), dtype=np.float32))
    pipe = Pipeline([("reduce", "passthrough"), ("scale", "passthrough"), ("clf", clf)])
    wid, notes = backbone_weights_id(entry, weights)
    inputs = model_inputs(backbone=cfg.name, dim=cfg.dim, input_dim=dim, layers=entry.layers, weights_id=wid,
                          preprocessing=dict(cfg.preprocessing, align=None), transform="none", feature_seed=0,
                          align=None, reducer={"method": "none"})
    # the one model card every model kind is written with; trained elsewhere: none of this tool's datasets,
    # nothing held out here, the paper's threshold and no calibration
    split = {"train_datasets": [], "heldout_sha256": {}, "train_sha256": [], "n_train": 0, "n_fit": 0, "n_val": 0,
             "n_heldout": {}}
    decision = Decision(float(entry.threshold), None, None, f"published ({entry.threshold:g}, the paper's)")
    meta = ModelCard(inputs, split).meta(
        name=entry.zoo_name, classifier="linear-head",
        classifier_params={"head": str(entry.head_path if head is None else Path(head).resolve()),
                           "head_sha256": entry.head_sha256},
        decision=decision, novelty=None, notes=notes, extra={"zoo": entry.card()})
    return Model(estimator=pipe, meta=meta, kind="model", path=None, name=entry.zoo_name)


@writes(lambda a: [Target(a["out"], "model")], lambda a: [a["head"]])
def import_head(name: str, head: str | os.PathLike, out: str | os.PathLike,
                weights: str | os.PathLike | None = None) -> Path:
    """Write zoo entry `name` with the user's copy of its head file (sha256 checked) as a model file `out`
    (the output guards apply: `overwrite=True` to replace a file of another kind)."""
    from deepfake_cli.store.artifacts import MODEL_SUFFIX, save_model

    out = Path(out)
    if out.suffix != MODEL_SUFFIX:
        raise DeepfakeError(f"--out {out}: a model file name ends in {MODEL_SUFFIX} (e.g. {out.stem or 'univfd'}{MODEL_SUFFIX}).")
    model = zoo_model(name, weights=weights, head=head)
    meta = dict(model.meta, name=out.stem)
    return save_model(out, model.estimator, meta)
