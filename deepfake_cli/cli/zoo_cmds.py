"""`deepfake models` (the model zoo: ready detectors) and `deepfake import-head` (a zoo entry's head file
the user already has, written as a model file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from deepfake_cli.cli.common import QUIET, console, err_console, print_json


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("import-head")(import_head_cmd)


def models_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print as JSON (every field of each entry).")] = False,
               quiet: Annotated[bool, QUIET] = False) -> None:
    """List the model zoo: ready detectors usable as zoo:NAME wherever a model file is (predict, eval, study),
    with their backbone, training data, licence, the published figures with their citation and what this
    tool measured. Use one as the model: `deepfake predict zoo:univfd new_images/`.
    """
    from deepfake_cli import api
    from deepfake_cli.zoo import get_entry

    rows = api.list_models()
    if json_out:
        print_json(rows)
        return
    t = Table(title=None if quiet else "model zoo (use zoo:NAME as the model: deepfake predict zoo:univfd DIR)")
    for col in ("name", "backbone"):  # names are typed back: never broken across lines
        t.add_column(col, no_wrap=True)
    for col in ("trained on", "licence", "published, not measured here (citation)", "measured here"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(escape(r["zoo_name"]), escape(r["backbone"]),
                  escape(r["training_data"]), escape(r["licence"]),
                  escape(f"{get_entry(r['name']).published_text} ({r['citation']})"), escape(r["measured_here"]))
    console.print(t)
    if not quiet:
        err_console.print("Only the backbone weights are fetched (or given with --weights / the backbone's "
                          "environment variable); the heads ship with deepfake-cli. `deepfake models --json` "
                          "has each entry's preprocessing, head file, sha256 and source.", highlight=False,
                          markup=False)


def import_head_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Zoo entry whose head FILE is (see `deepfake models`), "
                                                            "e.g. univfd.")],
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Your copy of the entry's head checkpoint (e.g. UnivFD's "
                                                             "fc_weights.pth); its sha256 must be the entry's.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Model file to write (e.g. univfd.model).")] = ...,
    weights: Annotated[Optional[str], typer.Option(help="The backbone weights file the model will be used with, "
                                                        "when not found on its own (its id is recorded).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file that is not a model file.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
    quiet: Annotated[bool, QUIET] = False,
) -> None:
    """Write a zoo entry as a model file from a head checkpoint you already have (checked against the entry's
    sha256 and shapes): the file then works with predict, eval and study like any model file.

    Example: deepfake import-head univfd pretrained_weights/fc_weights.pth --out univfd.model
    """
    from deepfake_cli import api
    from deepfake_cli.zoo import get_entry

    path = api.import_head(name, file, out, weights=weights, overwrite=overwrite)
    if json_out:
        entry = get_entry(name)
        print_json({"wrote": str(path), "zoo_name": entry.zoo_name, "head_sha256": entry.head_sha256,
                    "backbone": entry.backbone})
    elif not quiet:
        err_console.print(f"wrote {path}; score images with: deepfake predict {path} DIR", highlight=False,
                          markup=False)
