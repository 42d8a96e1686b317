"""The zoo in a study (`zoo = [...]` in [grid]): published detectors scored beside the trained cells.

A zoo cell (`plan.zoo_cells`) is tested on every dataset under every test transform, on feature files of the
entry's own recipe that the features phase makes (or shares) like any other. Its model is not trained: the
entry's `Model` (`zoo.model.zoo_model`) is written once as the cell's model file, in this process (so worker
processes need no zoo catalogue), and the cell is then evaluated like every other, with the same metrics.

Weights are checked before any work: a zoo backbone whose weights are not here stops the study at once with
the backbone's one-line instruction (where to get the file), as `deepfake predict zoo:NAME` does, unless
every feature file of that backbone is already in the study folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from deepfake_cli.errors import DeepfakeError, WeightsMissingError
from deepfake_cli.study.config import StudyConfig
from deepfake_cli.study.plan import Cell, zoo_cells
from deepfake_cli.study.units import complete_features


def check_zoo_weights(cfg: StudyConfig, out_dir: str | os.PathLike) -> None:
    """Refuse, in one line and before anything is extracted, a zoo entry whose backbone weights are neither
    in the config (`[study] weights`), nor in the backbone's environment variable or caches, nor downloadable,
    when some of its feature files are still to be made."""
    from deepfake_cli.backbones import get_config
    from deepfake_cli.backbones.weights import resolve_weights

    fdir = Path(out_dir) / "features"
    checked: set[str] = set()
    for cell in zoo_cells(cfg):
        config = get_config(cell.backbone)
        if cell.backbone in checked or config.weights is None:
            continue
        if all(complete_features(fdir / f"{k}.h5") for k in [*cell.test_fkeys, *cell.reals.values()]):
            continue  # nothing left to extract with it
        try:
            resolve_weights(config, cfg.weights.get(cell.backbone))
        except WeightsMissingError as exc:
            raise WeightsMissingError(
                f"zoo:{cell.zoo} in [grid] zoo of {cfg.path}: {exc} In a study config the file can also be "
                f"given as [study] weights = {{ \"{cell.backbone}\" = \"PATH\" }}.") from None
        checked.add(cell.backbone)


def zoo_model_file(out: Path, cell: Cell) -> Path:
    return out / "models" / f"{cell.key}.model"


def write_zoo_models(cfg: StudyConfig, out: Path, cells: list[Cell]) -> dict[str, str]:
    """Write the model file of each zoo cell that has none; returns {cell key: error} of those that could not
    be built (a head file refused), so that they are reported and the rest of the study goes on."""
    from deepfake_cli.store.artifacts import save_model
    from deepfake_cli.zoo.model import zoo_model

    failed: dict[str, str] = {}
    for cell in cells:
        path = zoo_model_file(out, cell)
        if not cell.zoo or path.is_file():
            continue
        try:
            model = zoo_model(cell.zoo, weights=cfg.weights.get(cell.backbone))
        except DeepfakeError as exc:
            failed[cell.key] = str(exc)
            continue
        meta = dict(model.meta, name=path.stem)
        if cfg.align:  # the study's images are aligned before the recipe's own preprocessing: its features say so
            meta.update(align=cfg.align, preprocessing=dict(meta["preprocessing"], align=cfg.align))
        save_model(path, model.estimator, meta)
    return failed
