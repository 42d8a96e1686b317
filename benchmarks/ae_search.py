"""The autoencoder search's best trial against PCA and the default autoencoder (docs/RESULTS.md).

    python benchmarks/ae_search.py runs/effnet.h5 --dataset cifake --out runs/ae_search

Every reducer is fitted on the training part of one dataset (train's held-out 20% removed, as
`study` does), then an LDA is trained through it with train's splits and evaluated on the held-out
part (within) and on every other dataset of the file (cross). Also reported: the relative
reconstruction error on the held-out images. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepfake_cli.store.artifacts import load_reducer
from deepfake_cli.stages.evaluate import evaluate
from deepfake_cli.store.features import FeatureFileWriter, read_features
from deepfake_cli.stages.reduce import reduce
from deepfake_cli.stages.splits import heldout_split
from deepfake_cli.metrics.stats import wilson_interval
from deepfake_cli.stages.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features")
    ap.add_argument("--dataset", default="cifake")
    ap.add_argument("--out", default="runs/ae_search")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--dim", type=int, default=32, help="PCA and default-autoencoder code size")
    ap.add_argument("--pca-dims", default="", help="more PCA sizes to compare, e.g. 128 (comma-separated)")
    ap.add_argument("--only", default="", help="run only the rows whose label starts with one of these (A,B)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fs = read_features(args.features, datasets=[args.dataset])
    train_mask, test_mask = heldout_split(fs, 0.2, 0)
    split = out / "train_part.h5"
    meta = {k: v for k, v in fs.meta.items() if k not in ("skipped", "duplicates", "n", "dim")}
    with FeatureFileWriter(split, meta, fs.X.shape[1]) as w:
        part = fs.subset(train_mask)
        w.append(part.X, part.y, part.dataset, part.path, part.sha256)
        w.close()
    X_test = fs.X[test_mask].astype(np.float64)
    print(f"{args.dataset}: {len(fs.y)} images, reducers fit on {int(train_mask.sum())}, {int(test_mask.sum())} held out")
    reducers = [("pca", "pca", {"dim": args.dim}), ("autoencoder (default)", "autoencoder", {"dim": args.dim}),
                ("search, score=reconstruction", "autoencoder-search", {"trials": args.trials}),
                ("search, score=accuracy", "autoencoder-search", {"trials": args.trials, "scoring": "accuracy"})]
    reducers[1:1] = [(f"pca-{d}", "pca", {"dim": int(d)}) for d in args.pca_dims.split(",") if d.strip()]
    if args.only:
        reducers = [r for r in reducers if r[0].startswith(tuple(args.only.split(",")))]
    lines = ["| reducer | dims | held-out rel. MSE | LDA within: acc [95% CI] (n) | LDA cross: acc [95% CI] (n) | "
             "fit s | best trial |", "|---|---|---|---|---|---|---|"]
    for label, method, params in reducers:
        red = out / f"{label.split()[0].strip(',')}_{params.get('scoring', 'x')}_{params.get('dim', '')}.reducer"
        t0 = time.perf_counter()
        s = reduce(str(split), method, str(red), params=params, device="cpu", test_size=0.0)
        secs = time.perf_counter() - t0
        est = load_reducer(red).estimator
        R = est.inverse_transform(est.transform(X_test))
        rel = float(np.mean((X_test - R) ** 2) / np.mean((X_test - X_test.mean(0)) ** 2))
        model = train(args.features, "lda", str(out / f"{red.stem}.model"), reducer=str(red),
                      datasets=[args.dataset])[0]
        rows = evaluate([str(model.path)], [args.features])
        cells = []
        for kind in ("within", "cross"):
            k = sum(round(r["accuracy"] * r["n"]) for r in rows if r["kind"] == kind)
            n = sum(r["n"] for r in rows if r["kind"] == kind)
            lo, hi = wilson_interval(k, n) if n else (float("nan"), float("nan"))
            cells.append(f"{k / n:.3f} [{lo:.3f}, {hi:.3f}] ({n})" if n else "-")
        best = ""
        if "search" in s.meta:
            b = s.meta["search"]["best"]
            best = (f"#{b['trial']}/{s.meta['search']['trials_run']}: dim {b['dim']}, hidden "
                    f"{','.join(map(str, b['hidden']))}, dropout {b['dropout']}, lr {b['lr']:.1e}, "
                    f"epochs {b['epochs_run']}/{b['epochs']}")
        lines.append(f"| {label} | {s.output_dim} | {rel:.4f} | {cells[0]} | {cells[1]} | {secs:.1f} | {best} |")
        print(lines[-1], flush=True)
    (out / ("ae_search.md" if not args.only else "ae_search_only.md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
