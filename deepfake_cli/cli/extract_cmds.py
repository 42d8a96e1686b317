"""`deepfake extract`, `deepfake info`, `deepfake backbones`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.markup import escape
from rich.table import Table

from deepfake_cli.cli.common import console, err_console
from deepfake_cli.data.skips import summary_lines
from deepfake_cli.data.transforms import TRANSFORM_HELP

# Shared with `audit`, `predict` and the study: what a PATH may be, and the Ray engine's options.
SOURCES_HELP = ("a folder, a .tar shard or a folder of .tar shards (webdataset: KEY.jpg + KEY.cls), a .parquet file or "
                "a folder of them ('image' and 'label' columns; other names as 'F.parquet?image=img&label=y'), or a "
                ".txt/.csv list of image paths; labels from real/ + fake/, 0_real/ + 1_fake/ or nature/ + ai/ folders "
                "anywhere below, a .csv 'label' column, a parquet 'label' column or .cls files (else unlabelled).")
RAY_ADDRESS_HELP = ("--engine ray: the cluster, HOST:PORT (default: RAY_ADDRESS, else a local cluster for this run); "
                    "ray:// (Ray Client) is not supported.")
MODEL_WORKERS_HELP = "--engine ray: model actors (default 1)."
GPUS_PER_WORKER_HELP = "--engine ray: GPUs per model actor (default 0: CPU; fractions share a GPU)."


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_cmd)
    app.command("info")(info_cmd)
    app.command("backbones")(backbones_cmd)


def _engines_help() -> str:
    from deepfake_cli.inference.engines import ENGINES

    return "; ".join(f"{name} ({desc})" for name, (_, desc) in ENGINES.items())


def extract_cmd(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="[NAME=]PATH...", help=f"Datasets, optionally named NAME=PATH: {SOURCES_HELP}",
        show_default=False)] = None,
    backbone: Annotated[str, typer.Option(help="Backbone name; join several with '+' (see `deepfake backbones`).")] = "effnet-lite0",
    out: Annotated[str, typer.Option("--out", "-o", help="Output HDF5 file (created, resumed, or appended to).")] = ...,
    transform: Annotated[str, typer.Option(help=f"Transform before the backbone: {TRANSFORM_HELP}.")] = "none",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    workers: Annotated[int, typer.Option(help="Reader processes: DataLoader workers (local engine) or read tasks at a "
                                              "time (ray engine); -1: choose from the CPU count.")] = -1,
    engine: Annotated[str, typer.Option(help=f"Where reading and the model run: {_engines_help()}.")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help=RAY_ADDRESS_HELP)] = None,
    model_workers: Annotated[Optional[int], typer.Option(help=MODEL_WORKERS_HELP)] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(help=GPUS_PER_WORKER_HELP)] = None,
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
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output (refused when it holds datasets this "
                                            "command does not name: delete it to start from nothing; any other kind "
                                            "of file is replaced) and discard any unfinished run.")] = False,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Random backbone weights (speed tests only).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Extract backbone features of image datasets into one HDF5 file."""
    from deepfake_cli import api

    bar = _ExtractBar(quiet)
    with bar.progress:
        s = api.extract(datasets or [], out=out, backbone=backbone, transform=transform, batch_size=batch_size,
                        workers=workers, engine=engine, ray_address=ray_address, model_workers=model_workers,
                        gpus_per_worker=gpus_per_worker, device=device, weights=weights, layers=layers, seed=seed,
                        real=real, fake=fake, name=name, align=align, dtype=dtype, overwrite=overwrite,
                        random_weights=random_weights, progress=bar.update, on_start=bar.start,
                        warn=lambda line: err_console.print(f"[yellow]warning[/] {escape(line)}", highlight=False))
    _print_summary(s, out)


