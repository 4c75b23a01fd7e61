"""Attribution and localisation on the default model's real GGUF files (slow tier).

The planted file is llama.cpp's own Q8_0 quantisation with one block's tensors taken from its Q2_K
quantisation: localisation must name that block, and keeping it at Q8_0 again must pass the gate.
"""

from __future__ import annotations

import pytest

import pytest_hemorrhage as ph
from pytest_hemorrhage.gguf_files import default_model_gguf, gguf_tensor_types, replace_tensors_gguf

pytestmark = pytest.mark.slow
PLANTED = 11


@pytest.fixture(scope="module")
def model_and_tokenizer(hemorrhage_default_model):
    return hemorrhage_default_model


@pytest.fixture(scope="module")
def probes(hemorrhage_default_model):
    return ph.Probes.builtin(hemorrhage_default_model[1], n=16, max_length=48)


@pytest.fixture(scope="module")
def files():
    return {kind: default_model_gguf(kind) for kind in ("F32", "Q8_0", "Q4_K_M", "Q2_K")}


def gguf(path):
    return ph.llama_cpp(path, n_threads=1)


def test_q4_k_m_is_blamed_on_compression_and_llama_cpp_sits_at_its_floor(model_and_tokenizer, probes, files):
    found = ph.attribute(model_and_tokenizer[0], gguf(files["Q4_K_M"]), gguf(files["F32"]), probes)
    assert found.cause == "compression"
    floor = found.noise_floor.metrics["kl"]
    assert found.noise_floor.verdict == "pass" and floor.ci_high < 1e-3
    compression, total = found.reports["compression"].metrics["kl"], found.reports["total"].metrics["kl"]
    assert compression.estimate == pytest.approx(total.estimate, rel=0.1)
    assert found.share("runtime") < 0.05


def test_a_block_taken_from_q2_k_into_q8_0_is_named_and_keeping_it_passes(model_and_tokenizer, probes, files,
                                                                         tmp_path):
    planted = tmp_path / f"Q8_0-with-block-{PLANTED}-at-Q2_K.gguf"
    names = [n for n in gguf_tensor_types(files["Q8_0"]) if n.startswith(f"blk.{PLANTED}.")]
    replace_tensors_gguf(files["Q8_0"], files["Q2_K"], planted, names)
    model = model_and_tokenizer[0]
    assert not ph.compare(model, gguf(planted), probes, layers=None).passed
    found = ph.localise(model, planted, probes)
    assert found.blamed == f"model.layers.{PLANTED}"
    assert found.ranking[0].kl > 3 * found.ranking[1].kl
    fixed = found.verify(files["Q8_0"], steps=(1,), folder=tmp_path / "kept", n_threads=1)
    assert fixed is not None and fixed.kept == [f"model.layers.{PLANTED}"], found.to_text()


def test_the_reference_written_from_the_baseline_is_the_f32_file(model_and_tokenizer, files, tmp_path):
    # The baseline is the shipped file dequantised by transformers, the F32 file the same file dequantised
    # by gguf: written back in the Q4_K_M file's layout, the baseline's weights must equal it bit for bit.
    import gguf
    import numpy as np

    from pytest_hemorrhage.gguf_model import write_reference_gguf

    written = write_reference_gguf(model_and_tokenizer[0], files["Q4_K_M"], tmp_path / "reference.gguf")
    converted = {t.name: t for t in gguf.GGUFReader(files["F32"]).tensors}
    for tensor in gguf.GGUFReader(written).tensors:
        assert np.array_equal(tensor.data, converted[tensor.name].data), tensor.name
