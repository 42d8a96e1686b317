"""CLIP image towers with OpenAI's weights (ViT-B/16, ViT-L/14), built with open_clip.

Short names for `open_clip:ViT-B-16/openai` and `open_clip:ViT-L-14/openai` with their own weights
environment variables; the tower, its loading and its layers are `openclip_models.build_tower`'s.
"""

from __future__ import annotations

from pathlib import Path

from .base import BackboneConfig, WeightsSource, register_backbone
from .openclip_models import build_tower
from .text import register_text_tower

_OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/"
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

CLIP_VIT_B16 = BackboneConfig(
    name="clip-vit-b16",
    dim=512,
    description="CLIP ViT-B/16 (OpenAI) image embedding (512-d, projected CLS token, not L2-normalised). "
    "Blocks 0-11: mean of patch tokens of each residual block (768-d).",
    input_size=224,
    resize=224,
    interpolation="bicubic",
    mean=_CLIP_MEAN,
    std=_CLIP_STD,
    weights=WeightsSource(
        file_name="ViT-B-16.pt",
        url=_OPENAI_URL + "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt "
        "(or open_clip_model.safetensors from hf.co/timm/vit_base_patch16_clip_224.openai)",
        env_var="DEEPFAKE_WEIGHTS_CLIP_VIT_B16",
        cache="clip",
        hf_repo="timm/vit_base_patch16_clip_224.openai",
        hf_files=_OPEN_CLIP_FILES,
    ),
    num_blocks=12,
    early=(1, 3, 5),
    block_pooling="mean of patch tokens (class token excluded)",
)

CLIP_VIT_L14 = BackboneConfig(
    name="clip-vit-l14",
    dim=768,
    description="CLIP ViT-L/14 (OpenAI) image embedding (768-d, projected CLS token, not L2-normalised). "
    "Blocks 0-23: mean of patch tokens of each residual block (1024-d).",
    input_size=224,
    resize=224,
    interpolation="bicubic",
    mean=_CLIP_MEAN,
    std=_CLIP_STD,
    weights=WeightsSource(
        file_name="ViT-L-14.pt",
        url=_OPENAI_URL + "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt "
        "(or open_clip_model.safetensors from hf.co/timm/vit_large_patch14_clip_224.openai)",
        env_var="DEEPFAKE_WEIGHTS_CLIP_VIT_L14",
        cache="clip",
        hf_repo="timm/vit_large_patch14_clip_224.openai",
        hf_files=_OPEN_CLIP_FILES,
    ),
    num_blocks=24,
    early=(2, 6, 10),
    block_pooling="mean of patch tokens (class token excluded)",
)


# whole-CLIP checkpoints: the text tower (zero-shot, prompt similarities) loads from the same file
register_text_tower(CLIP_VIT_B16.name, "ViT-B-16", "openai")
register_text_tower(CLIP_VIT_L14.name, "ViT-L-14", "openai")


@register_backbone(CLIP_VIT_B16)
def build_clip_vit_b16(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    return build_tower(config, weights_path, layers, "ViT-B-16", "openai")


@register_backbone(CLIP_VIT_L14)
def build_clip_vit_l14(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    return build_tower(config, weights_path, layers, "ViT-L-14", "openai")