class _ExtractBar:
    """The rich bar behind extract's `on_start` / `progress` callbacks, with this call's img/s."""

    def __init__(self, quiet: bool):
        self.progress = Progress(TextColumn("[bold]extract[/]"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=err_console,
                                 disable=quiet or not err_console.is_terminal, transient=False)

    def start(self, total, resumed):
        self.task = self.progress.add_task("extract", total=total, completed=resumed, rate="-")
        self.t0, self.n0 = time.perf_counter(), resumed  # the rate counts this call's images only
        if resumed:
            err_console.print(f"resuming: {resumed} of {total} images already extracted")

    def update(self, done, total):
        dt = time.perf_counter() - self.t0
        rate = f"{(done - self.n0) / dt:.1f}" if dt > 0 else "-"
        self.progress.update(self.task, completed=done, rate=rate)


def print_skipped(rows: list[dict], name=lambda row: row["path"]) -> None:
    """The skipped rows on stderr, bounded: long names cut, a long list summarised by reason."""
    for line in summary_lines(rows, name):
        err_console.print(f"[yellow]skipped[/] {escape(line)}", highlight=False)


def _print_summary(s, out: Path) -> None:
    for ds in s.already_present:
        err_console.print(f"dataset '{ds}' is already in {out}: nothing to do for it", markup=False, highlight=False)
    print_skipped(s.skipped, lambda row: f"{row['dataset']}/{row['path']}")
    for group in s.duplicates:
        err_console.print(f"[yellow]duplicate content[/]: {escape(', '.join(group))}", highlight=False)
    sec = s.seconds
    parts = ", ".join(f"{n}: {c['real']} real, {c['fake']} fake" + (f", {c['unknown']} unlabelled" if c["unknown"] else "")
                      for n, c in s.datasets.items())
    console.print(
        f"wrote {s.n_written} feature vectors to {out}" + (f" ({parts})" if parts else "")
        + f"; skipped {s.n_skipped} unreadable, {s.n_duplicates} duplicate(s); "
        + f"{s.images_per_second:.1f} img/s on {s.device} (read {sec['read']:.1f}s, model {sec['model']:.1f}s, "
        + f"write {sec['write']:.1f}s)", highlight=False, markup=False)


def info_cmd(features: Annotated[Path, typer.Argument(help="A feature file written by `deepfake extract`.")],
             json_out: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False) -> None:
    """Show what a feature file holds and what made it."""
    import json

    from deepfake_cli.store.features import summarize

    meta = summarize(features)
    counts = meta["counts"]
    if json_out:
        console.print_json(json.dumps(meta))
        return
    t = Table(title=escape(str(features)), show_header=False)  # paths and names are never markup
    for k in ("backbone", "dim", "layers", "weights_id", "transform", "seed", "dtype", "tool_version", "created"):
        t.add_row(k, escape(str(meta.get(k))))
    t.add_row("preprocessing", escape(", ".join(f"{k}={v}" for k, v in meta.get("preprocessing", {}).items())))
    t.add_row("images", str(meta["n"]))
    t.add_row("skipped", str(len(meta["skipped"])))
    t.add_row("duplicate groups", str(len(meta["duplicates"])))
    console.print(t)
    dt = Table(title="datasets")
    for col in ("dataset", "real", "fake", "unknown", "root"):
        dt.add_column(col)
    for d, c in counts.items():
        dt.add_row(escape(d), str(c.get("real", 0)), str(c.get("fake", 0)), str(c.get("unknown", 0)),
                   escape(str(meta.get("roots", {}).get(d, ""))))
    console.print(dt)
    for line in summary_lines(meta["skipped"], lambda row: f"{row['dataset']}/{row['path']}"):
        console.print(f"skipped {line}", highlight=False, markup=False)


def backbones_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Also every open_clip and timm model with pretrained weights "
                                                     "(use as open_clip:ARCH/TAG or timm:NAME).")] = False,
    pattern: Annotated[Optional[str], typer.Option("--filter", metavar="PATTERN", help="Only names containing PATTERN "
                                                   "(case-insensitive; a glob with * ? [ ]).")] = None,
    cached: Annotated[bool, typer.Option("--cached", help="Only backbones whose weights are here.")] = False,
) -> None:
    """List the backbones, their feature size, where weights come from and whether they are here."""
    import json

    from deepfake_cli import api

    rows = api.list_backbones(all=all_, pattern=pattern, cached=cached)
    if json_out:
        console.print_json(json.dumps(rows))
        return
    title = "backbones (combine with '+', e.g. clip-vit-b16+dino-resnet50)"
    if not all_:
        title += "; --all lists open_clip:ARCH/TAG and timm:NAME too"
    t = Table(title=title + (f": {len(rows)} shown" if all_ or pattern or cached else ""))
    for col in ("name", "dim", "input", "weights here", "source"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], "?" if r["dim"] is None else str(r["dim"]),
                  "?" if r.get("input_size") is None else str(r["input_size"]),
                  "yes" if r.get("weights_present") else "no", str(r.get("source", "")))
    console.print(t)
