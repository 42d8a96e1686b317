"""`deepfake reduce`, `train`, `eval`, `predict`, `classifiers`, `reducers`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from deepfake_cli.cli.common import QUIET, console, echo, err_console, make_progress, print_json, safe, typer_command
from deepfake_cli.cli.extract_cmds import print_skipped
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.options import EngineOptions, EvalOptions, PredictOptions, ReduceOptions, TrainOptions, values


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


@typer_command(o=ReduceOptions)
def reduce_cmd(
    features: Annotated[Path, typer.Argument(help="Feature file written by `deepfake extract`.")],
    *,
    o: ReduceOptions,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead.")] = False,
) -> None:
    """Fit a dimensionality reducer on a feature file (unsupervised: labels are not used, except by --search
    --score accuracy)."""
    from deepfake_cli import api

    s = api.reduce(features, **values(o))
    if json_out:
        print_json(s)
        return
    if s.trials:
        _print_trials(s.trials, s.meta["search"]["score"])
    extra = f", explained variance {s.explained_variance:.4f}" if s.explained_variance is not None else ""
    if "epochs_run" in s.meta:
        extra += f", {s.meta['epochs_run']} epochs"
    if "search" in s.meta:
        extra += f", best of {s.meta['search']['trials_run']} trials: #{s.meta['search']['best_trial']}"
    console.print(f"{s.method}: {s.input_dim} -> {s.output_dim} dimensions, fitted on {s.n_fit} images; "
                  f"reconstruction MSE {s.reconstruction['mse']:.6g} (relative {s.reconstruction['relative']:.4f}){extra}; "
                  f"wrote {s.out}" + (f" and {s.features_out}" if s.features_out else "")
                  + (f" and {s.trials_out}" if s.trials_out else ""), highlight=False, markup=False)


def _print_trials(trials: list[dict], score: str) -> None:
    t = Table(title=f"search trials (score: {score}; * = kept)")
    for col in ("trial", "dim", "hidden", "dropout", "lr", "epochs", "run", "val rel. MSE", "val acc", "s"):
        t.add_column(col, justify="right")
    for r in trials:
        t.add_row(f"{r['trial']}{'*' if r.get('best') else ''}", str(r["dim"]),
                  ",".join(str(h) for h in r["hidden"]), f"{r['dropout']:g}", f"{r['lr']:.2e}", str(r["epochs"]),
                  str(r["epochs_run"]), _f(r["val_relative_mse"]), _f(r["val_accuracy"]), f"{r['seconds']:.1f}")
    console.print(t)


@typer_command(o=TrainOptions)
def train_cmd(
    features: Annotated[Path, typer.Argument(help="Feature file written by `deepfake extract`.")],
    *,
    o: TrainOptions,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object per trained model instead of "
                                                          "the table.")] = False,
) -> None:
    """Train classifiers on features; hold out a seeded, stratified test part of each dataset for `eval`."""
    from deepfake_cli import api

    def progress(name):
        err_console.print(f"training {name} ...", highlight=False, markup=False)

    results = api.train(features, **values(o), progress=False if quiet or json_out else progress)
    if json_out:
        print_json(results)
        return
    t = Table(title=f"trained on {safe(features)}")
    for col in ("classifier", "fit", "val", "test", "thresh", "val bal.acc", "val AUC", "s", "model"):
        t.add_column(col, overflow="fold")
    for r in results:
        v = r.validation
        t.add_row(escape(r.classifier), str(r.n_fit), str(r.n_val), str(sum(r.heldout.values())), f"{r.threshold:.3f}",
                  _f(v.get("balanced_accuracy")), _f(v.get("roc_auc")), f"{r.seconds:.1f}", escape(str(r.path)))
    console.print(t)
    for r in results:
        for note in r.warnings if not quiet else ():
            err_console.print(f"[yellow]note[/] {safe(r.classifier)}: {safe(note)}", highlight=False)
    for warning in (results[0].sample_warnings if results else []):  # the split's, the same for every model
        err_console.print(f"[yellow]warning[/]: {safe(warning)}", highlight=False)


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


@typer_command(o=EvalOptions)
def eval_cmd(
    models: Annotated[list[Path], typer.Argument(help="Model files, or folders of *.model files.")],
    *,
    o: EvalOptions,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result rows as JSON instead of the tables.")] = False,
) -> None:
    """Score models within-dataset (their held-out images) and cross-dataset (all images of other datasets)."""
    from deepfake_cli import api

    # `--features A.h5 B.h5` (the documented shape) leaves B.h5 among the positional models: an
    # HDF5 file is never a model (those are skops zip archives), so it goes back to the features.
    models, features = _split_feature_files(models, list(o.features))
    ev = api.evaluate(models, **{**values(o), "features": features})
    for note in ev.notes if not quiet else ():
        err_console.print(f"[yellow]note[/]: {safe(note)}", highlight=False)
    if not ev.rows:
        err_console.print("[yellow]nothing to score[/]: none of the models' held-out images or other datasets "
                          "are in these feature files.")
        raise typer.Exit(1)
    if json_out:
        print_json(ev.rows)
    else:
        console.print(_eval_table(ev.rows))
        console.print(_accuracy_matrix(*ev.matrix()))
    if ev.written and not json_out:
        console.print("wrote " + ", ".join(str(p) for p in ev.written), highlight=False, markup=False)


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
    from deepfake_cli.stages.evaluate import matrix_title, mixed_sizes

    # cells of different sizes (8 held-out images beside 40 of another dataset) each show their n
    with_n = mixed_sizes(cells_by_key)
    m = Table(title=escape(f"accuracy ({matrix_title(cells_by_key)})"))
    m.add_column(escape("model [trained on]"))
    for c in ck:
        m.add_column(escape(c), justify="right")
    for k in rk:
        vals = []
        for c in ck:
            r = cells_by_key.get((k, c))
            vals.append("" if r is None else _f(r["accuracy"]) + ("*" if r["kind"] == "within" else "")
                        + (f" (n={r['n']})" if with_n else ""))
        m.add_row(escape(k), *vals)
    return m


@typer_command(o=PredictOptions, e=EngineOptions)
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Model file (or a folder of *.model files: each scores every image).")],
    paths: Annotated[list[Path], typer.Argument(help="Image files, folders (searched recursively), .tar shards or folders "
                                                "of them, .parquet files, and .txt/.csv lists of image paths.")],
    *,
    o: PredictOptions,
    e: EngineOptions,
    quiet: Annotated[bool, QUIET] = False,
) -> None:
    """Score image files: one row per image with path, p_fake (calibrated), label (real|fake), model, threshold,
    score (uncalibrated), novelty (> 1: unlike the training data) and, for labelled folders, true_label."""
    from deepfake_cli import api
    from deepfake_cli.stages.predict import to_csv, to_jsonl

    # a live bar only on a terminal: piped or captured stderr stays the summary lines alone
    bar = make_progress("predict", unit="img/s", transient=True, disable=quiet)
    task = bar.add_task("predict", total=None)
    with bar:
        res = api.predict(model, paths, **values(o, e),
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    if not o.out:  # CSV rows stay rows (the evidence goes to stderr); JSON lines end with the evidence object
        echo(to_jsonl(res.rows, evidence=res) if o.json_lines else to_csv(res.rows, raw=o.raw_csv))
    print_skipped(res.skipped)  # bounded: long names cut, a long list summarised by reason
    if not quiet:
        counts = "; ".join(f"{m}: {c['fake']} fake, {c['real']} real" for m, c in res.counts().items())
        err_console.print(f"scored {res.n_images} image(s)" + (f" ({counts})" if counts else "")
                          + f", skipped {len(res.skipped)}" + (f"; wrote {o.out}" if o.out else ""), highlight=False,
                          markup=False)
        if o.explain:
            err_console.print(f"wrote maps {o.explain}", highlight=False, markup=False)
        if o.html:
            err_console.print(f"wrote page {o.html}", highlight=False, markup=False)
        for line in res.evidence_lines:  # what the verdict rests on: training data, held-out accuracy, threshold
            err_console.print(line, highlight=False, markup=False)
    for w in res.warnings:  # inputs unlike the training data; one label for a whole folder
        err_console.print(f"[yellow]warning[/] {safe(w)}", highlight=False)
    for note in res.notes if not quiet else ():
        err_console.print(f"[yellow]note[/] {safe(note)}", highlight=False)
    for line in res.summary:  # closing lines: accuracy on the inputs whose folders say their class
        err_console.print(line, highlight=False, markup=False)


def classifiers_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the classifiers `train --classifier` takes, with their hyper-parameters (`train --param`)."""
    from deepfake_cli import api

    rows = api.list_classifiers()
    if json_out:
        print_json(rows)
        return
    t = Table(title="classifiers (train --classifier NAME[,NAME...] or all; --param KEY=VALUE)")
    for col in ("name", "scaled", "description", "on large training sets", "hyper-parameters (default)"):
        t.add_column(col, overflow="fold")
    for c in rows:
        t.add_row(escape(c["name"]), "yes" if c["scaled"] else "", escape(_with_caps(c)),
                  escape(c["at_scale"] or "-"), _params_text(c["params"]))
    console.print(t)


def reducers_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the reducers `reduce --method` takes, with their hyper-parameters (`reduce --param`)."""
    from deepfake_cli import api

    rows = api.list_reducers()
    if json_out:
        print_json(rows)
        return
    t = Table(title="reducers (reduce --method NAME; --param KEY=VALUE)")
    for col in ("name", "description", "hyper-parameters (default)"):
        t.add_column(col, overflow="fold")
    for r in rows:
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
