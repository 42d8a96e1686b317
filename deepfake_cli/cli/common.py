"""Consoles shared by the command modules, and the one way an error reaches the terminal.

Nothing a user typed or a file named is ever read as rich markup: print such strings with `safe(...)`
(markup escaped) or `markup=False`; `fail` prints its message as plain text.
"""

from __future__ import annotations

import errno
import os
import sys

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.text import Text

# Width of output that is not a terminal (a pipe, a file, a test's capture): wide enough that a table row
# or a long path stays on one line, so `deepfake eval ... | grep` and log files hold whole lines.
PIPE_WIDTH = 1000


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
        super().print(*objects, **kwargs)
        if log.console is not None:
            log.console.print(*objects, **kwargs)
            log.file.flush()


console = _Console()
err_console = _Console(stderr=True)


# `-q` on every command that prints results: the results still print, the chatter around them does not
QUIET = typer.Option("--quiet", "-q", help="No progress bars or notes: only the results, warnings and errors.")
# `--raw-csv` on every command that writes CSV with names or paths in it (predict, eval, study)
RAW_CSV = typer.Option("--raw-csv", help="Write CSV text cells as they are. By default a cell that a spreadsheet "
                       "would run as a formula (starting with =, +, -, @, tab or CR, and not a number) gets a "
                       "leading ' (JSON is always as it is).")


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
