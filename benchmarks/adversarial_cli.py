"""Adversarial sweep: fire ~60 bad command lines at `deepfake` and count how each ends.

    python benchmarks/adversarial_cli.py [--keep DIR] [--jobs N]

Each line runs as its own process (so a segfault or a hang counts), without root's right to read or
write what permissions forbid (CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH are dropped when run as root), on
small inputs made here: a lowlevel feature file and model of 8 CIFAKE examples, broken HDF5 files, an
unwritable folder, a symlink loop, a fifo, paths that look like rich markup. An outcome is
  one-line    non-zero exit, exactly one `error: ...` line on stderr, no traceback
  ok          exit 0 (a line the tool accepts, e.g. a foreign --out replaced with --overwrite)
  BAD         a traceback, "internal error", several error lines, a signal, or a timeout
It prints one row per line and the counts; exit status 1 when any line is BAD.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.clicheck import FEATURE_FILE_DAMAGES, damage_feature_file, outcome, run_cli  # noqa: E402 -- as the tests


def build(base: Path) -> dict:
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.stages.train import train
    from tests.conftest import copy_subset, example_set

    ds = copy_subset(example_set("cifake_sd14"), base / "ds", 4)
    feats = base / "f.h5"
    extract([str(ds)], "lowlevel", str(feats), workers=0, device="cpu")
    model = train(str(feats), "lda", str(base / "m.model"), test_size=0.25)[0].path
    img = sorted((ds / "fake").iterdir())[0]
    (base / "empty").mkdir()
    (base / "adir").mkdir()
    (base / "note.txt").write_text("my notes\n")
    (base / "ro").mkdir()
    os.chmod(base / "ro", 0o555)
    (base / "loop.jpg").symlink_to("loop.jpg")
    os.mkfifo(base / "fifo")
    broken = {}
    for damage in FEATURE_FILE_DAMAGES:
        p = base / f"broken_{damage}.h5"
        shutil.copy(feats, p)
        broken[damage] = damage_feature_file(p, damage)
    markup = base / "a["
    copy_subset(example_set("cifake_sd14"), markup, 1)
    shutil.copy(img, markup / "fake" / "[bold]x].png")
    evald = base / "evald"
    evald.mkdir()
    shutil.copy(model, evald / "eval.csv")
    return {"ds": ds, "F": feats, "M": model, "IMG": img, "B": broken, "MK": markup, "EV": evald}


def lines(b: Path, x: dict) -> list[list[str]]:
    F, M, IMG, DS = x["F"], x["M"], x["IMG"], x["ds"]
    low = ["--backbone", "lowlevel", "--workers", "0", "--device", "cpu", "-q"]
    o = lambda name: str(b / "outs" / name)  # noqa: E731
    L = [
        # the list
        ["predict", M, IMG, "--batch-size", "0"], ["predict", M, IMG, "--batch-size", "-1"],
        ["predict", M, IMG, "--out", b / "adir"], ["reduce", F, "--method", "pca", "--out", b / "adir"],
        ["eval", M, "--features", F, "--out", b / "note.txt"],
        ["info", x["B"]["no_label"]], ["info", x["B"]["bad_meta"]], ["info", x["B"]["no_meta"]],
        ["train", x["B"]["bad_meta"], "--classifier", "lda", "--out", o("t.model")],
        ["train", x["B"]["short"], "--classifier", "lda", "--out", o("t.model")],
        ["extract", DS, *low, "--out", b / "ro" / "f.h5"], ["predict", M, IMG, "--out", b / "ro" / "p.csv"],
        ["eval", M, "--features", F, "--out", b / "ro" / "ev"],
        ["train", F, "--classifier", "lda", "--out", b / "ro" / "m.model"],
        ["predict", M, F], ["predict", F, IMG],
        # outputs onto inputs and onto foreign files
        ["predict", M, IMG, "--out", IMG, "--overwrite"], ["predict", M, IMG, "--out", M],
        ["predict", M, IMG, "--out", F], ["train", F, "--classifier", "lda", "--out", F, "--overwrite"],
        ["reduce", F, "--method", "pca", "--out", F], ["reduce", F, "--method", "pca", "--out", o("r.reducer"),
                                                       "--write-features", F, "--overwrite"],
        ["reduce", F, "--method", "pca", "--out", o("same"), "--write-features", o("same")],
        ["eval", x["EV"] / "eval.csv", "--features", F, "--out", x["EV"], "--overwrite"],
        ["extract", DS, *low, "--out", b / "note.txt"], ["extract", DS, *low, "--out", b / "adir"],
        ["extract", DS, *low, "--out", b / "fifo"], ["extract", DS, *low, "--out", M],
        ["predict", M, IMG, "--out", b / "fifo"],
        # bad inputs and options
        ["extract", b / "missing", *low, "--out", o("x.h5")], ["extract", b / "empty", *low, "--out", o("x.h5")],
        ["extract", DS, "--backbone", "no-such-net", "--out", o("x.h5")],
        ["extract", DS, *low, "--transform", "bogus", "--out", o("x.h5")],
        ["extract", DS, *low, "--align", "12", "--out", o("x.h5")],
        ["extract", DS, *low, "--batch-size", "0", "--out", o("x.h5")],
        ["extract", DS, *low, "--dtype", "float8", "--out", o("x.h5")],
        ["extract", DS, *low, "--engine", "nope", "--out", o("x.h5")],
        ["extract", DS, *low, "--layers", "99", "--out", o("x.h5")],
        ["extract", b / "note.txt", *low, "--out", o("x.h5")], ["extract", "=", *low, "--out", o("x.h5")],
        ["extract", f"a={b / 'missing'}", *low, "--out", o("x.h5")], ["extract", DS, *low],
        ["info", b / "missing.h5"], ["info", b / "adir"], ["info", b / "note.txt"], ["info", M],
        ["train", F, "--classifier", "nope", "--out", o("t.model")],
        ["train", F, "--classifier", "lda", "--test-size", "1.5", "--out", o("t.model")],
        ["train", F, "--classifier", "lda", "--param", "nokey", "--out", o("t.model")],
        ["train", F, "--classifier", "lda", "--datasets", "nosuch", "--out", o("t.model")],
        ["train", F, "--classifier", "lda,svm", "--out", b / "note.txt"],
        ["train", F, "--classifier", "lda", "--reducer", M, "--out", o("t.model")],
        ["reduce", F, "--method", "umap", "--out", o("r.reducer")],
        ["reduce", F, "--method", "pca", "--dim", "-3", "--out", o("r.reducer")],
        ["reduce", F, "--method", "pca", "--variance", "2", "--out", o("r.reducer")],
        ["eval", M, "--features", b / "missing.h5"], ["eval", b / "note.txt", "--features", F],
        ["eval", b / "empty", "--features", F],
        ["predict", b / "missing.model", IMG], ["predict", M, b / "missing.jpg"], ["predict", M, b / "empty"],
        ["predict", M, b / "note.txt"], ["predict", M, b / "loop.jpg"], ["predict", M, IMG, "--transform", "nope"],
        ["audit", b / "missing"], ["audit", DS, "--folds", "1"], ["audit", DS, "--align", "x"], ["audit", b / "empty"],
        ["study", b / "missing.toml", "--out", o("study")], ["study", b / "note.txt", "--out", o("study")],
        ["report", b / "missing.csv", "--out", o("rep")], ["report", b / "note.txt", "--out", o("rep")],
        ["--bogus"], ["nosuchcmd"], ["info", b / "[bold]missing.h5"], ["audit", x["MK"] / "missing[", "--json"],
    ]
    return [[str(a) for a in line] for line in L]


def run_one(argv: list[str], env: dict) -> tuple[str, int, str]:
    try:
        r = run_cli(*argv, env=env, timeout=300, unprivileged=True)
    except subprocess.TimeoutExpired:
        return "BAD", -1, "timeout"
    kind, msg = outcome(r.returncode, r.stderr)
    return kind, r.returncode, msg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="build the inputs here and keep them")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    base = a.keep or Path(tempfile.mkdtemp(prefix="adversarial-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    try:
        x = build(base)
        (base / "outs").mkdir()
        env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
        todo = lines(base, x)
        with ThreadPoolExecutor(a.jobs) as pool:
            results = list(pool.map(lambda argv: run_one(argv, env), todo))
        counts: dict[str, int] = {}
        for argv, (kind, rc, msg) in zip(todo, results):
            counts[kind] = counts.get(kind, 0) + 1
            shown = " ".join(s.replace(str(base), "$T") for s in argv)
            print(f"{kind:8s} rc={rc:<3d} deepfake {shown}\n         -> {msg.replace(str(base), '$T')}")
        print(f"\n{len(todo)} bad command lines: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        return 1 if counts.get("BAD") else 0
    finally:
        os.chmod(base / "ro", 0o755) if (base / "ro").exists() else None
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
