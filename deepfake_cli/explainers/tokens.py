"""ViT patch-token projection: an APPROXIMATE map for transformer backbones.

A ViT's feature is its class token after the final norm (and, for CLIP, the projection). Each patch token is
sent through that same final path (timm / DINO / DINOv2: the model's own `forward_head`, i.e. the final
norm's output pooled as if the token were the class token; CLIP: `ln_post` and `proj`) and then through the
model's scaler and linear head (explainers/head.py): the map over the h x w patch grid is each token's margin,
"how fake this patch would look if it were the image's summary". It is not a decomposition: the class token
mixes the patches through attention, so the cells do not sum to the model's margin, and the output says so
(method "tokens", exact False).

The tokens are captured in the same forward pass that gives the feature (`inference.embed`, as `predict`
runs it); a capture is used only after a probe pass shows the class token through the final path equals the
backbone's feature.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .cam import Capture, _close


def _grid(n_patches: int, model) -> tuple[int, int]:
    for owner in (getattr(model, "patch_embed", None), model):
        g = getattr(owner, "grid_size", None)
        if g is not None:
            gh, gw = (g, g) if isinstance(g, int) else tuple(int(v) for v in g)
            if gh * gw == n_patches:
                return gh, gw
    side = int(round(math.sqrt(n_patches)))
    if side * side != n_patches:
        raise ValueError(f"{n_patches} patch tokens do not form a square grid")
    return side, side


class TimmTokens(Capture):
    """timm VisionTransformer (DINO, DINOv2, `timm:` ViTs): `forward_features` output (B, N, D), final norm
    applied; each patch token goes through `forward_head` in the class token's place."""

    kind = "tokens"

    def attach(self) -> "TimmTokens":
        model = self.bb.model
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")
                and hasattr(model, "num_prefix_tokens")):
            raise ValueError("not a timm vision transformer")
        original = model.forward_features

        def forward_features(*args, **kwargs):
            out = original(*args, **kwargs)
            self.taken = out.detach()
            return out

        model.forward_features = forward_features
        self._undo.append(lambda: delattr(model, "forward_features"))
        return self

    def check(self, features, captured) -> bool:
        return captured.ndim == 3 and _close(self.bb.model.forward_head(captured.float()).float(), features)

    def projected(self, captured) -> tuple[torch.Tensor, tuple[int, int]]:
        model = self.bb.model
        prefix = int(model.num_prefix_tokens)
        patches = captured[:, prefix:, :].float()  # float16 under CUDA autocast; the head's weights are float32
        b, n, d = patches.shape
        # every position holds the patch token: class-token pooling and mean pooling both read it back
        rep = patches.reshape(b * n, 1, d).expand(b * n, prefix + 1, d)
        with torch.inference_mode():
            out = model.forward_head(rep).float()
        return out.reshape(b, n, -1), _grid(n, model)

    def cells(self, captured, head) -> np.ndarray:
        proj, (gh, gw) = self.projected(captured)
        P = proj.double().cpu().numpy()
        return (P @ head.w + head.b).reshape(P.shape[0], gh, gw)


class OpenClipTokens(Capture):
    """open_clip / OpenAI CLIP VisionTransformer with class-token pooling: the transformer's output tokens;
    each patch token goes through `ln_post` and `proj` as the class token does."""

    kind = "tokens"

    def attach(self) -> "OpenClipTokens":
        from open_clip.transformer import VisionTransformer

        visual = self.bb.model
        if not isinstance(visual, VisionTransformer) or getattr(visual, "attn_pool", None) is not None \
                or getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError("not a class-token CLIP vision transformer")
        self.batch_first = getattr(visual.transformer, "batch_first", True)

        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            self.taken = (out if self.batch_first else out.transpose(0, 1)).detach()

        handle = visual.transformer.register_forward_hook(hook)
        self._undo.append(handle.remove)
        return self

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        visual = self.bb.model
        with torch.inference_mode():
            y = visual.ln_post(x.float())  # float16 under CUDA autocast; ln_post's weights are float32
            return (y @ visual.proj if visual.proj is not None else y).float()

    def check(self, features, captured) -> bool:
        return captured.ndim == 3 and _close(self._final(captured[:, 0]), features)

    def cells(self, captured, head) -> np.ndarray:
        patches = captured[:, 1:, :]
        b, n, _ = patches.shape
        gh, gw = _grid(n, self.bb.model)
        P = self._final(patches).double().cpu().numpy()
        return (P @ head.w + head.b).reshape(b, gh, gw)


def token_capture(bb) -> tuple[Capture | None, str]:
    """A verified patch-token capture of `bb`, or (None, why not)."""
    if getattr(bb, "_block_ids", None) or not getattr(bb, "_want_last", False):
        return None, "the features include intermediate blocks (layers other than last)"
    for cls in (TimmTokens, OpenClipTokens):
        try:
            cap = cls(bb)
            cap.attach().detach()
        except (ValueError, AttributeError, ImportError):
            continue
        if cap.probe():
            return cap, ""
        return None, f"backbone {bb.name}'s feature is not its class token through the final path"
    return None, f"backbone {bb.name} is not a vision transformer this module reads"
