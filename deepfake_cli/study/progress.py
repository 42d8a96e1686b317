"""How a running study tells its caller what it is doing: a `StudyProgress` whose methods it calls.

The library draws nothing; every method here does nothing. The CLI passes a subclass that draws bars.
"""

from __future__ import annotations


class StudyProgress:
    """Receives the study's progress. Phases are "features", "reducers" and "cells", in that order."""

    def grid(self, size) -> None:
        """The grid's size (a `plan.GridSize`), once, before any work."""

    def phase(self, name: str, total: int) -> None:
        """Phase `name` begins; it has `total` units (reused ones included)."""

    def unit(self, name: str, label: str) -> None:
        """A unit of phase `name`, described by `label`, starts real work (not a cache hit)."""

    def images(self, done: int, total: int) -> None:
        """Images extracted so far of the feature file being made."""

    def advance(self, name: str) -> None:
        """One unit of phase `name` is finished (made, reused or failed)."""

    def phase_done(self, name: str) -> None:
        """Every unit of phase `name` is finished."""
