"""The cost curve of extraction: wall time, img/s, the ratio to the bare forward pass and the peak memory
of the whole process tree, for N = 1k, 5k, 20k images, with the local engine and with Ray.

    make bench-scale
    python benchmarks/bench_scale.py --sizes 1000,5000,20000 --engines local,ray --budget-min 45

Images: the first N samples of ../shared/data/cifake_20k (two webdataset tar shards of 10,000 CIFAKE
JPEGs each, real and fake shuffled), copied into shards of their own (the bytes as they are) and
extracted as a tar source, read in place like any `deepfake extract SHARDS/`.

Each (engine, N) runs in two fresh processes: one times the bare forward pass (the backbone on ready
uint8 batches: normalise + forward, no reading, decoding or writing; all CPUs' torch threads, as
the local engine has), then one runs `extract.extract` exactly as the CLI does (local: this process
and the default reader workers; ray: a local Ray cluster started by the run, `--model-workers` actors).
While it runs, this process samples every 0.25 s the resident memory of that process and all its
descendants (for ray: gcs_server, raylet, the model actors, the reader workers) and keeps the peak of
the sum: RSS (shared pages counted in each process that maps them, the usual and pessimistic
figure) and PSS (shared pages split between their users: what the tree really holds).

`--budget-min` skips a configuration whose expected time (from the img/s of the size before) would
not fit in what is left; skipped rows say so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("DEEPFAKE_SHARED_DATA", REPO.parent / "shared" / "data"))
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- inputs -----------------------------------------------------------------------------------------

def first_n_shards(src: Path, n: int, dst: Path) -> Path:
    """Shards in `dst` holding the first n samples (image + .cls) of the shards in `src`, in order."""
    dst.mkdir(parents=True, exist_ok=True)
    if (dst / "done").exists():
        return dst
    taken = 0
    for shard in sorted(src.glob("*.tar")):
        if taken >= n:
            break
        with tarfile.open(shard) as tin, tarfile.open(dst / shard.name, "w") as tout:
            keys: set[str] = set()
            for m in tin:
                key = m.name.split(".", 1)[0]
                if key not in keys:
                    if taken >= n:
                        break
                    if m.name.endswith(".jpg"):
                        keys.add(key)
                        taken += 1
                if key in keys:
                    tout.addfile(m, tin.extractfile(m))
    (dst / "done").write_text(str(taken))
    return dst


# --- memory of a process tree -----------------------------------------------------------------------

def _tree(root: int) -> list[int]:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            parent[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - tree
        tree |= frontier
    return sorted(tree)


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _rss_pss(pid: int) -> tuple[int, int]:
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
                break
        return rss, pss
    except (OSError, ValueError, IndexError):
        return 0, 0


class TreeSampler(threading.Thread):
    """Peak of the summed RSS and PSS of a process and its descendants, sampled every `every` s."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_rss = self.peak_pss = 0
        self.max_procs = 0
        self.at_peak: list = []  # (name, RSS MiB, PSS MiB) of each process at the PSS peak
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            pids = _tree(self.pid)
            rss = pss = 0
            detail = []
            for p in pids:
                r, s = _rss_pss(p)
                rss, pss = rss + r, pss + s
                detail.append((_name(p), round(r / 2**20), round(s / 2**20)))
            if pss > self.peak_pss:
                self.at_peak = sorted(detail, key=lambda d: -d[2])
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.max_procs = max(self.max_procs, len(pids))
            self.stop.wait(self.every)


def run_child(args: list[str]) -> tuple[dict, TreeSampler, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=dict(os.environ, RAY_ADDRESS=""))
    sampler = TreeSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    sampler.stop.set()
    sampler.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), sampler, wall


# --- the children -----------------------------------------------------------------------------------

def child_forward(backbone: str, layers: str, batch_size: int, n_batches: int) -> dict:
    import torch

    from deepfake_cli.inference.mapper import BackboneSpec, Mapper

    mapper = Mapper.from_spec(BackboneSpec(backbone, layers=layers), "cpu")
    size = mapper.backbone.preprocessing["input_size"]
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    mapper(x)  # warm-up
    t0 = time.perf_counter()
    for _ in range(n_batches):
        mapper(x)
    dt = time.perf_counter() - t0
    return {"forward_img_s": n_batches * batch_size / dt, "threads": torch.get_num_threads()}


def child_extract(engine: str, shards: str, out: str, backbone: str, layers: str, batch_size: int,
                  model_workers: int) -> dict:
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.inference.engines import create_runner

    options = {"model_workers": model_workers} if engine == "ray" else {}
    runner = create_runner(engine, workers=-1, **options)
    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    s = extract([f"cifake={shards}"], backbone=backbone, layers=layers, out=out, batch_size=batch_size, device="cpu",
                runner=runner, overwrite=True, progress=lambda done, total: marks.append((time.perf_counter(), done)))
    wall = time.perf_counter() - t0
    (t1, n1), (t2, n2) = marks[0], marks[-1]
    steady = (n2 - n1) / (t2 - t1) if t2 > t1 else float("nan")
    return {"n": s.n_written + s.n_skipped, "n_written": s.n_written, "wall_s": wall, "img_s": s.n_written / wall,
            "steady_img_s": steady, "first_batch_s": t1 - t0, "read_s": s.seconds["read"],
            "model_s": s.seconds["model"], "write_s": s.seconds["write"], "device": s.device}


