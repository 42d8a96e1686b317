"""Work per image is bounded whatever its shape (issue 16, items 1 and 12).

Item 1: a thin image (a 100-byte 20000x1 PNG) used to pass the pixel-count bomb rule and then be resized
to 256 x 5,120,000 pixels (6 GB). Now the header's aspect ratio is limited (`MAX_ASPECT`) and every resize
has a pixel budget (`MAX_RESIZED_PIXELS`): such images are skipped with the limit named, from folders, tar
shards, lists and the Python API alike, and the peak memory of `extract` / `predict` stays that of the
same run without them. Item 12: inputs of the Python API that are no image are one `DeepfakeError`, and
encoded image bytes are decoded as their file is.

Everything that could allocate gigabytes on a regression runs under an address-space limit: in a
subprocess, or in this process for the duration of one `with address_space_limit():` block, so a
regression fails the test (a MemoryError, a killed child) instead of taking the machine down.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepfake_cli as dfc
from deepfake_cli.backbones.base import BackboneConfig, SplitTransform, make_transform
from deepfake_cli.data import UnreadableImage, check_pixels, read_image
from deepfake_cli.data.decode import MAX_ASPECT, MAX_RESIZED_PIXELS, check_resize
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.extract import extract
from deepfake_cli.stages.predict import predict
from deepfake_cli.stages.train import train
from tests.conftest import REPO, copy_subset, example_set
from tests.imagegen import png_1bit, write_shard

THIN = {"wide.png": (20_000, 1), "tall.png": (1, 20_000), "wider.png": (200_000, 1)}  # (width, height)
GOAL_BYTES = 300 * 2**20  # the goal: peak RSS within 300 MB of the run without the thin images
CHILD_LIMIT = 5 * 2**30  # address space of each CLI run: torch alone maps ~3.3 GB; a 20000x1 image took 6 GB


def _ratio_reason(width: int, height: int) -> str:
    ratio = max(width, height) // min(width, height)
    return f"aspect ratio {ratio}:1 over the limit {MAX_ASPECT}:1"


def _vm_size() -> int:
    kb = re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)
    return int(kb) * 1024


@contextlib.contextmanager
def address_space_limit(extra: int = 2 * 2**30):
    """This process may map at most `extra` bytes more than now inside the block (a regression's
    gigabyte allocation fails with MemoryError, caught or not, instead of swapping the machine)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + extra
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _limit_child():
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_LIMIT, CHILD_LIMIT))


# the wrapper runs one command and reports its peak RSS (ru_maxrss of its waited-for children, in KB)
PEAK_RSS = ("import resource, subprocess, sys\n"
            "rc = subprocess.call(sys.argv[1:])\n"
            "print('PEAK_RSS_KB', rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n")


def _start_measured(*args) -> subprocess.Popen:
    """`deepfake ARGS` in a fresh interpreter under CHILD_LIMIT, wrapped to report its peak RSS."""
    cmd = [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "deepfake_cli", *map(str, args)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), preexec_fn=_limit_child)


