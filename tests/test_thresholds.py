"""Thresholds: validation, precedence and error messages that name the source."""

import math

import pytest

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.thresholds import THRESHOLD_SPECS, Thresholds


def test_defaults_are_valid_and_gated():
    t = Thresholds()
    assert set(t.gated()) <= set(THRESHOLD_SPECS)
    assert t.gated()["max_kl"] == t.max_kl


def test_precedence_marker_over_cli_over_ini():
    t = Thresholds.resolve(marker={"max_kl": 0.01}, cli={"max_kl": "0.02", "max_ppl_ratio": "1.2"},
                           ini={"max_kl": "0.03", "max_ppl_ratio": "1.3", "min_top1_agreement": "0.5"})
    assert (t.max_kl, t.max_ppl_ratio, t.min_top1_agreement) == (0.01, 1.2, 0.5)


@pytest.mark.parametrize(
    "source, values, pattern",
    [
        # "key(s)" became "key" for a single unknown key, followed by the closest known key.
        ("marker", {"max_kll": 0.1}, r"@pytest.mark.hemorrhage: unknown threshold key max_kll \(did you mean max_kl\?\)"),
        ("marker", {"max_kl": -1}, r"@pytest.mark.hemorrhage: max_kl=-1 is outside"),
        ("marker", {"min_top1_agreement": 1.5}, r"@pytest.mark.hemorrhage: min_top1_agreement=1.5 is outside"),
        ("marker", {"max_kl": "abc"}, r"@pytest.mark.hemorrhage: max_kl must be a number"),
        # Command-line and ini errors name the exact option or ini key the bad value came from.
        ("cli", {"max_kl": "x"}, r"^command line option --hemorrhage-max-kl: max_kl must be a number"),
        ("ini", {"confidence": "2"}, r"^hemorrhage_confidence in the ini file: confidence=2.0 is outside"),
        ("ini", {"inconclusive_fails": "maybe"}, r"^hemorrhage_inconclusive_fails in the ini file: .*true or false"),
    ],
)
def test_errors_name_source_and_key(source, values, pattern):
    with pytest.raises(InvalidArgument, match=pattern):
        Thresholds.resolve(**{source: values})


def test_none_disables_a_gate_from_strings():
    t = Thresholds.resolve(ini={"max_kl": "none", "inconclusive_fails": "false"})
    assert t.max_kl is None and "max_kl" not in t.gated() and t.inconclusive_fails is False


def test_frozen_and_replace_validates():
    t = Thresholds()
    with pytest.raises(Exception):
        t.max_kl = 1.0  # type: ignore[misc]
    assert t.replace(max_kl=0.5).max_kl == 0.5
    with pytest.raises(InvalidArgument, match="max_kl must be a number"):
        t.replace(max_kl=math.nan)
    with pytest.raises(InvalidArgument, match="max_kl must be a number"):
        Thresholds(max_kl=True)


def test_errors_name_the_ini_file_and_the_option_spelling():
    with pytest.raises(InvalidArgument, match=r"^hemorrhage_max_kl in pytest.ini: max_kl must be a number .* 'abc'"):
        Thresholds.resolve(ini={"max_kl": "abc"}, ini_file="pytest.ini")
    # The hemorrhage command spells its options without the prefix.
    with pytest.raises(InvalidArgument, match=r"^command line option --min-top1-agreement: min_top1_agreement=2.0"):
        Thresholds.resolve(cli={"min_top1_agreement": "2"}, option_prefix="--")


def test_a_bad_value_is_named_by_the_source_that_set_it_not_by_the_one_that_wins():
    # The ini value is bad even though the command line overrides it: the ini key is named.
    with pytest.raises(InvalidArgument, match=r"^hemorrhage_max_kl in the ini file"):
        Thresholds.resolve(ini={"max_kl": "-1"}, cli={"max_kl": "0.1"})
    # A class-level marker's bad value is reported even where the function's marker sets the key.
    with pytest.raises(InvalidArgument, match=r"^@pytest.mark.hemorrhage: max_kl=-1 is outside"):
        Thresholds.resolve(marker=[{"max_kl": -1}, {"max_kl": 0.1}])


def test_closest_marker_wins_per_key_over_base():
    base = Thresholds.resolve(ini={"max_ppl_ratio": "1.5"}, cli={"max_kl": "0.3"})
    t = Thresholds.resolve(marker=[{"max_kl": 0.2, "confidence": 0.9}, {"max_kl": 0.1}], base=base)
    assert (t.max_kl, t.confidence, t.max_ppl_ratio) == (0.1, 0.9, 1.5)
    assert t.min_top1_agreement == Thresholds().min_top1_agreement


@pytest.mark.parametrize(
    "source, values, prefix",
    [
        ("marker", {"min_top1_agreemnt": 0.95}, "@pytest.mark.hemorrhage: "),
        ("cli", {"min_top1_agreemnt": "0.95"}, "command line option --hemorrhage-min-top1-agreemnt: "),
        ("ini", {"min_top1_agreemnt": "0.95"}, "hemorrhage_min_top1_agreemnt in the ini file: "),
    ],
)
def test_a_misspelt_key_names_the_key_it_resembles(source, values, prefix):
    with pytest.raises(InvalidArgument) as caught:
        Thresholds.resolve(**{source: values})
    assert str(caught.value).startswith(
        prefix + "unknown threshold key min_top1_agreemnt (did you mean min_top1_agreement?); known keys: "
    )


def test_keys_unlike_any_known_key_get_no_guess_and_several_are_listed():
    with pytest.raises(InvalidArgument) as caught:
        Thresholds().merged({"zzz": 1, "max_kll": 0.1}, source="here")
    assert str(caught.value).startswith("here: unknown threshold keys max_kll (did you mean max_kl?), zzz; known keys:")


@pytest.mark.parametrize("value, hint", [(95, "0.95"), (100, "1"), (1.5, "0.015"), ("93", "0.93")])
def test_a_percentage_for_a_fraction_hints_at_the_fraction(value, hint):
    with pytest.raises(InvalidArgument, match=rf"min_top1_agreement=.* is outside the allowed range \[0.0, 1.0\] "
                                              rf"\(did you mean {hint}\?\)$"):
        Thresholds.resolve(marker={"min_top1_agreement": value} if not isinstance(value, str) else {},
                           ini={"min_top1_agreement": value} if isinstance(value, str) else None)


@pytest.mark.parametrize("key, value", [("min_top1_agreement", 101), ("min_top1_agreement", -5), ("max_kl", -1),
                                        ("min_output_cosine", 2)])
def test_no_percentage_hint_outside_a_fraction_range_or_beyond_100(key, value):
    with pytest.raises(InvalidArgument, match="is outside the allowed range") as caught:
        Thresholds().replace(**{key: value})
    assert "did you mean" not in str(caught.value)


def test_a_value_written_as_a_percentage_is_refused_with_the_number_to_write():
    with pytest.raises(InvalidArgument) as caught:
        Thresholds.resolve(cli={"max_kl": "2%"}, option_prefix="--")
    assert str(caught.value) == "command line option --max-kl: max_kl must be a number, not a percentage: 0.02"
    with pytest.raises(InvalidArgument, match="must be a number .*got 'abc%'"):  # not a number at all
        Thresholds.resolve(cli={"max_kl": "abc%"})