# --- the curve --------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--backbone", default="effnet-lite0")
    ap.add_argument("--layers", default="last", help="e.g. 0: only the stem and first block (a cheap forward)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model-workers", type=int, default=2)
    ap.add_argument("--budget-min", type=float, default=45.0, help="stop starting configurations past this")
    ap.add_argument("--data", default=str(SHARED / "cifake_20k"))
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind = a.child[0]
        if kind == "forward":
            res = child_forward(a.backbone, a.layers, a.batch_size, int(a.child[1]))
        else:
            res = child_extract(a.child[1], a.child[2], a.child[3], a.backbone, a.layers, a.batch_size,
                                a.model_workers)
        print(json.dumps(res))
        return

    sizes = [int(s) for s in a.sizes.split(",")]
    engines = a.engines.split(",")
    if "ray" in engines:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SystemExit("--engines ray needs the ray extra: pip install 'deepfake-cli[ray]'") from None
    src = Path(a.data)
    if not src.is_dir():
        raise SystemExit(f"no data at {src} (set DEEPFAKE_SHARED_DATA)")
    t_start, budget = time.perf_counter(), a.budget_min * 60
    rows, rate = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        tmp = Path(tmp)
        for n in sizes:
            shards = first_n_shards(src, n, tmp / f"n{n}")
            for engine in engines:
                left = budget - (time.perf_counter() - t_start)
                expected = n / rate[engine] * 1.1 + 30 if engine in rate else 0
                if expected > left:
                    rows.append({"engine": engine, "n": n, "skipped": f"expected ~{expected / 60:.0f} min, "
                                 f"{max(0, left) / 60:.0f} min of the budget left"})
                    print(f"{engine:5s} n={n:6d}: skipped ({rows[-1]['skipped']})", flush=True)
                    continue
                common = ["--backbone", a.backbone, "--layers", a.layers, "--batch-size", str(a.batch_size)]
                fwd, _, _ = run_child([*common, "--child", "forward", str(max(4, min(16, n // a.batch_size // 10)))])
                out = tmp / f"{engine}_{n}.h5"
                res, mem, _ = run_child([*common, "--model-workers", str(a.model_workers),
                                         "--child", "extract", engine, str(shards), str(out)])
                out.unlink(missing_ok=True)
                rate[engine] = res["img_s"]
                row = {"engine": engine, "n": n, "wall_s": round(res["wall_s"], 1), "img_s": round(res["img_s"], 1),
                       "steady_img_s": round(res["steady_img_s"], 1), "first_batch_s": round(res["first_batch_s"], 1),
                       "forward_img_s": round(fwd["forward_img_s"], 1),
                       "ratio": round(res["img_s"] / fwd["forward_img_s"], 3),
                       "steady_ratio": round(res["steady_img_s"] / fwd["forward_img_s"], 3),
                       "peak_rss_mib": round(mem.peak_rss / 2**20), "peak_pss_mib": round(mem.peak_pss / 2**20),
                       "processes": mem.max_procs, "at_peak": mem.at_peak, "read_s": round(res["read_s"], 1),
                       "model_s": round(res["model_s"], 1), "write_s": round(res["write_s"], 1),
                       "device": res["device"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(f"{a.backbone} --layers {a.layers}, batch {a.batch_size}, {os.cpu_count()} CPUs; "
          f"ray: {a.model_workers} model workers; "
          f"total {(time.perf_counter() - t_start) / 60:.1f} min")
    print("| engine | N | wall s | img/s | steady img/s | bare forward img/s | img/s / forward | peak RSS MiB "
          "(tree) | peak PSS MiB (tree) | processes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['engine']} | {r['n']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        print(f"| {r['engine']} | {r['n']} | {r['wall_s']} | {r['img_s']} | {r['steady_img_s']} | {r['forward_img_s']} "
              f"| {r['ratio']} | {r['peak_rss_mib']} | {r['peak_pss_mib']} | {r['processes']} |")
    for engine in engines:
        got = [r for r in rows if r["engine"] == engine and "skipped" not in r]
        if len(got) >= 2:
            lo, hi = got[0], got[-1]
            print(f"{engine}: peak RSS at n={hi['n']} / at n={lo['n']} = {hi['peak_rss_mib'] / lo['peak_rss_mib']:.2f} "
                  f"(PSS {hi['peak_pss_mib'] / lo['peak_pss_mib']:.2f}); flat means <= 1.2")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
