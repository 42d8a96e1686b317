"""CLIP image towers with OpenAI's weights (ViT-B/16, ViT-L/14, ViT-L/14 at 336 px), built with open_clip.

Short names for `open_clip:ViT-B-16/openai`, `open_clip:ViT-L-14/openai` and `open_clip:ViT-L-14-336/openai`
with their own weights environment variables; the tower, its loading and its layers are
`openclip_models.build_tower`'s. Each also comes as NAME-preproj: the pooled class token after the final
layer norm, before the projection (the tower's width: 768-d for B/16, 1024-d for L/14), which linear
probes such as CLIP-Cues' are trained on. Two more names are the exact feature recipes of published heads
(the model zoo, `deepfake models`): their preprocessing differs from CLIP's own, and the name keeps feature
files made one way from mixing with the other.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .base import BackboneConfig, WeightsSource, register_backbone
from .openclip_models import build_tower
from .text import register_text_tower

_OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/"
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

def _openai_weights(file_name: str, sha256: str, env_var: str, hf_repo: str) -> WeightsSource:
    """OpenAI's CLIP checkpoint (its URL names the file's sha256), or open_clip's copy on the Hugging Face hub."""
    return WeightsSource(
        file_name=file_name,
        url=f"{_OPENAI_URL}{sha256}/{file_name} (or open_clip_model.safetensors from hf.co/{hf_repo})",
        env_var=env_var,
        cache="clip",
        hf_repo=hf_repo,
        hf_files=_OPEN_CLIP_FILES,
    )


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
    weights=_openai_weights("ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", "DEEPFAKE_WEIGHTS_CLIP_VIT_B16", "timm/vit_base_patch16_clip_224.openai"),
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
    weights=_openai_weights("ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "DEEPFAKE_WEIGHTS_CLIP_VIT_L14", "timm/vit_large_patch14_clip_224.openai"),
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


CLIP_VIT_L14_336 = BackboneConfig(
    name="clip-vit-l14-336",
    dim=768,
    description="CLIP ViT-L/14 at 336 px (OpenAI) image embedding (768-d, projected CLS token, not L2-normalised). "
    "Blocks 0-23: mean of patch tokens of each residual block (1024-d).",
    input_size=336,
    resize=336,
    interpolation="bicubic",
    mean=_CLIP_MEAN,
    std=_CLIP_STD,
    weights=_openai_weights("ViT-L-14-336px.pt", "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", "DEEPFAKE_WEIGHTS_CLIP_VIT_L14_336", "timm/vit_large_patch14_clip_336.openai"),
    num_blocks=24,
    early=(2, 6, 10),
    block_pooling="mean of patch tokens (class token excluded)",
)

register_text_tower(CLIP_VIT_L14_336.name, "ViT-L-14-336", "openai")


@register_backbone(CLIP_VIT_L14_336)
def build_clip_vit_l14_336(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    return build_tower(config, weights_path, layers, "ViT-L-14-336", "openai")


# --- the pooled output before the projection ---------------------------------------------------------------
# The same towers, weights (file, environment variable, cache) and preprocessing; the final embedding is the
# class token after ln_post, before `proj`. No text tower: prompts live in the projected space.

def _preproj(config: BackboneConfig, width: int) -> BackboneConfig:
    return replace(config, name=config.name + "-preproj", dim=width,
                   description=config.description.split(" image embedding")[0]
                   + f" pooled output before the projection ({width}-d: the class token after the final layer norm)."
                   + " Blocks" + config.description.split(" Blocks", 1)[1])


def _register_preproj(config: BackboneConfig, width: int, arch: str) -> BackboneConfig:
    variant = _preproj(config, width)

    @register_backbone(variant)
    def build(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
        return build_tower(config, weights_path, layers, arch, "openai", pre_projection=True)

    return variant


CLIP_VIT_B16_PREPROJ = _register_preproj(CLIP_VIT_B16, 768, "ViT-B-16")
CLIP_VIT_L14_PREPROJ = _register_preproj(CLIP_VIT_L14, 1024, "ViT-L-14")
CLIP_VIT_L14_336_PREPROJ = _register_preproj(CLIP_VIT_L14_336, 1024, "ViT-L-14-336")


# --- published feature recipes (the model zoo's heads take exactly these features) --------------------------

# UnivFD (Ojha et al., CVPR 2023), its validate.py: no resize, CenterCrop(224), CLIP's mean/std, on the
# projected embedding. An image smaller than 224 px on a side is padded with black (0) to 224 by the crop,
# as torchvision's CenterCrop does in their code; larger images are cropped at their own scale.
CLIP_VIT_L14_UNIVFD = replace(
    CLIP_VIT_L14, name="clip-vit-l14-univfd", resize_mode="none",
    description="CLIP ViT-L/14 (OpenAI) image embedding (768-d, projected) with UnivFD's preprocessing: no resize, "
    "centre crop 224 at the image's own scale (a side under 224 px is padded with black, as torchvision's "
    "CenterCrop does). Blocks 0-23: mean of patch tokens (1024-d).")

# CLIP-Cues (Willi et al.), its feature extractor: Resize(336) (torchvision's default bilinear), CenterCrop(336),
# CLIP's mean/std, on the pooled output before the projection (1024-d).
CLIP_VIT_L14_336_CLIPCUES = replace(
    CLIP_VIT_L14_336_PREPROJ, name="clip-vit-l14-336-clipcues", interpolation="bilinear",
    description="CLIP ViT-L/14 at 336 px (OpenAI) pooled output before the projection (1024-d) with CLIP-Cues' "
    "preprocessing: shorter side resized to 336 (bilinear), centre crop 336. Blocks 0-23: mean of patch "
    "tokens (1024-d).")

register_text_tower(CLIP_VIT_L14_UNIVFD.name, "ViT-L-14", "openai")


@register_backbone(CLIP_VIT_L14_UNIVFD)
def build_clip_vit_l14_univfd(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    return build_tower(config, weights_path, layers, "ViT-L-14", "openai")


@register_backbone(CLIP_VIT_L14_336_CLIPCUES)
def build_clip_vit_l14_336_clipcues(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    return build_tower(config, weights_path, layers, "ViT-L-14-336", "openai", pre_projection=True)
