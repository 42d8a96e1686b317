"""The `eval` stage: score models on feature files, within-dataset and cross-dataset.

For each model and each dataset found in the given feature files:
  * within: the dataset is one of the model's training datasets -> the model's held-out images of it,
    found by sha256 (so a file made with another transform of the same images also works);
  * cross: any other dataset -> all its labelled images, minus any whose content the model trained on.
A model and a feature file must agree on backbone, layers, weights and preprocessing; the transform may
differ (rows carry train_transform and test_transform).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake_cli.store.artifacts import Model, load_models
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import COMPAT_KEYS, FeatureSet, describe, matching_options, mismatch, read_features
from deepfake_cli.safety.fileio import atomic_write_text, csv_text, md_table, number_format, to_json
from deepfake_cli.metrics.scoring import binary_scores
from deepfake_cli.metrics.operating import columns as operating_columns
from deepfake_cli.metrics.operating import deployed_points, operating_points
from deepfake_cli.metrics.stats import group_matrix, wilson_interval
from deepfake_cli.store.outputs import EVAL_FILES, Target

COLUMNS = ["model", "classifier", "backbone", "reducer", "train_datasets", "test_dataset", "kind",
           "train_transform", "test_transform", "n", "n_real", "n_fake", "accuracy", "accuracy_ci_low",
           "accuracy_ci_high", "accuracy_real", "accuracy_fake", "balanced_accuracy", "roc_auc",
           "average_precision", "threshold", "accuracy_at_0_5", *operating_columns()]
EXTRA_COLUMNS = ["features", "n_excluded_trained", "reals_pool"]


def check_compatible(model: Model, meta: dict, features_name: str, n_dims: int) -> None:
    """Refuse features a model cannot take, naming both sides."""
    diff = mismatch(model.meta, meta, COMPAT_KEYS)
    if diff:
        fix = matching_options(model.meta, meta, diff)
        raise DeepfakeError(f"Model {model.name} was trained on {describe(model.meta, diff, meta)} but {features_name} "
                            f"has {describe(meta, diff, model.meta)}; extract features for it "
                            + (f"with {fix}." if fix else "with the model's backbone settings."))
    want = model.meta.get("input_dim")
    if want is not None and int(want) != int(n_dims):
        raise DeepfakeError(f"Model {model.name} takes {want}-dimensional features but {features_name} has {n_dims} "
                            "(reduced and unreduced features do not mix).")


def expand_models(models) -> list[Model]:
    """`artifacts.load_models`, with names that tell apart models of different folders."""
    out = load_models(models)
    # models from different folders may share a file name (e.g. two `train --classifier all` runs)
    stems = [m.name for m in out]
    for m in out:
        if stems.count(m.name) > 1 and m.path is not None:
            m.name = f"{m.path.parent.name}/{m.path.stem}"
    return out


# what it writes and reads (the output guards, `store.outputs.writes`)

def eval_targets(a: dict) -> list[Target]:
    out = a.get("out")
    if out is None:
        return []
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DeepfakeError(f"--out {out} is a file; eval writes {', '.join(EVAL_FILES)} into the folder --out "
                            "names: give a folder name.")
    return [Target(out / name, "eval", lock=out) for name in EVAL_FILES]


def eval_inputs(a: dict) -> list:
    from deepfake_cli.store.artifacts import model_paths

    found = []
    for m in list(a.get("models") or []) + list(a.get("features") or []):
        try:
            found.extend(model_paths(m) if Path(m).is_dir() else [m])
        except DeepfakeError:
            found.append(m)
    return found


def evaluate(models, feature_files, per_image: list | None = None, notes: list | None = None,
             reals: str | None = None, pool_files: dict | None = None) -> list[dict]:
    """One result row per (model, feature file, test dataset); columns COLUMNS + EXTRA_COLUMNS.

    `models`: Model objects, model paths or folders of models. If `per_image` is a list, one dict per
    scored image (model, features, test_dataset, kind, path, sha256, label, p_fake, and score: the
    classifier's own p(fake) before calibration) is appended to it.
    If `notes` is a list, a sentence is appended for each model that got no within-dataset row.
    `reals`: the name of a dataset (in any of the feature files) whose real images are the pool that
    fake-only test sets are scored against: such a set's row holds its fakes and the pool's reals (less
    any the model trained on), so AUC, the TPR at the pool's FPR 1% / 5% and the TPR at the model's
    threshold are defined; the row's `reals_pool` names the pool. Without it, a fake-only set of a benchmark
    layout uses the pool its layout pairs it with (the feature file's `reals_pools`, `data.layouts`), and
    any other gets its fake recall alone (`accuracy_fake`). `pool_files` ({feature file: the file holding
    the real pool of its fake-only sets}, the study's way): each such set is paired with the reals of that
    file, which is read but not scored.
    """
    loaded = expand_models(models)
    if not loaded:
        raise DeepfakeError("No models to evaluate.")
    if not feature_files:
        raise DeepfakeError("No feature files to evaluate on; pass --features FILE.")
    sets: list[tuple[str, FeatureSet]] = [(str(f), read_features(f)) for f in feature_files]
    pools: dict[str, FeatureSet] = {}  # name -> its reals, read once

    by_file = {str(f): read_features(p) for f, p in (pool_files or {}).items()}

    def pool_for(fs: FeatureSet, ds: str, fname: str = "") -> tuple[str, FeatureSet] | None:
        if fname in by_file:  # a pool file given for this file: its reals, whatever it names them
            pool = by_file[fname]
            reals_fs = pool.subset(pool.y == 0)
            return (",".join(reals_fs.datasets), reals_fs) if len(reals_fs.y) else None
        name = reals or (fs.meta.get("reals_pools") or {}).get(ds)  # the layout's pairing unless --reals says
        if not name or name == ds:
            return None
        if name not in pools:
            pools[name] = _real_pool(sets, name)
        return name, pools[name]

    if reals:  # an unknown --reals name is refused before any work
        pools[reals] = _real_pool(sets, reals)
    for model in loaded:  # refuse before computing anything
        for name, fs in sets:
            check_compatible(model, fs.meta, name, fs.X.shape[1])
    rows = []
    for model in loaded:
        n_rows = len(rows)
        train_sets = list(model.meta.get("train_datasets") or [])
        heldout = {d: set(v) for d, v in (model.meta.get("heldout_sha256") or {}).items()}
        trained = set(model.meta.get("train_sha256") or [])
        for fname, fs in sets:
            labelled = fs.y >= 0
            for ds in fs.datasets:
                in_ds = labelled & (fs.dataset == ds)
                excluded = 0
                if ds in train_sets:
                    kind = "within"
                    mask = in_ds & np.isin(fs.sha256, list(heldout.get(ds, ())))
                else:
                    kind = "cross"
                    seen = in_ds & np.isin(fs.sha256, list(trained))
                    excluded = int(seen.sum())
                    mask = in_ds & ~seen
                if not mask.any():
                    continue
                sub = fs.subset(mask)
                paired = pool_for(fs, ds, fname) if not (sub.y == 0).any() and (sub.y == 1).any() else None
                if paired:  # a fake-only set: its fakes against the pool's reals the model never trained on
                    reals_fs = paired[1].subset(~np.isin(paired[1].sha256, list(trained)))
                    if len(reals_fs.y):
                        sub = _concat(sub, reals_fs)
                p = model.p_fake(sub.X)
                rows.append(_row(model, fname, fs.meta, ds, kind, sub.y, p, excluded))
                rows[-1]["reals_pool"] = paired[0] if paired else ""
                if per_image is not None:
                    raw = model.score(sub.X).tolist()  # the classifier's own p(fake), before calibration
                    for path, sha, y, pf, sc in zip(sub.path.tolist(), sub.sha256.tolist(), sub.y.tolist(), p.tolist(),
                                                    raw):
                        per_image.append({"model": model.name, "features": fname, "test_dataset": ds, "kind": kind,
                                          "path": path, "sha256": sha, "label": int(y), "p_fake": pf, "score": sc})
        if notes is not None and not any(r["kind"] == "within" for r in rows[n_rows:]):
            notes.append(f"{model.name}: none of its held-out images (training datasets: {', '.join(train_sets)}) "
                         "are in these feature files, so it has no within-dataset row.")
    return rows


def _real_pool(sets, name: str) -> FeatureSet:
    """The real images of dataset `name`, from the first feature file that has it."""
    for _, fs in sets:
        if name in fs.datasets:
            pool = fs.subset((fs.dataset == name) & (fs.y == 0))
            if not len(pool.y):
                raise DeepfakeError(f"--reals {name}: that dataset has no real images to serve as the pool.")
            return pool
    found = sorted({d for _, fs in sets for d in fs.datasets})
    raise DeepfakeError(f"--reals {name}: no dataset of that name in the feature files (they hold: {', '.join(found)}).")


def _concat(a: FeatureSet, b: FeatureSet) -> FeatureSet:
    """Rows of `a` then `b` (same feature space; `a`'s metadata)."""
    from dataclasses import replace

    return replace(a, X=np.concatenate([a.X, b.X]), y=np.concatenate([a.y, b.y]),
                   dataset=np.concatenate([a.dataset, b.dataset]), path=np.concatenate([a.path, b.path]),
                   sha256=np.concatenate([a.sha256, b.sha256]))


def _row(model: Model, fname: str, fmeta: dict, ds: str, kind: str, y, p, excluded: int) -> dict:
    thr = model.threshold
    s = binary_scores(y, p, thr)
    low, high = wilson_interval(s["n_correct"], s["n"])
    red = model.meta.get("reducer") or {}
    reducer = red.get("method", "none")
    if reducer != "none" and red.get("output_dim"):
        reducer = f"{reducer}:{red['output_dim']}"
    return {
        "model": model.name, "classifier": model.meta.get("classifier"), "backbone": model.meta.get("backbone"),
        "reducer": reducer, "train_datasets": ",".join(model.meta.get("train_datasets") or []),
        "test_dataset": ds, "kind": kind, "train_transform": model.meta.get("transform", "none"),
        "test_transform": fmeta.get("transform", "none"), "n": s["n"], "n_real": s["n_real"],
        "n_fake": s["n_fake"], "accuracy": s["accuracy"], "accuracy_ci_low": low, "accuracy_ci_high": high,
        "accuracy_real": s["accuracy_real"], "accuracy_fake": s["accuracy_fake"],
        "balanced_accuracy": s["balanced_accuracy"], "roc_auc": s["roc_auc"],
        "average_precision": s["average_precision"], "threshold": thr,
        "accuracy_at_0_5": binary_scores(y, p, 0.5)["accuracy"],
        **operating(y, p, (model.meta.get("validation") or {}).get("operating_thresholds") or {}),
        "features": fname, "n_excluded_trained": excluded,
    }


def operating(y, p, thresholds: dict) -> dict:
    """The operating-point columns of a result row (`metrics.operating`): intervals of AUC and AP, the EER,
    the oracle TPR at FPR 1% / 5% (threshold set on these reals), and the deployed reading at the
    thresholds the model stored (NaN for a model that stored none: files made before they were kept)."""
    row = {c: float("nan") for c in operating_columns()}
    op = operating_points(y, p)
    row.update({k: v for k, v in op.items() if k in row})
    row.update(deployed_points(y, p, thresholds))
    return row


# --- output -----------------------------------------------------------------------------------------

def matrix(rows: list[dict]) -> tuple[list[str], list[str], dict]:
    """Cross-dataset matrix: row keys "model [train sets]", column = test dataset (+transform if not none)."""
    def col(r):
        return r["test_dataset"] if r["test_transform"] in (None, "none") else f"{r['test_dataset']} ({r['test_transform']})"

    row_keys, col_keys, groups = group_matrix(rows, lambda r: f"{r['model']} [{r['train_datasets']}]", col)
    return row_keys, col_keys, {k: g[-1] for k, g in groups.items()}


def mixed_sizes(cells: dict) -> bool:
    """Whether the matrix's cells rest on different numbers of test images (then each cell shows its n)."""
    return len({r["n"] for r in cells.values()}) > 1


def matrix_cell(r: dict | None, with_n: bool) -> str:
    """A matrix cell: accuracy (4 decimals), `*` when within-dataset, and ` (n=N)` when sizes are mixed."""
    if r is None:
        return ""
    return _fmt(r["accuracy"]) + ("*" if r["kind"] == "within" else "") + (f" (n={r['n']})" if with_n else "")


def matrix_title(cells: dict) -> str:
    """What the matrix's cells show, with the one n when every cell has the same."""
    sizes = {r["n"] for r in cells.values()}
    n = f"n={next(iter(sizes))} test images in every cell" if len(sizes) == 1 else "n = test images per cell"
    return f"rows: model [training datasets], columns: test dataset; * = within; {n}"


def _with_ci(r: dict, name: str) -> str:
    """`0.9123 [0.8812, 0.9401]`, or the point alone where the interval is undefined."""
    lo, hi = r.get(f"{name}_ci_low"), r.get(f"{name}_ci_high")
    if not isinstance(lo, float) or lo != lo:
        return _fmt(r.get(name))
    return f"{_fmt(r.get(name))} [{lo:.4f}, {hi:.4f}]"


def _fmt(v) -> str:
    """A Markdown cell: floats with 4 decimals (NaN as "nan")."""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def to_csv(rows: list[dict], columns=None, digits: int | None = 6, raw: bool = False) -> str:
    """CSV of result rows; text cells guarded against spreadsheet formulas unless `raw` (`fileio.csv_text`)."""
    return csv_text(rows, columns or COLUMNS + EXTRA_COLUMNS, number_format(digits), raw=raw)


def pooled_points(rows: list[dict], per_image: list[dict]) -> list[dict]:
    """Per model and test transform, the operating points of every test image its rows scored, pooled (each
    distinct image once, by content hash): the "pooled" line of eval.md's operating-point table."""
    transform = {r["features"]: r.get("test_transform", "none") for r in rows}
    groups: dict[tuple, dict] = {}
    for im in per_image:
        key = (im["model"], transform.get(im["features"], "none"))
        groups.setdefault(key, {}).setdefault(im["sha256"], (im["label"], im["p_fake"]))
    out = []
    for (model, tr), seen in groups.items():
        y = np.array([v[0] for v in seen.values()])
        p = np.array([v[1] for v in seen.values()], dtype=np.float64)
        n_sets = len({r["test_dataset"] for r in rows if r["model"] == model and r.get("test_transform", "none") == tr})
        out.append({"model": model, "test_transform": tr, "n_sets": n_sets, "n_real": int((y == 0).sum()),
                    "n_fake": int((y == 1).sum()), **operating_points(y, p)})
    return out


def to_markdown(rows: list[dict], per_image: list[dict] | None = None) -> str:
    cols = ["model", "train_datasets", "test_dataset", "kind", "test_transform", "n", "accuracy",
            "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy", "roc_auc", "accuracy_at_0_5"]
    table = [cols] + [[_fmt(r[c]) for c in cols] for r in rows]
    rk, ck, cells = matrix(rows)
    with_n = mixed_sizes(cells)
    grid = [["model"] + ck] + [[k] + [matrix_cell(cells.get((k, c)), with_n) for c in ck] for k in rk]
    ops = [["model", "test_dataset", "n_real", "n_fake", "AUC [95% CI]", "EER", "TPR@1%FPR oracle",
            "TPR@5%FPR oracle", "TPR / FPR at the model's 5%-FPR cut (deployed)"]]
    for r in rows:
        ops.append([r["model"], r["test_dataset"], str(r["n_real"]), str(r["n_fake"]),
                    _with_ci(r, "roc_auc"), _fmt(r.get("eer")), _with_ci(r, "tpr_at_fpr_1"), _with_ci(r, "tpr_at_fpr_5"),
                    f"{_fmt(r.get('tpr_deployed_fpr_5'))} / {_fmt(r.get('fpr_deployed_fpr_5'))}"])
    for r in pooled_points(rows, per_image) if per_image else []:
        shown = "pooled" + ("" if r["test_transform"] in ("none", None) else f" ({r['test_transform']})")
        ops.append([r["model"], f"{shown}: {r['n_sets']} test set(s)", str(r["n_real"]), str(r["n_fake"]),
                    _with_ci(r, "roc_auc"), _fmt(r.get("eer")), _with_ci(r, "tpr_at_fpr_1"), _with_ci(r, "tpr_at_fpr_5"),
                    "n/a"])
    lines = ["# Evaluation", "", md_table(table),
             "", f"## Accuracy matrix ({matrix_title(cells)})", "", md_table(grid),
             "", "## Operating points", "",
             "Oracle: the threshold set on each test set's own reals (comparable to AUC; no deployed detector could "
             "choose it). Deployed: the threshold the model stored for 5% false alarms on its validation reals, "
             "with the TPR and the FPR that occurred on the test set (nan: a model file made before these were "
             "stored, or a class missing). Pooled: every distinct test image of the model's rows at once (by "
             "content hash), under each test transform. Intervals: percentile bootstrap over images, 1,000 "
             "draws.", "",
             md_table(ops)]
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], out_dir: str, per_image: list | None = None, raw_csv: bool = False) -> list[Path]:
    """eval.csv, eval.json, eval.md (and eval_images.csv when per-image scores are given), atomically.
    `raw_csv`: CSV text cells as they are, not guarded against spreadsheet formulas (JSON is always raw)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"eval.csv": to_csv(rows, raw=raw_csv),
             "eval.json": to_json(rows, indent=2) + "\n",
             "eval.md": to_markdown(rows, per_image)}
    if per_image is not None:
        files["eval_images.csv"] = to_csv(per_image, ["model", "features", "test_dataset", "kind", "path", "sha256",
                                                      "label", "p_fake", "score"], digits=None, raw=raw_csv)
    written = []
    for name, text in files.items():
        written.append(atomic_write_text(out / name, text))
    return written
