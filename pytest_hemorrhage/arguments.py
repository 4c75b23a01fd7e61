"""Argument checks, with one message style for every bad argument a user can pass.

Each check returns the value (normalised: ``number`` returns a float) or raises
:class:`~pytest_hemorrhage.errors.InvalidArgument` reading
``"{name}: must be {what}, got {value!r}"``, followed by ``"; {fix}"`` where a sentence on how
to fix it helps more than the rule does. :func:`must_be` builds that error for checks the
helpers do not cover, so they read the same::

    from pytest_hemorrhage import arguments

    batch_size = arguments.positive_int("batch_size", batch_size)
    sparsity = arguments.fraction("sparsity", sparsity, high_open=True)
    method = arguments.one_of("method", method, ("magnitude", "wanda"))
    if not grid:
        raise arguments.must_be("top_p_grid", "a non-empty sequence of numbers in (0, 1]", grid)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from .errors import InvalidArgument

__all__ = ["must_be", "integer", "positive_int", "number", "fraction", "one_of", "flag"]

# A value whose repr is longer is named by its type (a model's repr runs for pages).
_LONGEST_REPR = 120


def _shown(value: Any) -> str:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:  # a tensor or an array: what matters is its kind
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= _LONGEST_REPR else f"a {type(value).__name__}"


def must_be(name: str, what: str, value: Any = None, fix: str = "", *, got: str | None = None) -> InvalidArgument:
    """The error for argument ``name`` that is not ``what``: ``"{name}: must be {what}, got {value!r}"``.

    ``fix``: how to fix it, appended after a semicolon. ``got``: a description of the value to
    show instead of its repr (``"probes of input tensors"``). Raise the result.
    """
    text = f"{name}: must be {what}, got {_shown(value) if got is None else got}"
    return InvalidArgument(f"{text}; {fix}" if fix else text)


def _bound(value: float) -> str:
    return f"{value:g}"


def _range(what: str, low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{what} {'<' if high_open else '<='} {_bound(high)}"
    return what


def integer(name: str, value: Any, low: int | None = None, high: int | None = None, *, fix: str = "") -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]`` (either bound may be None)."""
    what = "a positive integer" if (low, high) == (1, None) else _range("an integer", low, high, False, False)
    if (isinstance(value, bool) or not isinstance(value, int)
            or (low is not None and value < low) or (high is not None and value > high)):
        raise must_be(name, what, value, fix)
    return value


def positive_int(name: str, value: Any, *, fix: str = "") -> int:
    """``value`` if it is an int >= 1 (not a bool)."""
    return integer(name, value, 1, fix=fix)


def number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    fix: str = "",
) -> float:
    """``float(value)`` if it is a finite real (not a bool) between the bounds.

    ``low_open`` / ``high_open`` leave a bound out of the allowed interval.
    """
    what = _range("a finite number" if low is None and high is None else "a number", low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise must_be(name, what, value, fix)
    v = float(value)
    if ((low is not None and (v < low or (low_open and v == low)))
            or (high is not None and (v > high or (high_open and v == high)))):
        raise must_be(name, what, value, fix)
    return v


def fraction(name: str, value: Any, *, low_open: bool = False, high_open: bool = False, fix: str = "") -> float:
    """``float(value)`` if it is a number in [0, 1] (either end left out with ``low_open`` / ``high_open``)."""
    return number(name, value, 0.0, 1.0, low_open=low_open, high_open=high_open, fix=fix)


def one_of(name: str, value: Any, choices: Iterable[Any], *, fix: str = "") -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise must_be(name, "one of " + ", ".join(repr(c) for c in choices), value, fix)
    return value


def flag(name: str, value: Any) -> bool:
    """``value`` if it is True or False (not 0, 1 or None)."""
    if not isinstance(value, bool):
        raise must_be(name, "True or False", value)
    return value
