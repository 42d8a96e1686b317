"""`deepfake explain`: evidence maps of a model for image files (`stages.explain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepfake_cli.cli.common import QUIET, console, err_console, make_progress, print_json, safe, typer_command
from deepfake_cli.cli.extract_cmds import print_skipped
from deepfake_cli.options import ExplainOptions, values


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_cmd)


@typer_command(o=ExplainOptions)
def explain_cmd(
    model: Annotated[Path, typer.Argument(help="Model file (one; or a zoo name such as zoo:univfd).")],
    paths: Annotated[list[Path], typer.Argument(help="Image files, folders (searched recursively), .tar shards, and "
                                                "image lists (.txt/.csv).")],
    *,
    o: ExplainOptions,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary and the rows as JSON instead.")] = False,
) -> None:
    """Evidence maps: where in each image the model finds its evidence for "fake". Writes <image>.png (the map
    over the image: red for fake, blue for real, grey where the model never saw the pixel), <image>.npy (the raw
    map, the image's own height x width) and index.csv / index.json into --out. The method is chosen per model
    and stated: cam (exact, a CNN with a linear head), tokens (an approximation, a ViT with a linear head) or
    occlusion (any model; costly, refused past --max-images).

    Example: deepfake explain models/lda.model new_images/ --out maps/
    """
    from deepfake_cli import api

    bar = make_progress("explain", unit="img/s", transient=True, disable=quiet)
    task = bar.add_task("explain", total=None)
    with bar:
        res = api.explain(str(model), [str(p) for p in paths],
                          **values(o), progress=lambda done, total: bar.update(task, completed=done, total=total))
    if json_out:
        print_json({**res.summary(), "rows": res.rows, "skipped": res.skipped})
        return
    print_skipped(res.skipped)
    console.print(f"wrote {res.n_images} map(s) to {res.out_dir} ({res.method}, "
                  f"{'exact' if res.exact else 'not exact'}); index: {res.out_dir / 'index.csv'}",
                  highlight=False, markup=False)
    if not quiet:
        err_console.print(f"method: {safe(res.method_note)}", highlight=False)
        if res.n_images:
            per = sum(r["seconds"] for r in res.rows) / res.n_images
            err_console.print(f"{per:.2f} s per image", highlight=False, markup=False)
