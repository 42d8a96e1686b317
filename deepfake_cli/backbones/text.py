"""CLIP text towers: prompts -> embeddings in the image embedding's space, from the image tower's own weights.

A backbone has a text tower when it is an open_clip model: `open_clip:ARCH/TAG`, or a registered name
that declares its open_clip architecture with `register_text_tower` next to its builder (clip.py).
The tower is built from open_clip's config of the architecture and loaded from the same checkpoint
file as the image tower (found by the same lookup: a weights file, the environment variable, the
caches, the hub), so `weights_id` is that file's, and a model can check that its features came from
the same weights. A checkpoint holding only the image tower is refused in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DeepfakeError
from .base import lookup
from .openclip_models import quick_gelu
from .weights import load_into, read_state_dict, resolve_weights, strip_prefixes, weights_id

_TEXT_ARCH: dict[str, tuple[str, str]] = {}  # registered backbone name -> (open_clip arch, pretrained tag)
OPEN_CLIP_PREFIX = "open_clip:"


def register_text_tower(name: str, arch: str, tag: str) -> None:
    """Declare that registered backbone `name` is open_clip `arch` with `tag`'s weights (so it has a text tower)."""
    _TEXT_ARCH[name] = (arch, tag)


def text_arch(name: str) -> tuple[str, str] | None:
    """(open_clip arch, tag) of a backbone that has a text tower, else None."""
    name = str(name).strip()
    if name in _TEXT_ARCH:
        return _TEXT_ARCH[name]
    if name.startswith(OPEN_CLIP_PREFIX):
        from .openclip_models import split_spec

        return split_spec(name[len(OPEN_CLIP_PREFIX):])
    return None


def has_text_tower(name: str) -> bool:
    try:
        return text_arch(name) is not None
    except DeepfakeError:
        return False


class TextTower:
    """A loaded text tower: `encode(prompts)` -> (n, embed_dim) float64 (not normalised); `logit_scale`
    is CLIP's learned temperature (exp of the stored value); `weights_id` identifies the file."""

    def __init__(self, name: str, arch: str, model: "torch.nn.Module", tokenizer, logit_scale: float, wid: str):
        self.name, self.arch, self.model, self.tokenizer = name, arch, model, tokenizer
        self.logit_scale, self.weights_id = float(logit_scale), wid

    def encode(self, prompts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(list(prompts))
        with torch.no_grad():
            out = self.model(tokens)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().cpu().numpy().astype(np.float64)


def create_text_tower(name: str, weights: str | os.PathLike | None = None) -> TextTower:
    """The text tower of backbone `name`, loaded from its weights file (`weights`, else the lookup)."""
    import open_clip
    import torch
    from open_clip.model import _build_text_tower

    arch_tag = text_arch(name)
    if arch_tag is None:
        _no_tower(name)
    arch, tag = arch_tag
    config = lookup(name).config
    path = resolve_weights(config, weights)
    mcfg = open_clip.get_model_config(arch)
    sd = strip_prefixes(read_state_dict(Path(path), config.name), ("module.",))
    text_sd, scale = _text_state(sd, path, name)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            tower = _build_text_tower(mcfg["embed_dim"], mcfg["text_cfg"], quick_gelu=quick_gelu(arch, tag))
        except Exception as exc:  # e.g. a Hugging Face text model that is not available offline
            raise DeepfakeError(f"Cannot build the text tower of {name} ({arch}): {exc}") from None
    load_into(tower, text_sd, Path(path), f"{name} (text tower)")
    tower.eval()
    try:
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:
        raise DeepfakeError(f"Cannot load the tokenizer of {name} ({arch}): {exc}") from None
    return TextTower(config.name, arch, tower, tokenizer, float(np.exp(scale)), weights_id(path))


def _no_tower(name: str):
    registered = ", ".join(sorted(_TEXT_ARCH))
    raise DeepfakeError(f"Backbone {name} has no text tower: text prompts need a CLIP backbone "
                        f"({registered}, or {OPEN_CLIP_PREFIX}ARCH/TAG).")


def _text_state(sd: dict, path, name: str) -> tuple[dict, float]:
    """The text tower's keys of a whole-CLIP state dict (OpenAI / open_clip `CLIP` layout: top-level keys;
    `CustomTextCLIP`: `text.*`), and the stored logit scale (log of the temperature; CLIP's init if absent)."""
    scale = sd.get("logit_scale")
    scale = float(scale.float().reshape(-1)[0]) if scale is not None else float(np.log(1 / 0.07))
    if any(k.startswith("text.") for k in sd):
        text = {k[len("text."):]: v for k, v in sd.items() if k.startswith("text.")}
    else:
        text = {k: v for k, v in sd.items()
                if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias", "input_resolution",
                                                             "context_length", "vocab_size")}
    if "token_embedding.weight" not in text and not any(k.startswith("transformer.") for k in text):
        raise DeepfakeError(f"Weights file {path} holds no text tower for {name} (only an image tower?): "
                            "use a whole-CLIP checkpoint (OpenAI .pt or open_clip_model.safetensors).")
    return text, scale
