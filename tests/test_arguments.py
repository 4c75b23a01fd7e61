"""pytest_hemorrhage.arguments: one message style for every bad argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytest_hemorrhage import arguments
from pytest_hemorrhage.errors import InvalidArgument


def _message(check, *args, **kwargs) -> str:
    with pytest.raises(InvalidArgument) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_must_be_names_the_argument_the_rule_the_value_and_the_fix():
    assert str(arguments.must_be("n", "a positive integer", 0)) == "n: must be a positive integer, got 0"
    error = arguments.must_be("path", "a .png file", "a.txt", "e.g. sweep.png")
    assert isinstance(error, InvalidArgument)
    assert str(error) == "path: must be a .png file, got 'a.txt'; e.g. sweep.png"
    assert str(arguments.must_be("probes", "token probes", got="input tensors")) == \
        "probes: must be token probes, got input tensors"


def test_long_values_and_tensors_are_shown_by_kind():
    assert arguments.must_be("model", "an nn.Module", "x" * 200).args[0] == "model: must be an nn.Module, got a str"
    text = str(arguments.must_be("ids", "integer ids", torch.zeros(2, 3)))
    assert text == "ids: must be integer ids, got a Tensor of shape (2, 3) and dtype torch.float32"
    text = str(arguments.must_be("ids", "integer ids", np.zeros(4, dtype=np.float64)))
    assert text == "ids: must be integer ids, got a ndarray of shape (4,) and dtype float64"


@pytest.mark.parametrize("value, low, high, what", [
    (0, 1, None, "a positive integer"),
    (9, 2, 8, "an integer in [2, 8]"),
    (-1, 0, None, "an integer >= 0"),
    (True, 1, None, "a positive integer"),
    (2.0, 1, None, "a positive integer"),
    ("3", None, 5, "an integer <= 5"),
])
def test_integer_rejects(value, low, high, what):
    assert _message(arguments.integer, "k", value, low, high) == f"k: must be {what}, got {value!r}"


def test_integer_accepts_and_returns():
    assert arguments.integer("k", 2, 2, 8) == 2 and arguments.integer("k", 8, 2, 8) == 8
    assert arguments.positive_int("k", 1) == 1
    assert "k: must be a positive integer, got 0; at least one" == \
        _message(arguments.positive_int, "k", 0, fix="at least one")


@pytest.mark.parametrize("value, kwargs, what", [
    (-0.5, {"low": 0.0}, "a number >= 0"),
    (0.0, {"low": 0.0, "low_open": True}, "a number > 0"),
    (1.0, {"low": 0.0, "high": 1.0, "high_open": True}, "a number in [0, 1)"),
    (0.0, {"low": 0.0, "high": 1.0, "low_open": True}, "a number in (0, 1]"),
    (2.5, {"high": 2.0}, "a number <= 2"),
    (math.nan, {}, "a finite number"),
    (math.inf, {"low": 0.0}, "a number >= 0"),
    (False, {}, "a finite number"),
    ("0.5", {"low": 0.0}, "a number >= 0"),
])
def test_number_rejects(value, kwargs, what):
    assert _message(arguments.number, "x", value, **kwargs) == f"x: must be {what}, got {value!r}"


def test_number_and_fraction_accept_reals_and_return_floats():
    assert arguments.number("x", 3, 0.0) == 3.0 and isinstance(arguments.number("x", 3, 0.0), float)
    assert arguments.number("x", np.float32(0.25), 0.0, 1.0) == 0.25
    assert arguments.fraction("x", 0) == 0.0 and arguments.fraction("x", 1) == 1.0
    assert _message(arguments.fraction, "x", 0, low_open=True) == "x: must be a number in (0, 1], got 0"
    assert _message(arguments.fraction, "x", 1.5) == "x: must be a number in [0, 1], got 1.5"


def test_one_of_and_flag():
    assert arguments.one_of("mode", "a", ("a", "b")) == "a"
    assert arguments.one_of("activation", None, (None, "static")) is None
    assert _message(arguments.one_of, "mode", "c", ("a", "b")) == "mode: must be one of 'a', 'b', got 'c'"
    assert arguments.flag("inplace", False) is False
    for value in (0, 1, None, "yes"):
        assert _message(arguments.flag, "inplace", value) == f"inplace: must be True or False, got {value!r}"
