"""Evidence maps (`deepfake explain`, `deepfake_cli.explainers`), verified rather than assumed: on a generated set whose
fakes differ from the reals only by a small bright marker, a detector can only rest on the marker, so its map must
point there; the exact path's cells sum to the model's margin; p_fake is predict's; maps are in the file's own frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.markers import make_marker_set

runner = CliRunner()


def top_hits(m: np.ndarray, box) -> bool:
    """Does the top 10% of the map (over the pixels the model saw) overlap the marker box? The top 10%: the
    pixels above the 90th percentile (a plateau at the very top when none is above it: occlusion maps of a kNN
    take few values). A map with no positive evidence, or whose top covers more than a fifth of the image
    (ties), counts as a miss."""
    seen = np.isfinite(m)
    vals = m[seen]
    cut = np.quantile(vals, 0.9)
    top = seen & (m > cut)
    if not top.any():
        top = seen & (m >= cut)
    if vals.max() <= 0 or top.sum() > 0.2 * seen.sum():
        return False
    x0, y0, x1, y1 = box
    return bool(top[y0:y1, x0:x1].any())


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """40 real + 40 marked fake 112-px images, their effnet-lite0 features, and lda, knn3 and a linear SVM trained
    on all of them; 20 held-out marked fakes (another seed) to explain."""
    from deepfake_cli import api

    root = tmp_path_factory.mktemp("marked")
    make_marker_set(root / "train", 40, 40, seed=1, size=112)
    held = make_marker_set(root / "held", 0, 20, seed=2, size=112)
    api.extract([str(root / "train")], backbone="effnet-lite0", out=str(root / "f.h5"), device="cpu", workers=0)
    api.train(str(root / "f.h5"), classifier="lda,knn3,svm", param=["svm.kernel=linear"], out=str(root / "m") + "/",
              test_size=0.0)
    return {"root": root, "held": held, "models": root / "m"}


def _items(pairs):
    from deepfake_cli.data import ImageItem

    return [ImageItem(p, str(p), 1 if box else 0) for p, box in pairs]


def test_exact_map_finds_the_marker(marked):
    from deepfake_cli.explainers import explain_images

    run = explain_images(str(marked["models"] / "lda.model"), _items(marked["held"]), device="cpu")
    assert run.method == "cam" and run.exact and run.method_note.startswith("exact class activation")
    maps = list(run)
    assert len(maps) == 20 and not run.skipped
    hits = [top_hits(e.map, box) for e, (_, box) in zip(maps, marked["held"])]
    assert sum(hits) >= 16, hits  # at least 80% of the fakes
    assert all(e.method == "cam" and e.exact and e.map.dtype == np.float32 for e in maps)


def test_exact_cells_sum_to_the_margin_and_p_fake_is_predicts(marked, tmp_path):
    """Map sum == the model's margin (LDA and the linear SVM); p_fake == predict's; a non-square file keeps its
    own H x W with NaN bands where the centre crop cut it; the overlay PNG has the file's size."""
    from deepfake_cli.explainers import explain_images
    from deepfake_cli.explainers.head import model_margin
    from deepfake_cli.stages.explain import explain
    from deepfake_cli.stages.predict import predict
    from deepfake_cli.store.artifacts import load_model

    odd = make_marker_set(tmp_path / "odd", 1, 2, seed=5, size=(160, 96))
    items = _items(marked["held"][:3] + odd)
    for name in ("lda", "svm"):
        model = load_model(marked["models"] / f"{name}.model")
        run = explain_images(model, items, device="cpu")
        assert run.method == "cam", run.method_note
        got = list(run)
        want = {r["path"]: r["p_fake"] for r in predict(model, [str(p) for p, _ in marked["held"][:3] + odd],
                                                        device="cpu").rows}
        for e in got:
            assert abs(e.p_fake - want[e.rel]) < 1e-6, (name, e.rel)
            assert e.cells.shape == (7, 7)
            assert abs(e.cells.sum() - e.margin) <= 1e-4 * max(1.0, abs(e.margin)), (name, e.cells.sum(), e.margin)
        # the margin is the model's own: recomputed from the features it was given
        assert np.isfinite([e.margin for e in got]).all() and callable(model_margin)
        wide = got[-1]
        assert wide.map.shape == (96, 160)
        seen = np.isfinite(wide.map)
        # 96 x 160 -> 256 x 426, centre 224 x 224 kept: rows 6..89 and columns 38..121 seen, NaN bands around them
        assert seen[6:90, 38:122].all() and seen.sum() == 84 * 84
    res = explain(str(marked["models"] / "lda.model"), [str(odd[-1][0])], tmp_path / "out", device="cpu")
    row = res.rows[0]
    assert (row["width"], row["height"]) == (160, 96) and row["exact"] and row["method"] == "cam"
    assert Image.open(tmp_path / "out" / row["overlay"]).size == (160, 96)
    assert np.load(tmp_path / "out" / row["map"]).shape == (96, 160)


