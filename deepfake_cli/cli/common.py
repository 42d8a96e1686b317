"""Consoles shared by the command modules."""

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
