"""pytest-hemorrhage: prove a modified model has not lost quality against its baseline.

Heavy modules (torch, transformers) are imported lazily, so ``import pytest_hemorrhage``
and ``pytest --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

from .errors import HemorrhageDetected, HemorrhageError, InvalidArgument, SnapshotError

__version__ = "0.1.0"

__all__ = [
    "compare",
    "assert_no_hemorrhage",
    "Report",
    "Thresholds",
    "Probes",
    "Snapshot",
    "record_snapshot",
    "load_snapshot",
    "diagnose",
    "suggest",
    "sweep",
    "SweepResult",
    "fit_phase_transition",
    "explain",
    "HemorrhageError",
    "InvalidArgument",
    "SnapshotError",
    "HemorrhageDetected",
    "__version__",
]

_LAZY = {
    "compare": ("engine", "compare"),
    "assert_no_hemorrhage": ("check", "assert_no_hemorrhage"),
    "Report": ("report", "Report"),
    "Thresholds": ("thresholds", "Thresholds"),
    "Probes": ("probes", "Probes"),
    "Snapshot": ("snapshot", "Snapshot"),
    "record_snapshot": ("snapshot", "record_snapshot"),
    "load_snapshot": ("snapshot", "load_snapshot"),
    "diagnose": ("diagnose", "diagnose"),
    "suggest": ("mitigate.suggest", "suggest"),
    "sweep": ("sweep", "sweep"),
    "SweepResult": ("sweep", "SweepResult"),
    "fit_phase_transition": ("sweep", "fit_phase_transition"),
    "explain": ("check", "explain"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pytest_hemorrhage' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
