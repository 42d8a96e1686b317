"""Within- and cross-dataset tables on feature files of ../shared/data, with the wall time of each stage.

    python benchmarks/shared_tables.py runs/measure/effnet-lite0-none.h5 runs/measure/effnet-lite0-256_90.h5 \
        --out runs/tables

Each feature file is expected to hold the shared sets as datasets (see the README's measurement
section for the extract commands). For each file: fit a PCA reducer (timed, the `reduce` stage),
train the classifiers on each dataset alone and on the four ForenSynths GANs pooled, evaluate every
model on every dataset of the file, and print one accuracy matrix per classifier (rows: training
set, columns: test set; * marks the held-out part of a training set, n in brackets).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepfake_cli.stages.evaluate import evaluate, write_outputs  # noqa: E402
from deepfake_cli.store.features import read_meta  # noqa: E402
from deepfake_cli.stages.reduce import reduce  # noqa: E402
from deepfake_cli.stages.train import train  # noqa: E402

POOLED = ("biggan", "stylegan", "cyclegan", "gaugan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("features", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--classifiers", default="lda,svm")
    ap.add_argument("--test-only", default="grip", help="datasets too small to train on (test only)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    for feats in args.features:
        tag = Path(feats).stem
        meta = read_meta(feats)
        names = list(meta["roots"])
        groups = [[d] for d in names if d not in args.test_only.split(",")]
        if all(d in names for d in POOLED):
            groups.append(list(POOLED))
        times = {}
        t0 = time.perf_counter()
        reduce(feats, "pca", str(out / tag / "pca64.reducer"), dim=64, seed=args.seed)
        times["reduce (pca:64)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model_dirs = []
        for g in groups:
            d = out / tag / "models" / "+".join(g)
            train(feats, args.classifiers, str(d), datasets=g, seed=args.seed)
            model_dirs.append(d)
        times[f"train ({len(groups)} sets x {args.classifiers})"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = evaluate([str(d) for d in model_dirs], [feats])
        times["eval"] = time.perf_counter() - t0
        write_outputs(rows, str(out / tag))
        print(f"\n## {tag}: backbone={meta['backbone']} layers={meta['layers']} "
              f"align={meta['preprocessing'].get('align')} n={meta['n']}")
        print("stage wall times: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
        tests = names
        for clf in args.classifiers.split(","):
            print(f"\n{clf}: accuracy at the stored threshold [n]; * = held-out part of the training set\n")
            print("| train \\ test | " + " | ".join(tests) + " |")
            print("|---" * (len(tests) + 1) + "|")
            for g in groups:
                cells = []
                for t in tests:
                    r = [r for r in rows if r["classifier"] == clf and r["train_datasets"] == ",".join(g)
                         and r["test_dataset"] == t]
                    if not r:
                        cells.append("")
                        continue
                    r = r[0]
                    cells.append(f"{r['accuracy']:.3f}{'*' if r['kind'] == 'within' else ''} [{r['n']}]")
                print(f"| {'+'.join(g)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
