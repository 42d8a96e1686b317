"""The model zoo (issue 18 items 1-2): `zoo:NAME` works wherever a model file does, its heads ship with their
licences and sha256, and each entry's p_fake equals an independent computation of the paper's recipe.

The equivalence tests use seeded random CLIP weights saved in OpenAI's checkpoint layout ("visual.*" keys,
float16 as OpenAI stores them) and passed the way users pass weights (the backbone's environment variable);
the reference is written here with open_clip's `create_model` / `encode_image`, torchvision's transforms and
the head in torch, not with this package's code. ViT-L on a CPU is heavy: one build per module, few images.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.artifacts import load_model, load_models
from deepfake_cli.zoo import get_entry, list_models, zoo_model
from deepfake_cli.zoo.heads import file_sha256, read_head
from tests.conftest import EXAMPLES

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NAMES = ["univfd", "clipcues-cnnspot", "clipcues-synthbuster", "clipcues-synthclic", "clipcues-combined"]
pytestmark = pytest.mark.usefixtures("clean_weights_env")


def _cli():
    # `deepfake models` / `import-head` are registered in cli/__init__.py; until then, here
    from deepfake_cli.cli import zoo_cmds

    if not any(c.name == "models" for c in app.registered_commands):
        zoo_cmds.register(app)
    return CliRunner()


def _images(n_each: dict[str, int]) -> list[Path]:
    """Real files of examples/data: 248 px (BigGAN, StyleGAN sets) and 32 px (CIFAKE, under the 224 crop)."""
    out = []
    for ds, n in n_each.items():
        for cls in ("real", "fake"):
            out += sorted((EXAMPLES / ds / cls).iterdir())[: (n + 1) // 2 if cls == "real" else n // 2]
    return out


def _head(entry) -> torch.nn.Linear:
    """The entry's head file as a torch Linear, read here with torch alone."""
    obj = torch.load(entry.head_path, map_location="cpu", weights_only=True)
    sd = obj if "weight" in obj else {k.rsplit(".", 1)[1]: v for k, v in obj["state_dict"].items()}
    layer = torch.nn.Linear(sd["weight"].shape[1], 1)
    layer.load_state_dict(sd)
    return layer


# --- the catalogue, the shipped heads, the CLI (fast) -----------------------------------------------------

def test_models_lists_every_entry_with_licence_citation_and_nothing_measured():
    rows = {r["name"]: r for r in list_models()}
    assert list(rows) == NAMES
    for r in rows.values():
        assert r["licence"] == "MIT" and r["citation"] and r["published"] and r["training_data"]
        assert r["measured_here"] == "nothing measured yet" and r["threshold"] == 0.5
    assert rows["univfd"]["published"]["mean_accuracy_pct"] == 81.38 and rows["univfd"]["published"]["mean_ap_pct"] == 90.14
    assert "CVPR 2023" in rows["univfd"]["citation"]
    res = _cli().invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["zoo_name"] for r in json.loads(res.stdout)] == [f"zoo:{n}" for n in NAMES]
    res = _cli().invoke(app, ["models"])
    assert res.exit_code == 0 and all(f"zoo:{n}" in res.stdout for n in NAMES) and "MIT" in res.stdout


@pytest.mark.parametrize("name", NAMES)
def test_shipped_head_matches_its_sha256_and_has_its_licence_beside_it(name):
    e = get_entry(name)
    assert file_sha256(e.head_path) == e.head_sha256
    assert e.licence_path.parent == e.head_path.parent and "MIT License" in e.licence_path.read_text()
    w, b = read_head(e)
    assert w.shape == (1, 768 if name == "univfd" else 1024) and b.shape == (1,)


@pytest.mark.parametrize("name", ["univfd", "clipcues-synthclic"])
def test_zoo_model_is_the_head_on_the_papers_features(name):
    """The in-memory Model: the file's tensors as its head, sigmoid(w.x+b) as p_fake, threshold 0.5, and the
    backbone / preprocessing that make its features recorded as a trained model records them."""
    e = get_entry(name)
    m = load_model(f"zoo:{name}")
    layer = _head(e)
    head = m.estimator[-1]
    np.testing.assert_array_equal(head.coef_[0], layer.weight.detach().numpy()[0].astype(np.float64))
    np.testing.assert_array_equal(head.intercept_, layer.bias.detach().numpy().astype(np.float64))
    X = np.random.default_rng(0).normal(size=(5, layer.in_features)).astype(np.float32)
    want = torch.sigmoid(layer(torch.from_numpy(X))).detach().numpy()[:, 0]
    np.testing.assert_allclose(m.p_fake(X), want, atol=1e-6)
    assert m.threshold == 0.5 and m.name == f"zoo:{name}" and m.meta["zoo"]["citation"] == e.citation
    pre = m.meta["preprocessing"]
    if name == "univfd":  # no resize, centre crop 224, CLIP's mean/std; a projected 768-d embedding
        assert m.meta["backbone"] == "clip-vit-l14-univfd" and pre["resize_mode"] == "none" and pre["crop"] == 224
    else:  # resize 336 (bilinear) + crop 336, the pre-projection 1024-d class token
        assert m.meta["backbone"] == "clip-vit-l14-336-clipcues" and m.meta["input_dim"] == 1024
        assert (pre["resize"], pre["crop"], pre["interpolation"]) == (336, 336, "bilinear") and "resize_mode" not in pre
    assert pre["mean"] == list(CLIP_MEAN) and pre["std"] == list(CLIP_STD)
    # without the CLIP file here, the id is the published file's (OpenAI's URL carries its sha256)
    assert m.meta["weights_id"] == "sha256:" + e.weights_sha256[:16]
    assert [x.name for x in load_models(["zoo:univfd", f"zoo:{name}"])] == ["zoo:univfd", f"zoo:{name}"]


