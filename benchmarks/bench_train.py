"""The cost curve of training: fit time, prediction time, model size and accuracy of every classifier at
n = 1k, 5k, 20k training images of 1,280-d features, each fit in a fresh process under a time cap.

    make bench-train
    python benchmarks/bench_train.py --features runs/bench/cifake_20k.h5 --test runs/bench/cifake_sd14.h5

Training images: a seeded, class-balanced subset of n rows of the `--features` file (default: effnet-lite0,
last layer, of ../shared/data/cifake_20k; `make bench-train` extracts it first). Test images: every row of
`--test` (default: the same backbone on ../shared/data/cifake_sd14, 2,000 CIFAKE images that share none
with cifake_20k), so accuracy is measured on images no size ever trained on. Each (classifier, n) runs in
its own process with the pipeline `train` builds (StandardScaler in front where the registry says so,
then the classifier with its registry defaults and seed 0) and reports: fit seconds, seconds to score the
test images, accuracy at p_fake 0.5 and ROC AUC on them, the size of the saved model file and the peak
resident memory of the process. `fit_info` says which solver ran where a classifier switches on size.

A fit that would pass `--cap-min` (10 minutes: the target) is stopped and shown as such; a size whose
projected time (from the two sizes before, or the one before squared) passes the cap is not started.
`--compare svm:solver=nystroem` adds rows with a parameter changed, for the accuracy of an exact method
beside its scalable stand-in at the sizes where both run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def subset(y, n: int, seed: int = 0):
    """n row indices, as many of each class as the smaller share allows (all rows when n >= len(y))."""
    import numpy as np

    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    per = n // 2
    idx = [rng.permutation(np.flatnonzero(y == c))[:per] for c in (0, 1)]
    return np.sort(np.concatenate(idx))


def child(features: str, test: str, name: str, n: int, params: dict) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from deepfake_cli.store.artifacts import save_model
    from deepfake_cli.classifiers import create_classifier, needs_scaling
    from deepfake_cli.store.features import read_features

    fs, ts = read_features(features), read_features(test)
    keep = fs.y >= 0
    X, y = fs.X[keep], fs.y[keep].astype(int)
    idx = subset(y, n)
    clf = create_classifier(name, random_state=0, **params)
    pipe = Pipeline([("scale", StandardScaler() if needs_scaling(name) else "passthrough"), ("clf", clf)])
    t0 = time.perf_counter()
    pipe.fit(X[idx], y[idx])
    fit_s = time.perf_counter() - t0
    tk = ts.y >= 0
    t0 = time.perf_counter()
    p = pipe.predict_proba(ts.X[tk])[:, 1]
    predict_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(Path(tmp) / "m.model", pipe, {"classifier": name})
        size = path.stat().st_size
    yt = ts.y[tk].astype(int)
    return {"classifier": name, "params": params, "n": int(len(idx)), "dim": int(X.shape[1]),
            "fit_s": round(fit_s, 2), "predict_s": round(predict_s, 2), "n_test": int(len(yt)),
            "accuracy": round(float(np.mean((p >= 0.5) == yt)), 4), "auc": round(float(roc_auc_score(yt, p)), 4),
            "model_mb": round(size / 2**20, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "fit_info": clf.fit_info() if hasattr(clf, "fit_info") else {}}


def run_one(a, name: str, n: int, params: dict) -> dict:
    cmd = [sys.executable, __file__, "--features", a.features, "--test", a.test, "--child", name, str(n),
           json.dumps(params)]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=a.cap_min * 60)
    except subprocess.TimeoutExpired:
        return {"classifier": name, "params": params, "n": n, "stopped": f"over {a.cap_min:g} min"}
    if res.returncode != 0:
        return {"classifier": name, "params": params, "n": n, "error": res.stderr.strip().splitlines()[-1:]}
    row = json.loads(res.stdout.strip().splitlines()[-1])
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def projected(done: list[dict], n: int) -> float | None:
    """Seconds the next fit is expected to take: a power law through the two sizes before (or n^2 from one)."""
    import math

    pts = [(r["n"], r["fit_s"] + r["predict_s"]) for r in done if "fit_s" in r]
    if not pts:
        return None
    if len(pts) == 1:
        (n1, t1), k = pts[0], 2.0
    else:
        (n0, t0), (n1, t1) = pts[-2], pts[-1]
        k = max(1.0, math.log(max(t1, 0.01) / max(t0, 0.01)) / math.log(n1 / n0))
    return t1 * (n / n1) ** k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", default=str(REPO / "runs" / "bench" / "cifake_20k.h5"))
    ap.add_argument("--test", default=str(REPO / "runs" / "bench" / "cifake_sd14.h5"))
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--classifiers", default="all")
    ap.add_argument("--compare", action="append", default=[], help="NAME:KEY=VALUE[,KEY=VALUE]: extra rows")
    ap.add_argument("--cap-min", type=float, default=10.0, help="stop a fit past this many minutes")
    ap.add_argument("--json", help="also write the rows here (JSON lines, appended as they come)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.features, a.test, a.child[0], int(a.child[1]), json.loads(a.child[2]))))
        return
    for need in (a.features, a.test):
        if not Path(need).exists():
            sys.exit(f"{need} not found: extract it first (make bench-train does)")
    from deepfake_cli.classifiers import parse_classifier_names, parse_classifier_params

    sizes = [int(s) for s in a.sizes.split(",")]
    configs = [(n, {}) for n in parse_classifier_names(a.classifiers)]
    for spec in a.compare:
        name, _, pairs = spec.partition(":")
        configs.append((name, parse_classifier_params([name], pairs.split(","))[name]))
    rows = []
    for name, params in configs:
        done: list[dict] = []
        for n in sizes:
            guess = projected(done, n)
            if done and ("fit_s" not in done[-1] or (guess is not None and guess > a.cap_min * 60)):
                row = {"classifier": name, "params": params, "n": n,
                       "stopped": f"not started: projected {guess / 60:.0f} min" if guess else "not started"}
            else:
                row = run_one(a, name, n, params)
            done.append(row)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.json:
                with open(a.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n| classifier | n | fit s | predict s (2,000) | accuracy | AUC | model MB | peak RSS MB | solver |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = r["classifier"] + "".join(f" {k}={v}" for k, v in r["params"].items())
        if "fit_s" not in r:
            print(f"| {label} | {r['n']} | {r.get('stopped') or r.get('error')} | | | | | | |")
            continue
        print(f"| {label} | {r['n']} | {r['fit_s']} | {r['predict_s']} | {r['accuracy']:.3f} | {r['auc']:.3f} | "
              f"{r['model_mb']} | {r['peak_rss_mb']} | {r['fit_info'].get('solver', '')} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
