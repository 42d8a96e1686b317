"""Evidence maps (explainers): where in an image a model finds its evidence for "fake" (`deepfake explain`).

Three methods, chosen per model (`method="auto"`):

* "cam" (exact): a CNN backbone whose feature is the mean pool of its last feature map (effnet-lite0, the
  DINO ResNet-50, a fine-tuned network) with an affine pipeline (no reducer, a StandardScaler, a linear
  classifier: LDA, linear probe, linear head, linear SVM): the model's margin is a sum over the feature
  map's cells, and the map is that sum's terms (explainers/cam.py).
* "tokens" (approximation): a ViT backbone (CLIP, DINO, DINOv2, timm ViTs) with such a pipeline: each patch
  token through the class token's final path and the head (explainers/tokens.py).
* "occlusion": any other model: p_fake drop when a patch is hidden, one forward pass per patch position
  (explainers/occlusion.py).

Every map is in the image's own pixel frame (explainers/frame.py undoes the backbone's resize and crop), NaN
where the model never saw the pixel. This module is light: the work is in `explainers.core`, imported on use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("auto", "cam", "tokens", "occlusion")


@dataclass
class Explanation:
    """One image's evidence map."""

    rel: str              # the item's rel (the `path` predict's rows give it)
    p_fake: float         # the model's p_fake for the image (the number predict gives)
    map: np.ndarray       # float32 (H, W) in the image's own frame; > 0 evidence for fake; NaN: never seen
    method: str           # "cam" | "tokens" | "occlusion"
    exact: bool           # True only for "cam"
    seconds: float        # wall time spent on this image's map (its share of the batch's forward pass)
    label: str = ""       # "fake" | "real" at the model's threshold
    margin: float = float("nan")      # the model's margin (the score its calibration reads)
    cells: np.ndarray | None = field(default=None, repr=False)  # cam / tokens: the map over the model's grid
    # of cells before it is drawn in the image frame (cam: sums to `margin`); occlusion: None
    image: object = field(default=None, repr=False, compare=False)  # the decoded RGB image (PIL), for overlays


def explain_images(model, items, method: str = "auto", *, weights=None, device="auto", batch_size: int = 32,
                   max_images: int | None = None, progress=None, occlusion_grid: int | None = None,
                   refusal_hint: str | None = None):
    """Evidence maps for `items` (ImageItems, in-memory images or paths) with one model (a `Model`, a
    model file or a zoo name): an iterator of `Explanation`s in input order; an unreadable image is not
    yielded but listed in the iterator's `.skipped` ({"path", "reason"}). The iterator also says
    `.method`, `.exact`, `.method_note` (which method and why, its cost) before the first image.
    `max_images`: refuse (DeepfakeError) an occlusion run on more images. `occlusion_grid`: patches per
    side (default 7). `refusal_hint`: what the refusal tells the user to do instead (default: raise
    --max-images)."""
    from deepfake_cli.explainers.core import ExplainRun

    return ExplainRun(model, items, method, weights=weights, device=device, batch_size=batch_size,
                      max_images=max_images, progress=progress, occlusion_grid=occlusion_grid,
                      refusal_hint=refusal_hint)


__all__ = ["METHODS", "Explanation", "explain_images"]
