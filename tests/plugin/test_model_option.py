"""``hemorrhage_model`` (ini) and ``--hemorrhage-model``: the session's default model from a folder."""

from __future__ import annotations

import pytest
from model_folders import save_model_folder
from tiny_models import tiny_llama

# The inner run compares the fixture's model with the tiny model the folder was saved from, and
# builds the built-in probes with the fixture's tokenizer (the folder's word tokenizer).
LOADED_PROBE = """
import pytest_hemorrhage as ph
from pytest_hemorrhage import Probes


def test_default_model_is_the_folder(hemorrhage_default_model):
    model, tokenizer = hemorrhage_default_model
    assert not model.training
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(model(ids).logits, MODEL.eval()(ids).logits)
    assert tokenizer.convert_ids_to_tokens([0]) == ["[UNK]"]
    report = ph.compare(model, copy.deepcopy(model))  # probes=None: built with the folder's tokenizer
    print("PROBES", report.metrics["kl"].n_units == len(Probes.builtin(tokenizer)))
"""


@pytest.fixture
def folder(pytester: pytest.Pytester) -> str:
    """The inner run's MODEL (tiny_llama(), seed 0), saved with a word tokenizer under rootdir."""
    save_model_folder(tiny_llama(), pytester.path / "my_model")
    return "my_model"


def test_ini_key_loads_the_folder_relative_to_rootdir(pytester: pytest.Pytester, inner, folder: str) -> None:
    pytester.makeini(f"[pytest]\nhemorrhage_model = {folder}\n")
    inner(LOADED_PROBE)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*PROBES True"])


def test_command_line_option_loads_the_folder(pytester: pytest.Pytester, inner, folder: str) -> None:
    pytester.makeini("[pytest]\nhemorrhage_model = does_not_matter\n")  # the option wins over the ini key
    inner(LOADED_PROBE)
    result = pytester.runpytest("-s", f"--hemorrhage-model={folder}")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        ((), "hemorrhage_model = nowhere", "*hemorrhage_model in tox.ini: *nowhere does not exist; give the folder*"),
        (("--hemorrhage-model=nowhere",), "", "*command line option --hemorrhage-model: *nowhere does not exist*"),
        (("--hemorrhage-model=.",), "", "*--hemorrhage-model: * (no config.json); save one with model.save_pretrained*"),
    ],
    ids=["ini-missing", "option-missing", "no-config"],
)
def test_a_bad_model_path_is_a_usage_error(pytester: pytest.Pytester, inner, args, ini: str, expected: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    inner("def test_never_runs():\n    raise RuntimeError('collected despite a bad model path')\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    result.stdout.no_fnmatch_line("*collected despite*")


def test_the_hemorrhage_fixture_takes_folder_paths(pytester: pytest.Pytester, inner, folder: str) -> None:
    inner(f"""
    def test_paths(hemorrhage):
        hemorrhage.check({folder!r}, {folder!r})
        report = hemorrhage.compare({folder!r}, {folder!r})
        print("KL", report.metrics["kl"].estimate, len(hemorrhage.reports))
    """)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*KL 0.0 2"])
