"""`deepfake fit`: two folders of images -> a detector model file, in one step (`recipes.fit`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from deepfake_cli.cli.common import QUIET, console, err_console, make_progress, print_json, safe, typer_command
from deepfake_cli.options import FitOptions, values


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_cmd)


@typer_command(o=FitOptions)
def fit_cmd(
    datasets: Annotated[Optional[list[str]], typer.Argument(help="Datasets as `extract` takes them ([NAME=]PATH: a "
                                                            "folder with real/ and fake/ below it, .tar shards, "
                                                            "lists), instead of or beside --real/--fake.")] = None,
    *,
    o: FitOptions,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead.")] = False,
) -> None:
    """Make a detector from two folders: extract features (kept for reuse), measure on a held-out part
    (accuracy, n, 95% interval), then train the model on every image; prints the `predict` line to run next."""
    from deepfake_cli import api

    def say(line: str) -> None:
        if not (quiet or json_out):
            err_console.print(line, highlight=False, markup=False)

    bar = make_progress("extract", unit="img/s", transient=True, disable=quiet or json_out)
    task = bar.add_task("extract", total=None)
    with bar:
        r = api.fit(list(datasets or []), **values(o), say=say,
                    progress=lambda done, total: bar.update(task, completed=done, total=total))
    if json_out:
        print_json(r)
        return
    n = sum(c["real"] + c["fake"] for c in r.n_images.values())
    h = r.heldout
    if h:
        console.print(f"held-out accuracy {h['accuracy']:.3f} ({h['n_correct']}/{h['n']}; {h['n_real']} real, "
                      f"{h['n_fake']} fake), 95% Wilson interval {h['ci_low']:.2f}-{h['ci_high']:.2f}, "
                      f"{r.classifier} on {r.backbone} features", highlight=False, markup=False)
    else:
        console.print("held-out accuracy: not measured (too few images to hold a test part out)", highlight=False,
                      markup=False)
    console.print(f"wrote {r.out}: {r.classifier} trained on all {n} images (threshold {r.threshold:.3f}); the "
                  f"held-out figure above is its twin's, trained with {o.test_size:.0%} held out", highlight=False,
                  markup=False)
    console.print(f"features kept for reuse: {r.features}", highlight=False, markup=False)
    for w in r.warnings:
        err_console.print(f"[yellow]warning[/]: {safe(w)}", highlight=False)
    console.print(f"next: {r.predict_command}", highlight=False, markup=False)
