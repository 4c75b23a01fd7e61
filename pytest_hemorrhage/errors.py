"""Exceptions raised by pytest-hemorrhage.

Every message names the cause and the fix. ``HemorrhageDetected`` is an
``AssertionError`` so pytest shows it as a test failure, not an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

__all__ = [
    "HemorrhageError",
    "InvalidArgument",
    "SnapshotError",
    "HemorrhageDetected",
]


class HemorrhageError(Exception):
    """Base class for every error this package raises about its inputs."""


class InvalidArgument(HemorrhageError, ValueError):
    """An argument has a value that cannot work; the message names the argument."""


class SnapshotError(HemorrhageError):
    """A baseline snapshot is missing, damaged, or does not match the current run."""


class HemorrhageDetected(AssertionError):
    """The candidate lost quality against the baseline. ``.report`` holds the evidence."""

    def __init__(self, message: str, report: "Report | Any" = None) -> None:
        super().__init__(message)
        self.report = report