def test_import_head_writes_a_model_file_equal_to_the_zoo_entry(tmp_path):
    e = get_entry("univfd")
    out = tmp_path / "univfd.model"
    res = _cli().invoke(app, ["import-head", "univfd", str(e.head_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved, zoo = load_model(out), zoo_model("univfd")
    np.testing.assert_array_equal(saved.estimator[-1].coef_, zoo.estimator[-1].coef_)
    np.testing.assert_array_equal(saved.estimator[-1].intercept_, zoo.estimator[-1].intercept_)
    for k in ("backbone", "layers", "weights_id", "preprocessing", "threshold", "input_dim"):
        assert saved.meta[k] == zoo.meta[k], k
    X = np.random.default_rng(1).normal(size=(4, 768)).astype(np.float32)
    np.testing.assert_array_equal(saved.p_fake(X), zoo.p_fake(X))
    assert saved.name == "univfd" and saved.meta["zoo"]["name"] == "univfd"


def test_a_head_file_of_the_wrong_sha256_or_shape_is_refused_in_one_line(tmp_path):
    e = get_entry("univfd")
    wrong = get_entry("clipcues-cnnspot").head_path  # a real head, but not UnivFD's
    res = _cli().invoke(app, ["import-head", "univfd", str(wrong), "--out", str(tmp_path / "u.model")])
    assert res.exit_code == 2 and "sha256" in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "u.model").exists()
    # a file whose sha256 the entry names but whose shapes do not fit the backbone (768-d)
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(1, 512), "bias": torch.zeros(1)}, bad)
    with pytest.raises(DeepfakeError, match=r"weight \(1, 512\).*needs weight \(1, 768\)"):
        read_head(replace(e, head_sha256=file_sha256(bad)), bad, dim=768)
    with pytest.raises(DeepfakeError, match="Unknown zoo model 'nope'.*zoo:univfd"):
        load_model("zoo:nope")


def test_offline_without_clip_weights_predict_zoo_says_where_to_get_them_in_one_line(monkeypatch):
    monkeypatch.setenv("DEEPFAKE_OFFLINE", "1")
    imgs = EXAMPLES / "forensynths_biggan" / "fake"
    res = _cli().invoke(app, ["predict", "zoo:univfd", str(imgs), "--device", "cpu"])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "ViT-L-14.pt" in lines[0] and "openaipublic.azureedge.net" in lines[0]
    assert "DEEPFAKE_WEIGHTS_CLIP_VIT_L14" in lines[0] and "--weights" in lines[0]


# --- the papers' preprocessing and the pre-projection output (fast: no ViT-L) -----------------------------

def _keep_class_token(seen: dict):
    """A forward hook on ln_post that keeps the class token of its output (OpenAI's ViTs normalise every token,
    then take the first); it returns None, so the output goes on unchanged."""

    def hook(_module, _inputs, out):
        seen["cls"] = out[:, 0].detach().clone()

    return hook


