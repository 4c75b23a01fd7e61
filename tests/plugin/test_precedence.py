"""Threshold precedence: marker > command line > ini > defaults, each level over the one below."""

from __future__ import annotations

import pytest

from pytest_hemorrhage.thresholds import Thresholds

DEFAULTS = Thresholds()

# (ini max_kl, command-line max_kl, marker max_kl, expected)
LEVELS = [
    pytest.param(None, None, None, DEFAULTS.max_kl, id="defaults"),
    pytest.param("0.3", None, None, 0.3, id="ini-over-defaults"),
    pytest.param("0.3", "0.2", None, 0.2, id="cli-over-ini"),
    pytest.param(None, "0.2", None, 0.2, id="cli-over-defaults"),
    pytest.param("0.3", "0.2", 0.1, 0.1, id="marker-over-cli-and-ini"),
    pytest.param("0.3", None, 0.1, 0.1, id="marker-over-ini"),
]


def _setup(pytester: pytest.Pytester, inner, ini, cli, marker, body: str) -> list[str]:
    if ini is not None:
        pytester.makeini(f"[pytest]\nhemorrhage_max_kl = {ini}\n")
    decorator = f"@pytest.mark.hemorrhage(max_kl={marker!r})" if marker is not None else ""
    inner(f"\n{decorator}\n" + body)
    return [f"--hemorrhage-max-kl={cli}"] if cli is not None else []


@pytest.mark.parametrize("ini, cli, marker, expected", LEVELS)
def test_resolved_threshold(pytester: pytest.Pytester, inner, ini, cli, marker, expected) -> None:
    args = _setup(pytester, inner, ini, cli, marker, f"""def test_level(hemorrhage):
    assert hemorrhage.thresholds.max_kl == {expected!r}
    # Keys nobody set keep their defaults.
    assert hemorrhage.thresholds.min_top1_agreement == {DEFAULTS.min_top1_agreement!r}
""")
    pytester.runpytest(*args).assert_outcomes(passed=1)


# The mild candidate has KL ~3e-7: 1e-9 fails it, 1.0 passes it.
REAL = [
    pytest.param(None, None, None, "passed", id="defaults-pass"),
    pytest.param("1e-9", None, None, "failed", id="ini-tight-fails"),
    pytest.param("1e-9", "1.0", None, "passed", id="cli-loosens-ini"),
    pytest.param("1.0", "1e-9", None, "failed", id="cli-tightens-ini"),
    pytest.param("1e-9", "1e-9", 1.0, "passed", id="marker-loosens-cli"),
    pytest.param("1.0", "1.0", 1e-9, "failed", id="marker-tightens-cli"),
]


@pytest.mark.parametrize("ini, cli, marker, outcome", REAL)
def test_precedence_through_real_checks(pytester: pytest.Pytester, inner, ini, cli, marker, outcome) -> None:
    args = _setup(pytester, inner, ini, cli, marker, """def test_check(hemorrhage):
    hemorrhage.check(MODEL, mild(), PROBES)
""")
    pytester.runpytest(*args).assert_outcomes(**{outcome: 1})


def test_sources_merge_per_key(pytester: pytest.Pytester, inner) -> None:
    """Each source only replaces the keys it sets."""
    pytester.makeini("[pytest]\nhemorrhage_max_ppl_ratio = 1.5\nhemorrhage_max_kl = 0.4\n")
    inner(
        f"""
        @pytest.mark.hemorrhage(min_top1_agreement=0.7)
        def test_merge(hemorrhage):
            t = hemorrhage.thresholds
            assert t.max_ppl_ratio == 1.5  # ini
            assert t.max_kl == 0.25  # command line over ini
            assert t.confidence == 0.9  # command line
            assert t.min_top1_agreement == 0.7  # marker
            assert t.min_output_sqnr_db == {DEFAULTS.min_output_sqnr_db!r}  # default
        """
    )
    pytester.runpytest("--hemorrhage-max-kl=0.25", "--hemorrhage-confidence=0.9").assert_outcomes(passed=1)
