"""What an evidence map costs: seconds per image of `explain` (exact class activation, and occlusion) against
`predict` of the same images with the same backbone, all measured in this process.

Two models on effnet-lite0 features of examples/data (forensynths_biggan + forensynths_stylegan): `lda`
(explained exactly: one forward pass, the map read from the last feature map) and `knn3` (explained by
occlusion: one forward pass per patch position). Each is timed on the same N images (forensynths_cyclegan
and gaugan of ../shared/data, 248x248: generators the models never saw), after one warm-up call, so model
loading and imports are left out.

    .venv/bin/python benchmarks/bench_explain.py [--n 16] [--grid 7] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16, help="images timed per method")
    ap.add_argument("--grid", type=int, default=7, help="occlusion patches per side (explain's default)")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="the shared sets")
    args = ap.parse_args()

    import deepfake_cli as dfc
    from deepfake_cli.explainers.occlusion import passes

    work = Path(tempfile.mkdtemp(prefix="bench_explain_"))
    feats = work / "eff.h5"
    dfc.extract([str(DATA / "forensynths_biggan"), str(DATA / "forensynths_stylegan")], backbone="effnet-lite0",
                out=feats, device="cpu", batch_size=32)
    models = {c: work / f"{c}.model" for c in ("lda", "knn3")}
    for c, path in models.items():
        dfc.train(feats, classifier=c, out=path)
    images = sorted(p for g in ("cyclegan", "gaugan") for c in ("real", "fake")
                    for p in (args.shared / f"forensynths_{g}" / c).iterdir())
    images = images[:: max(1, len(images) // args.n)][: args.n]  # real and fake of both generators
    images = [str(p) for p in images]
    n = len(images)
    warm = images[:1]
    dfc.predict(models["lda"], warm)  # imports, weights: not what is measured
    dfc.explain(models["lda"], warm, out=work / "warm", overwrite=True)

    t_predict = _timed(lambda: dfc.predict(models["lda"], images, device="cpu"))
    t_cam = _timed(lambda: dfc.explain(models["lda"], images, out=work / "cam", device="cpu", overwrite=True))
    t_occ = _timed(lambda: dfc.explain(models["knn3"], images, out=work / "occ", device="cpu", overwrite=True,
                                       occlusion_grid=args.grid, max_images=n))
    k = passes(224, args.grid)
    print(f"{n} images, 248x248, effnet-lite0 on CPU")
    print(f"predict (lda)               {t_predict / n:7.3f} s/image  1.00x")
    print(f"explain cam, exact (lda)    {t_cam / n:7.3f} s/image  {t_cam / t_predict:5.2f}x predict")
    print(f"explain occlusion (knn3)    {t_occ / n:7.3f} s/image  {t_occ / t_predict:5.2f}x predict "
          f"({k} occluded copies per image, grid {args.grid})")


if __name__ == "__main__":
    main()
