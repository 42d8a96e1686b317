"""`deepfake reduce`, `train`, `eval`, `predict`, `classifiers`, `reducers`."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from deepfake_cli.cli.common import console, err_console
from deepfake_cli.errors import DeepfakeError


def register(app: typer.Typer) -> None:
    app.command("reduce")(reduce_cmd)
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
    app.command("predict")(predict_cmd)
    app.command("classifiers")(classifiers_cmd)
    app.command("reducers")(reducers_cmd)


def _split(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def reduce_cmd(
    features: Annotated[Path, typer.Argument(help="Feature file written by `deepfake extract`.")],
    method: Annotated[str, typer.Option(help="Reducer name (see `deepfake reducers`).")] = ...,
    out: Annotated[Path, typer.Option("--out", "-o", help="Reducer file to write (e.g. pca64.reducer).")] = ...,
    dim: Annotated[Optional[int], typer.Option(help="Output dimension: --param dim=N (defaults: `deepfake reducers`).")] = None,
    variance: Annotated[Optional[float], typer.Option(help="Fraction of the variance to keep: --param variance=F.")] = None,
    hidden: Annotated[Optional[str], typer.Option(help="Hidden layer sizes: --param hidden=512,128.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs: --param epochs=N.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate: --param lr=F.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Any hyper-parameter of the reducer, "
                                                       "KEY=VALUE (repeatable; see `deepfake reducers`).")] = None,
    datasets: Annotated[Optional[str], typer.Option(help="Fit on these datasets of the file only (A,B).")] = None,
    seed: Annotated[int, typer.Option(help="Seed, for reducers that take one.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda, for reducers that take a device.")] = "auto",
    write_features: Annotated[Optional[Path], typer.Option(help="Also write the reduced features as a new HDF5 file.")] = None,
) -> None:
    """Fit a dimensionality reducer on a feature file (unsupervised: labels are not used)."""
    from deepfake_cli.reduce import reduce
    from deepfake_cli.reducers import REDUCERS

    # the convenience options are plain hyper-parameters: the chosen reducer's entry types and checks them
    given = {"dim": dim, "variance": variance, "hidden": hidden, "epochs": epochs, "lr": lr}
    pairs = [f"{k}={v}" for k, v in given.items() if v is not None] + list(param or [])
    s = reduce(str(features), method, str(out), params=REDUCERS.parse_params(method, pairs), seed=seed,
               device=device, datasets=_split(datasets), write_features=str(write_features) if write_features else None)
    extra = f", explained variance {s.explained_variance:.4f}" if s.explained_variance is not None else ""
    if "epochs_run" in s.meta:
        extra += f", {s.meta['epochs_run']} epochs"
    console.print(f"{s.method}: {s.input_dim} -> {s.output_dim} dimensions, fitted on {s.n_fit} images; "
                  f"reconstruction MSE {s.reconstruction['mse']:.6g} (relative {s.reconstruction['relative']:.4f}){extra}; "
                  f"wrote {s.out}" + (f" and {s.features_out}" if s.features_out else ""), highlight=False)


def train_cmd(
    features: Annotated[Path, typer.Argument(help="Feature file written by `deepfake extract`.")],
    classifier: Annotated[str, typer.Option(help="Classifier name(s), comma-separated, or 'all' (see `deepfake classifiers`).")] = ...,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file for one classifier; a folder receiving "
                                                          "<name>.model per classifier for several.")] = ...,
    reducer: Annotated[Optional[Path], typer.Option(help="Reducer file from `deepfake reduce`, built into the model.")] = None,
    datasets: Annotated[Optional[str], typer.Option(help="Train on these datasets of the file only (A,B).")] = None,
    test_size: Annotated[float, typer.Option(help="Fraction of each dataset held out of training for `eval`.")] = 0.2,
    val_size: Annotated[float, typer.Option(help="Fraction of the training part used to choose the threshold.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the splits and of the classifiers.")] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda, for classifiers that take a device.")] = "cpu",
    param: Annotated[Optional[list[str]], typer.Option("--param", help="A classifier hyper-parameter, KEY=VALUE for "
                                                       "every chosen classifier that takes KEY, or NAME.KEY=VALUE "
                                                       "for one (repeatable; see `deepfake classifiers`).")] = None,
) -> None:
    """Train classifiers on features; hold out a seeded, stratified test part of each dataset for `eval`."""
    from deepfake_cli.classifiers import parse_classifier_names, parse_classifier_params
    from deepfake_cli.train import train

    def progress(name):
        err_console.print(f"training {name} ...", highlight=False)

    names = parse_classifier_names(classifier)
    results = train(str(features), names, str(out), reducer=str(reducer) if reducer else None,
                    datasets=_split(datasets), test_size=test_size, val_size=val_size, seed=seed, device=device,
                    progress=progress, params=parse_classifier_params(names, list(param or [])))
    t = Table(title=f"trained on {features}")
    for col in ("classifier", "fit", "val", "test", "thresh", "val bal.acc", "val AUC", "s", "model"):
        t.add_column(col, overflow="fold")
    for r in results:
        v = r.validation
        t.add_row(escape(r.classifier), str(r.n_fit), str(r.n_val), str(sum(r.heldout.values())), f"{r.threshold:.3f}",
                  _f(v.get("balanced_accuracy")), _f(v.get("roc_auc")), f"{r.seconds:.1f}", escape(str(r.path)))
    console.print(t)
    for r in results:
        for note in r.warnings:
            err_console.print(f"[yellow]note[/] {r.classifier}: {note}", highlight=False)


def _f(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"


def _ci(low, high) -> str:
    if any(v is None or math.isnan(v) for v in (low, high)):
        return "-"
    return f"{low:.2f}-{high:.2f}"


def _split_feature_files(models: list[Path], features: list[Path]) -> tuple[list[Path], list[Path]]:
    import h5py

    kept = []
    for m in models:
        if m.is_file() and h5py.is_hdf5(m):
            features.append(m)
        else:
            kept.append(m)
    if not kept:
        raise DeepfakeError("no model given: pass model files or folders before --features.")
    return kept, features


def eval_cmd(
    models: Annotated[list[Path], typer.Argument(help="Model files, or folders of *.model files.")],
    features: Annotated[list[Path], typer.Option("--features", "-f", help="Feature file(s) to score on: "
                                                 "`--features A.h5 B.h5` or `-f A.h5 -f B.h5`.")] = ...,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for eval.csv, eval.json, eval.md, eval_images.csv.")] = None,
) -> None:
    """Score models within-dataset (their held-out images) and cross-dataset (all images of other datasets)."""
    from deepfake_cli.evaluate import evaluate, matrix, write_outputs

    # `--features A.h5 B.h5` (the documented shape) leaves B.h5 among the positional models: an
    # HDF5 file is never a model (those are skops zip archives), so it goes back to the features.
    models, features = _split_feature_files(models, list(features))
    per_image: list = []
    notes: list = []
    rows = evaluate([str(m) for m in models], [str(f) for f in features], per_image=per_image, notes=notes)
    for note in notes:
        err_console.print(f"[yellow]note[/]: {note}", highlight=False)
    if not rows:
        err_console.print("[yellow]nothing to score[/]: none of the models' held-out images or other datasets "
                          "are in these feature files.")
        raise typer.Exit(1)
    console.print(_eval_table(rows))
    console.print(_accuracy_matrix(*matrix(rows)))
    if out:
        written = write_outputs(rows, str(out), per_image=per_image)
        console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def _eval_table(rows: list[dict]) -> Table:
    """One line per (model, test dataset); a transform column when any row tests another transform."""
    robust = any(r["train_transform"] != r["test_transform"] for r in rows)
    t = Table(title="evaluation: accuracy at the model's threshold, 95% Wilson interval")
    cols = ["model", "test set", "kind"] + (["transform"] if robust else []) + ["n", "acc", "95% CI", "bal.acc",
                                                                                 "AUC", "acc@.5"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("model", "test set", "kind", "transform") else "right",
                     overflow="fold", no_wrap=col in ("95% CI", "acc", "n"), min_width=9 if col == "95% CI" else None)
    for r in rows:
        cells = [r["model"], r["test_dataset"], r["kind"]]
        if robust:
            cells.append(f"{r['train_transform']}->{r['test_transform']}")
        cells += [str(r["n"]), _f(r["accuracy"]), _ci(r["accuracy_ci_low"], r["accuracy_ci_high"]),
                  _f(r["balanced_accuracy"]), _f(r["roc_auc"]), _f(r["accuracy_at_0_5"])]
        t.add_row(*[escape(c) for c in cells])
    return t


def _accuracy_matrix(rk: list, ck: list, cells_by_key: dict) -> Table:
    m = Table(title=escape("accuracy: rows = model [training datasets], columns = test dataset (* = within-dataset)"))
    m.add_column(escape("model [trained on]"))
    for c in ck:
        m.add_column(escape(c), justify="right")
    for k in rk:
        vals = []
        for c in ck:
            r = cells_by_key.get((k, c))
            vals.append("" if r is None else _f(r["accuracy"]) + ("*" if r["kind"] == "within" else ""))
        m.add_row(escape(k), *vals)
    return m


def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Model file (or a folder of *.model files: each scores every image).")],
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders (searched recursively).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the rows to this file instead of stdout.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="JSON lines instead of CSV.")] = False,
    weights: Annotated[Optional[str], typer.Option(help="Backbone weights file (must be the ones the model was trained with).")] = None,
    transform: Annotated[str, typer.Option(help="Test-time transform before the backbone (default none, whatever "
                                                "the model was trained with).")] = "none",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
) -> None:
    """Score image files: one row per image with path, p_fake, label (real|fake) and model."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from deepfake_cli.fileio import atomic_write_text
    from deepfake_cli.predict import predict, to_csv, to_jsonl

    # a live bar only on a terminal: piped or captured stderr stays the summary lines alone
    bar = Progress(TextColumn("[bold]predict[/]"), BarColumn(), MofNCompleteColumn(), console=err_console,
                   transient=True, disable=not err_console.is_terminal)
    task = bar.add_task("predict", total=None)
    with bar:
        res = predict(str(model), [str(p) for p in paths], weights=weights, transform=transform, device=device,
                      batch_size=batch_size, progress=lambda done, total: bar.update(task, completed=done, total=total))
    text = to_jsonl(res.rows) if json_lines else to_csv(res.rows)
    if out:
        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    for s in res.skipped:
        err_console.print(f"[yellow]skipped[/] {s['path']}: {s['reason']}", highlight=False)
    counts = "; ".join(f"{m}: {c['fake']} fake, {c['real']} real" for m, c in res.counts().items())
    err_console.print(f"scored {res.n_images} image(s)" + (f" ({counts})" if counts else "")
                      + f", skipped {len(res.skipped)}" + (f"; wrote {out}" if out else ""), highlight=False)


