"""DINO self-supervised backbones: DINO (Caron et al. 2021) ViT-B/16 via timm and ResNet-50 via
torchvision, and DINOv2 (Oquab et al. 2023) ViT-B/14 via timm (`timm_models.build_model`)."""

from __future__ import annotations

from pathlib import Path

from .base import BackboneConfig, WeightsSource, register_backbone
from .timm_models import build_model
from .weights import load_into, read_state_dict, strip_prefixes

_DINO_URL = "https://dl.fbaipublicfiles.com/dino/"
# keys a full DINO training checkpoint wraps around the backbone ("teacher" is picked by read_state_dict)
_WRAPPERS = ("module.", "backbone.")

DINO_VIT_B16 = BackboneConfig(
    name="dino-vit-b16",
    dim=768,
    description="DINO ViT-B/16 (self-supervised, ImageNet); 768-d CLS token after the final norm. "
    "Blocks 0-11: mean of patch tokens of each transformer block.",
    input_size=224,
    resize=256,
    interpolation="bicubic",
    weights=WeightsSource(
        file_name="dino_vitbase16_pretrain.pth",
        url=_DINO_URL + "dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
        env_var="DEEPFAKE_WEIGHTS_DINO_VIT_B16",
    ),
    num_blocks=12,
    early=(1, 3, 5),
    block_pooling="mean of patch tokens (class token excluded)",
)

DINO_RESNET50 = BackboneConfig(
    name="dino-resnet50",
    dim=2048,
    description="DINO ResNet-50 (self-supervised, ImageNet); 2048-d global-average-pooled layer4. "
    "Blocks 0-3: pooled outputs of stages layer1-layer4.",
    input_size=224,
    resize=256,
    interpolation="bicubic",
    weights=WeightsSource(
        file_name="dino_resnet50_pretrain.pth",
        url=_DINO_URL + "dino_resnet50_pretrain/dino_resnet50_pretrain.pth",
        env_var="DEEPFAKE_WEIGHTS_DINO_RESNET50",
    ),
    num_blocks=4,
    early=(0, 1),
    block_pooling="global average pool of the stage's feature map",
)


DINOV2_VIT_B14 = BackboneConfig(
    name="dinov2-vit-b14",
    dim=768,
    description="DINOv2 ViT-B/14 (self-supervised, LVD-142M; timm vit_base_patch14_dinov2.lvd142m); 768-d CLS "
    "token after the final norm, at 518x518 (1369 patches: about 5x the compute of a 224 input). "
    "Blocks 0-11: mean of patch tokens of each transformer block.",
    input_size=518,
    resize=518,  # timm's crop_pct 1.0: the shorter side to 518, centre crop
    interpolation="bicubic",
    weights=WeightsSource(
        file_name="dinov2_vitb14_pretrain.pth",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth "
        "(or model.safetensors from hf.co/timm/vit_base_patch14_dinov2.lvd142m)",
        env_var="DEEPFAKE_WEIGHTS_DINOV2_VIT_B14",
        hf_repo="timm/vit_base_patch14_dinov2.lvd142m",
        hf_files=("model.safetensors", "pytorch_model.bin"),
    ),
    num_blocks=12,
    early=(1, 3, 5),
    block_pooling="mean of patch tokens (class token excluded)",
)


def _call(model, x):
    return model(x)


def _load(model: "nn.Module", config: BackboneConfig, weights_path: Path) -> None:
    sd = strip_prefixes(read_state_dict(weights_path, config.name), _WRAPPERS)
    # the projection head / classifier is not part of the backbone
    sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "fc."))}
    load_into(model, sd, weights_path, config.name)


@register_backbone(DINO_VIT_B16)
def build_dino_vit_b16(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    import timm

    from ._tower import TowerBackbone, pool_patch_tokens

    # DINO's checkpoint uses timm's ViT key names; num_classes=0 drops the head, CLS pooling is timm's default
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, global_pool="token")
    if weights_path is not None:
        _load(model, config, weights_path)
    blocks = list(model.blocks)
    pool = pool_patch_tokens(model.num_prefix_tokens)
    return TowerBackbone(config, model, _call, blocks, [model.embed_dim] * len(blocks), pool, layers, weights_id="")


@register_backbone(DINO_RESNET50)
def build_dino_resnet50(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    from torch import nn
    from torchvision.models import resnet50

    from ._tower import TowerBackbone, pool_nchw

    model = resnet50(weights=None)
    model.fc = nn.Identity()
    if weights_path is not None:
        _load(model, config, weights_path)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    dims = [stage[-1].conv3.out_channels for stage in stages]
    return TowerBackbone(config, model, _call, stages, dims, pool_nchw, layers, weights_id="")


@register_backbone(DINOV2_VIT_B14)
def build_dinov2_vit_b14(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    # Meta's original .pth and timm's hub file both load: timm's checkpoint filter converts the former
    return build_model(config, weights_path, layers, "vit_base_patch14_dinov2.lvd142m")