@pytest.mark.slow  # ~50 forward passes for each of 5 images (about 25 s on 2 busy cores): occlusion is the costly path
def test_occlusion_map_finds_the_marker_with_knn(marked):
    from deepfake_cli.explainers import explain_images

    held = marked["held"][:5]
    run = explain_images(str(marked["models"] / "knn3.model"), _items(held), device="cpu", occlusion_grid=4)
    assert run.method == "occlusion" and not run.exact
    assert "not linear" in run.method_note and "49 extra forward passes per image" in run.method_note
    maps = list(run)
    hits = [top_hits(e.map, box) for e, (_, box) in zip(maps, held)]
    assert sum(hits) >= 4, hits  # at least 80%
    assert all(e.cells is None and e.map.shape == (112, 112) for e in maps)


def test_occlusion_is_refused_past_max_images_before_any_work(marked, tmp_path):
    from deepfake_cli.errors import DeepfakeError
    from deepfake_cli.explainers import explain_images

    with pytest.raises(DeepfakeError, match=r"occlusion would run 20 images x 170 forward passes.*--max-images is 5"):
        explain_images(str(marked["models"] / "knn3.model"), _items(marked["held"]), max_images=5)
    with pytest.raises(DeepfakeError, match="method cam cannot explain model knn3: classifier knn3 is not linear"):
        explain_images(str(marked["models"] / "knn3.model"), _items(marked["held"][:1]), method="cam")


def test_predict_explain_refuses_a_large_occlusion_run_naming_explain(marked, tmp_path):
    """predict has no --max-images: its refusal says how to run the maps anyway, before anything is scored."""
    import deepfake_cli as dfc
    from deepfake_cli.errors import DeepfakeError

    with pytest.raises(DeepfakeError, match=r"occlusion would run 80 images .*--explain maps at most 50 images by "
                                            r"occlusion: run `deepfake explain MODEL IMAGES --out DIR --max-images N`"):
        dfc.predict(marked["models"] / "knn3.model", marked["root"] / "train", explain=tmp_path / "maps",
                    out=tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "maps" / "index.csv").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DeepfakeError, match=r"^--explain .*other is a folder holding other files"):
        dfc.predict(marked["models"] / "lda.model", marked["root"] / "held", explain=tmp_path / "other")


