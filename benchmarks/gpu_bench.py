"""GPU throughput of extraction, in one go: CLIP ViT-B/16 (random weights in the real layout) on N >= 5,000
JPEGs generated here, the local engine and the ray engine (one GPU actor) against the bare forward pass
measured in the same run, with where the time goes (decode, transfer, forward).

    python benchmarks/gpu_bench.py                                   # a GPU machine: every row, a few minutes
    python benchmarks/gpu_bench.py --device cpu --n 64 --batch-size 16   # a smoke test anywhere
    python benchmarks/gpu_bench.py --json $OUT/gpu_bench.json        # also keep the rows

Needs torch/torchvision (with CUDA for the GPU rows), open_clip_torch and pillow; the ray row needs
`pip install 'deepfake-cli[ray]'` and is reported as skipped without it. Nothing is downloaded.

Rows:
  decode      our reader on one CPU core: read + sha256 + decode + resize/crop to uint8 (img/s per core;
              times the reader processes = what the CPUs can feed)
  transfer    a pinned uint8 batch host -> GPU (the engines ship uint8: a quarter of float32's bytes)
  forward     normalise + forward (fp16 autocast on CUDA) of a batch already on the device: the ceiling
  local       `extract` with the local engine (DataLoader with --workers reader processes, pinned memory)
  ray         `extract` with the ray engine (--workers read tasks, one model actor with one GPU)
  gpu-decode  nvjpeg (`torchvision.io.decode_jpeg(device="cuda")`) + resize on the GPU + forward: what
              taking decoding off the CPUs entirely would give (not the product path: GPU resizing
              differs from PIL's in the last bits, so its features are not the extract file's)
The goal on one H100 is >= 3,000 img/s for the local and ray rows, i.e. decoding off the critical path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _one_jpeg(args) -> None:
    path, seed, size = args
    from PIL import Image

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # a smooth field plus sensor-like noise
    img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)


def generate(root: Path, n: int, size: int) -> Path:
    """n JPEGs of size x size, half in real/, half in fake/ (labels only matter to the file's counts)."""
    jobs = []
    for i in range(n):
        d = root / ("real" if i % 2 == 0 else "fake")
        d.mkdir(parents=True, exist_ok=True)
        jobs.append((d / f"{i:06d}.jpg", i, size))
    with Pool(os.cpu_count()) as pool:
        pool.map(_one_jpeg, jobs, chunksize=64)
    return root


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_decode(files: list[Path], mapper, k: int) -> dict:
    from deepfake_cli.data import ImageItem
    from deepfake_cli.inference.reader import ImageReader, ReaderConfig
    from deepfake_cli.data.transforms import Transform

    reader = ImageReader(mapper.reader_preprocess, ReaderConfig(Transform("none", 0)))
    sample = files[:k]
    t0 = time.perf_counter()
    for i, f in enumerate(sample):
        assert reader.read(i, ImageItem(f, f.name, 0)).inputs is not None
    dt = time.perf_counter() - t0
    return {"row": "decode", "img_s": len(sample) / dt, "note": "one CPU core: read + sha256 + decode + crop"}


def bench_transfer(mapper, batch_size: int, reps: int) -> dict:
    import torch

    size = mapper.backbone.preprocessing["input_size"]
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    if mapper.device.type != "cuda":
        return {"row": "transfer", "img_s": None, "note": "no GPU: nothing to transfer"}
    x = x.pin_memory()
    x.to(mapper.device, non_blocking=True)
    _sync(mapper.device)
    t0 = time.perf_counter()
    for _ in range(reps):
        x.to(mapper.device, non_blocking=True)
    _sync(mapper.device)
    dt = time.perf_counter() - t0
    gbs = reps * x.numel() / dt / 1e9
    return {"row": "transfer", "img_s": reps * batch_size / dt, "note": f"pinned uint8, {gbs:.1f} GB/s"}


def bench_forward(mapper, batch_size: int, reps: int) -> dict:
    import torch

    size = mapper.backbone.preprocessing["input_size"]
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, device=mapper.device)
    with torch.inference_mode():
        def step():
            y = mapper.split.normalize(x)
            if mapper.cuda:
                with torch.autocast("cuda", dtype=torch.float16):
                    return mapper.backbone(y)
            return mapper.backbone(y)

        step()
        step()
        _sync(mapper.device)
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        _sync(mapper.device)
        dt = time.perf_counter() - t0
    return {"row": "forward", "img_s": reps * batch_size / dt,
            "note": f"normalise + forward{' (fp16 autocast)' if mapper.cuda else ''}, data already on the device"}


def bench_engine(name: str, data: Path, out: Path, args, runner) -> dict:
    from deepfake_cli.stages.extract import extract

    marks: list = []
    t0 = time.perf_counter()
    s = extract([str(data)], backbone=args.backbone, out=str(out), batch_size=args.batch_size, device=args.device,
                pretrained=False, overwrite=True, runner=runner,
                progress=lambda done, total: marks.append((time.perf_counter(), done)))
    wall = time.perf_counter() - t0
    (t1, n1), (t2, n2) = marks[0], marks[-1]
    steady = (n2 - n1) / (t2 - t1) if t2 > t1 else float("nan")
    sec = s.seconds
    note = (f"wall {wall:.1f} s incl. start {t1 - t0:.1f} s; read {sec['read']:.1f} s, model {sec['model']:.1f} s, "
            f"write {sec['write']:.1f} s ({s.device})")
    out.unlink(missing_ok=True)
    return {"row": name, "img_s": steady, "wall_img_s": s.n_written / wall, "note": note,
            "read_s": sec["read"], "model_s": sec["model"], "write_s": sec["write"], "n": s.n_written}


