"""A release gate for GGUF files: llama.cpp runs each candidate, a committed snapshot is the baseline.

The baseline is the snapshot of `ci_gate` (recorded once from the Hugging Face SmolLM2-135M on 16
built-in probes); this suite never loads the baseline model. Each GGUF file runs in llama.cpp, on
llama.cpp's own kernels, fed the probes' token ids. In your repository the files come from your
conversion and quantisation step; here they are made from the default model's shipped GGUF file
(`pytest_hemorrhage.gguf_files.default_model_gguf`: an F32 file, then llama.cpp's own quantiser).

Needs the llama.cpp extra: pip install 'pytest-hemorrhage[llamacpp]' (compiled from source).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageDetected
from pytest_hemorrhage.gguf_files import default_model_gguf

SNAPSHOT = Path(__file__).parents[1] / "ci_gate" / "snapshots" / "smollm2-135m-gate.safetensors"


@pytest.fixture(scope="module")
def baseline():
    """The committed snapshot: no baseline model on the CI machine."""
    return ph.load_snapshot(SNAPSHOT)


def gguf(kind: str):
    """The release file of quantisation ``kind`` as a llama.cpp candidate."""
    return ph.llama_cpp(default_model_gguf(kind), n_threads=1)


def test_the_f32_conversion_passes(hemorrhage, baseline):
    """The conversion alone: a broken converter (a wrong rotary layout, a shifted vocabulary) fails here."""
    hemorrhage.check(baseline, gguf("F32"))


def test_q8_0_passes(hemorrhage, baseline):
    hemorrhage.check(baseline, gguf("Q8_0"))


@pytest.mark.xfail(raises=HemorrhageDetected, strict=True,
                   reason="demonstration: 2-bit K-quants hemorrhage on a 135M model")
def test_q2_k_is_blocked(hemorrhage, baseline):
    hemorrhage.check(baseline, gguf("Q2_K"))


def test_the_report_says_what_a_runtime_cannot_show(hemorrhage, baseline):
    report = hemorrhage.compare(baseline, gguf("Q4_K_M"))
    assert report.layers == []
    assert any("gives no hidden states" in note for note in report.notes)
    assert report.metrics["kl"].estimate > 0


def test_a_failing_file_is_blamed_on_compression_not_the_runtime(baseline):
    """When a file fails, ask why: the F32 file in the same runtime is the reference. A conversion or
    runtime bug would put the blame on the runtime part (the F32 file against the baseline) instead."""
    found = ph.attribute(baseline, gguf("Q2_K"), gguf("F32"))
    assert found.cause == "compression", found.to_text()
