"""Extraction speed against the bare model forward, and peak memory against the image count.

    python benchmarks/bench_extract.py                       # lowlevel + effnet-lite0 on this machine
    python benchmarks/bench_extract.py --backbones clip-vit-b16 --random-weights --device cuda \
        --n 4000 --batch-size 256                            # a GPU machine

For each backbone it extracts N real images from ../shared/data through the full pipeline (read,
hash, decode, preprocess, forward, write) and, in the same process, times the bare forward pass on
one preprocessed batch repeated as often; the ratio says how much the pipeline around the model
costs. Peak memory is measured in fresh subprocesses for two image counts: it must not grow with
the count, since features stream to shards batch by batch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("DEEPFAKE_SHARED_DATA", REPO.parent / "shared" / "data"))


def image_pool() -> list[Path]:
    """Every shared image, interleaved across sets so any prefix mixes tiny CIFAKE JPEGs, 248 px
    PNGs and large ImageNet JPEGs (decoding cost differs a lot between them)."""
    per_set = []
    for s in ("cifake_sd14", "forensynths_biggan", "forensynths_stylegan", "forensynths_gaugan",
              "forensynths_cyclegan", "imagenet_vs_ldm"):
        files = []
        for cls in ("real", "fake"):
            d = SHARED / s / cls
            if d.is_dir():
                files.extend(sorted(d.iterdir()))
        if files:
            per_set.append(files)
    if not per_set:
        sys.exit(f"no images under {SHARED}")
    pool = []
    for i in range(max(len(f) for f in per_set)):
        pool.extend(f[i] for f in per_set if i < len(f))
    return pool


def make_dataset(root: Path, n: int) -> Path:
    """A labelled folder of exactly n real images (links to the shared files, cycled if needed)."""
    pool = image_pool()
    for cls in ("real", "fake"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = pool[i % len(pool)]
        cls = "real" if i % 2 == 0 else "fake"
        dst = root / cls / f"{i:06d}{src.suffix}"
        if not dst.exists():
            os.symlink(src, dst)
    return root


def bench_speed(name, n, batch_size, device, workers, random_weights, tmp: Path) -> dict:
    from deepfake_cli.backbones import create_backbone
    from deepfake_cli.data import read_image
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.inference.device import resolve_device
    from deepfake_cli.inference.mapper import to_device

    ds = make_dataset(tmp / f"speed_{n}", n)
    out = tmp / f"{name}.h5"
    t0 = time.perf_counter()
    s = extract([str(ds)], backbone=name, out=str(out), batch_size=batch_size, device=device, workers=workers,
                pretrained=not random_weights, overwrite=True)
    wall = time.perf_counter() - t0
    # Bare forward on one preprocessed batch, same model build, same process, same batch count.
    dev = resolve_device(device)
    model = create_backbone(name, device=str(dev), pretrained=not random_weights)
    imgs = [model.preprocess(read_image(p)[0]) for p in sorted((ds / "real").iterdir())[:batch_size]]
    while len(imgs) < batch_size:
        imgs += imgs[: batch_size - len(imgs)]
    from torch.utils.data._utils.collate import default_collate
    batch = default_collate(imgs)
    x = to_device(batch, dev, False)
    n_batches = max(1, n // batch_size)
    with torch.inference_mode():
        def fwd():
            if dev.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    return model(x)
            return model(x)
        fwd()  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        for _ in range(n_batches):
            y = fwd()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_fwd = time.perf_counter() - t1
    del y
    fwd_ips = n_batches * batch_size / t_fwd
    return {"backbone": name, "device": str(dev), "n": n, "batch_size": batch_size, "workers": workers,
            "pipeline_img_s": round(n / wall, 1), "forward_img_s": round(fwd_ips, 1),
            "pipeline_over_forward": round((n / wall) / fwd_ips, 3),
            "read_s": round(s.seconds["read"], 2), "model_s": round(s.seconds["model"], 2),
            "write_s": round(s.seconds["write"], 2), "wall_s": round(wall, 2)}


def peak_memory(name, n, batch_size, device, random_weights, tmp: Path) -> float:
    """Peak RSS (MiB) of a fresh `deepfake extract` process over n images."""
    ds = make_dataset(tmp / f"mem_{n}", n)
    cmd = [sys.executable, "-m", "deepfake_cli", "extract", str(ds), "--backbone", name, "--out",
           str(tmp / f"mem_{name}_{n}.h5"), "--batch-size", str(batch_size), "--device", device, "-q",
           "--overwrite", "--workers", "0"]
    if random_weights:
        cmd.append("--random-weights")
    # A fresh parent per count, so ru_maxrss of its children is this run's peak alone.
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.exit(r.returncode)")
    res = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=REPO, capture_output=True, text=True)
    if res.returncode:
        sys.exit(res.stderr)
    return int(res.stdout.strip().splitlines()[-1]) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="lowlevel,effnet-lite0")
    ap.add_argument("--n", type=int, default=256, help="images per speed run")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=-1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--memory-counts", default="500,2000")
    ap.add_argument("--memory-backbones", default="lowlevel,effnet-lite0")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per result")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="deepfake-bench-"))
    try:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}")
        print(f"{'backbone':<16}{'device':<8}{'n':>6}{'batch':>7}{'pipeline img/s':>16}{'forward img/s':>15}"
              f"{'ratio':>7}   read/model/write s")
        for name in args.backbones.split(","):
            r = bench_speed(name, args.n, args.batch_size, args.device, args.workers, args.random_weights, tmp)
            print(f"{r['backbone']:<16}{r['device']:<8}{r['n']:>6}{r['batch_size']:>7}{r['pipeline_img_s']:>16}"
                  f"{r['forward_img_s']:>15}{r['pipeline_over_forward']:>7}   "
                  f"{r['read_s']}/{r['model_s']}/{r['write_s']}")
            if args.json:
                print(json.dumps(r))
        counts = [int(c) for c in args.memory_counts.split(",") if c]
        for name in (args.memory_backbones.split(",") if counts else []):
            peaks = {}
            for c in sorted(counts):
                peaks[c] = peak_memory(name, c, args.batch_size, args.device, args.random_weights, tmp)
                print(f"peak RSS, {name}, {c} images: {peaks[c]:.0f} MiB")
            lo, hi = min(counts), max(counts)
            print(f"peak RSS ratio, {name}, {hi} vs {lo} images: {peaks[hi] / peaks[lo]:.3f} (1.0 = flat)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
