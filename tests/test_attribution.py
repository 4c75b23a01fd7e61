"""Attribution of a runtime candidate's divergence to the runtime or the compression, on a tiny Llama
run by llama.cpp (fast tier).

The quantised files are made by gguf's own quantiser from the F32 file. The torch model whose 2-D
weights went through the same quantise-dequantise round trip is the independent computation the
compression part must reproduce (quantisation works row by row, so llama.cpp's rotary row order
does not change it).
"""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from tiny_gguf import requantise_gguf, write_tiny_gguf
from tiny_models import tiny_llama

import pytest_hemorrhage as ph
from pytest_hemorrhage.attribution import PARTS

pytestmark = pytest.mark.usefixtures("one_thread")
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def files(gguf_baseline, tmp_path_factory):
    root = tmp_path_factory.mktemp("attribution")
    paths = {name: root / f"{name}.gguf" for name in ("F32", "Q4_0", "Q8_0", "bad-F32", "bad-Q8_0")}
    write_tiny_gguf(gguf_baseline, paths["F32"])
    # Rotary embeddings only matter once attention is peaked: larger weights than the default init.
    write_tiny_gguf(peaked(), paths["bad-F32"], rope_order=False)
    requantise_gguf(paths["F32"], paths["Q4_0"], lambda name: Q.Q4_0)
    requantise_gguf(paths["F32"], paths["Q8_0"], lambda name: Q.Q8_0)
    requantise_gguf(paths["bad-F32"], paths["bad-Q8_0"], lambda name: Q.Q8_0)
    return paths


def peaked():
    return tiny_llama(seed=5, init_std=0.2)


def gguf_file(path):
    return ph.llama_cpp(path, n_threads=1)


def round_tripped(model, kind):
    """``model`` with every 2-D weight quantised to ``kind`` and back, by gguf's numpy quantiser."""
    out = tiny_llama(seed=5)
    out.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in out.parameters():
            if p.dim() == 2:
                packed = gguf.quants.quantize(p.numpy().astype(np.float32), kind)
                p.copy_(torch.from_numpy(gguf.quants.dequantize(packed, kind)).reshape(p.shape))
    return out


def test_a_quantised_file_is_blamed_on_compression_and_matches_its_torch_twin(gguf_baseline, gguf_probes, files):
    found = ph.attribute(gguf_baseline, gguf_file(files["Q4_0"]), gguf_file(files["F32"]), gguf_probes, max_kl=1e-4)
    assert found.cause == "compression"
    runtime, compression, total = (found.reports[p].metrics["kl"] for p in ("runtime", "compression", "total"))
    assert found.reports["runtime"].verdict == "pass" and runtime.estimate < 1e-6
    assert found.reports["compression"].verdict == "fail"
    twin = ph.compare(gguf_baseline, round_tripped(gguf_baseline, Q.Q4_0), gguf_probes, layers=None).metrics["kl"]
    assert compression.estimate == pytest.approx(twin.estimate, rel=0.05)
    assert total.estimate == pytest.approx(twin.estimate, rel=0.05)
    assert compression.ci_low < compression.estimate < compression.ci_high
    assert found.share("runtime") < 0.01 < found.share("compression")
    assert found.noise_floor is found.reports["runtime"]


def test_a_conversion_bug_is_blamed_on_the_runtime(gguf_baseline, gguf_probes, files):
    # Both files keep Hugging Face's rotary row order, which llama.cpp reads as its own: a bad conversion.
    found = ph.attribute(peaked(), gguf_file(files["bad-Q8_0"]), gguf_file(files["bad-F32"]), gguf_probes,
                         max_kl=0.01, min_top1_agreement=0.8)
    assert found.cause == "runtime"
    assert found.share("runtime") > 0.9
    assert found.reports["runtime"].verdict == "fail"
    assert found.reports["compression"].verdict == "pass"
    assert "conversion" in found.explanation() and "llama.cpp" in found.explanation()


def test_a_candidate_that_passes_has_nothing_to_attribute(gguf_baseline, gguf_probes, files):
    found = ph.attribute(gguf_baseline, gguf_file(files["Q8_0"]), gguf_file(files["F32"]), gguf_probes, max_kl=0.05)
    assert found.cause == "none"
    assert all(found.reports[p].verdict == "pass" for p, _ in PARTS)
    assert "nothing to attribute" in found.explanation()


def test_the_table_renders_every_part_with_its_interval(gguf_baseline, gguf_probes, files):
    found = ph.attribute(gguf_baseline, gguf_file(files["Q4_0"]), gguf_file(files["F32"]), gguf_probes, max_kl=1e-4)
    text, markdown = found.to_text(), found.to_markdown()
    for part, compared in PARTS:
        kl = found.reports[part].metrics["kl"]
        assert f"{kl.estimate:.4g} ({kl.ci_low:.4g}-{kl.ci_high:.4g})" in text
        assert f"| {part} | {compared} |" in markdown
    assert str(found) == text
    data = json.loads(json.dumps(found.to_dict()))
    assert data["cause"] == "compression"
    assert ph.Report.from_dict(data["reports"]["total"]).metrics["kl"].estimate == pytest.approx(
        found.reports["total"].metrics["kl"].estimate)


