"""`deepfake extract`, `deepfake info`, `deepfake backbones`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from deepfake_cli.cli.common import console, err_console, make_progress, print_json, typer_command
from deepfake_cli.data.skips import summary_lines
from deepfake_cli.options import EngineOptions, ExtractOptions, values

# Shared with `audit`, `predict` and the study: what a PATH may be.
SOURCES_HELP = ("a folder, a .tar shard or a folder of .tar shards (webdataset: KEY.jpg + KEY.cls), a .parquet file or "
                "a folder of them ('image' and 'label' columns; other names as 'F.parquet?image=img&label=y'), or a "
                ".txt/.csv list of image paths; labels from real/ + fake/, 0_real/ + 1_fake/ or nature/ + ai/ folders "
                "anywhere below, a .csv 'label' column, a parquet 'label' column or .cls files (else unlabelled).")


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_cmd)
    app.command("info")(info_cmd)
    app.command("datasets")(datasets_cmd)
    app.command("backbones")(backbones_cmd)


@typer_command(o=ExtractOptions, e=EngineOptions)
def extract_cmd(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="[NAME=]PATH...", help=f"Datasets, optionally named NAME=PATH: {SOURCES_HELP}",
        show_default=False)] = None,
    *,
    o: ExtractOptions,
    e: EngineOptions,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead (no progress "
                                                          "bar).")] = False,
) -> None:
    """Extract backbone features of image datasets into one HDF5 file."""
    from deepfake_cli import api

    bar = _ExtractBar(quiet or json_out)
    with bar.progress:
        s = api.extract(datasets or [], **values(o, e), progress=bar.update, on_start=bar.start,
                        warn=lambda line: err_console.print(f"[yellow]warning[/] {escape(line)}", highlight=False))
    if json_out:
        print_json(s)
        return
    _print_summary(s, o.out)


class _ExtractBar:
    """The rich bar behind extract's `on_start` / `progress` callbacks (rate, elapsed time and ETA)."""

    def __init__(self, quiet: bool):
        self.progress = make_progress("extract", unit="img/s", disable=quiet)
        # until the first batch (finding the images, loading the model): a bar without a total whose
        # elapsed time ticks, so a long start does not look like a hang
        self.waiting = self.progress.add_task("extract", total=None)

    def start(self, total, resumed):
        self.progress.remove_task(self.waiting)
        # the rate counts this call's images only: rich measures it from the updates, not from `resumed`
        self.task = self.progress.add_task("extract", total=total, completed=resumed)
        if resumed:
            err_console.print(f"resuming: {resumed} of {total} images already extracted")

    def update(self, done, total):
        self.progress.update(self.task, completed=done)


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


def datasets_cmd(
    paths: Annotated[list[str], typer.Argument(metavar="[NAME=]PATH...", help="Dataset paths as `extract` takes them.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show what discovery recognised in dataset paths: the benchmark layout (ForenSynths, UnivFD's
    diffusion_datasets, Synthbuster, GenImage, or a plain folder), and per dataset its classes and counts,
    the real pool a fake-only set is scored against, and a generator's categories."""
    from deepfake_cli import api

    rows = api.list_datasets(paths)
    if json_out:
        print_json(rows)
        return
    t = Table()
    for col in ("dataset", "layout", "real", "fake", "unlabelled", "paired with reals of", "categories", "root"):
        t.add_column(col, no_wrap=col in ("dataset", "layout"), justify="right" if col in ("real", "fake", "unlabelled")
                     else "left")
    for r in rows:
        cats = ", ".join(f"{k} {v}" for k, v in r["categories"].items())
        t.add_row(escape(r["dataset"]), r["layout"], str(r["real"]), str(r["fake"]), str(r["unlabelled"]),
                  escape(r["reals_pool"] or ""), escape(cats), escape(r["root"]))
    console.print(t)


def info_cmd(features: Annotated[Path, typer.Argument(help="A feature file written by `deepfake extract`, or a model "
                                                        "or reducer file (its model card).")],
             json_out: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False) -> None:
    """Show what a feature file holds and what made it, or a model's or reducer's card."""
    import json
    import zipfile

    from deepfake_cli.store.features import summarize

    if features.is_file() and zipfile.is_zipfile(features):  # models and reducers are skops zip archives
        _card(features, json_out)
        return
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


def _card(path: Path, json_out: bool) -> None:
    """`info` on a model or reducer file: its metadata (the model card), loaded through the allowlist."""
    from deepfake_cli.errors import DeepfakeError
    from deepfake_cli.store.artifacts import load_artifact

    try:
        art = load_artifact(path, "model")
    except DeepfakeError as exc:
        if "is a deepfake-cli reducer" not in str(exc):
            raise
        art = load_artifact(path, "reducer")
    if json_out:
        print_json({"kind": art.kind, "name": art.name, **art.meta})
        return
    t = Table(title=escape(f"{path} ({art.kind} {art.name})"), show_header=False)
    t.add_column(overflow="fold")
    t.add_column(overflow="fold")
    for key, value in art.meta.items():
        t.add_row(escape(key), escape(_card_value(value)))
    console.print(t)


def _card_value(value, limit: int = 300) -> str:
    import json

    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
