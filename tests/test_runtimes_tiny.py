"""llama.cpp and ONNX Runtime candidates of a tiny random Llama, end to end in the fast tier:
the library, a snapshot baseline, and `hemorrhage compare --runtime`.

The files are written from the torch model (tests/tiny_gguf.py; pytest_hemorrhage.onnx_export),
so each runtime must reproduce the torch model's own distribution: an independent computation.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_gguf import write_tiny_gguf
from tiny_models import random_token_ids, tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.cli import main
from pytest_hemorrhage.onnx_export import export_causal_lm

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    return tiny_llama(seed=5)


@pytest.fixture(scope="module")
def probes():
    return ph.Probes.from_token_ids(random_token_ids(n=6, length=20, seed=2).tolist())


@pytest.fixture(scope="module")
def files(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("runtimes")
    noisy = tiny_llama(seed=5)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    paths = {"same.gguf": root / "same.gguf", "noisy.gguf": root / "noisy.gguf", "same.onnx": root / "same.onnx"}
    write_tiny_gguf(base, paths["same.gguf"])
    write_tiny_gguf(noisy, paths["noisy.gguf"])
    export_causal_lm(base, paths["same.onnx"], exporter="torchscript")
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def snapshot(base, probes, tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "base.safetensors"
    ph.record_snapshot(base, probes, path)
    return str(path)


def test_the_same_weights_in_llama_cpp_pass_against_the_live_model(base, probes, files):
    report = ph.compare(base, ph.llama_cpp(files["same.gguf"], n_threads=1), probes)
    assert report.passed
    assert report.metrics["kl"].estimate < 1e-4  # llama.cpp keeps its key/value cache in float16
    assert report.metrics["top1"].estimate == 1.0
    assert report.identity["modification"] == "GGUF F32"
    assert report.identity["candidate"] == f"llama.cpp {files['same.gguf']}"


def test_other_weights_in_llama_cpp_are_measured_as_their_torch_model_would_be(base, probes, files):
    report = ph.compare(base, ph.llama_cpp(files["noisy.gguf"], n_threads=1), probes)
    noisy = tiny_llama(seed=5)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch_report = ph.compare(base, noisy, probes, layers=None)
    assert report.metrics["kl"].estimate == pytest.approx(torch_report.metrics["kl"].estimate, rel=0.02)
    assert report.metrics["kl"].estimate > 1e-3


def test_the_command_line_gates_a_gguf_and_an_onnx_file_against_a_snapshot(snapshot, files, tmp_path, capsys):
    assert main(["compare", snapshot, "--runtime", "llama.cpp", files["same.gguf"],
                 "--json", str(tmp_path / "gguf.json")]) == 0
    assert main(["compare", snapshot, "--runtime", "onnx", files["same.onnx"],
                 "--json", str(tmp_path / "onnx.json")]) == 0
    assert main(["compare", snapshot, "--runtime", "llama.cpp", files["noisy.gguf"], "--max-kl", "1e-4"]) == 1
    out = capsys.readouterr().out
    assert "no mitigation" not in out or "holds no torch weights" in out
    for name in ("gguf", "onnx"):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["verdict"] == "pass"
        assert any("gives no hidden states" in note for note in report["notes"])
