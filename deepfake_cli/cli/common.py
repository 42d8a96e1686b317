"""Consoles shared by the command modules, and the one way an error reaches the terminal.

Nothing a user typed or a file named is ever read as rich markup: print such strings with `safe(...)`
(markup escaped) or `markup=False`; `fail` prints its message as plain text.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table
from rich.text import Text

# Width of output that is not a terminal (a pipe, a file, a test's capture): wide enough that a long path
# or a summary line stays on one line, so `deepfake eval ... | grep` and log files hold whole lines.
PIPE_WIDTH = 1000
# ... except tables and panels, which rich pads out to the width: piped, they fit this many columns (cells
# wrap inside their column) instead of lines of hundreds of characters (`deepfake classifiers | head`).
PIPE_TABLE_WIDTH = 120


class _Log:
    """The `--log FILE` copy of everything printed: a plain, wide console appending to FILE."""

    def __init__(self):
        self.file = None
        self.console: Console | None = None

    def open(self, path) -> None:
        self.close()
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 -- closed by `close` at exit
        self.console = Console(file=self.file, width=PIPE_WIDTH, no_color=True, color_system=None,
                               force_terminal=False, force_jupyter=False, highlight=False, emoji=False)

    def write(self, text: str) -> None:
        if self.file is not None:
            self.file.write(text)
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file, self.console = None, None


log = _Log()


class _Console(Console):
    """A rich Console that is never wrapped at 80 columns when its output is not a terminal (COLUMNS, when
    set, still decides), and that copies what it prints to the `--log` file."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is None and not self.is_terminal and not self._environ.get("COLUMNS", "").isdigit():
            return ConsoleDimensions(PIPE_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)

    def print(self, *objects, **kwargs) -> None:
        if (self._width is None and not self.is_terminal and not self._environ.get("COLUMNS", "").isdigit()
                and "width" not in kwargs and any(isinstance(o, (Table, Panel)) for o in objects)):
            super().print(*objects, width=PIPE_TABLE_WIDTH, **kwargs)
        else:
            super().print(*objects, **kwargs)
        if log.console is not None:
            log.console.print(*objects, **kwargs)
            log.file.flush()


console = _Console()
err_console = _Console(stderr=True)


# `-q` on every command that prints results: the results still print, the chatter around them does not
QUIET = typer.Option("--quiet", "-q", help="No progress bars or notes: only the results, warnings and errors.")


class RateColumn(ProgressColumn):
    """Items per second of a task, as rich estimates it from its recent updates ("-" before it knows)."""

    def __init__(self, unit: str = "/s"):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:.1f} {self.unit}", style="progress.data.speed")


def make_progress(label: str | None = None, *, unit: str = "/s", info: bool = False, console: Console | None = None,
                  disable: bool = False, transient: bool = False) -> Progress:
    """Every command's progress bars: the task's name (or `label`), the bar, done/total, the rate, the time
    elapsed and the ETA. The elapsed time ticks on its own (rich refreshes the bars 10 times a second),
    so a long single step (a model loading, a study's last cell) still shows that the run is alive.
    `info`: a column for a task's `info` field (loss, accuracy). Bars show on a terminal only."""
    out = console or err_console
    name = TextColumn(f"[bold]{escape(label)}[/]" if label else "[bold]{task.description}[/]")
    extra = [TextColumn("{task.fields[info]}")] if info else []
    return Progress(name, BarColumn(), MofNCompleteColumn(), *extra, RateColumn(unit), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=out, disable=disable or not out.is_terminal,
                    transient=transient)


@contextlib.contextmanager
def heartbeat(what: str, *, disable: bool = False, console: Console | None = None):
    """A bar without a total around one long step: its elapsed time ticks, so the run visibly lives."""
    with make_progress(console=console, disable=disable, transient=True) as bar:
        bar.add_task(what, total=None)
        yield bar


