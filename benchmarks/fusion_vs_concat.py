"""Neural fusion against plain concatenation on one `a+b` feature file (docs/RESULTS.md).

    python benchmarks/fusion_vs_concat.py runs/pair.h5 --out runs/fusion

Trains, with train's own splits (20% of each training set held out, 20% of the rest for the
threshold), on CIFAKE and on the four ForenSynths GANs pooled: lda and svm on the concatenated
features, and `fusion` (gated, and `gate=mean` as the ablation). Evaluates every model within (its
held-out images) and across (every image of the other sets) and prints a Markdown table: accuracy
[95% Wilson interval] (n), pooled over the test sets of one kind.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from deepfake_cli.stages.evaluate import evaluate
from deepfake_cli.store.features import read_features
from deepfake_cli.metrics.stats import wilson_interval
from deepfake_cli.stages.train import train

GANS = ["biggan", "stylegan", "cyclegan", "gaugan"]
MODELS = [("lda", "lda", {}), ("svm", "svm", {}), ("linear-probe", "linear-probe", {}),
          ("fusion (gated)", "fusion", {}), ("fusion (mean)", "fusion", {"gate": "mean"})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features")
    ap.add_argument("--out", default="runs/fusion")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fs = read_features(args.features)
    print(f"{fs.meta['backbone']}: {fs.X.shape[0]} images, {fs.X.shape[1]} columns, members {fs.meta.get('members')}")
    lines = ["| trained on | model | within: acc [95% CI] (n) | cross: acc [95% CI] (n) | gate weights | s |",
             "|---|---|---|---|---|---|"]
    for train_name, sets in (("cifake", ["cifake"]), ("4 GANs", GANS)):
        for label, clf, params in MODELS:
            path = out / f"{train_name.replace(' ', '')}_{label.split()[0]}_{params.get('gate', 'gated')}.model"
            t0 = time.perf_counter()
            res = train(args.features, clf, str(path), datasets=sets, seed=args.seed,
                        params={clf: params} if params else None)
            secs = time.perf_counter() - t0
            rows = evaluate([str(res[0].path)], [args.features])
            cells = []
            for kind in ("within", "cross"):
                k = sum(round(r["accuracy"] * r["n"]) for r in rows if r["kind"] == kind)
                n = sum(r["n"] for r in rows if r["kind"] == kind)
                lo, hi = wilson_interval(k, n)
                cells.append(f"{k / n:.3f} [{lo:.3f}, {hi:.3f}] ({n})")
            gate = ""
            if clf == "fusion":
                from deepfake_cli.store.artifacts import load_model

                est = load_model(res[0].path).estimator.named_steps["clf"]
                gate = ", ".join(f"{n} {w:.2f}" for n, w in zip(est.member_names_, est.member_weights_))
            lines.append(f"| {train_name} | {label} | {cells[0]} | {cells[1]} | {gate} | {secs:.1f} |")
            print(lines[-1], flush=True)
    (out / "fusion_vs_concat.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
