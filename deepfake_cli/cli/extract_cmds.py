"""`deepfake extract`, `deepfake info`, `deepfake backbones`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from deepfake_cli.cli.common import console, err_console
from deepfake_cli.transforms import TRANSFORM_HELP


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_cmd)
    app.command("info")(info_cmd)
    app.command("backbones")(backbones_cmd)


def extract_cmd(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="[NAME=]PATH...", help="Dataset folders (real/ + fake/, 0_real/ + 1_fake/ anywhere below, "
        "or unlabelled), optionally named NAME=PATH.", show_default=False)] = None,
    backbone: Annotated[str, typer.Option(help="Backbone name; join several with '+' (see `deepfake backbones`).")] = "effnet-lite0",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output HDF5 file (created, resumed, or appended to).")] = ...,
    transform: Annotated[str, typer.Option(help=f"Transform before the backbone: {TRANSFORM_HELP}.")] = "none",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes (-1: choose from the CPU count).")] = -1,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    weights: Annotated[Optional[str], typer.Option(help="Local weights file for the backbone (else env var, cache, hub).")] = None,
    layers: Annotated[str, typer.Option(help="Which blocks to pool: last | early | all | comma-separated block indices.")] = "last",
    seed: Annotated[int, typer.Option(help="Seed of the random transforms.")] = 0,
    real: Annotated[Optional[str], typer.Option(help="Folder of real images (one dataset, with --fake/--name).")] = None,
    fake: Annotated[Optional[str], typer.Option(help="Folder of generated images (one dataset, with --real/--name).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name of the --real/--fake dataset.")] = None,
    align: Annotated[Optional[str], typer.Option(help="SIZE:QUALITY: bring every image to SIZExSIZE and re-encode as JPEG "
                                                      "at QUALITY, so format and size stop being cues.")] = None,
    dtype: Annotated[str, typer.Option(help="Stored feature precision: float32 | float16.")] = "float32",
    overwrite: Annotated[bool, typer.Option(help="Discard an existing output and any unfinished run.")] = False,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Random backbone weights (speed tests only).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Extract backbone features of image datasets into one HDF5 file."""
    from deepfake_cli.extract import extract

    bar = Progress(TextColumn("[bold]extract[/]"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(), TextColumn("eta"),
                   TimeRemainingColumn(), console=err_console, disable=quiet, transient=False)
    state = {}

    def on_start(total, resumed):
        import time
        state["task"] = bar.add_task("extract", total=total, completed=resumed, rate="-")
        state["t0"], state["n0"] = time.perf_counter(), resumed
        if resumed:
            err_console.print(f"resuming: {resumed} of {total} images already extracted")

    def progress(done, total):
        import time
        dt = time.perf_counter() - state["t0"]
        rate = f"{(done - state['n0']) / dt:.1f}" if dt > 0 else "-"
        bar.update(state["task"], completed=done, rate=rate)

    with bar:
        s = extract(datasets or [], backbone=backbone, out=str(out), transform=transform, batch_size=batch_size,
                    workers=workers, device=device, weights=weights, layers=layers, seed=seed, real=real,
                    fake=fake, name=name, align=align, dtype=dtype, overwrite=overwrite,
                    pretrained=not random_weights, progress=progress, on_start=on_start)
    for ds in s.already_present:
        err_console.print(f"dataset '{ds}' is already in {out}: nothing to do for it")
    for row in s.skipped:
        err_console.print(f"[yellow]skipped[/] {row['dataset']}/{row['path']}: {row['reason']}", highlight=False)
    for group in s.duplicates:
        err_console.print(f"[yellow]duplicate content[/]: {', '.join(group)}", highlight=False)
    sec = s.seconds
    parts = ", ".join(f"{n}: {c['real']} real, {c['fake']} fake" + (f", {c['unknown']} unlabelled" if c["unknown"] else "")
                      for n, c in s.datasets.items())
    console.print(
        f"wrote {s.n_written} feature vectors to {out}" + (f" ({parts})" if parts else "")
        + f"; skipped {s.n_skipped} unreadable, {s.n_duplicates} duplicate(s); "
        + f"{s.images_per_second:.1f} img/s on {s.device} (read {sec['read']:.1f}s, model {sec['model']:.1f}s, "
        + f"write {sec['write']:.1f}s)", highlight=False)


def info_cmd(features: Annotated[Path, typer.Argument(help="A feature file written by `deepfake extract`.")],
             json_out: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False) -> None:
    """Show what a feature file holds and what made it."""
    import json

    from deepfake_cli.features import summarize

    meta = summarize(features)
    counts = meta["counts"]
    if json_out:
        console.print_json(json.dumps(meta))
        return
    t = Table(title=str(features), show_header=False)
    for k in ("backbone", "dim", "layers", "weights_id", "transform", "seed", "dtype", "tool_version", "created"):
        t.add_row(k, str(meta.get(k)))
    t.add_row("preprocessing", ", ".join(f"{k}={v}" for k, v in meta.get("preprocessing", {}).items()))
    t.add_row("images", str(meta["n"]))
    t.add_row("skipped", str(len(meta["skipped"])))
    t.add_row("duplicate groups", str(len(meta["duplicates"])))
    console.print(t)
    dt = Table(title="datasets")
    for col in ("dataset", "real", "fake", "unknown", "root"):
        dt.add_column(col)
    for d, c in counts.items():
        dt.add_row(d, str(c.get("real", 0)), str(c.get("fake", 0)), str(c.get("unknown", 0)),
                   meta.get("roots", {}).get(d, ""))
    console.print(dt)
    for row in meta["skipped"]:
        console.print(f"skipped {row['dataset']}/{row['path']}: {row['reason']}", highlight=False)


def backbones_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the backbones, their feature size, where weights come from and whether they are here."""
    import json

    from deepfake_cli.backbones import list_backbones

    rows = list_backbones()
    if json_out:
        console.print_json(json.dumps(rows))
        return
    t = Table(title="backbones (combine with '+', e.g. clip-vit-b16+dino-resnet50)")
    for col in ("name", "dim", "input", "weights here", "source"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], str(r["dim"]), str(r.get("input_size", "")),
                  "yes" if r.get("weights_present") else "no", str(r.get("source", "")))
    console.print(t)