def classifiers_cmd() -> None:
    """List the classifiers `train --classifier` takes, with their hyper-parameters (`train --param`)."""
    from deepfake_cli.classifiers import list_classifiers

    t = Table(title="classifiers (train --classifier NAME[,NAME...] or all; --param KEY=VALUE)")
    for col in ("name", "scaled", "description", "hyper-parameters (default)"):
        t.add_column(col, overflow="fold")
    for c in list_classifiers():
        t.add_row(escape(c["name"]), "yes" if c["scaled"] else "", escape(_with_caps(c)), _params_text(c["params"]))
    console.print(t)


def reducers_cmd() -> None:
    """List the reducers `reduce --method` takes, with their hyper-parameters (`reduce --param`)."""
    from deepfake_cli.reducers import list_reducers

    t = Table(title="reducers (reduce --method NAME; --param KEY=VALUE)")
    for col in ("name", "description", "hyper-parameters (default)"):
        t.add_column(col, overflow="fold")
    for r in list_reducers():
        t.add_row(escape(r["name"]), escape(_with_caps(r)), _params_text(r["params"]))
    console.print(t)


def _with_caps(row: dict) -> str:
    takes = [k for k in ("random_state", "device") if k in row["capabilities"]]
    names = {"random_state": "--seed", "device": "--device"}
    return row["description"] + (f" (takes {', '.join(names[k] for k in takes)})" if takes else "")


def _params_text(params: list[dict]) -> str:
    if not params:
        return "-"
    return "\n".join(f"[bold]{escape(p['name'])}[/]={escape(_default(p['default']))}: {escape(p['help'])}"
                     for p in params)


def _default(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)