def test_parts_that_fail_together_are_both_named_with_the_larger_first(gguf_probes, files):
    found = ph.attribute(peaked(), gguf_file(files["bad-Q8_0"]), gguf_file(files["bad-F32"]), gguf_probes, max_kl=1e-3)
    assert found.reports["runtime"].verdict == found.reports["compression"].verdict == "fail"
    assert found.cause == "both"
    assert "the runtime part the most" in found.explanation()


def test_wrong_sides_are_refused_with_the_fix(gguf_baseline, gguf_probes, files, tmp_path):
    from pytest_hemorrhage.onnx_export import export_causal_lm

    with pytest.raises(ph.InvalidArgument, match="candidate: expected a runtime source"):
        ph.attribute(gguf_baseline, tiny_llama(seed=5), gguf_file(files["F32"]), gguf_probes)
    with pytest.raises(ph.InvalidArgument, match="is the candidate itself"):
        ph.attribute(gguf_baseline, gguf_file(files["Q4_0"]), gguf_file(files["Q4_0"]), gguf_probes)
    server = ph.openai_server("http://127.0.0.1:9/v1", model="tiny", topk=5)
    with pytest.raises(ph.InvalidArgument, match="candidate: .* returns only its top 5 log-probabilities"):
        ph.attribute(gguf_baseline, server, gguf_file(files["F32"]), gguf_probes)
    onnx = export_causal_lm(gguf_baseline, tmp_path / "tiny.onnx", exporter="torchscript")
    with pytest.raises(ph.InvalidArgument, match="same runtime"):
        ph.attribute(gguf_baseline, gguf_file(files["Q4_0"]), ph.onnx_runtime(onnx), gguf_probes)


def test_each_file_is_loaded_once_for_the_three_comparisons(gguf_baseline, gguf_probes, files, monkeypatch):
    from pytest_hemorrhage.sources.llamacpp import LlamaCppSource

    opened = []
    real_open = LlamaCppSource._open
    monkeypatch.setattr(LlamaCppSource, "_open",
                        lambda self, n_ctx: (opened.append(self.target), real_open(self, n_ctx)))
    ph.attribute(gguf_baseline, gguf_file(files["Q4_0"]), gguf_file(files["F32"]), gguf_probes)
    assert sorted(opened) == sorted([files["Q4_0"], files["F32"]])


def test_a_reference_written_from_the_baseline_equals_the_f32_conversion(gguf_baseline, files, tmp_path):
    from pytest_hemorrhage.gguf_model import write_reference_gguf

    written = write_reference_gguf(gguf_baseline, files["Q4_0"], tmp_path / "reference.gguf")
    ours, theirs = gguf.GGUFReader(written), gguf.GGUFReader(files["F32"])
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for mine, converted in zip(ours.tensors, theirs.tensors):
        assert mine.tensor_type == converted.tensor_type == Q.F32
        assert np.array_equal(mine.data, converted.data), mine.name
    assert ours.fields["general.file_type"].contents() == int(gguf.LlamaFileType.ALL_F32)
    assert ours.fields["tokenizer.ggml.tokens"].contents() == theirs.fields["tokenizer.ggml.tokens"].contents()


def test_without_a_reference_one_is_written_from_the_baseline(gguf_baseline, gguf_probes, files):
    given = ph.attribute(gguf_baseline, gguf_file(files["Q4_0"]), gguf_file(files["F32"]), gguf_probes)
    written = ph.attribute(gguf_baseline, gguf_file(files["Q4_0"]), None, gguf_probes)
    for part, _ in PARTS:
        assert written.reports[part].metrics["kl"].estimate == given.reports[part].metrics["kl"].estimate
    assert "written from the baseline's weights" in written.to_text()


def test_a_written_reference_counts_a_conversion_bug_as_compression(files, gguf_probes):
    # The reference is converted right by construction: the candidate's bad rotary order is then part
    # of the candidate, so its own unquantised conversion is the reference that tests the converter.
    found = ph.attribute(peaked(), gguf_file(files["bad-Q8_0"]), None, gguf_probes, max_kl=0.01,
                         min_top1_agreement=0.8)
    assert found.cause == "compression" and found.share("compression") > 0.9


def test_without_a_reference_a_snapshot_baseline_is_refused(gguf_baseline, gguf_probes, files):
    snapshot = ph.record_snapshot(gguf_baseline, gguf_probes)
    with pytest.raises(ph.InvalidArgument, match="reference: none given, and the baseline is a snapshot"):
        ph.attribute(snapshot, gguf_file(files["Q4_0"]), None, gguf_probes)
