"""The `deepfake` command line: one Typer app; each command group lives in its own module.

The command modules only parse options, call a stage function and print; all logic lives in the
stages so that scripts can call the same functions.
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup

from deepfake_cli.cli import extract_cmds, model_cmds, study_cmds
from deepfake_cli.cli.common import console, err_console
from deepfake_cli.errors import DeepfakeError


class _Group(TyperGroup):
    # Catching here (not in main) means every way of running the app, CliRunner included,
    # turns library errors into one line and an exit code instead of a traceback.
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeepfakeError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; finished work was kept: run the same command again to resume.")
            raise typer.Exit(130) from None


app = typer.Typer(
    name="deepfake",
    cls=_Group,
    help="Tell real photos from generated images: frozen pretrained backbones + classical classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _version(value: bool) -> None:
    if value:
        from deepfake_cli import __version__

        console.print(f"deepfake-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Tell real photos from generated images: frozen pretrained backbones + classical classifiers."""


extract_cmds.register(app)
model_cmds.register(app)
study_cmds.register(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="deepfake")
