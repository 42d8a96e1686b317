"""Backbone registry: shapes on real images, layers, combinations, weights loading and failure modes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageFilter
from torch.utils.data import default_collate

from deepfake_cli.backbones import CombinedBackbone, create_backbone, get_config, list_backbones
from deepfake_cli.errors import DeepfakeError, WeightsMissingError
from tests.conftest import example_set

# every registered backbone, built here with random weights, but the ViT-L / 518-pixel sized ones: they
# are checked against the generic families in test_backbones_hub.py instead
TOO_LARGE = {"clip-vit-l14", "dinov2-vit-b14", "clip-vit-l14-preproj", "clip-vit-l14-336", "clip-vit-l14-336-preproj",
             "clip-vit-l14-univfd", "clip-vit-l14-336-clipcues"}
NAMES = [r["name"] for r in list_backbones() if r["family"] == "registered" and r["name"] not in TOO_LARGE]
# one torch thread (a shared machine), and no user env var or cache reaches a test
pytestmark = pytest.mark.usefixtures("one_torch_thread", "clean_weights_env")


def _batch(bb, imgs):
    return default_collate([bb.preprocess(im) for im in imgs])


# --- list -----------------------------------------------------------------------------------------


def test_list_backbones_reports_all_with_local_weights_state(tmp_path, monkeypatch):
    rows = {r["name"]: r for r in list_backbones()}
    assert set(NAMES) | {"clip-vit-l14", "dinov2-vit-b14"} <= set(rows)
    for r in rows.values():
        assert set(r) >= {"name", "dim", "input_size", "source", "weights_present", "description"}
        json.dumps(r)
    assert rows["effnet-lite0"]["dim"] == 1280 and rows["clip-vit-b16"]["dim"] == 512
    assert rows["dino-vit-b16"]["dim"] == 768 and rows["dino-resnet50"]["dim"] == 2048
    assert rows["clip-vit-l14"]["dim"] == 768 and rows["dinov2-vit-b14"]["dim"] == 768
    assert rows["dinov2-vit-b14"]["input_size"] == 518
    # effnet weights ship with a pip package, lowlevel needs none; the caches here are empty
    assert rows["effnet-lite0"]["weights_present"] and rows["lowlevel"]["weights_present"]
    assert not rows["dino-resnet50"]["weights_present"]
    # a file in the torch hub cache or named by the env var counts as present
    ckpt = Path(torch.hub.get_dir()) / "checkpoints" / "dino_resnet50_pretrain.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DINO_VIT_B16", str(ckpt))
    rows = {r["name"]: r for r in list_backbones()}
    assert rows["dino-resnet50"]["weights_present"] and rows["dino-vit-b16"]["weights_present"]
    assert not rows["clip-vit-b16"]["weights_present"]


# --- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_each_backbone_gives_finite_features_of_its_dim(name, images):
    bb = create_backbone(name, pretrained=False)
    imgs = [images["cifake_fake"], images["odd_jpeg"]]
    x = _batch(bb, imgs)
    feats = bb(x)
    assert feats.shape == (2, bb.dim) and bb.dim == get_config(name).dim
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    # the two images differ, so must their features (random-weight activations can be tiny: compare relatively)
    assert (feats[0] - feats[1]).abs().max() > 1e-3 * feats.abs().max()
    assert bb.layers == "last"
    assert bb.weights_id == ("none" if name == "lowlevel" else "random")
    json.dumps(bb.preprocessing)
    assert x.shape[-1] == bb.preprocessing["input_size"]
    assert torch.equal(bb.preprocess(imgs[1]), x[1])  # preprocessing is deterministic
    assert not bb.training and all(not p.requires_grad for p in bb.parameters())


def test_random_weights_are_reproducible(images):
    a = create_backbone("dino-resnet50", pretrained=False)
    b = create_backbone("dino-resnet50", pretrained=False)
    x = _batch(a, [images["biggan_real"]])
    assert torch.equal(a(x), b(x))


# --- combinations ---------------------------------------------------------------------------------


def test_combination_concatenates_members_in_order(images):
    combo = create_backbone("dino-resnet50+lowlevel", pretrained=False)
    assert isinstance(combo, CombinedBackbone)
    assert combo.dim == 2048 + get_config("lowlevel").dim
    imgs = [images["biggan_fake"], images["odd_jpeg"]]
    batch = default_collate([combo.preprocess(im) for im in imgs])
    assert isinstance(batch, (list, tuple)) and len(batch) == 2
    out = combo(batch)
    rn, low = create_backbone("dino-resnet50", pretrained=False), create_backbone("lowlevel")
    torch.testing.assert_close(out[:, :2048], rn(_batch(rn, imgs)))
    torch.testing.assert_close(out[:, 2048:], low(_batch(low, imgs)))
    assert combo.weights_id == "random+none"
    swapped = create_backbone("lowlevel+dino-resnet50", pretrained=False)
    torch.testing.assert_close(swapped(default_collate([swapped.preprocess(im) for im in imgs]))[:, :low.dim], out[:, 2048:])


def test_study_combinations_by_name(images):
    dims = {"clip-vit-b16": 512, "dino-vit-b16": 768, "dino-resnet50": 2048}
    for name in ["clip-vit-b16+dino-vit-b16", "clip-vit-b16+dino-resnet50", "dino-vit-b16+dino-resnet50"]:
        bb = create_backbone(name, pretrained=False)
        assert bb.name == name and bb.dim == sum(dims[m] for m in name.split("+"))
    all3 = create_backbone("clip-vit-b16+dino-vit-b16+dino-resnet50", pretrained=False)
    out = all3(default_collate([all3.preprocess(images["biggan_real"])]))
    assert out.shape == (1, 512 + 768 + 2048) and torch.isfinite(out).all()
    # what identifies a feature file must not depend on when or how often it is built
    again = create_backbone("clip-vit-b16+dino-vit-b16+dino-resnet50", pretrained=False)
    assert json.dumps(all3.preprocessing, sort_keys=True) == json.dumps(again.preprocessing, sort_keys=True)
    assert all3.weights_id == again.weights_id == "random+random+random"
    assert [m["backbone"] for m in all3.preprocessing["members"]] == ["clip-vit-b16", "dino-vit-b16", "dino-resnet50"]


def test_bad_names_are_refused():
    with pytest.raises(DeepfakeError, match="known backbones are .*effnet-lite0"):
        create_backbone("resnet-999")
    with pytest.raises(DeepfakeError, match="twice"):
        create_backbone("lowlevel+lowlevel")
    with pytest.raises(DeepfakeError, match="ambiguous"):
        create_backbone("lowlevel+dino-resnet50", weights="/some/file.pth")


# --- layers ---------------------------------------------------------------------------------------


def test_effnet_layers_select_pooled_blocks(images):
    imgs = [images["biggan_real"], images["biggan_fake"]]
    last = create_backbone("effnet-lite0", pretrained=False)
    full = create_backbone("effnet-lite0", pretrained=False, layers="all")
    early = create_backbone("effnet-lite0", pretrained=False, layers="early")
    picked = create_backbone("effnet-lite0", pretrained=False, layers="15, 2,4")
    x = _batch(last, imgs)
    f_last, f_full, f_early, f_picked = last(x), full(x), early(x), picked(x)
    assert picked.layers == "2,4,15" and early.layers == "1,3,5"
    assert full.layers == ",".join(str(i) for i in range(16)) + ",last"
    assert f_early.shape == (2, early.dim) and f_picked.shape == (2, picked.dim)
    assert early.dim < last.dim < full.dim and f_full.shape == (2, full.dim)
    # "all" is every block's pooled output followed by the final embedding
    torch.testing.assert_close(f_full[:, -1280:], f_last)
    # effnet-lite0 block widths: 16, 24, 24, 40, 40, 80, ... -> blocks 1, 3, 5 sit at known offsets
    torch.testing.assert_close(f_full[:, 16:40], f_early[:, :24])
    torch.testing.assert_close(f_full[:, 64:104], f_early[:, 24:64])


@pytest.mark.parametrize("name,spec,dim", [
    ("dino-resnet50", "0,3", 256 + 2048),
    ("dino-resnet50", "early", 256 + 512),
    ("dino-vit-b16", "0,last", 768 + 768),
    ("clip-vit-b16", "11", 768),
])
def test_layers_on_other_backbones(name, spec, dim, images):
    bb = create_backbone(name, pretrained=False, layers=spec)
    out = bb(_batch(bb, [images["biggan_real"]]))
    assert bb.dim == dim and out.shape == (1, dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,spec", [
    ("effnet-lite0", "16"), ("effnet-lite0", "first"), ("dino-resnet50", "4"),
    ("dino-vit-b16", "-1"), ("lowlevel", "early"), ("lowlevel", "0"), ("clip-vit-b16+dino-resnet50", "5"),
])
def test_invalid_layers_are_refused_naming_valid_ones(name, spec):
    with pytest.raises(DeepfakeError, match="valid"):
        create_backbone(name, pretrained=False, layers=spec)


def test_combination_layers_keep_lowlevel_at_last_and_round_trip():
    bb = create_backbone("dino-resnet50+lowlevel", pretrained=False, layers="early")
    assert bb.layers == "0,1+last" and bb.dim == 256 + 512 + get_config("lowlevel").dim
    # a feature file records bb.layers; predict rebuilds the backbone from it
    again = create_backbone("dino-resnet50+lowlevel", pretrained=False, layers=bb.layers)
    assert (again.layers, again.dim) == (bb.layers, bb.dim)
    single = create_backbone("effnet-lite0", pretrained=False, layers="all")
    assert create_backbone("effnet-lite0", pretrained=False, layers=single.layers).dim == single.dim
    with pytest.raises(DeepfakeError, match="one per member"):
        create_backbone("dino-resnet50+lowlevel", pretrained=False, layers="0+last+last")


# --- weights: loading, identity, failures -----------------------------------------------------------


def _sha_id(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _other_resnet50():
    """A ResNet-50 with weights that differ from the seeded pretrained=False ones."""
    from torchvision.models import resnet50

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = resnet50(weights=None)
    return model.eval()


def test_weights_file_and_env_var_load_the_saved_model(tmp_path, monkeypatch, images):
    ref = _other_resnet50()
    x_img = [images["biggan_real"], images["odd_jpeg"]]
    plain = tmp_path / "rn50_state_dict.pth"
    torch.save(ref.state_dict(), plain)  # torchvision keys with the fc classifier, like DINO's file
    bb = create_backbone("dino-resnet50", weights=plain)
    x = _batch(bb, x_img)
    ref.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = ref(x)
    torch.testing.assert_close(bb(x), expected)
    assert bb.weights_id == _sha_id(plain)
    assert not torch.allclose(bb(x), create_backbone("dino-resnet50", pretrained=False)(x))

    # DINO's full training checkpoint wraps the backbone: {"teacher": {"module.backbone.*", "module.head.*"}}
    full = tmp_path / "full_ckpt.pth"
    sd = {"module.backbone." + k: v for k, v in ref.state_dict().items() if "num_batches_tracked" not in k}
    sd["module.head.mlp.0.weight"] = torch.zeros(3, 3)
    torch.save({"teacher": sd, "epoch": 100}, full)
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DINO_RESNET50", str(full))
    from_env = create_backbone("dino-resnet50")
    torch.testing.assert_close(from_env(x), expected)
    assert from_env.weights_id == _sha_id(full) != bb.weights_id

    # with no argument and no env var, the torch hub cache is used (where a download would land)
    monkeypatch.delenv("DEEPFAKE_WEIGHTS_DINO_RESNET50")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "dino_resnet50_pretrain.pth"
    cached.parent.mkdir(parents=True)
    plain.rename(cached)
    from_cache = create_backbone("dino-resnet50")
    torch.testing.assert_close(from_cache(x), expected)
    assert from_cache.weights_id == bb.weights_id


def test_clip_loads_whole_clip_checkpoint(tmp_path, images):
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config("ViT-B-16")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        tower = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=True).eval()
    path = tmp_path / "clip.pt"
    # open_clip / OpenAI checkpoints hold the whole CLIP; the image tower's keys start with "visual."
    sd = {"visual." + k: v for k, v in tower.state_dict().items()}
    sd["token_embedding.weight"] = torch.zeros(4, 4)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    bb = create_backbone("clip-vit-b16", weights=str(path))
    x = _batch(bb, [images["odd_jpeg"]])
    with torch.no_grad():
        torch.testing.assert_close(bb(x), tower(x))
    assert bb.weights_id == _sha_id(path)


def test_corrupt_or_wrong_weights_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all" * 100)
    with pytest.raises(DeepfakeError, match="Cannot read weights file"):
        create_backbone("dino-resnet50", weights=junk)
    good = tmp_path / "rn.pth"
    torch.save(_other_resnet50().state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DeepfakeError, match="Cannot read weights file"):
        create_backbone("dino-resnet50", weights=truncated)
    # a real checkpoint of another network
    with pytest.raises(DeepfakeError, match="does not fit dino-vit-b16"):
        create_backbone("dino-vit-b16", weights=good)
    with pytest.raises(WeightsMissingError, match="does not exist"):
        create_backbone("dino-resnet50", weights=tmp_path / "nope.pth")


def test_missing_weights_fail_fast_and_say_how_to_supply_them(monkeypatch):
    # a closed local port: the reachability probe is refused at once, exactly like an offline machine
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(WeightsMissingError) as err:
        create_backbone("clip-vit-b16")
    msg = str(err.value)
    assert "ViT-B-16.pt" in msg and "--weights PATH" in msg and "DEEPFAKE_WEIGHTS_CLIP_VIT_B16" in msg
    assert str(Path(os.environ["XDG_CACHE_HOME"]) / "clip" / "ViT-B-16.pt") in msg
    monkeypatch.setenv("DEEPFAKE_OFFLINE", "1")
    for name, file, env in [("dino-vit-b16", "dino_vitbase16_pretrain.pth", "DEEPFAKE_WEIGHTS_DINO_VIT_B16"),
                            ("dino-resnet50", "dino_resnet50_pretrain.pth", "DEEPFAKE_WEIGHTS_DINO_RESNET50")]:
        with pytest.raises(WeightsMissingError) as err:
            create_backbone("lowlevel+" + name)
        msg = str(err.value)
        cache = Path(torch.hub.get_dir()) / "checkpoints" / file
        assert file in msg and "dl.fbaipublicfiles.com/dino" in msg and env in msg and str(cache) in msg
        assert "\n" not in msg
    assert time.monotonic() - start < 10


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated, OpenAI's files are not
def test_torchscript_and_safetensors_files_are_read(tmp_path):
    from safetensors.torch import save_file

    from deepfake_cli.backbones.weights import read_state_dict

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.visual(x)

    tiny = Tiny()
    scripted = tmp_path / "openai_style.pt"  # OpenAI ships CLIP as a TorchScript archive
    torch.jit.script(tiny).save(str(scripted))
    sd = read_state_dict(scripted, "clip-vit-b16")
    assert set(sd) == {"visual.weight", "visual.bias"} and torch.equal(sd["visual.weight"], tiny.visual.weight)
    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(st))
    assert torch.equal(read_state_dict(st, "x")["visual.bias"], tiny.visual.bias)


def test_env_var_pointing_nowhere_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DINO_VIT_B16", str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsMissingError, match="DEEPFAKE_WEIGHTS_DINO_VIT_B16"):
        create_backbone("dino-vit-b16")


# --- real weights on real images --------------------------------------------------------------------


# ImageNet photos among ForenSynths' BigGAN reals, with their class as seen by eye (and named by the class index)
IMAGENET_PHOTOS = {"105": 302, "125": 121, "142": 290, "62": 130, "4": 538, "55": 994, "200": 181, "58": 460,
                   "44": 895, "186": 729}  # ground beetle, king crab, jaguar, flamingo, dome, stinkhorn,
# Bedlington terrier, breakwater, warplane, plate rack


def test_effnet_pretrained_recognises_imagenet_photos():
    bb = create_backbone("effnet-lite0")
    assert bb.weights_id.startswith("sha256:57934424")  # the file is named after its own hash prefix
    folder = example_set("forensynths_biggan") / "real"
    files = {n: folder / f"{n}_biggan_real.png" for n in IMAGENET_PHOTOS}
    x = default_collate([bb.preprocess(Image.open(f).convert("RGB")) for f in files.values()])
    feats = bb(x)
    assert torch.equal(feats, bb(x))  # deterministic
    # the features are exactly the classifier's input: its top-5 must hold the photo's ImageNet class
    top5 = bb.model._fc(feats).topk(5).indices.tolist()
    hits = sum(IMAGENET_PHOTOS[n] in t for n, t in zip(files, top5))
    assert hits >= 8, f"only {hits}/{len(files)} ImageNet photos have their class in the top 5"


def test_effnet_features_of_crops_of_one_image_stay_close(images):
    bb = create_backbone("effnet-lite0")
    a, other = images["biggan_real"], images["biggan_fake"]
    w, h = a.size
    crops = [a.crop((0, 0, int(w * 0.85), int(h * 0.85))), a.crop((int(w * 0.15), int(h * 0.15), w, h))]
    f = torch.nn.functional.normalize(bb(_batch(bb, crops + [other])), dim=1)
    assert f[0] @ f[1] > f[0] @ f[2] and f[0] @ f[1] > f[1] @ f[2]


def test_lowlevel_sees_blur_in_spectrum_and_residuals(images):
    from deepfake_cli.backbones.lowlevel import N_COLOUR, N_RADIAL

    bb = create_backbone("lowlevel")
    originals = [images["biggan_real"], images["biggan_fake"], images["odd_jpeg"]]
    blurred = [im.filter(ImageFilter.GaussianBlur(1.5)) for im in originals]
    f = bb(_batch(bb, originals + blurred))
    assert torch.isfinite(f).all() and torch.equal(f, bb(_batch(bb, originals + blurred)))
    high = slice(N_RADIAL // 2, N_RADIAL)  # upper half of the radial frequencies
    assert (f[:3, high].mean(1) > f[3:, high].mean(1) + 0.5).all()  # > 3x more high-frequency power
    resid_std = slice(N_RADIAL + N_COLOUR, N_RADIAL + N_COLOUR + 3)  # residual std per RGB channel
    assert (f[:3, resid_std] > f[3:, resid_std]).all()
    # blur barely moves the colour means: the cues are not all the same thing
    means = [N_RADIAL + 4 * c for c in range(3)]
    torch.testing.assert_close(f[:3, means], f[3:, means], atol=0.02, rtol=0)


def test_device_argument_and_bad_device(images):
    bb = create_backbone("lowlevel", device="cpu")
    assert bb.device.type == "cpu"
    x = _batch(bb, [images["biggan_real"]])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # callers may run under autocast
        out = bb(x)
    assert out.dtype == torch.float32 and torch.equal(out, bb(x))
    with pytest.raises(DeepfakeError):
        create_backbone("lowlevel", device="nonsense")


def test_preprocessing_is_torchvisions_bit_for_bit_without_importing_it():
    """The resize and crop are written with PIL alone (importing torchvision costs 1.5 s of a one-image
    predict); on every registered backbone's config and images of odd sizes, small and large, they give
    torchvision's Compose([Resize, CenterCrop, ToTensor, Normalize]) exactly."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T

    from deepfake_cli.backbones import get_config
    from deepfake_cli.backbones._tower import make_transform

    rng = np.random.default_rng(0)
    sizes = [(32, 32), (17, 300), (300, 17), (248, 248), (641, 480), (224, 225), (1000, 333)]
    modes = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}
    checked = set()
    for row in list_backbones():
        cfg = get_config(row["name"])
        if cfg.resize_mode not in ("shortest", "squash", "none") or (cfg.resize_mode, cfg.interpolation) in checked:
            continue
        checked.add((cfg.resize_mode, cfg.interpolation))
        geometry = [] if cfg.resize_mode == "none" else [
            T.Resize(cfg.resize if cfg.resize_mode == "shortest" else (cfg.resize, cfg.resize),
                     interpolation=modes[cfg.interpolation], antialias=True)]
        ref = T.Compose(geometry + [T.CenterCrop(cfg.input_size), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
        ours = make_transform(cfg)
        for w, h in sizes:
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            assert torch.equal(ours(img), ref(img)), (row["name"], w, h)
    assert {"shortest", "none"} <= {m for m, _ in checked}
