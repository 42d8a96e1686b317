"""The `deepfake` command line: one Typer app; each command group lives in its own module.

The command modules only parse options, call a stage function and print; all logic lives in the
stages so that scripts can call the same functions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from deepfake_cli.cli import explain_cmds, extract_cmds, finetune_cmds, fit_cmds, model_cmds, study_cmds, zoo_cmds
from deepfake_cli.cli.common import console, debug_mode, fail, os_error_message
from deepfake_cli.errors import DeepfakeError

try:  # recent typer carries its own copy of click; its exceptions are the ones raised here
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - typer on top of click
    from click import exceptions as click

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug of ours, not a bad input


class _Group(TyperGroup):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _finish(self)
        for cmd in self.commands.values():
            _finish(cmd)

    # Catching here (not in main) means every way of running the app, CliRunner included,
    # turns errors into one line and an exit code instead of a traceback:
    #   DeepfakeError -> its message and exit code; a bad command line -> one line (exit 2);
    #   OSError (permissions, a folder for a file, a full disk, ...) -> one line naming the path (exit 1);
    #   anything else is a bug -> "internal error: ..." (exit 70); DEEPFAKE_DEBUG=1 shows the traceback.
    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # options of `deepfake` itself
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            fail(_usage_message(exc), exc.exit_code)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeepfakeError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; finished work was kept: run the same command again to resume.", 130, label=None)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            fail(_usage_message(exc), exc.exit_code)
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except OSError as exc:
            if debug_mode():
                raise
            fail(os_error_message(exc), 1)
        except Exception as exc:  # noqa: BLE001 -- the safety net: a bug must still end in one line
            if debug_mode():
                raise
            fail(f"internal error: {type(exc).__name__}: {exc}; rerun with DEEPFAKE_DEBUG=1 for the traceback.",
                 INTERNAL_ERROR)


def _usage_message(exc) -> str:
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "deepfake"
    return f"{exc.format_message()} (see `{where} --help`)"


def _finish(cmd) -> None:
    """What every command gets: an example at the end of its help (cli/examples.py) and a placeholder
    for each option's value instead of typer's `<str>` / `<list[str]>` (none for a flag)."""
    from rich.markup import escape

    from deepfake_cli.cli.examples import EXAMPLES

    example = EXAMPLES.get(cmd.name or "")
    if example and "Example" not in (cmd.help or ""):
        cmd.help = f"{(cmd.help or '').rstrip()}\n\nExample: {escape(example)}"
    if getattr(cmd, "_metavars_set", False):
        return
    get_params = cmd.get_params  # also --help and the completion options, which typer adds later

    def params_with_metavars(ctx):
        params = get_params(ctx)
        for p in params:
            _set_metavar(p)
        return params

    cmd.get_params = params_with_metavars
    cmd._metavars_set = True


def _set_metavar(p) -> None:
    from deepfake_cli.cli.examples import METAVARS

    if p.param_type_name == "argument":
        if p.metavar is None:
            p.metavar = (p.name or "").upper() + ("..." if p.nargs != 1 else "")
        # the usage line: NAME (required) or [NAME], not typer's {name}
        p._usage_display_name = lambda p=p: p.metavar if p.required else f"[{p.metavar}]"
        p.display_type_rich = lambda ctx: ""  # the name column already shows it
    elif p.metavar is not None:
        return
    elif getattr(p, "is_flag", False) or getattr(p, "count", False):
        p.metavar = ""
    else:
        desc = getattr(p, "type_descriptor", None)
        annotation = getattr(desc, "annotation", None)
        if p.name in METAVARS:
            p.metavar = METAVARS[p.name]
        elif getattr(desc, "is_path", False):
            p.metavar = "PATH"
        elif annotation in (int, float):
            p.metavar = annotation.__name__.upper()
        else:
            p.metavar = (p.name or "value").upper()


app = typer.Typer(
    name="deepfake",
    cls=_Group,
    help="Tell real photos from generated images: frozen pretrained backbones + classical classifiers.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)



def _version(value: bool) -> None:
    if value:
        from deepfake_cli import __version__

        console.print(f"deepfake-cli {__version__}")
        raise typer.Exit()


def _log(ctx: typer.Context, value: Optional[Path]) -> None:
    """`--log FILE`: from here on, everything printed (and every error) is appended to FILE too."""
    if value is None or ctx.resilient_parsing:
        return
    import time

    from deepfake_cli.cli.common import log

    try:
        log.open(value)
    except OSError as exc:
        fail(f"--log: {os_error_message(exc)}", 2)
    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("deepfake", "__main__.py") else []
    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} deepfake {' '.join(argv)}\n".replace(" \n", "\n"))
    ctx.call_on_close(log.close)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
          log_file: Annotated[Optional[Path], typer.Option(
              "--log", metavar="FILE", callback=_log, is_eager=True, dir_okay=False,
              help="Also append everything printed, errors included, to FILE.")] = None) -> None:
    """Tell real photos from generated images: frozen pretrained backbones + classical classifiers."""


extract_cmds.register(app)
model_cmds.register(app)
explain_cmds.register(app)
zoo_cmds.register(app)
fit_cmds.register(app)
study_cmds.register(app)
finetune_cmds.register(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="deepfake")