def test_univfd_and_clipcues_preprocessing_are_the_papers_transforms():
    """clip-vit-l14-univfd: CenterCrop(224) at the image's own scale (a 32 px image is padded with black, as
    torchvision's CenterCrop does); clip-vit-l14-336-clipcues: Resize(336) (bilinear) + CenterCrop(336)."""
    from deepfake_cli.backbones import get_config
    from deepfake_cli.backbones._tower import SplitTransform, make_transform

    papers = {
        "clip-vit-l14-univfd": transforms.Compose([transforms.CenterCrop(224), transforms.ToTensor(),
                                                   transforms.Normalize(CLIP_MEAN, CLIP_STD)]),
        "clip-vit-l14-336-clipcues": transforms.Compose([transforms.Resize(336), transforms.CenterCrop(336),
                                                         transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)]),
    }
    imgs = [Image.open(p).convert("RGB") for p in _images({"forensynths_biggan": 2, "cifake_sd14": 2})]
    for name, ref in papers.items():
        cfg = get_config(name)
        ours, split = make_transform(cfg), SplitTransform(cfg)
        for im in imgs:
            want = ref(im)
            torch.testing.assert_close(ours(im), want, rtol=0, atol=0)
            torch.testing.assert_close(split.normalize(split.crop(im)), want, rtol=0, atol=0)
    small = make_transform(get_config("clip-vit-l14-univfd"))(imgs[-1])  # 32 px: black border around it
    black = (0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(small[:, 0, 0], black)


def test_pre_projection_output_is_the_class_token_after_ln_post():
    """clip-vit-b16-preproj (random weights, ViT-B to stay fast): the class token after ln_post, 768-d, whose
    product with the projection is clip-vit-b16's embedding; the name keeps their feature files apart."""
    from deepfake_cli.backbones import create_backbone
    from deepfake_cli.store.features import compatibility_key

    pre = create_backbone("clip-vit-b16-preproj", pretrained=False)
    proj = create_backbone("clip-vit-b16", pretrained=False)
    assert pre.dim == 768 and proj.dim == 512 and pre.model.proj is None
    x = torch.stack([pre.preprocess(Image.open(p).convert("RGB")) for p in _images({"forensynths_biggan": 2})])
    seen = {}
    handle = proj.model.ln_post.register_forward_hook(_keep_class_token(seen))
    want_proj = proj(x)
    handle.remove()
    got = pre(x)
    torch.testing.assert_close(got, seen["cls"], rtol=0, atol=0)
    torch.testing.assert_close(got @ proj.model.proj, want_proj, rtol=1e-5, atol=1e-5)
    keys = [compatibility_key({"backbone": b.name, "layers": b.layers, "weights_id": b.weights_id,
                               "preprocessing": b.preprocessing}) for b in (pre, proj)]
    assert keys[0] != keys[1]


# --- each entry against an independent computation (slow: ViT-L on a CPU) --------------------------------

def _random_openai_checkpoint(arch: str, path: Path):
    """A seeded random CLIP `arch` (QuickGELU, as OpenAI's), its image tower saved as OpenAI's file holds it
    ("visual.*", float16); the returned open_clip model has exactly those (rounded) weights."""
    import open_clip

    torch.manual_seed(1234)
    model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True).eval()
    sd = {k: v.half() for k, v in model.visual.state_dict().items()}
    model.visual.load_state_dict({k: v.float() for k, v in sd.items()})
    torch.save({f"visual.{k}": v for k, v in sd.items()}, path)
    return model


