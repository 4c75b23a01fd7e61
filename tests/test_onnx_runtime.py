"""ONNX Runtime candidates: a tiny Llama exported to ONNX and run by the real onnxruntime.

The fast tier exports with the TorchScript tracer (under a second); the dynamo exporter, the
default, is exercised in the slow tier on the default model (test_onnx_default_model below).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.onnx_export import export_causal_lm, quantize_dynamic_int8
from pytest_hemorrhage.probes import Probes
from tiny_models import random_token_ids, tiny_llama

onnx = pytest.importorskip("onnx", reason="the [onnx] extra is part of the test environment")


@pytest.fixture(scope="module")
def tiny():
    # A wider init than the default gives peaked next-token distributions, where int8 rounding shows.
    return tiny_llama(init_std=0.1)


@pytest.fixture(scope="module")
def probes():
    ids = random_token_ids(n=12, length=24, seed=3).tolist()
    # Different lengths, so that batches carry padding.
    return Probes.from_token_ids([row[: 10 + i] for i, row in enumerate(ids)])


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = export_causal_lm(tiny, folder / "tiny.onnx", exporter="torchscript")
    int8 = quantize_dynamic_int8(fp32, folder / "tiny-int8.onnx")
    return fp32, int8


def _metrics(report):
    return {m["name"]: m for m in report.to_dict()["metrics"]}


def test_export_writes_only_the_graph_and_leaves_the_model_as_it_was(tiny, files):
    fp32, int8 = files
    assert sorted(p.name for p in fp32.parent.iterdir()) == ["tiny-int8.onnx", "tiny.onnx"]  # no temporaries left
    assert not tiny.training
    graph = onnx.load(str(fp32)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert all(isinstance(a, str) and isinstance(b, str) for a, b in dims)  # both axes dynamic


def test_fp32_onnx_scores_what_torch_scores(tiny, files, probes):
    source = ph.onnx_runtime(files[0], threads=1)
    assert source.modification == "ONNX"
    with source.loaded():
        assert source.vocab_size == tiny.config.vocab_size
        for batch in probes.batches(5):
            got = source.observe(batch).outputs
            for row, n in enumerate(batch.attention_mask.sum(1).tolist()):
                with torch.no_grad():  # each probe alone, unpadded: an independent computation
                    expected = tiny(batch.input_ids[row : row + 1, :n]).logits[0]
                torch.testing.assert_close(got[row, :n], expected, atol=2e-5, rtol=1e-4)
                assert torch.all(got[row, n:] == 0)
                torch.testing.assert_close(source.score(batch.input_ids[row, :n].tolist()), got[row, :n])


def test_compare_with_fp32_onnx_finds_nothing_and_says_layers_are_absent(tiny, files, probes):
    report = ph.compare(tiny, ph.onnx_runtime(files[0]), probes)
    metrics = _metrics(report)
    assert report.passed and report.verdicts == {"kl": "pass", "top1": "pass", "ppl_ratio": "pass"}
    assert metrics["kl"]["estimate"] < 1e-6
    assert metrics["top1"]["estimate"] == 1.0
    assert any("gives no hidden states: layer metrics are absent" in note for note in report.notes)


def test_ort_int8_is_measurably_worse_than_fp32(tiny, files, probes):
    fp32, int8 = files
    assert ph.onnx_runtime(int8).modification == "ONNX int8 (dynamic)"
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "MatMulInteger" in ops
    exact = _metrics(ph.compare(tiny, ph.onnx_runtime(fp32), probes))["kl"]
    report = ph.compare(tiny, ph.onnx_runtime(int8), probes)
    assert report.identity["modification"] == "ONNX int8 (dynamic)"
    rounded = _metrics(report)["kl"]
    assert rounded["estimate"] > 100 * max(exact["estimate"], 1e-9)
    assert rounded["ci_low"] > exact["ci_high"]


def test_a_missing_onnxruntime_names_the_install_command(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(HemorrhageError, match=r"pip install 'pytest-hemorrhage\[onnx\]'"):
        ph.onnx_runtime(files[0])


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(InvalidArgument, match=r"the ONNX file .*nope\.onnx is not found"):
        ph.onnx_runtime(tmp_path / "nope.onnx")
    with pytest.raises(InvalidArgument, match="is a folder"):
        ph.onnx_runtime(tmp_path)


def test_a_file_that_is_no_onnx_graph_is_refused_when_opened(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    source = ph.onnx_runtime(bad)
    with pytest.raises(HemorrhageError, match="ONNX Runtime could not open .*bad.onnx"):
        with source.loaded():
            source.vocab_size


def test_probe_ids_outside_the_vocabulary_are_refused(tiny, files):
    vocab = tiny.config.vocab_size
    with pytest.raises(HemorrhageError, match=f"probe 1 holds token id {vocab}, outside the {vocab} ids"):
        ph.onnx_runtime(files[0]).check(Probes.from_token_ids([[1, 2, 3], [4, vocab, 5]]))


def _embedding_graph(path, vocab=16, extra_inputs=()):
    """A graph whose logits are the rows of a fixed table at the ids, plus the sum of its cache inputs
    (zero only when they are empty): a stand-in for a decoder exported with a key-value cache."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).normal(size=(vocab, vocab)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["rows"])]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])]
    total = "rows"
    for i, (name, shape) in enumerate(extra_inputs):
        if name == "use_cache_branch":  # optimum's switch: a true one would add 1 to every logit
            inputs.append(helper.make_tensor_value_info(name, TensorProto.BOOL, shape))
            nodes.append(helper.make_node("Cast", [name], [f"float{i}"], to=TensorProto.FLOAT))
            name = f"float{i}"
        else:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        nodes += [helper.make_node("ReduceSum", [name], [f"sum{i}"], keepdims=0),
                  helper.make_node("Add", [total, f"sum{i}"], [f"total{i}"])]
        total = f"total{i}"
    nodes.append(helper.make_node("Identity", [total], ["logits"]))
    graph = helper.make_graph(nodes, "lookup", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", vocab])],
                              [numpy_helper.from_array(table, "table")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return table


def test_a_graph_with_a_key_value_cache_is_fed_an_empty_one_and_no_cache_branch(tmp_path):
    path = tmp_path / "cached.onnx"
    cache = [("past_key_values.0.key", ["batch", 2, "past_sequence", 4]),
             ("past_key_values.0.value", ["batch", 2, "past_sequence", 4]), ("use_cache_branch", [1])]
    table = _embedding_graph(path, extra_inputs=cache)
    ids = [[3, 1, 4, 1, 5], [9, 2, 6]]
    source = ph.onnx_runtime(path)
    batch = next(Probes.from_token_ids(ids).batches(2))
    with source.loaded():
        got = source.observe(batch).outputs
    for row, n in enumerate(batch.attention_mask.sum(1).tolist()):
        np.testing.assert_array_equal(got[row, :n].numpy(), table[batch.input_ids[row, :n].numpy()])


def test_an_input_it_cannot_fill_is_named(tmp_path):
    path = tmp_path / "odd.onnx"
    _embedding_graph(path, extra_inputs=[("pixel_values", ["batch", 3])])
    source = ph.onnx_runtime(path)
    with pytest.raises(HemorrhageError, match="needs the input 'pixel_values'"):
        with source.loaded():
            source.score([1, 2])


def test_bad_arguments_are_refused(tiny, files, tmp_path):
    with pytest.raises(InvalidArgument, match="threads must be a positive whole number"):
        ph.onnx_runtime(files[0], threads=0)
    with pytest.raises(InvalidArgument, match="exporter must be one of"):
        export_causal_lm(tiny, tmp_path / "x.onnx", exporter="jit")
    with pytest.raises(InvalidArgument, match="the target .* is the source"):
        quantize_dynamic_int8(files[0], files[0])


# ---------------------------------------------------------------------------- the default model (slow tier)


@pytest.fixture(scope="module")
def default_snapshot(hemorrhage_default_model):
    model, tokenizer = hemorrhage_default_model
    return ph.record_snapshot(model, Probes.builtin(tokenizer, n=24))


@pytest.mark.slow
def test_default_model_in_onnx_fp32_passes_and_ort_int8_is_worse(hemorrhage_default_model, default_snapshot):
    from pytest_hemorrhage.onnx_export import default_model_onnx

    fp32, int8 = default_model_onnx("fp32"), default_model_onnx("int8")
    assert fp32.parent == int8.parent and fp32.parent.name.startswith("onnx-smollm2-135m-instruct-")
    tokenizer = hemorrhage_default_model[1]
    exact = ph.compare(default_snapshot, ph.onnx_runtime(fp32, tokenizer=tokenizer))
    rounded = ph.compare(default_snapshot, ph.onnx_runtime(int8, tokenizer=tokenizer))
    kl, kl8 = _metrics(exact)["kl"], _metrics(rounded)["kl"]
    assert exact.passed and kl["estimate"] < 1e-4 and _metrics(exact)["top1"]["estimate"] > 0.99
    assert kl8["ci_low"] > 10 * kl["ci_high"]
    assert _metrics(rounded)["top1"]["estimate"] < _metrics(exact)["top1"]["estimate"]


@pytest.mark.slow
def test_default_model_in_onnx_refuses_probes_of_another_tokenizer(hemorrhage_default_model):
    from pytest_hemorrhage.onnx_export import default_model_onnx

    tokenizer = hemorrhage_default_model[1]
    ids = tokenizer.encode("The quick brown fox", add_special_tokens=False)
    # The same text cut where this tokenizer never cuts it: what ids of another vocabulary look like.
    head = tokenizer.encode("The", add_special_tokens=False)
    foreign = head + tokenizer.encode(" qu", add_special_tokens=False) + tokenizer.encode("ick brown fox",
                                                                                       add_special_tokens=False)
    assert foreign != ids
    source = ph.onnx_runtime(default_model_onnx("fp32"), tokenizer=tokenizer)
    source.check(Probes.from_token_ids([ids]))
    with pytest.raises(HemorrhageError, match=f"first difference at position {len(head)}"):
        source.check(Probes.from_token_ids([foreign]))
