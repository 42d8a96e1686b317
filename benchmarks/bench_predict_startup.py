"""One-image `deepfake predict` wall time against `python -c "import torch"`, measured in the same run.

The goal (issue 18, item 5): one-image predict at most 2.5x the torch import. Almost all of a one-image
predict is imports, so the script also times the big imports on their own, each in a fresh interpreter
after the ones before it (what each adds): torch, sklearn (the model's pipeline), skops.io (the model file's
loader), torchvision (the backbones' preprocessing), and the empty-folder refusal (which must come before any
of them). Medians of --repeat runs.

    python benchmarks/bench_predict_startup.py                  # builds an effnet-lite0 LDA on the examples
    python benchmarks/bench_predict_startup.py --model detector.model --image photo.png --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data"
GOAL = 2.5


def wall(cmd: list[str], repeat: int, ok_codes=(0,)) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
        if r.returncode not in ok_codes:
            raise SystemExit(f"{' '.join(cmd)} failed (rc {r.returncode}): {r.stderr.strip()[-500:]}")
    return statistics.median(times)


def deepfake_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("deepfake")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "deepfake_cli"]


def build_model(folder: Path) -> Path:
    """An LDA on effnet-lite0 features of the BigGAN examples (`recipes.fit`), the default backbone offline."""
    from deepfake_cli.recipes import fit

    res = fit(real=str(EXAMPLES / "forensynths_biggan" / "real"), fake=str(EXAMPLES / "forensynths_biggan" / "fake"),
              out=str(folder / "bench.model"), backbone="effnet-lite0", device="cpu")
    return res.out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model file (default: build one on the examples, effnet-lite0 + LDA)")
    ap.add_argument("--image", help="the one image (default: the first StyleGAN example)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also append the figures as one JSON line to this file")
    a = ap.parse_args()

    image = a.image or str(sorted((EXAMPLES / "forensynths_stylegan" / "fake").iterdir())[0])
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or str(build_model(Path(tmp)))
        empty = Path(tmp) / "empty"
        empty.mkdir()
        py = [sys.executable, "-c"]
        imports = {  # each step in a fresh interpreter, with the steps before it
            "python": "pass",
            "torch": "import torch",
            "+ sklearn pipeline, LDA": "import torch, sklearn.pipeline, sklearn.discriminant_analysis",
            "+ skops.io": "import torch, sklearn.pipeline, sklearn.discriminant_analysis, skops.io",
            "+ torchvision": "import torch, sklearn.pipeline, sklearn.discriminant_analysis, skops.io, torchvision",
        }
        t = {k: wall(py + [code], a.repeat) for k, code in imports.items()}
        t["predict, one image"] = wall(deepfake_cmd() + ["predict", model, image], a.repeat)
        t["predict, empty folder"] = wall(deepfake_cmd() + ["predict", model, str(empty)], a.repeat, ok_codes=(2,))

        # the ratio itself from interleaved pairs (torch, predict, torch, predict, ...): a shared machine's
        # load drifts between the blocks above, and each pair sees the same load
        pairs = [(wall(py + ["import torch"], 1), wall(deepfake_cmd() + ["predict", model, image], 1))
                 for _ in range(a.repeat)]

    ratio = statistics.median(p / q for q, p in pairs)
    print(f"one-image predict vs `import torch`, median of {a.repeat} (model {model if a.model else 'built here'}):")
    prev = None
    for k, v in t.items():
        added = f"  (+{v - prev:.2f} s)" if prev is not None and k.startswith("+") else ""
        print(f"  {k:28s} {v:6.2f} s{added}")
        prev = v if not k.startswith("predict") else prev
    print(f"ratio predict / import torch, median of {a.repeat} interleaved pairs: {ratio:.2f} (goal <= {GOAL}): "
          f"{'met' if ratio <= GOAL else 'NOT met'}")
    if a.json:
        with open(a.json, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"seconds": t, "ratio": ratio, "goal": GOAL, "repeat": a.repeat,
                                 "cpus": os.cpu_count()}) + "\n")


if __name__ == "__main__":
    main()
