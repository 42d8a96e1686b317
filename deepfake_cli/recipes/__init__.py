"""Recipes: the stages chained with good defaults, for the user who wants a result rather than a pipeline.

Layering: like the study, a recipe sits above the stages. It calls only their public functions
(`extract.extract`, `train.train`) and the core (backbones' weights lookup, features); no stage imports a
recipe. It prints nothing: what the user should hear goes to a `say(line)` callback the caller passes.

  fit.py   two folders (or dataset specs) -> a detector model file, its features kept beside it, and the
           held-out accuracy measured before the deployment model is trained on every image
"""

from deepfake_cli.recipes.fit import FitResult, choose_backbone, fit

__all__ = ["FitResult", "choose_backbone", "fit"]
