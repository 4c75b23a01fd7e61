"""The `hemorrhage sweep` command: outputs, the --require gate, the default model, errors."""

import json

import pytest
from model_folders import save_model_folder
from tiny_models import tiny_llama

import pytest_hemorrhage.models as models
from pytest_hemorrhage.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

SWEEP = ["--modify", "sparsity", "--strengths", "0.1,0.3,0.5,0.7", "--probes", "8", "--max-length", "24"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_folder(tiny_llama(), tmp_path_factory.mktemp("model") / "base")


def test_sweep_writes_json_and_plot(model_dir, tmp_path, capsys):
    code = main(["sweep", model_dir, *SWEEP, "--max-kl", "0.001", "--no-progress",
                 "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png")])
    assert code == 0
    data = json.loads((tmp_path / "s.json").read_text())
    grid = [p["strength"] for p in data["points"] if p["source"] == "grid"]
    assert grid == [0.1, 0.3, 0.5, 0.7] and data["thresholds"]["max_kl"] == 0.001
    assert data["probes"]["n_probes"] == 8 and data["fit"] is not None
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "phase transition s*" in out and "harshest passing sparsity" in out
    assert out.splitlines()[-2:] == [f"wrote JSON sweep: {tmp_path / 's.json'}", f"wrote plot: {tmp_path / 's.png'}"]


def test_require_gates_the_exit_code(model_dir, capsys):
    ungated = ["--max-kl", "none", "--min-top1-agreement", "none", "--max-ppl-ratio", "none"]
    assert main(["sweep", model_dir, *SWEEP, *ungated, "--require", "0.7", "--no-bisect"]) == 0
    assert main(["sweep", model_dir, *SWEEP, "--max-kl", "0", "--require", "0.1", "--no-bisect"]) == 1
    assert "required sparsity 0.1 fails (harshest passing: none)" in capsys.readouterr().err


def test_integer_strengths_and_bits(model_dir, tmp_path):
    assert main(["sweep", model_dir, "--modify", "bits", "--strengths", "8,6,4,2", "--probes", "4",
                 "--max-length", "16", "--json", str(tmp_path / "b.json")]) == 0
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["harsher"] == "lower"
    assert all(isinstance(p["strength"], int) for p in data["points"])


def test_default_model_is_used_without_a_folder(model_dir, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = []

    def fake_default_model():
        loaded.append(True)
        return AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)

    monkeypatch.setattr(models, "default_model", fake_default_model)
    assert main(["sweep", "--modify", "rank", "--strengths", "0.2,0.5", "--probes", "4", "--max-length", "16"]) == 0
    assert loaded == [True] and "sweep of low-rank SVD" in capsys.readouterr().out


# Bad library arguments read "{name}: must be {what}, got {value}" (pytest_hemorrhage.arguments).
@pytest.mark.parametrize("argv, message", [
    (["sweep", "MODEL", "--modify", "sparsity", "--strengths", "a,b"], "not a comma-separated list"),
    (["sweep", "MODEL", "--modify", "magic", "--strengths", "0.1"], "invalid choice"),
    (["sweep", "MODEL", "--modify", "sparsity", "--strengths", "0.3,0.1,0.2"], "must be sorted"),
    (["sweep", "MODEL", "--modify", "bits", "--strengths", "8,1"], "strengths: must be values modify='bits' works with, got 1"),
    (["sweep", "MODEL", "--modify", "sparsity", "--strengths", "0.1", "--plot", "x.gif9"], "path: must be an image file matplotlib writes"),
    (["sweep", "MODEL", "--modify", "sparsity", "--strengths", "0.1", "--max-kl", "abc"], "max_kl must be a number"),
    # A missing path is named as missing (this read "not a Hugging Face model folder (no config.json)").
    (["sweep", "/nonexistent", "--modify", "sparsity", "--strengths", "0.1"], "model: /nonexistent does not exist"),
])
def test_input_errors_exit_2(model_dir, capsys, argv, message):
    argv = [model_dir if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
