"""The `deepfake` command line: one Typer app; each command group lives in its own module.

The command modules only parse options, call a stage function and print; all logic lives in the
stages so that scripts can call the same functions.
"""

from __future__ import annotations

import sys

import typer

from deepfake_cli.cli import extract_cmds, model_cmds, study_cmds
from deepfake_cli.cli.common import console, err_console  # noqa: F401  (re-exported)
from deepfake_cli.errors import DeepfakeError

app = typer.Typer(
    name="deepfake",
    help="Tell real photos from generated images: frozen pretrained backbones + classical classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

extract_cmds.register(app)
model_cmds.register(app)
study_cmds.register(app)


def main() -> None:
    """Console-script entry point: turns DeepfakeError into one line on stderr and an exit code."""
    try:
        app(standalone_mode=False)
    except DeepfakeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished work was kept; run the same command again to resume.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
