"""`explain_images`: choose the method for a model, run the backbone once per batch as `predict` does, and
turn what it saw into one map per image in the image's own frame.

The features come from `inference.embed` with the model's backbone, layers, weights and alignment (what
`predict` runs), so an Explanation's p_fake is predict's number; the exact and token paths read the map off
that same forward pass (a capture installed on the backbone), occlusion adds its own passes.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.explainers import METHODS, Explanation
from deepfake_cli.explainers.occlusion import DEFAULT_GRID, passes

EXACT_NOTE = ("exact class activation: the model's margin is a sum over the last feature map's {cells} cells "
              "(mean pool, then an affine scaler and a linear {clf}); each cell holds its term, the constant spread "
              "evenly, so the cells sum to the margin p_fake is calibrated from")
TOKENS_NOTE = ("approximation: each of the {cells} patch tokens is sent through the class token's final path and "
               "the linear {clf} (its own margin); attention mixes the patches into the class token, so the map "
               "shows where patch content looks fake, not an exact share of the score")
OCCLUSION_NOTE = ("occlusion: p_fake drop when a {patch}x{patch} patch (the normalised mean) hides each of {n} "
                  "positions of the {size}x{size} model input, averaged per pixel; {n} extra forward passes per image "
                  "({why})")


def _single(model, weights=None):
    from deepfake_cli.store.artifacts import load_models

    models = load_models(model, weights=weights)  # a zoo model records the weights it will be given
    if len(models) != 1:
        raise DeepfakeError(f"explain takes one model; {model} holds {len(models)}: name one model file.")
    m = models[0]
    if m.meta.get("features_reduced_by"):
        raise DeepfakeError(f"Model {m.name} was trained on features written by `deepfake reduce`; it cannot "
                            "score raw images. Train on the original features with --reducer instead.")
    return m


def _input_size(meta: dict) -> int:
    pre = meta.get("preprocessing") or {}
    return int(pre.get("crop") or pre.get("input_size") or 224)


class OcclusionRefused(DeepfakeError):
    """An occlusion run on more images than `max_images` (its message says the cost and how to run it)."""


def occlusion_refusal(n_images: int, max_images: int | None, size: int, grid: int,
                      hint: str | None = None) -> str | None:
    """The one-line refusal of an occlusion run on more than `max_images` images, or None. `hint`: what to do
    instead (default: raise --max-images)."""
    if max_images is None or n_images <= max_images:
        return None
    k = passes(size, grid)
    hint = hint or f"--max-images is {max_images}: raise it to {n_images} to run it, or explain fewer images."
    return (f"occlusion would run {n_images} images x {k + 1} forward passes each ({n_images * (k + 1):,} passes, "
            f"about {k + 1}x the cost of predict on them); {hint}")


def plan(model, method: str = "auto") -> tuple[str, str]:
    """What the model alone says, before its backbone is built: ("occlusion", why) when neither the exact nor
    the token path can apply, else ("pending", "") (the backbone decides between cam, tokens, occlusion)."""
    from deepfake_cli.explainers.head import affine_head

    if method not in METHODS:
        raise DeepfakeError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    if method == "occlusion":
        return "occlusion", "asked for"
    meta = model.meta
    why = ""
    if "+" in str(meta.get("backbone", "")):
        why = f"backbone {meta.get('backbone')} joins several networks"
    elif (meta.get("layers") or "last") != "last":
        layers = str(meta.get("layers"))
        why = (f"the features are layers {layers}" if len(layers) <= 24 else
               f"the features join {layers.count(',') + 1} layers") + ", not the last embedding alone"
    else:
        dim = int(meta.get("input_dim") or meta.get("dim") or 0)
        head, why = affine_head(model, dim)
    if not why:
        return "pending", ""
    if method != "auto":
        raise DeepfakeError(f"method {method} cannot explain model {model.name}: {why}; use --method occlusion "
                            "(or auto).")
    return "occlusion", why


class ExplainRun:
    """The iterator `explain_images` returns (see there)."""

    def __init__(self, model, items, method: str = "auto", *, weights=None, device="auto", batch_size: int = 32,
                 max_images: int | None = None, progress: Callable | None = None, occlusion_grid: int | None = None,
                 refusal_hint: str | None = None):
        from deepfake_cli.inference.embed import as_items

        self.refusal_hint = refusal_hint
        self.model = _single(model, weights)
        self.items = as_items(items)
        self.weights, self.device, self.batch_size = weights, device, max(1, int(batch_size))
        self.progress, self.grid = progress, int(occlusion_grid or DEFAULT_GRID)
        self.max_images = max_images
        self.skipped: list[dict] = []
        self.size = _input_size(self.model.meta)
        self.method, self.reason = plan(self.model, method)
        self.head = self.capture = None
        if self.method == "occlusion":
            self._refuse_large()  # before the backbone is built: the guard costs nothing
        self._build(method)
        self.exact = self.method == "cam"
        self.method_note = self._note()

    # ------------------------------------------------------------------------------------------------ set up

    def _refuse_large(self) -> None:
        line = occlusion_refusal(len(self.items), self.max_images, self.size, self.grid, self.refusal_hint)
        if line:
            raise OcclusionRefused(line)

    def _build(self, asked: str) -> None:
        import torch

        from deepfake_cli.explainers.cam import cam_capture
        from deepfake_cli.explainers.head import affine_head
        from deepfake_cli.explainers.tokens import token_capture
        from deepfake_cli.inference.device import resolve_device
        from deepfake_cli.inference.mapper import check_model_backbone, model_backbone_spec

        meta = self.model.meta
        self.spec = model_backbone_spec(meta, self.weights)
        self.where = resolve_device(self.device)
        self.bb = self.spec.build(self.where)
        check_model_backbone(self.model, self.bb)
        if self.method != "pending":
            return
        self.head, head_why = affine_head(self.model, int(self.bb.dim))
        why = [head_why] if self.head is None else []
        for kind, find in (("cam", cam_capture), ("tokens", token_capture)):
            if asked not in ("auto", kind) or self.head is None:
                continue
            cap, reason = find(self.bb) if hasattr(self.bb, "model") else (None, f"backbone {self.bb.name} is "
                                                                             "not one network")
            if cap is not None:
                self.method, self.capture = kind, cap
                with torch.inference_mode():
                    self._grid = tuple(cap.cells(cap.probe_taken, self.head).shape[1:])
                self.reason = (f"backbone {self.bb.name} mean-pools its last feature map and the model is affine in it"
                               if kind == "cam" else f"backbone {self.bb.name} is a vision transformer and the model "
                               "is affine in its class token")
                return
            why.append(reason)
        if asked != "auto":
            raise DeepfakeError(f"method {asked} cannot explain model {self.model.name}: {why[0]}; use --method "
                                "occlusion (or auto).")
        self.method, self.reason = "occlusion", why[-1] if why else "no exact path"
        self._refuse_large()

    def _note(self) -> str:
        clf = self.head.classifier if self.head is not None else ""
        if self.method == "cam":
            return EXACT_NOTE.format(cells=self._cells_text(), clf=clf) + f" ({self.reason})."
        if self.method == "tokens":
            return TOKENS_NOTE.format(cells=self._cells_text(), clf=clf) + f" ({self.reason})."
        from deepfake_cli.explainers.occlusion import positions

        patch, starts = positions(self.size, self.grid)
        return OCCLUSION_NOTE.format(patch=patch, n=len(starts) ** 2, size=self.size, why=self.reason) + "."

    def _cells_text(self) -> str:
        grid = getattr(self, "_grid", None)
        return f"{grid[0]}x{grid[1]}" if grid else "h x w"

    # ------------------------------------------------------------------------------------------------- run

    def __iter__(self):
        return self._run()

    def _run(self):
        from deepfake_cli.inference.embed import embed
        from deepfake_cli.inference.runner import LocalRunner

        m, bb, meta = self.model, self.bb, self.model.meta
        taken: dict = {}
        handles = []
        if self.method == "occlusion":  # the normalised input batch, to occlude
            def keep_input(_module, inputs):
                if not taken.get("occluding"):  # the embed pass's batch, not an occluded copy
                    taken["x"] = inputs[0]

            handles.append(bb.register_forward_pre_hook(keep_input))
        if self.capture is not None:
            self.capture.attach()
        done, total = 0, len(self.items)
        try:
            t0 = time.perf_counter()
            for batch in embed(bb, self.items, transform="none", seed=int(meta.get("feature_seed") or 0),
                               align=(meta.get("preprocessing") or {}).get("align"),
                               # occlusion: one image at a time (its copies fill the batches), progress per image
                               batch_size=1 if self.method == "occlusion" else self.batch_size,
                               device=self.device, runner=LocalRunner(0), spec=self.spec):
                for i, reason in batch.skipped:
                    self.skipped.append({"path": self.items[i].rel, "reason": reason})
                if batch.indices:
                    p = m.p_fake(batch.features)
                    margins = self._margins(batch.features)
                    if self.method == "occlusion":
                        x = taken.pop("x")
                        taken["occluding"] = True
                        try:
                            grids = self._occlude(x, p)
                        finally:
                            taken["occluding"] = False
                    else:
                        cells = self.capture.cells(self.capture.take(), self.head)
                        self._grid = cells.shape[1:]
                        grids = _upsample(cells, self.size)
                    share = (time.perf_counter() - t0) / len(batch.indices)
                    for k, i in enumerate(batch.indices):
                        t1 = time.perf_counter()
                        found = self._image_frame(i, grids[k])
                        if found is None:
                            continue
                        full, img = found
                        yield Explanation(
                            rel=self.items[i].rel, p_fake=float(p[k]), map=full, method=self.method, exact=self.exact,
                            seconds=share + time.perf_counter() - t1,
                            label="fake" if p[k] >= m.threshold else "real", margin=float(margins[k]),
                            cells=None if self.method == "occlusion" else cells[k].astype(np.float64),
                            image=img)
                done += len(batch.indices) + len(batch.skipped)
                if self.progress:
                    self.progress(done, total)
                t0 = time.perf_counter()
        finally:
            for h in handles:
                h.remove()
            if self.capture is not None:
                self.capture.detach()

    def _margins(self, X) -> np.ndarray:
        from deepfake_cli.explainers.head import model_margin

        try:
            return model_margin(self.model, X)
        except Exception:  # a margin is a by-product here: a model without one still gets its maps
            return np.full(len(X), np.nan)

    def _occlude(self, x, p0) -> np.ndarray:
        import torch

        from deepfake_cli.explainers.occlusion import occlusion_maps

        cuda = x.device.type == "cuda"

        def p_fake_of(batch):
            with torch.inference_mode():
                if cuda:  # as the Mapper runs it: the same numbers as the unoccluded pass
                    with torch.autocast("cuda", dtype=torch.float16):
                        feats = self.bb(batch)
                else:
                    feats = self.bb(batch)
            return self.model.p_fake(feats.float().cpu().numpy())

        with torch.inference_mode():
            return occlusion_maps(x, p0, p_fake_of, grid=self.grid, batch_size=self.batch_size)

    def _image_frame(self, i: int, grid: np.ndarray):
        """(the map in item i's own frame, its decoded image), or None when it cannot be read again (then
        it is listed as skipped)."""
        from deepfake_cli.data import UnreadableImage, read_item
        from deepfake_cli.explainers.frame import to_image_frame
        from deepfake_cli.inference.memory import MemoryImage

        item = self.items[i]
        try:
            img, _ = item.read() if isinstance(item, MemoryImage) else read_item(item)
        except UnreadableImage as exc:
            self.skipped.append({"path": item.rel, "reason": exc.reason})
            return None
        pre = dict(self.model.meta.get("preprocessing") or {})
        return to_image_frame(grid, img.width, img.height, pre), img


def _upsample(cells: np.ndarray, size: int) -> np.ndarray:
    """(B, h, w) cell maps -> (B, size, size), bilinear (the model frame's pixels under each cell)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(cells, dtype=np.float64))[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
