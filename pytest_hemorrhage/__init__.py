"""pytest-hemorrhage: prove a modified model has not lost quality against its baseline.

Heavy modules (torch, transformers) are imported lazily, so ``import pytest_hemorrhage``
and ``pytest --help`` stay fast.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .errors import HemorrhageDetected, HemorrhageError, InvalidArgument, SnapshotError

__version__ = "0.1.0"

__all__ = [
    "compare",
    "assert_no_hemorrhage",
    "Report",
    "Thresholds",
    "Probes",
    "register_tokenizer",
    "Snapshot",
    "record_snapshot",
    "load_snapshot",
    "load_model",
    "diagnose",
    "suggest",
    "sweep",
    "SweepResult",
    "fit_phase_transition",
    "explain",
    "llama_cpp",
    "onnx_runtime",
    "openai_server",
    "attribute",
    "localise",
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
    "register_tokenizer": ("probes", "register_tokenizer"),
    "Snapshot": ("snapshot", "Snapshot"),
    "record_snapshot": ("snapshot", "record_snapshot"),
    "load_snapshot": ("snapshot", "load_snapshot"),
    "load_model": ("model_folder", "load_model"),
    "diagnose": ("diagnose", "diagnose"),
    "suggest": ("mitigate.suggest", "suggest"),
    "sweep": ("sweep", "sweep"),
    "SweepResult": ("sweep", "SweepResult"),
    "fit_phase_transition": ("sweep", "fit_phase_transition"),
    "explain": ("check", "explain"),
    "llama_cpp": ("runtimes", "llama_cpp"),
    "onnx_runtime": ("runtimes", "onnx_runtime"),
    "openai_server": ("runtimes", "openai_server"),
    "attribute": ("attribution", "attribute"),
    "localise": ("localise", "localise"),
}


def __getattr__(name: str) -> Any:
    """Import a public name, or a submodule (``ph.models``, ``ph.modify``), on first use."""
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    if name in _submodules():
        return importlib.import_module(f".{name}", __name__)  # the import binds it on the package
    raise AttributeError(f"module 'pytest_hemorrhage' has no attribute {name!r}")


def _submodules() -> set[str]:
    """Public submodule and subpackage names, found on disk without importing any of them."""
    import pkgutil

    return {info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")}


def __dir__() -> list[str]:
    return sorted(set(__all__) | _submodules())


class _Package(types.ModuleType):
    """This package's module type. Importing a submodule binds it as an attribute of the package;
    where a public function shares the submodule's name (``diagnose``, ``sweep``), that binding
    would replace the function, so it is refused and the name keeps resolving to the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
