"""One worked example per command, shown at the end of its `--help` (a command whose docstring already
has an "Example:" paragraph keeps its own), and the placeholders of the options' values.

`cli/__init__.py` applies both to every command when the app is built, so a new command gets a metavar
for each option by default; tests/test_startup.py checks that every command has an example.
"""

from __future__ import annotations

EXAMPLES = {
    "extract": "deepfake extract cifake=examples/data/cifake_sd14 --backbone effnet-lite0 --layers all --out feats.h5",
    "info": "deepfake info feats.h5",
    "backbones": "deepfake backbones --filter dino",
    "reduce": "deepfake reduce feats.h5 --method pca --dim 32 --out pca32.reducer",
    "train": "deepfake train feats.h5 --classifier lda,svm --reducer pca32.reducer --out models/",
    "eval": "deepfake eval models/ --features feats.h5 --out eval/",
    "predict": "deepfake predict models/lda.model new_images/ --out predictions.csv",
    "classifiers": "deepfake classifiers --json",
    "reducers": "deepfake reducers",
    "study": "deepfake study examples/study.toml --out runs/study --jobs 2",
    "report": "deepfake report runs/study/results.csv --out runs/study/report",
    "audit": "deepfake audit examples/data/cifake_sd14 examples/data/forensynths_biggan --align 256:90",
    "fit": "deepfake fit --real photos/ --fake generated/ --out detector.model",
    "models": "deepfake models --json",
    "datasets": "deepfake datasets CNN_synth_testset/",
    "import-head": "deepfake import-head univfd fc_weights.pth --out univfd.model",
}

# Placeholders of option values, by parameter name; other options show their type (INT, FLOAT, PATH) or
# their name in capitals, flags show none. Never typer's `<str>` / `<list[str]>`.
METAVARS = {
    "param": "KEY=VALUE",
    "datasets": "A,B",
    "classifier": "NAME[,NAME...]",
    "backbone": "NAME",
    "method": "NAME",
    "arch": "NAME",
    "name": "NAME",
    "align": "SIZE:QUALITY",
    "device": "DEVICE",
    "transform": "SPEC",
    "augment": "SPEC",
    "layers": "LAYERS",
    "engine": "ENGINE",
    "ray_address": "HOST:PORT",
    "hidden": "N[,N...]",
    "weights": "FILE",
    "reducer": "FILE",
    "features": "FILE",
    "config": "FILE",
    "log": "FILE",
    "real": "DIR",
    "fake": "DIR",
    "out": "PATH",
    "dtype": "DTYPE",
    "score": "KIND",
}