@pytest.fixture(scope="module")
def vit_l14(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "ViT-L-14.pt"
    return _random_openai_checkpoint("ViT-L-14", path), path


@pytest.fixture(scope="module")
def vit_l14_336(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip336") / "ViT-L-14-336px.pt"
    return _random_openai_checkpoint("ViT-L-14-336", path), path


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


def _zoo_p_fake(name: str, paths: list[Path]) -> np.ndarray:
    from deepfake_cli.stages.predict import predict

    res = predict(f"zoo:{name}", [str(p) for p in paths], device="cpu", workers=0, batch_size=len(paths))
    by_path = {r["path"]: r["p_fake"] for r in res.rows}
    assert len(by_path) == len(paths) and not res.skipped
    return np.array([by_path[str(p)] for p in paths])


@pytest.mark.slow  # reason: ViT-L/14 forward passes (predict and the reference) of 10 + 10 images on a CPU, ~1 min
def test_univfd_p_fake_equals_encode_image_and_the_head_written_here(vit_l14, monkeypatch):
    model, path = vit_l14
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_CLIP_VIT_L14", str(path))  # as a user points at OpenAI's file
    paths = _images({"forensynths_biggan": 4, "forensynths_stylegan": 4, "cifake_sd14": 2})  # 248 px and 32 px
    got = _zoo_p_fake("univfd", paths)
    # the paper's validate.py: no resize, CenterCrop(224), CLIP's mean/std; encode_image; Linear(768, 1); sigmoid
    tf = transforms.Compose([transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        logits = _head(get_entry("univfd"))(model.encode_image(x))[:, 0]
    want = torch.sigmoid(logits).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # random weights give small p (1e-4 .. 0.1): the log-odds, too, agree, so 1e-5 on p hides nothing
    np.testing.assert_allclose(_log_odds(got), logits.numpy(), rtol=0, atol=1e-4)
    assert np.ptp(logits.numpy()) > 1.0  # the images give different scores: the comparison says something
    m = load_model("zoo:univfd")
    assert m.meta["weights_id"].startswith("sha256:") and m.meta["notes"]  # not OpenAI's file: a note says so


def test_eval_scores_a_zoo_model_on_features_made_with_its_recipe(tmp_path):
    """eval takes a zoo name too: on a feature file of the entry's backbone recipe (here written directly, the
    weights being the published file's), its p_fake is the head's sigmoid, and a file of another recipe is
    refused naming what differs."""
    from deepfake_cli.stages.evaluate import evaluate
    from deepfake_cli.store.features import FeatureFileWriter

    m = load_model("zoo:univfd")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 768)).astype(np.float32)
    y = np.array([0, 1] * 4, dtype=np.int8)
    keys = ("backbone", "dim", "layers", "weights_id", "preprocessing")
    meta = {**{k: m.meta[k] for k in keys}, "transform": "none", "seed": 0, "roots": {"gen": str(tmp_path)}}
    with FeatureFileWriter(tmp_path / "f.h5", meta, 768) as w:
        w.append(X, y, np.array(["gen"] * 8), np.array([f"{i}.png" for i in range(8)]),
                 np.array([f"{i:064x}" for i in range(8)]))
        w.close()
    per_image: list[dict] = []
    rows = evaluate(["zoo:univfd"], [str(tmp_path / "f.h5")], per_image=per_image)
    assert [(r["model"], r["kind"], r["n"]) for r in rows] == [("zoo:univfd", "cross", 8)]
    with torch.no_grad():
        want = torch.sigmoid(_head(get_entry("univfd"))(torch.from_numpy(X))[:, 0]).numpy()
    np.testing.assert_allclose([r["p_fake"] for r in per_image], want, rtol=0, atol=1e-6)
    other = dict(meta, backbone="clip-vit-l14")
    with FeatureFileWriter(tmp_path / "g.h5", other, 768) as w:
        w.append(X, y, np.array(["gen"] * 8), np.array([f"{i}.png" for i in range(8)]),
                 np.array([f"{i:064x}" for i in range(8)]))
        w.close()
    with pytest.raises(DeepfakeError, match="clip-vit-l14-univfd"):
        evaluate(["zoo:univfd"], [str(tmp_path / "g.h5")])


@pytest.mark.slow  # reason: two ViT-L/14-336 forward passes of 2 images on a CPU, ~30 s
def test_clipcues_p_fake_equals_the_pre_projection_class_token_and_the_head_written_here(vit_l14_336, monkeypatch):
    model, path = vit_l14_336
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_CLIP_VIT_L14_336", str(path))
    paths = _images({"forensynths_biggan": 1, "cifake_sd14": 1})  # 248 px and 32 px: each resize path, once
    got = _zoo_p_fake("clipcues-synthclic", paths)
    # their feature extractor: Resize(336) (bilinear), CenterCrop(336), CLIP's mean/std; the class token after
    # ln_post, before the projection (1024-d); Linear(1024, 1); sigmoid
    tf = transforms.Compose([transforms.Resize(336), transforms.CenterCrop(336), transforms.ToTensor(),
                             transforms.Normalize(CLIP_MEAN, CLIP_STD)])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    seen = {}
    handle = model.visual.ln_post.register_forward_hook(_keep_class_token(seen))
    with torch.no_grad():
        projected = model.encode_image(x)
        feats = seen["cls"]
        torch.testing.assert_close(feats @ model.visual.proj, projected)  # it is the pre-projection output
        logits = _head(get_entry("clipcues-synthclic"))(feats)[:, 0]
    handle.remove()
    want = torch.sigmoid(logits).numpy()
    assert feats.shape == (len(paths), 1024)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_log_odds(got), logits.numpy(), rtol=0, atol=1e-4)
    assert np.ptp(logits.numpy()) > 0.1


def test_clip_vit_l14_336_agrees_with_its_open_clip_family_name():
    from deepfake_cli.backbones import get_config

    a, b = get_config("clip-vit-l14-336"), get_config("open_clip:ViT-L-14-336/openai")
    assert (a.dim, a.num_blocks, a.early, a.preprocessing) == (b.dim, b.num_blocks, b.early, b.preprocessing)
    assert (a.weights.hf_repo, a.weights.hf_files, a.weights.file_name) == \
        (b.weights.hf_repo, b.weights.hf_files, b.weights.file_name)
    # the variants share their tower's weights file and environment variable, and say what differs
    for name, dim in [("clip-vit-l14-336-preproj", 1024), ("clip-vit-l14-336-clipcues", 1024)]:
        c = get_config(name)
        assert c.weights == a.weights and c.dim == dim and c.num_blocks == 24
    assert get_config("clip-vit-l14-univfd").weights == get_config("clip-vit-l14").weights