def test_cli_writes_maps_and_index_skips_corrupt_and_guards(marked, tmp_path):
    from deepfake_cli.cli import app

    src = tmp_path / "in"
    (src / "fake").mkdir(parents=True)
    for p, _ in marked["held"][:3]:
        (src / "fake" / p.name).write_bytes(p.read_bytes())
    (src / "fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    model = str(marked["models"] / "lda.model")
    out = tmp_path / "maps"
    res = runner.invoke(app, ["explain", model, str(src), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "wrote 3 map(s)" in res.stdout and "exact" in res.stdout
    assert "skipped" in res.stderr and "broken.png" in res.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["method"] == "cam" and index["exact"] is True and "exact class activation" in index["method_note"]
    assert [s["path"].endswith("broken.png") for s in index["skipped"]] == [True]
    lines = (out / "index.csv").read_text().splitlines()
    assert lines[0] == "path,model,p_fake,label,method,exact,overlay,map,width,height,seconds" and len(lines) == 4
    for row in index["rows"]:
        assert (out / row["overlay"]).is_file() and (out / row["map"]).is_file()
        assert Image.open(out / row["overlay"]).size == (row["width"], row["height"]) == (112, 112)
    # --json: one document on stdout; -q: no method line on stderr; the same folder again is ours to rewrite
    res = runner.invoke(app, ["explain", model, str(src / "fake" / "fake_000.png"), "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["method"] == "cam" and doc["n_images"] == 1 and doc["rows"][0]["path"].endswith("fake_000.png")
    assert "method:" not in res.stderr
    assert sorted(f.name for f in out.iterdir()) == ["fake_000.npy", "fake_000.png", "index.csv", "index.json"]
    # occlusion past --max-images: one line, exit 2, nothing written
    res = runner.invoke(app, ["explain", str(marked["models"] / "knn3.model"), str(src), "--out", str(tmp_path / "o"),
                              "--max-images", "2"])
    assert res.exit_code == 2 and not (tmp_path / "o").exists()
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: occlusion would run 4 images"), res.stderr
    # never into an input, nor over a folder of other files
    res = runner.invoke(app, ["explain", model, str(src), "--out", str(src / "maps")])
    assert res.exit_code == 2 and "never writes over or into its inputs" in res.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["explain", model, str(src), "--out", str(tmp_path / "other")])
    assert res.exit_code == 2 and "holding other files" in res.stderr


def test_tokens_path_on_a_random_weights_vit(tmp_path):
    """A ViT with random weights (timm's 0.3M-parameter test_vit): the patch-token projection, stated as an
    approximation, one value per patch, drawn in the file's own frame."""
    from deepfake_cli import api
    from deepfake_cli.explainers import explain_images
    from deepfake_cli.inference.memory import collect_images

    make_marker_set(tmp_path / "set", 8, 8, seed=3, size=(96, 80))
    api.extract([str(tmp_path / "set")], backbone="timm:test_vit", out=str(tmp_path / "f.h5"), device="cpu",
                workers=0, random_weights=True)
    api.train(str(tmp_path / "f.h5"), classifier="lda", out=str(tmp_path / "lda.model"), test_size=0.0)
    items, _ = collect_images([str(tmp_path / "set" / "fake")])
    run = explain_images(str(tmp_path / "lda.model"), items[:2], device="cpu")
    assert run.method == "tokens" and run.exact is False and run.method_note.startswith("approximation")
    maps = list(run)
    assert [e.map.shape for e in maps] == [(80, 96)] * 2 and all(e.cells.shape == (10, 10) for e in maps)
    assert all(e.method == "tokens" and not e.exact and np.isfinite(e.map).any() for e in maps)


@pytest.mark.parametrize("mode", ["shortest", "squash", "longest", "none"])
@pytest.mark.parametrize("size", [(160, 96), (96, 200), (600, 410), (150, 120)])
def test_frame_mapping_undoes_the_backbones_resize_and_crop(mode, size):
    """Coordinate images through the backbone's own geometry (nearest resampling), read back by `to_image_frame`:
    every pixel the model saw gets its own coordinates back, within the resampling's pixel."""
    from dataclasses import replace

    from deepfake_cli.backbones import get_config
    from deepfake_cli.backbones._tower import SplitTransform
    from deepfake_cli.explainers.frame import to_image_frame

    cfg = replace(get_config("effnet-lite0"), interpolation="nearest", resize_mode=mode)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    pre = dict(cfg.preprocessing)
    for want in (xx, yy):  # a coordinate in 16 bits: red = low byte, green = high byte
        img = np.stack([want % 256, want // 256, np.zeros_like(want)], axis=-1).astype(np.uint8)
        frame = SplitTransform(cfg).crop(Image.fromarray(img)).numpy().astype(np.float32)
        back = to_image_frame(frame[0] + 256 * frame[1], w, h, pre)
        ok = np.isfinite(back)
        assert ok.mean() > 0.15  # at least the 224 x 224 crop
        assert np.abs(back[ok] - want[ok]).max() <= 1.01
    if mode == "none" and max(size) <= 224:  # no resize: the whole image lies inside the 224 frame (padded)
        assert ok.all()
