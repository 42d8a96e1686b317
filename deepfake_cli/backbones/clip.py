"""CLIP ViT-B/16 image tower (OpenAI weights) built with open_clip."""

from __future__ import annotations

from pathlib import Path

from .base import BackboneConfig, TowerBackbone, WeightsSource, pool_patch_tokens, register_backbone
from .weights import load_into, read_state_dict, strip_prefixes

CLIP_VIT_B16 = BackboneConfig(
    name="clip-vit-b16",
    dim=512,
    description="CLIP ViT-B/16 (OpenAI) image embedding (512-d, projected CLS token, not L2-normalised). "
    "Blocks 0-11: mean of patch tokens of each residual block (768-d).",
    input_size=224,
    resize=224,
    interpolation="bicubic",
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
    weights=WeightsSource(
        file_name="ViT-B-16.pt",
        url="https://openaipublic.azureedge.net/clip/models/"
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt "
        "(or open_clip_model.safetensors from hf.co/timm/vit_base_patch16_clip_224.openai)",
        env_var="DEEPFAKE_WEIGHTS_CLIP_VIT_B16",
        cache="clip",
        hf_repo="timm/vit_base_patch16_clip_224.openai",
        hf_files=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
    ),
    num_blocks=12,
    early=(1, 3, 5),
    block_pooling="mean of patch tokens (class token excluded)",
)


def _embed(model, x):
    return model(x)


@register_backbone(CLIP_VIT_B16)
def build_clip_vit_b16(config: BackboneConfig, weights_path: Path | None, layers: str) -> TowerBackbone:
    import open_clip
    from open_clip.model import _build_vision_tower

    # Only the image tower is built: the text tower would double the build time for nothing.
    # OpenAI's CLIP was trained with QuickGELU, so the tower must use it for the weights to fit.
    mcfg = open_clip.get_model_config("ViT-B-16")
    visual = _build_vision_tower(mcfg["embed_dim"], mcfg["vision_cfg"], quick_gelu=True)
    if weights_path is not None:
        sd = strip_prefixes(read_state_dict(weights_path, config.name), ("module.",))
        if any(k.startswith("visual.") for k in sd):  # a whole CLIP (OpenAI or open_clip format)
            sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        load_into(visual, sd, weights_path, config.name)
    blocks = list(visual.transformer.resblocks)
    width = mcfg["vision_cfg"]["width"]
    pool = pool_patch_tokens(1, batch_first=getattr(visual.transformer, "batch_first", True))
    return TowerBackbone(config, visual, _embed, blocks, [width] * len(blocks), pool, layers, weights_id="")