def bench_gpu_decode(files: list[Path], mapper, batch_size: int) -> dict:
    import torch
    import torchvision
    from torchvision.io import decode_jpeg
    from torchvision.transforms.v2 import functional as TF

    if mapper.device.type != "cuda":
        return {"row": "gpu-decode", "img_s": None, "note": "no GPU"}
    cfg = mapper.backbone.config
    pool = ThreadPoolExecutor(8)

    def load(chunk):
        return [torchvision.io.read_file(str(f)) for f in chunk]

    chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    t_dec = t_fwd = 0.0
    n = 0
    with torch.inference_mode():
        futures = [pool.submit(load, c) for c in chunks[:2]]
        t0 = time.perf_counter()
        for k in range(len(chunks)):
            raw = futures[k].result()
            if k + 2 < len(chunks):
                futures.append(pool.submit(load, chunks[k + 2]))
            ta = time.perf_counter()
            imgs = decode_jpeg(raw, device=mapper.device)
            x = torch.stack([TF.center_crop(TF.resize(im, cfg.resize, antialias=True), cfg.input_size)
                             for im in imgs])
            _sync(mapper.device)
            tb = time.perf_counter()
            y = mapper.split.normalize(x)
            with torch.autocast("cuda", dtype=torch.float16):
                mapper.backbone(y)
            _sync(mapper.device)
            t_dec, t_fwd, n = t_dec + tb - ta, t_fwd + time.perf_counter() - tb, n + len(raw)
        dt = time.perf_counter() - t0
    return {"row": "gpu-decode", "img_s": n / dt,
            "note": f"nvjpeg decode + resize {t_dec:.1f} s, forward {t_fwd:.1f} s (not the product path)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=256, help="side of the generated JPEGs")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backbone", default="clip-vit-b16")
    ap.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 16 on the CPU")
    ap.add_argument("--workers", type=int, default=None, help="reader processes (default: CPUs - 2)")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    args.batch_size = args.batch_size or (256 if args.device.startswith("cuda") else 16)
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) - 2)

    import torch

    from deepfake_cli.inference.mapper import BackboneSpec, Mapper
    from deepfake_cli.inference.runner import LocalRunner

    rows: list[dict] = []
    env = {"device": args.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "cpus": os.cpu_count(), "n": args.n, "batch_size": args.batch_size, "workers": workers,
           "backbone": f"{args.backbone} (random weights)", "torch": torch.__version__}
    print(json.dumps(env), flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        data = generate(tmp / "data", args.n, args.size)
        files = sorted(data.rglob("*.jpg"))
        print(f"generated {len(files)} JPEGs of {args.size}x{args.size} in {time.perf_counter() - t0:.1f} s",
              flush=True)
        mapper = Mapper.from_spec(BackboneSpec(args.backbone, pretrained=False), args.device)
        reps = max(2, min(20, args.n // args.batch_size))

        def add(row):
            rows.append(row)
            print(json.dumps(row), flush=True)

        add(bench_decode(files, mapper, min(len(files), 500)))
        add(bench_transfer(mapper, args.batch_size, reps))
        add(bench_forward(mapper, args.batch_size, reps))
        add(bench_engine("local", data, tmp / "local.h5", args, LocalRunner(workers=workers)))
        if args.skip_ray:
            add({"row": "ray", "img_s": None, "note": "skipped (--skip-ray)"})
        else:
            try:
                from deepfake_cli.inference.ray_runner import RayRunner

                gpus = 1 if args.device.startswith("cuda") else 0
                ray_runner = RayRunner(workers=workers, model_workers=1, gpus_per_worker=gpus, device=args.device)
                add(bench_engine("ray", data, tmp / "ray.h5", args, ray_runner))
            except Exception as exc:  # no ray here: say so, keep the other rows
                add({"row": "ray", "img_s": None, "note": f"skipped: {exc}"})
        add(bench_gpu_decode(files, mapper, args.batch_size))
        add(bench_forward(mapper, args.batch_size, reps) | {"row": "forward (again)"})

    fwd = max(r["img_s"] for r in rows if r["row"].startswith("forward"))
    dec = next(r["img_s"] for r in rows if r["row"] == "decode")
    print()
    print(f"{env['backbone']} on {env['gpu'] or args.device}, {env['cpus']} CPUs, batch {args.batch_size}, "
          f"{workers} reader processes, {args.n} JPEGs {args.size}x{args.size}")
    print("| row | img/s | x forward | note |")
    print("|---|---|---|---|")
    for r in rows:
        v = r["img_s"]
        print(f"| {r['row']} | {'-' if v is None else f'{v:.0f}'} | {'-' if v is None else f'{v / fwd:.2f}'} "
              f"| {r['note']} |")
    print(f"\nCPU decode ceiling: {dec:.0f} img/s per core x {workers} readers = {dec * workers:.0f} img/s "
          f"(forward alone: {fwd:.0f} img/s).")
    for r in rows:
        if r["row"] in ("local", "ray") and r["img_s"]:
            bound = "the forward pass" if r["img_s"] > 0.85 * fwd else (
                "decoding (the readers)" if r["img_s"] > 0.85 * dec * workers or r["read_s"] > r["model_s"]
                else "the hand-over between readers and the model")
            print(f"{r['row']}: {r['img_s']:.0f} img/s steady = {r['img_s'] / fwd:.2f} x forward; "
                  f"bound by {bound}; goal 3000 img/s: {'met' if r['img_s'] >= 3000 else 'not met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