def print_json(obj) -> None:
    """One JSON document of a command's results on stdout (dataclasses as dicts; NaN as null)."""
    import dataclasses

    from deepfake_cli.safety.fileio import to_json

    def plain(o):
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {f.name: plain(getattr(o, f.name)) for f in dataclasses.fields(o)}
        if isinstance(o, (list, tuple)):
            return [plain(v) for v in o]
        if isinstance(o, dict):
            return {k: plain(v) for k, v in o.items()}
        return o

    echo(to_json(plain(obj), indent=2) + "\n")


def echo(text: str) -> None:
    """Write `text` as it is to stdout (CSV, JSON lines), and to the `--log` file."""
    sys.stdout.write(text)
    sys.stdout.flush()
    log.write(text)


def safe(value) -> str:
    """`value` as text that rich prints as it is (paths, dataset names, messages: `[` is not markup)."""
    return escape(str(value))


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def fail(message: str, exit_code: int = 2, label: str | None = "error:"):
    """Print `message` on one line of stderr (plain text, never markup) and exit with `exit_code`."""
    line = Text.assemble((label, "bold red"), " ") if label else Text()
    line.append(one_line(message))
    err_console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code)


def debug_mode() -> bool:
    return os.environ.get("DEEPFAKE_DEBUG", "") not in ("", "0")


def os_error_message(exc: OSError) -> str:
    """One line for an OSError that reached the CLI, naming the path and what to do."""
    name = exc.filename if exc.filename is not None else None
    where = f" {name}" if name is not None else ""
    code = exc.errno
    if code == errno.ENOSPC:
        from deepfake_cli.safety.space import DiskFullError

        return str(DiskFullError(name if name is not None else "the output"))
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return f"permission denied:{where or ' ' + str(exc)}; check its permissions and its folder's, or choose another path."
    if code == errno.EROFS:
        return f"read-only file system:{where}; choose another path."
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a folder where a file was expected; give a file name."
    if isinstance(exc, NotADirectoryError):
        return f"{name}: part of this path is a file, not a folder."
    if isinstance(exc, FileExistsError):
        return f"{name} already exists; choose another name or remove it."
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {name}" if name is not None else f"file not found: {exc}"
    if code == errno.ELOOP:
        return f"symlink loop:{where}"
    if code == errno.ENAMETOOLONG:
        return f"file name too long:{where}"
    return f"system error: {exc.strerror or exc}{(':' + where) if where else ''}"


# ----------------------------------------------------------------------- commands built from option groups

def typer_command(**groups: type):
    """Build a command's Typer options from option groups (`deepfake_cli/options.py`).

    The decorated function takes one parameter per group (`o: ExtractOptions`) besides its own (arguments,
    `-q`, `--json`); Typer sees each group's options instead, with the flags, defaults and help declared
    there, and the function gets an instance of the group. Typer reads `inspect.signature` and the
    annotations, so the wrapper carries a built `__signature__` and `__annotations__`."""
    import functools
    import inspect
    import typing

    from deepfake_cli.options import fields, grouped_call, help_text, required

    def deco(fn):
        sig = inspect.signature(fn)
        # a group parameter's annotation names its class, which may be local to the caller: give it here
        local = {p.annotation: groups[p.name] for p in sig.parameters.values()
                 if p.name in groups and isinstance(p.annotation, str)}
        hints = typing.get_type_hints(fn, localns=local, include_extras=True)
        params = []
        for p in sig.parameters.values():
            if p.name in groups:
                group = groups[p.name]
                types = typing.get_type_hints(group)
                for f in fields(group, "cli"):
                    info = typer.Option(*f.metadata["flags"], help=help_text(f), **f.metadata["typer"])
                    params.append(inspect.Parameter(
                        f.name, inspect.Parameter.KEYWORD_ONLY, default=... if required(f) else f.default,
                        annotation=typing.Annotated[types[f.name], info]))
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name]))
        names = [q.name for q in params]
        if len(set(names)) != len(names):  # two groups (or a group and the command) naming one option
            raise ValueError(f"{fn.__name__}: an option is declared twice: {names}")

        @functools.wraps(fn)
        def wrapper(**kwargs):
            return fn(**grouped_call(sig, groups, kwargs, "cli"))

        del wrapper.__wrapped__  # typer must see the built signature, not the function's own
        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {q.name: q.annotation for q in params}
        return wrapper

    return deco
