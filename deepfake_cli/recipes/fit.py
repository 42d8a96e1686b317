"""`fit`: from two folders of images (or dataset specs) to a detector in one step.

1. Features: `extract` with the study's best backbone, clip-vit-b16, when its weights are on this machine,
   else effnet-lite0 (its weights come with a pip package); an existing feature file decides instead (its
   backbone is kept, so a rerun reuses it). They are written beside the model (`detector.h5` for
   `detector.model`) and reused by the next run on the same folders: extraction is the slow step.
2. Measure: `train` with `test_size` of every set held out (seeded, stratified, grouped by content hash);
   the held-out accuracy at the model's threshold is the figure reported, with n and the 95% Wilson interval.
3. Deploy: `train` again on every image (nothing held out; `val_size` of them still calibrates p_fake and
   chooses the threshold, as in step 2). More images make a better detector, and the figure of step 2 is an
   honest estimate for it (if anything pessimistic: it was trained on fewer). The deployment model records
   that figure, labelled as measured on its held-out twin, so `predict` can cite it.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from deepfake_cli.errors import DeepfakeError

if TYPE_CHECKING:
    from deepfake_cli.options import FitOptions

BEST_BACKBONE = "clip-vit-b16"   # the study's best backbone (docs/RESULTS.md)
FALLBACK_BACKBONE = "effnet-lite0"
DEFAULT_CLASSIFIER = "lda"


@dataclass
class FitResult:
    out: Path                       # the deployment model
    features: Path                  # the features, kept for reuse
    backbone: str
    backbone_reason: str
    classifier: str
    datasets: list[str]             # the sets trained on (names in the feature file)
    features_reused: bool           # nothing was extracted: every set was already in `features`
    n_images: dict                  # dataset -> {"real": n, "fake": n} in the feature file
    heldout: dict | None            # accuracy, n, n_correct, ci_low, ci_high, ... of the measuring run (None: too few)
    n_deployed: int                 # images the deployment model was trained on (fit + validation)
    threshold: float
    predict_command: str            # the line to run next
    warnings: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)   # extract, measure, deploy


def choose_backbone(backbone: str | None = None, features: str | os.PathLike | None = None) -> tuple[str, str]:
    """(backbone, why): the one asked for; else the one of an existing feature file (so that it is reused);
    else clip-vit-b16 when its weights are here; else effnet-lite0."""
    if backbone:
        return backbone, "as asked (--backbone)"
    if features is not None and Path(features).is_file():
        from deepfake_cli.store.features import read_meta

        made = read_meta(features).get("backbone")
        if made:
            return str(made), f"the features already in {features} were made with it (reused)"
    from deepfake_cli.backbones import get_config
    from deepfake_cli.backbones.weights import cache_path, find_local

    src = get_config(BEST_BACKBONE).weights
    local = find_local(src)
    if local is not None and local.is_file():
        return BEST_BACKBONE, f"the study's best backbone; its weights are here ({local})"
    return FALLBACK_BACKBONE, (f"{BEST_BACKBONE}, the study's best backbone, has no weights here (put {src.file_name} "
                               f"at {cache_path(src)} or set {src.env_var}, then rerun with a new --out); "
                               f"{FALLBACK_BACKBONE}'s weights come with its pip package")


def features_path(out: str | os.PathLike) -> Path:
    """Where the features go by default: beside the model, same stem, `.h5`."""
    return Path(out).with_suffix(".h5")


def _check_out(out: str, features: Path) -> Path:
    text = os.fspath(out)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise DeepfakeError(f"--out {out} is a folder; fit writes one model file (e.g. --out detector.model).")
    p = Path(text)
    if p.suffix.lower() in (".h5", ".hdf5"):
        raise DeepfakeError(f"--out {out} names a feature file; give the model file (e.g. --out detector.model): "
                            "the features are kept beside it.")
    if p.resolve() == features.resolve():
        raise DeepfakeError(f"--features {features} is --out itself; give the features another name.")
    return p


def fit(datasets: list[str] | tuple = (), o: "FitOptions | None" = None, *,
        say: Callable[[str], None] | None = None, progress: Callable[[int, int], None] | None = None,
        **options) -> FitResult:
    """Extract (or reuse) features of `o.real`/`o.fake` folders and/or `datasets` (`[NAME=]PATH` specs as
    `extract` takes), measure `o.classifier` on a held-out `o.test_size`, then train the deployment model on
    every image into `o.out`. The options are `options.FitOptions` (an instance, or its fields as keywords).
    `say(line)` hears the choices made (backbone, reuse); `progress(done, total)` follows extraction."""
    from deepfake_cli.options import FitOptions

    o = o or FitOptions(**options)

    def text(v):  # the API takes path-likes; the stages and the messages take text
        return None if v is None else os.fspath(v)

    real, fake, out, features, weights = text(o.real), text(o.fake), text(o.out), text(o.features), text(o.weights)
    name, backbone, layers, classifier = o.name, o.backbone, o.layers, o.classifier
    test_size, val_size, seed, device = o.test_size, o.val_size, o.seed, o.device
    batch_size, workers, overwrite = o.batch_size, o.workers, o.overwrite
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.stages.train import train

    say = say or (lambda line: None)
    if not datasets and real is None and fake is None:
        raise DeepfakeError("give the images: --real DIR --fake DIR, or dataset folders holding real/ and fake/.")
    for folder in (real, fake):  # before anything is said or built
        if folder is not None and not Path(folder).expanduser().is_dir():
            raise DeepfakeError(f"not a folder: {folder}")
    if not 0 < test_size < 1:
        raise DeepfakeError(f"--test-size must be in (0, 1): fit measures on a held-out part, got {test_size}.")
    feats = Path(features) if features else features_path(out)
    out_p = _check_out(out, feats)
    chosen, why = choose_backbone(backbone, feats)
    say(f"backbone {chosen}: {why}")
    t0 = time.perf_counter()
    summary = extract(list(datasets), backbone=chosen, out=str(feats), real=real, fake=fake, name=name,
                      layers=layers, device=device, weights=weights, batch_size=batch_size, workers=workers,
                      overwrite=overwrite, progress=progress)
    seconds = {"extract": time.perf_counter() - t0}
    names = list(dict.fromkeys([*summary.already_present, *summary.datasets]))
    reused = summary.n_processed == 0 and bool(summary.already_present) and not summary.datasets
    say(f"features {'reused from' if reused else 'written to'} {feats} ({', '.join(names)})")
    counts = _counts(feats, names)
    for d, c in counts.items():
        if min(c["real"], c["fake"]) == 0:
            raise DeepfakeError(f"dataset {d} has {c['real']} real and {c['fake']} fake images; fit needs both "
                                "(--real DIR --fake DIR, or folders with real/ and fake/ below them).")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deepfake-fit-") as tmp:  # the measuring model is not kept
        measured = train(str(feats), classifier, str(Path(tmp) / f"heldout{out_p.suffix or '.model'}"),
                         datasets=names, test_size=test_size, val_size=val_size, seed=seed, device="cpu")[0]
    seconds["measure"] = time.perf_counter() - t0
    heldout = measured.heldout_accuracy
    n_all = sum(c["real"] + c["fake"] for c in counts.values())
    if heldout is not None:
        heldout = dict(heldout, measured_by=(
            f"fit: a twin of this model trained the same way with {test_size:.0%} of {', '.join(names)} held out "
            f"(seed {seed}); this model was then trained on all {n_all} images"))
    recipe = {"name": "fit", "test_size": test_size, "seed": seed,
              "note": "by `deepfake fit`: every image, after a twin measured the held-out figure"}
    t0 = time.perf_counter()
    deployed = train(str(feats), classifier, str(out_p), datasets=names, test_size=0.0, val_size=val_size, seed=seed,
                     device="cpu", extra_meta={"heldout": heldout, "recipe": recipe}, overwrite=overwrite)[0]
    seconds["deploy"] = time.perf_counter() - t0
    command = "deepfake predict " + " ".join(shlex.quote(str(a)) for a in (out_p, "DIR"))
    return FitResult(out=out_p, features=feats, backbone=chosen, backbone_reason=why, classifier=classifier,
                     datasets=names, features_reused=reused, n_images=counts, heldout=heldout,
                     n_deployed=deployed.n_fit + deployed.n_val, threshold=deployed.threshold,
                     predict_command=command, seconds=seconds,
                     warnings=[w for w in measured.sample_warnings if w.startswith("small")])  # the split's, not lda's


def _counts(features: Path, names: list[str]) -> dict:
    from deepfake_cli.store.features import read_features

    fs = read_features(features, datasets=names)
    return {d: {"real": int(((fs.dataset == d) & (fs.y == 0)).sum()), "fake": int(((fs.dataset == d) & (fs.y == 1)).sum())}
            for d in names}
