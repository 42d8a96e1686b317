"""open_clip:ARCH/TAG and timm:NAME backbones: configs from the libraries, preprocessing and outputs equal
to the libraries' own, layers, weights lookup with files the tests write, listing, and combinations."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate
from typer.testing import CliRunner

from deepfake_cli.backbones import create_backbone, get_config, list_backbones
from deepfake_cli.backbones.base import make_transform
from deepfake_cli.errors import DeepfakeError, WeightsMissingError
from tests.conftest import REPO

# one torch thread (a shared machine), and no user env var or cache reaches a test; `images` is in conftest
pytestmark = pytest.mark.usefixtures("one_torch_thread", "clean_weights_env")


def _batch(bb, imgs):
    return default_collate([bb.preprocess(im) for im in imgs])


def _sha_id(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _seeded(fn, seed: int = 7):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn().eval()


# --- names and configs ------------------------------------------------------------------------------


def test_family_names_resolve_to_canonical_configs_from_the_libraries():
    rn = get_config("timm:resnet18")  # no tag: timm's default tag, recorded in the name
    assert rn.name == "timm:resnet18.a1_in1k" and rn.dim == 512 and rn.num_blocks == 5
    assert (rn.input_size, rn.resize, rn.interpolation) == (224, 235, "bicubic")  # crop_pct 0.95
    assert rn.weights.env_var == "DEEPFAKE_WEIGHTS_TIMM_RESNET18_A1_IN1K"
    assert rn.weights.hf_repo == "timm/resnet18.a1_in1k" and rn.weights.file_name == "resnet18_a1_0-d63eafa0.pth"
    dv2 = get_config("timm:vit_small_patch14_dinov2.lvd142m")
    assert (dv2.dim, dv2.input_size, dv2.resize, dv2.num_blocks, dv2.early) == (384, 518, 518, 12, (1, 3, 5))
    oc = get_config("open_clip:ViT-B-32/OpenAI")  # tags are normalised as open_clip does
    assert oc.name == "open_clip:ViT-B-32/openai" and oc.dim == 512 and oc.num_blocks == 12
    assert oc.mean == (0.48145466, 0.4578275, 0.40821073) and oc.weights.file_name == "ViT-B-32.pt"
    assert oc.weights.env_var == "DEEPFAKE_WEIGHTS_OPEN_CLIP_VIT_B_32_OPENAI"
    laion = get_config("open_clip:ViT-B-32/laion2b_s34b_b79k")  # weights only on the hub
    assert laion.weights.hf_repo == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert laion.weights.download_name == "open_clip_model.safetensors"
    siglip = get_config("open_clip:ViT-B-16-SigLIP/webli")  # a timm trunk, squashed, mean/std 0.5
    assert siglip.resize_mode == "squash" and siglip.mean == (0.5, 0.5, 0.5) and siglip.num_blocks == 12
    assert siglip.preprocessing["resize_mode"] == "squash"
    # the default mode adds no key: feature files of the existing backbones keep their compatibility key
    assert "resize_mode" not in get_config("effnet-lite0").preprocessing
    rn50 = get_config("open_clip:RN50/openai")
    assert (rn50.dim, rn50.num_blocks) == (1024, 4)


@pytest.mark.parametrize("short,full", [
    ("clip-vit-b16", "open_clip:ViT-B-16/openai"),
    ("clip-vit-l14", "open_clip:ViT-L-14/openai"),
    ("dinov2-vit-b14", "timm:vit_base_patch14_dinov2.lvd142m"),
])
def test_registered_short_names_agree_with_their_family(short, full):
    a, b = get_config(short), get_config(full)
    assert (a.dim, a.num_blocks, a.early, a.preprocessing) == (b.dim, b.num_blocks, b.early, b.preprocessing)
    assert (a.weights.hf_repo, a.weights.hf_files, a.weights.file_name) == \
        (b.weights.hf_repo, b.weights.hf_files, b.weights.file_name)
    assert a.weights.env_var == "DEEPFAKE_WEIGHTS_" + short.upper().replace("-", "_")


@pytest.mark.parametrize("name,match", [
    ("open_clip:NoSuchNet/openai", "Unknown open_clip architecture 'NoSuchNet'"),
    ("open_clip:ViT-B-32/nosuchtag", "no pretrained tag 'nosuchtag': its tags are .*laion2b_s34b_b79k"),
    ("open_clip:ViT-B-32", "must be open_clip:ARCH/TAG"),
    ("timm:resnet1800", "Unknown timm model 'resnet1800' .*did you mean .*resnet18"),
    ("timm:resnet18.bogus", "no pretrained tag 'bogus': its tags are .*a1_in1k"),
    ("resnet-999", "known backbones are .*effnet-lite0.*open_clip:ARCH/TAG.*timm:NAME"),
])
def test_unknown_family_names_are_refused_in_one_line(name, match):
    with pytest.raises(DeepfakeError, match=match) as err:
        get_config(name)
    assert "\n" not in str(err.value)


# --- preprocessing is the libraries' own -----------------------------------------------------------


def _timm_eval_transform(model_name):
    import timm
    from timm.data import create_transform, resolve_model_data_config

    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
    return create_transform(**resolve_model_data_config(model), is_training=False)


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:vit_small_patch14_dinov2.lvd142m",
                                  "timm:convnext_tiny.fb_in22k_ft_in1k_384"])  # crop_pct 0.95 / 1.0 / squash
def test_timm_preprocessing_equals_timms_eval_transform(name, images):
    cfg = get_config(name)
    ours, theirs = make_transform(cfg), _timm_eval_transform(cfg.name.split(":", 1)[1])
    for img in (images["odd_jpeg"], images["cifake_fake"], images["biggan_real"]):
        torch.testing.assert_close(ours(img), theirs(img), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["open_clip:ViT-B-32/openai", "open_clip:ViT-B-16-SigLIP/webli"])
def test_open_clip_preprocessing_equals_open_clips(name, images):
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    arch, tag = name.split(":", 1)[1].split("/")
    pcfg = open_clip.get_pretrained_cfg(arch, tag)
    theirs = image_transform_v2(PreprocessCfg(size=224, mean=pcfg["mean"], std=pcfg["std"],
                                                        interpolation=pcfg["interpolation"],
                                                        resize_mode=pcfg["resize_mode"]), is_train=False)
    ours = make_transform(get_config(name))
    for img in (images["odd_jpeg"], images["cifake_fake"]):
        torch.testing.assert_close(ours(img), theirs(img), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode,crop_pct", [("border", 1.0), ("border", 0.9), ("squash", 0.9)])
def test_longest_and_squash_modes_equal_timms(mode, crop_pct, images):
    import math
    from dataclasses import replace

    from timm.data.transforms_factory import transforms_imagenet_eval

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    cfg = replace(get_config("effnet-lite0"), input_size=64, resize=math.floor(64 / crop_pct), mean=mean, std=std,
                  resize_mode={"border": "longest", "squash": "squash"}[mode],
                  fill=tuple(round(255 * m) for m in mean), interpolation="bicubic")
    theirs = transforms_imagenet_eval(img_size=64, crop_pct=crop_pct, crop_mode=mode, interpolation="bicubic",
                                      mean=mean, std=std)
    for img in (images["odd_jpeg"], images["odd_jpeg"].transpose(Image.Transpose.ROTATE_90), images["cifake_fake"]):
        torch.testing.assert_close(make_transform(cfg)(img), theirs(img), atol=1e-6, rtol=0)


# --- random weights: outputs and layers -------------------------------------------------------------


def test_timm_vit_layers_equal_forward_intermediates(images):
    name = "timm:vit_tiny_patch16_224"
    bb = create_backbone(name, pretrained=False, layers="0,11,last")
    assert bb.name == "timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k" and bb.weights_id == "random"
    assert bb.layers == "0,11,last" and bb.dim == 3 * 192
    x = _batch(bb, [images["odd_jpeg"], images["biggan_fake"]])
    out = bb(x)
    assert out.shape == (2, 576) and torch.isfinite(out).all()
    model = bb.model
    with torch.no_grad():
        inter = model.forward_intermediates(x, indices=[0, 11], intermediates_only=True)  # (B, C, H, W) patches
        torch.testing.assert_close(out[:, :192], inter[0].mean(dim=(2, 3)))
        torch.testing.assert_close(out[:, 192:384], inter[1].mean(dim=(2, 3)))
        torch.testing.assert_close(out[:, 384:], model(x))  # pooled pre-logits: the CLS token after the norm
    early = create_backbone(name, pretrained=False, layers="early")
    assert early.layers == "1,3,5" and early.dim == 3 * 192
    with pytest.raises(DeepfakeError, match="valid are .*0-11"):
        create_backbone(name, pretrained=False, layers="12")


def test_timm_cnn_stages_pool_feature_maps(images):
    bb = create_backbone("timm:resnet18", pretrained=False, layers="all")
    assert bb.dim == 64 + 64 + 128 + 256 + 512 + 512  # act1, layer1-4, then the pooled head features
    x = _batch(bb, [images["biggan_real"]])
    out = bb(x)
    assert out.shape == (1, bb.dim) and torch.isfinite(out).all()
    with torch.no_grad():
        layer4 = bb.model.forward_intermediates(x, indices=[4], intermediates_only=True)[0]
    torch.testing.assert_close(out[:, -1024:-512], layer4.mean(dim=(2, 3)))


def test_open_clip_vit_layers_equal_forward_intermediates(images):
    bb = create_backbone("open_clip:ViT-B-32/openai", pretrained=False, layers="3,11,last")
    assert bb.dim == 768 + 768 + 512 and bb.layers == "3,11,last"
    x = _batch(bb, [images["odd_jpeg"]])
    out = bb(x)
    with torch.no_grad():
        inter = bb.model.forward_intermediates(x, indices=[3, 11], intermediates_only=True)["image_intermediates"]
        torch.testing.assert_close(out[:, :768], inter[0].mean(dim=(2, 3)))
        torch.testing.assert_close(out[:, 768:1536], inter[1].mean(dim=(2, 3)))
        torch.testing.assert_close(out[:, 1536:], bb.model(x))
    rn = create_backbone("open_clip:RN50/openai", pretrained=False, layers="all")
    assert rn.dim == 256 + 512 + 1024 + 2048 + 1024
    assert rn(_batch(rn, [images["cifake_fake"]])).shape == (1, rn.dim)


def test_new_registered_names_build_and_stop_after_the_block_asked_for(images):
    bb = create_backbone("dinov2-vit-b14", pretrained=False, layers="0")  # block 0 only: the forward stops there
    x = _batch(bb, [images["odd_jpeg"]])
    assert x.shape[-1] == 518
    out = bb(x)
    assert out.shape == (1, 768) and torch.isfinite(out).all() and bb.weights_id == "random"
    # ViT-L's 300M random weights take long to initialise on a shared CPU: its structure is checked on
    # the meta device, with the registered builder itself
    from deepfake_cli.backbones.base import lookup

    entry = lookup("clip-vit-l14")
    with torch.device("meta"):
        tower = entry.builder(entry.config, None, "0,23,last")
    assert tower.dim == 1024 + 1024 + 768
    assert tower(_batch(tower, [images["odd_jpeg"]])).shape == (1, tower.dim)


def test_combinations_with_family_names(tmp_path, images):
    combo = create_backbone("timm:resnet18+lowlevel", pretrained=False, layers="early")
    assert combo.name == "timm:resnet18.a1_in1k+lowlevel" and combo.layers == "0,1+last"
    assert combo.dim == 64 + 64 + get_config("lowlevel").dim and combo.weights_id == "random+none"
    out = combo(default_collate([combo.preprocess(images["biggan_real"])]))
    assert out.shape == (1, combo.dim)
    # what a feature file records builds the same backbone again
    again = create_backbone(combo.name, pretrained=False, layers=combo.layers)
    assert (again.name, again.dim, again.preprocessing) == (combo.name, combo.dim, combo.preprocessing)
    with pytest.raises(DeepfakeError, match="twice"):
        create_backbone("timm:resnet18+timm:resnet18.a1_in1k")
    # NAME=PATH pairs accept the name as written
    import timm

    path = tmp_path / "rn18.pth"
    torch.save(_seeded(lambda: timm.create_model("resnet18")).state_dict(), path)
    both = create_backbone("timm:resnet18+lowlevel", weights=f"timm:resnet18={path}")
    assert both.weights_id == f"{_sha_id(path)}+none"


# --- weights: the lookup with files the tests write -------------------------------------------------


def test_timm_weights_from_argument_env_var_torch_hub_and_hf_cache(tmp_path, monkeypatch, images):
    import timm
    from safetensors.torch import save_file

    ref = _seeded(lambda: timm.create_model("resnet18"))  # with its classifier, as timm's files are
    x_img = [images["odd_jpeg"], images["biggan_fake"]]
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    bb = create_backbone("timm:resnet18", weights=path)
    x = _batch(bb, x_img)
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True)
    torch.testing.assert_close(bb(x), expected)
    assert bb.weights_id == _sha_id(path)

    monkeypatch.setenv("DEEPFAKE_WEIGHTS_TIMM_RESNET18_A1_IN1K", str(path))
    torch.testing.assert_close(create_backbone("timm:resnet18")(x), expected)
    monkeypatch.delenv("DEEPFAKE_WEIGHTS_TIMM_RESNET18_A1_IN1K")

    # where timm's own URL download lands
    hub = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18_a1_0-d63eafa0.pth"
    hub.parent.mkdir(parents=True)
    path.rename(hub)
    from_hub = create_backbone("timm:resnet18.a1_in1k")
    torch.testing.assert_close(from_hub(x), expected)
    hub.unlink()

    # the Hugging Face cache: snapshots/<rev>/model.safetensors links to blobs/<sha256 of the file>
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--timm--resnet18.a1_in1k"
    tmp = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp))
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    tmp.rename(repo / "blobs" / sha)
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "snapshots" / "0123abc" / "model.safetensors").symlink_to(Path("../../blobs") / sha)
    from_hf = create_backbone("timm:resnet18")
    torch.testing.assert_close(from_hf(x), expected)
    assert from_hf.weights_id == "sha256:" + sha[:16]  # the blob's name, the same id hashing gives
    assert {r["name"]: r for r in list_backbones(all=True, pattern="timm:resnet18.a1")}[
        "timm:resnet18.a1_in1k"]["weights_present"]


def test_timm_files_of_other_layouts_load_as_timm_loads_them(tmp_path, images):
    import timm

    # a training checkpoint: the weights under "model", with the ImageNet head the backbone drops
    ref = _seeded(lambda: timm.create_model("vit_tiny_patch16_224", num_classes=0))
    sd = dict(ref.state_dict())
    sd["head.weight"], sd["head.bias"] = torch.zeros(1000, 192), torch.zeros(1000)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": sd, "epoch": 300}, path)
    bb = create_backbone("timm:vit_tiny_patch16_224", weights=path)
    x = _batch(bb, [images["biggan_real"]])
    with torch.no_grad():
        torch.testing.assert_close(bb(x), ref(x))

    # Meta's DINOv2 release has a mask_token timm's model lacks: timm's checkpoint filter drops it
    dv2 = _seeded(lambda: timm.create_model("vit_small_patch14_dinov2", num_classes=0))
    meta_sd = dict(dv2.state_dict())
    meta_sd["mask_token"] = torch.zeros(1, 384)
    meta = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(meta_sd, meta)
    block0 = create_backbone("timm:vit_small_patch14_dinov2.lvd142m", weights=meta, layers="0")
    x = _batch(block0, [images["odd_jpeg"]])
    with torch.no_grad():
        inter = dv2.forward_intermediates(x, indices=[0], intermediates_only=True)[0]
    torch.testing.assert_close(block0(x), inter.mean(dim=(2, 3)))

    wrong = tmp_path / "wrong.pth"
    torch.save(_seeded(lambda: timm.create_model("resnet18")).state_dict(), wrong)
    with pytest.raises(DeepfakeError, match="does not fit timm:vit_tiny_patch16_224"):
        create_backbone("timm:vit_tiny_patch16_224", weights=wrong)


def test_open_clip_weights_from_hf_cache_and_clip_cache_equal_open_clip(tmp_path, monkeypatch, images):
    import open_clip
    from open_clip.model import _build_vision_tower
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from safetensors.torch import save_file

    mcfg = open_clip.get_model_config("RN50")
    ref = _seeded(lambda: _build_vision_tower(mcfg["embed_dim"], mcfg["vision_cfg"], quick_gelu=True))
    # an open_clip checkpoint holds the whole CLIP: the image tower under "visual.", the text tower beside it
    sd = {"visual." + k: v.contiguous() for k, v in ref.state_dict().items()}
    sd.update({"token_embedding.weight": torch.zeros(8, 4), "logit_scale": torch.ones([])})
    snap = Path(os.environ["HF_HOME"]) / "hub" / "models--timm--resnet50_clip.yfcc15m" / "snapshots" / "main"
    snap.mkdir(parents=True)
    save_file(sd, str(snap / "open_clip_model.safetensors"))
    bb = create_backbone("open_clip:RN50/yfcc15m")
    assert bb.weights_id == _sha_id(snap / "open_clip_model.safetensors")
    pcfg = open_clip.get_pretrained_cfg("RN50", "yfcc15m")
    theirs = image_transform_v2(PreprocessCfg(size=224, mean=pcfg["mean"], std=pcfg["std"]), is_train=False)
    imgs = [images["odd_jpeg"], images["cifake_fake"]]
    with torch.no_grad():
        expected = ref(torch.stack([theirs(im) for im in imgs]))
    torch.testing.assert_close(bb(_batch(bb, imgs)), expected)

    # OpenAI's file under its own name in open_clip's URL cache (~/.cache/clip), as a TorchScript-free dict
    clip_dir = Path(os.environ["XDG_CACHE_HOME"]) / "clip"
    clip_dir.mkdir(parents=True)
    torch.save({"module." + k: v for k, v in sd.items()}, clip_dir / "RN50.pt")
    torch.testing.assert_close(create_backbone("open_clip:RN50/openai")(_batch(bb, imgs)), expected)


def test_missing_family_weights_fail_fast_in_one_line_saying_how(monkeypatch):
    monkeypatch.setenv("DEEPFAKE_OFFLINE", "1")
    start = time.monotonic()
    cases = [
        ("timm:resnet18", ["resnet18_a1_0-d63eafa0.pth", "DEEPFAKE_WEIGHTS_TIMM_RESNET18_A1_IN1K",
                           str(Path(torch.hub.get_dir()) / "checkpoints" / "resnet18_a1_0-d63eafa0.pth")]),
        ("open_clip:ViT-B-32/laion2b_s34b_b79k",
         ["open_clip_model.safetensors", "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
          "DEEPFAKE_WEIGHTS_OPEN_CLIP_VIT_B_32_LAION2B_S34B_B79K",
          str(Path(os.environ["XDG_CACHE_HOME"]) / "clip" /
              "laion--CLIP-ViT-B-32-laion2B-s34B-b79K--open_clip_model.safetensors")]),
        ("clip-vit-l14", ["ViT-L-14.pt", "DEEPFAKE_WEIGHTS_CLIP_VIT_L14"]),
        ("dinov2-vit-b14", ["dinov2_vitb14_pretrain.pth", "DEEPFAKE_WEIGHTS_DINOV2_VIT_B14"]),
    ]
    for name, needles in cases:
        with pytest.raises(WeightsMissingError) as err:
            create_backbone(name)
        msg = str(err.value)
        assert "\n" not in msg and "--weights PATH" in msg, msg
        for needle in needles:
            assert needle in msg, (needle, msg)
    assert time.monotonic() - start < 15


# --- listing ----------------------------------------------------------------------------------------


def test_list_all_filters_and_marks_cached_weights(tmp_path):
    rows = list_backbones(all=True)
    names = {r["name"] for r in rows}
    assert "open_clip:ViT-L-14/openai" in names and "timm:vit_small_patch14_dinov2.lvd142m" in names
    assert len(rows) > 1000 and len(names) == len(rows)
    some = {r["name"]: r for r in list_backbones(all=True, pattern="VIT_SMALL_PATCH14_dinov2")}
    assert set(some) == {"timm:vit_small_patch14_dinov2.lvd142m"}  # case-insensitive substring
    assert some["timm:vit_small_patch14_dinov2.lvd142m"]["input_size"] == 518
    globbed = {r["name"] for r in list_backbones(all=True, pattern="open_clip:ViT-L-14/*")}
    assert "open_clip:ViT-L-14/openai" in globbed and all(n.startswith("open_clip:ViT-L-14/") for n in globbed)
    assert {r["name"] for r in list_backbones(pattern="dino")} == {"dino-resnet50", "dino-vit-b16", "dinov2-vit-b14"}
    # only local files count: the OpenAI file in open_clip's cache marks that one tag
    clip_dir = Path(os.environ["XDG_CACHE_HOME"]) / "clip"
    clip_dir.mkdir(parents=True)
    (clip_dir / "ViT-L-14.pt").write_bytes(b"x")
    cached = {r["name"] for r in list_backbones(all=True, cached=True)}
    # (the -quickgelu variant of the arch names the same OpenAI file)
    # (the zoo's recipes of ViT-L/14, preproj and univfd, read the same file)
    assert cached == {"effnet-lite0", "lowlevel", "clip-vit-l14", "open_clip:ViT-L-14/openai",
                      "open_clip:ViT-L-14-quickgelu/openai", "clip-vit-l14-preproj", "clip-vit-l14-univfd"}


def test_cli_backbones_all_filter_json():
    from deepfake_cli.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["backbones", "--all", "--filter", "vit_base_patch14_dinov2", "--json"])
    assert res.exit_code == 0, res.output
    import json

    names = [r["name"] for r in json.loads(res.output)]
    assert names == ["timm:vit_base_patch14_dinov2.lvd142m"]
    res = runner.invoke(app, ["backbones", "--all", "--filter", "open_clip:*L-14/openai"])
    assert res.exit_code == 0 and "1 shown" in res.output and "open_clip:ViT-L-14/o" in res.output  # (a folded cell)


def test_plain_listing_imports_neither_hub_library():
    """`deepfake backbones` stays fast: open_clip and timm are imported only for their names."""
    code = ("import sys; from deepfake_cli.backbones import list_backbones; rows = list_backbones(); "
            "print(len(rows), 'open_clip' in sys.modules, 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    from deepfake_cli.backbones import base

    assert out.stdout.split() == [str(len(base._REGISTRY)), "False", "False"]  # every registered name, no hub