def _finish_measured(proc: subprocess.Popen) -> tuple[int, str, str]:
    """(peak RSS in bytes, stdout, stderr); a run that was killed or failed fails the test."""
    out, err = proc.communicate(timeout=600)
    m = re.search(r"PEAK_RSS_KB (-?\d+) (\d+)", err)
    assert proc.returncode == 0 and m and m.group(1) == "0", (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    return int(m.group(2)) * 1024, out, err


def _write_thin(folder: Path) -> None:
    for name, (w, h) in THIN.items():
        (folder / name).write_bytes(png_1bit(w, h))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A labelled folder (2 real + 2 fake photos), the same plus the thin images in fake/, a tar shard
    and a .txt list holding both kinds, and a lowlevel LDA model."""
    d = tmp_path_factory.mktemp("budget")
    plain = copy_subset(example_set("cifake_sd14"), d / "plain", 2)
    mixed = copy_subset(example_set("cifake_sd14"), d / "mixed", 2)
    _write_thin(mixed / "fake")
    photos = sorted((mixed / "real").iterdir()) + sorted(p for p in (mixed / "fake").iterdir() if p.name not in THIN)
    thin = [mixed / "fake" / n for n in THIN]
    members = write_shard(d / "shard.tar", photos + thin, [0, 0, 1, 1] + [1] * len(thin))
    (mixed / "list.txt").write_text("".join(f"{p.relative_to(mixed)}\n" for p in photos + thin))
    feats = d / "model_feats.h5"
    extract([str(copy_subset(example_set("cifake_sd14"), d / "train", 6))], "lowlevel", str(feats), workers=0,
            device="cpu")
    model = train(str(feats), "lda", str(d / "lda.model"), test_size=0.25)[0].path
    return {"plain": plain, "mixed": mixed, "tar": d / "shard.tar", "list": mixed / "list.txt", "model": model,
            "members": dict(zip(members[len(photos):], THIN))}  # tar member name -> thin image


# ------------------------------------------------------------------------------------- the size rule

def test_aspect_ratio_limit_on_the_header():
    check_pixels(MAX_ASPECT, 1)
    check_pixels(1, MAX_ASPECT)
    check_pixels(500 * MAX_ASPECT, 500)
    for w, h in ((MAX_ASPECT + 1, 1), (1, MAX_ASPECT + 1), (500 * MAX_ASPECT + 1, 500), (200_000, 1)):
        with pytest.raises(UnreadableImage, match=f"over the limit {MAX_ASPECT}:1"):
            check_pixels(w, h)
    with pytest.raises(UnreadableImage, match=re.escape("aspect ratio 20000:1 over the limit 50:1 (1x20000")):
        check_pixels(1, 20_000)
    with pytest.raises(UnreadableImage, match="empty image"):
        check_pixels(0, 5)
    check_resize(10, 10, MAX_RESIZED_PIXELS, 1)
    with pytest.raises(UnreadableImage, match=f"over the limit of {MAX_RESIZED_PIXELS} pixels"):
        check_resize(10, 10, MAX_RESIZED_PIXELS + 1, 1)


@pytest.mark.parametrize("name", THIN)
def test_thin_file_is_refused_from_its_header(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(png_1bit(*THIN[name]))
    assert path.stat().st_size < 200  # a tiny file
    with address_space_limit(), pytest.raises(UnreadableImage, match=_ratio_reason(*THIN[name])):
        read_image(path)


@pytest.mark.parametrize("mode", ["shortest", "squash", "longest"])
def test_every_backbone_resize_keeps_the_budget(mode):
    """A backbone resizing the shorter side to 4096 would make 4096 x 204,800 pixels of a 50:1 image."""
    cfg = BackboneConfig(name="big", dim=1, description="", input_size=64, resize=4096, resize_mode=mode)
    img = Image.new("RGB", (50 * 20, 20))
    with address_space_limit():
        if mode != "shortest":  # squash and longest make at most 4096 x 4096: within the budget
            assert make_transform(cfg)(img).shape == (3, 64, 64)
            assert SplitTransform(cfg).crop(img).shape == (3, 64, 64)
            return
        with pytest.raises(UnreadableImage, match="resizing 1000x20 to 204800x4096 pixels is over the limit"):
            make_transform(cfg)(img)
        with pytest.raises(UnreadableImage, match="over the limit"):
            SplitTransform(cfg).crop(img)


# ------------------------------------------------- (a) skipped with the reason: folder, tar shard, list

def _thin_reasons(skipped: list[dict], members: dict[str, str]) -> dict[str, str]:
    """{thin image name: reason} of the skipped entries that are thin images (or tar members made of them)."""
    names = {Path(s["path"]).name: s["reason"] for s in skipped}
    return {members.get(n, n): r for n, r in names.items() if members.get(n, n) in THIN}


@pytest.mark.parametrize("source", ["mixed", "tar", "list"])
def test_thin_images_are_skipped_with_the_limit_by_extract_and_predict(data, source, tmp_path):
    with address_space_limit():
        s = extract([str(data[source])], "lowlevel", str(tmp_path / "f.h5"), workers=0, device="cpu")
        res = predict(str(data["model"]), [str(data[source])], device="cpu", workers=0)
    audited = dfc.audit([str(data[source])], folds=2)[0]  # header only: audit skips what extract skips
    assert s.n_written == 4 and len(res.rows) == 4 and audited.n == 4
    for skipped in (s.skipped, dfc.read_features(tmp_path / "f.h5").meta["skipped"], res.skipped, audited.skipped):
        reasons = _thin_reasons(skipped, data["members"])
        assert set(reasons) == set(THIN), skipped
        for name, reason in reasons.items():
            assert _ratio_reason(*THIN[name]) in reason, reason


def test_resize_transforms_and_align_keep_the_budget(tmp_path):
    """`resize:S` and `--align S:Q` resize the shorter side too: a 50:1 image at S = 2000 would be 200 M
    pixels; it is skipped naming the budget, the other images are read."""
    root = copy_subset(example_set("cifake_sd14"), tmp_path / "ds", 1)
    Image.new("RGB", (MAX_ASPECT * 10, 10), "gray").save(root / "fake" / "banner.png")
    for i, opts in enumerate(({"transform": "resize:2000"}, {"align": "2000:90"})):
        with address_space_limit():
            s = extract([str(root)], "lowlevel", str(tmp_path / f"{i}.h5"), workers=0, device="cpu", **opts)
        assert s.n_written == 2, (opts, s.skipped)
        assert [r["path"] for r in s.skipped] == ["fake/banner.png"], s.skipped
        assert s.skipped[0]["reason"] == (f"resizing 500x10 to 100000x2000 pixels is over the limit of "
                                          f"{MAX_RESIZED_PIXELS} pixels per resized image")


def test_finetune_skips_what_its_resize_would_put_over_the_budget(tmp_path):
    """Found when the images are scanned, not by a DataLoader worker in the middle of an epoch."""
    from deepfake_cli.stages.finetune import finetune

    root = copy_subset(example_set("cifake_sd14"), tmp_path / "ds", 3)
    Image.new("RGB", (60, 3), "gray").save(root / "fake" / "strip.png")  # 20:1, then 2200 x 44,000 pixels
    with address_space_limit():
        s = finetune([str(root)], tmp_path / "m.model", arch="resnet18", pretrained=False, epochs=1, size=32,
                     augment="resize:2200", batch_size=4, workers=0, device="cpu")
    assert [r["path"] for r in s.skipped] == ["fake/strip.png"], s.skipped
    assert "over the limit" in s.skipped[0]["reason"]


# ----------------------------------------------- (b) the goal: peak RSS of extract / predict, fresh processes

@pytest.mark.slow  # fresh processes, each importing torch
def test_peak_memory_of_extract_and_predict_with_thin_images(data, tmp_path):
    common = ["--backbone", "lowlevel", "--workers", "0", "--device", "cpu", "-q"]
    runs = {}
    for cmd in ("extract", "predict"):
        if cmd == "extract":
            args = {k: ["extract", data[k], *common, "--out", tmp_path / f"{k}.h5"] for k in ("plain", "mixed")}
        else:
            args = {k: ["predict", data["model"], data[k], "--workers", "0", "--device", "cpu"]
                    for k in ("plain", "mixed")}
        procs = {k: _start_measured(*a) for k, a in args.items()}  # the two side by side
        runs[cmd] = {k: _finish_measured(p) for k, p in procs.items()}
    for cmd, run in runs.items():
        (base, _, _), (peak, _, err) = run["plain"], run["mixed"]
        assert peak - base < GOAL_BYTES, f"{cmd}: {peak >> 20} MB with the thin images, {base >> 20} MB without"
        for name, (w, h) in THIN.items():
            assert re.search(rf"{name}: {re.escape(_ratio_reason(w, h))}", err), err
    assert len([ln for ln in runs["predict"]["mixed"][1].splitlines() if ln.strip()]) == 1 + 4  # header + rows


# --------------------------------------------------- (c) the Python API: arrays, tensors, PIL images, bytes

API_SCRIPT = r"""
import json, resource, sys
import numpy as np, torch
from PIL import Image
import deepfake_cli as dfc

model, thin_file = sys.argv[1], sys.argv[2]
det = dfc.load_model(model, device="cpu", workers=0)
ok = np.full((32, 32, 3), 128, np.uint8)
det.predict_proba(ok)  # the backbone built, everything imported
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
images = [np.zeros((1, 200000, 3), np.uint8), np.zeros((200000, 1), np.float32), np.zeros((2, 1, 20000, 3), np.uint8),
          torch.zeros(3, 1, 20000), torch.zeros(1, 3, 20000, 1, dtype=torch.float16), Image.new("RGB", (20000, 1)),
          Image.open(thin_file), open(thin_file, "rb").read(), ok]
s = det.score(images)
proba = det.predict_proba(images)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
resize = dfc.load_model(model, device="cpu", workers=0, transform="resize:8192").score(np.zeros((10, 500, 3), np.uint8))
print("RESULT " + json.dumps({"names": s.names, "p_fake": [None if np.isnan(p) else p for p in s.p_fake.tolist()],
                              "skipped": s.skipped, "proba_shape": list(proba.shape), "grew_kb": after - before,
                              "resize_skipped": resize.skipped}))
"""


def test_api_thin_arrays_tensors_and_pil_images_are_skipped_without_large_memory(data, tmp_path):
    thin = tmp_path / "wider.png"
    thin.write_bytes(png_1bit(200_000, 1))
    res = subprocess.run([sys.executable, "-c", API_SCRIPT, str(data["model"]), str(thin)], cwd=REPO,
                         capture_output=True, text=True, timeout=600, preexec_fn=_limit_child,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.split("RESULT ", 1)[1])
    names = ["<image 0>", "<image 1>", "<image 2.0>", "<image 2.1>", "<image 3>", "<image 4.0>", "<image 5>",
             "<image 6>", "<image 7>", "<image 8>"]
    assert out["names"] == names and out["proba_shape"] == [10, 2]
    assert out["p_fake"][:-1] == [None] * 9 and out["p_fake"][-1] is not None  # each keeps its place
    reasons = {s["path"]: s["reason"] for s in out["skipped"]}
    assert sorted(reasons) == sorted(names[:-1]), out["skipped"]
    assert reasons["<image 0>"] == "aspect ratio 200000:1 over the limit 50:1 (200000x1 pixels)"
    assert all(f"over the limit {MAX_ASPECT}:1" in r for r in reasons.values()), reasons
    assert out["grew_kb"] * 1024 < GOAL_BYTES, out["grew_kb"]
    assert len(out["resize_skipped"]) == 1 and "per resized image" in out["resize_skipped"][0]["reason"]


# ------------------------------------------------------ item 12: what is no image is one DeepfakeError

@pytest.fixture(scope="module")
def detector(data):
    return dfc.load_model(data["model"], device="cpu", workers=0)


def _photo() -> Path:
    return sorted((example_set("cifake_sd14") / "fake").iterdir())[0]


@pytest.mark.parametrize("images, says", [
    (None, r"No images given \(None\); pass paths, folders, encoded image bytes, PIL images"),
    (np.zeros((8, 8, 3), dtype=bool), "image 0 has dtype bool; pass uint8 .0-255. or float in .0, 1."),
    ([np.zeros((8, 8, 3), np.uint8), torch.zeros(3, 8, 8, dtype=torch.bool)], "image 1 has dtype bool"),
    (np.zeros((8, 8), np.int64), "image 0 has dtype int64"),
    (np.zeros((0, 0, 3), np.uint8), r"image 0 is empty \(0x0 pixels\)"),
    (np.zeros((2, 0, 5, 3), np.uint8), r"image 0\[0\] is empty \(5x0 pixels\)"),
    (torch.zeros(3, 0, 0), r"image 0 is empty \(0x0 pixels\)"),
    ([Image.new("RGB", (0, 0))], r"image 0 is empty \(0x0 pixels\)"),
    ([1.5], "image 0 is a float; pass paths"),
])
def test_api_inputs_that_are_no_image_are_one_error(detector, images, says):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning on the way
        for call in (detector.predict_proba, detector.predict, detector.score):
            with pytest.raises(DeepfakeError, match=says):
                call(images)
        with pytest.raises(DeepfakeError, match=says):
            dfc.embed(images, backbone="lowlevel", device="cpu", workers=0)


def test_closed_pil_images_are_one_error(detector):
    img = Image.open(_photo())
    img.load()
    img.close()
    with pytest.raises(DeepfakeError, match="image 0 is a closed PIL image"):
        detector.predict_proba(img)
    with Image.open(_photo()) as lazy:  # used after its `with` block, never loaded
        pass
    with pytest.raises(DeepfakeError, match="image 1 is a closed PIL image"):
        detector.predict_proba([np.zeros((8, 8, 3), np.uint8), lazy])


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_encoded_image_bytes_are_decoded_as_their_file(detector, wrap):
    photo = _photo()
    s = detector.score([str(photo), wrap(photo.read_bytes())])
    assert s.names == [str(photo), "<image 1>"] and not s.skipped
    assert s.p_fake[0] == s.p_fake[1]
    X, hashes = dfc.embed([str(photo), wrap(photo.read_bytes())], backbone="lowlevel", device="cpu", workers=0)
    np.testing.assert_array_equal(X[0], X[1])
    assert hashes[0] == hashes[1]  # the file's sha256, not a pixel hash


def test_undecodable_or_unsafe_bytes_are_skipped_as_their_file(detector, tmp_path):
    photo = _photo().read_bytes()
    images = [photo, b"not an image", photo[: len(photo) // 2], b"", png_1bit(20_000, 1),
              png_1bit(30_000, 30_000, rows=0)]
    with address_space_limit():
        s = detector.score(images)
    assert np.isfinite(s.p_fake[0]) and np.isnan(s.p_fake[1:]).all()
    reasons = {r["path"]: r["reason"] for r in s.skipped}
    assert reasons["<image 1>"] == "not an image" and reasons["<image 3>"] == "empty file"
    assert reasons["<image 2>"].startswith("truncated or corrupt")
    assert reasons["<image 4>"].startswith("aspect ratio 20000:1") and "decompression bomb" in reasons["<image 5>"]
    # the file-level API takes encoded bytes too
    res = dfc.predict(detector.path, photo, device="cpu", workers=0)
    assert [r["path"] for r in res.rows] == ["<image 0>"]
