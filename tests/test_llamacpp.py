"""llama.cpp as a candidate: real GGUF files of the default model run by llama-cpp-python.

The slow tests make the GGUF files once (F32 in about 5 s, each quantisation some seconds more;
cached under the default model's cache folder) and record one snapshot of the Hugging Face
baseline on a few short built-in probes. The fast tests load no model and need no llama.cpp.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import pytest_hemorrhage as ph
from pytest_hemorrhage.errors import HemorrhageError, InvalidArgument
from pytest_hemorrhage.gguf_files import GGUF_KINDS, default_model_gguf, rewrite_gguf, write_f32_gguf

QUANTISED = ("F32", "Q8_0", "Q4_K_M", "Q2_K")  # in the order of the damage each does


# ---------------------------------------------------------------------------------------------- fast


def test_a_missing_package_names_the_install_command(tmp_path, monkeypatch):
    file = tmp_path / "model.gguf"
    file.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an environment without it imports
    with pytest.raises(HemorrhageError) as caught:
        ph.llama_cpp(file)
    message = str(caught.value)
    assert "pip install 'pytest-hemorrhage[llamacpp]'" in message
    assert "'llama_cpp'" in message and "C compiler and cmake" in message


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_a_path_that_is_no_file_is_named(tmp_path, where):
    path = tmp_path / "model-Q4_K_M.gguf"
    if where == "folder":
        path.mkdir()
    with pytest.raises(InvalidArgument, match="does not exist" if where == "missing" else "is a folder") as caught:
        ph.llama_cpp(path)
    assert str(path) in str(caught.value) and ".gguf file" in str(caught.value)


@pytest.mark.parametrize("option", [{"n_ctx": 0}, {"n_threads": -1}, {"n_ctx": 1.5}, {"n_threads": True}])
def test_bad_options_are_refused(tmp_path, option):
    file = tmp_path / "model.gguf"
    file.write_bytes(b"GGUF")
    with pytest.raises(InvalidArgument, match=f"{next(iter(option))}: a positive integer"):
        ph.llama_cpp(file, **option)


def test_an_unknown_kind_of_file_is_refused():
    with pytest.raises(InvalidArgument, match="kind: expected one of Q4_1, F32, Q8_0, Q4_K_M, Q2_K"):
        default_model_gguf("Q3_K_S")


def test_the_f32_copy_dequantises_every_tensor_and_keeps_the_metadata(tmp_path):
    gguf = pytest.importorskip("gguf", reason="the F32 writer needs gguf (pip install gguf)")
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 64)).astype(np.float32)
    norm = rng.standard_normal(64).astype(np.float32)
    source = tmp_path / "tiny.Q8_0.gguf"
    writer = gguf.GGUFWriter(source, "llama")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_uint32("llama.block_count", 1)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
    writer.add_string("general.name", "tiny")
    quantised = gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("w", quantised, raw_shape=quantised.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("norm", norm)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    target = tmp_path / "tiny.F32.gguf"
    write_f32_gguf(source, target)
    written, original = gguf.GGUFReader(target), gguf.GGUFReader(source)
    assert written.fields["general.file_type"].contents() == gguf.LlamaFileType.ALL_F32
    for key in ("llama.block_count", "tokenizer.ggml.tokens", "general.name", "general.architecture"):
        assert written.fields[key].contents() == original.fields[key].contents()
    tensors = {t.name: t for t in written.tensors}
    assert {t.tensor_type for t in tensors.values()} == {gguf.GGMLQuantizationType.F32}
    # Q8_0 keeps each weight to within half a step of its block's scale (max |w| / 127).
    step = np.abs(weights).reshape(4, 2, 32).max(-1, keepdims=True) / 127
    error = np.abs(tensors["w"].data.reshape(4, 2, 32) - weights.reshape(4, 2, 32))
    assert (error <= step / 2 + 1e-6).all() and error.max() > 0
    assert np.array_equal(tensors["norm"].data, norm)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


# ---------------------------------------------------------------------------------------------- slow

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="pip install 'pytest-hemorrhage[llamacpp]' (builds from source)")


@pytest.fixture(scope="module")
def gguf_files(llama_cpp):
    return {kind: default_model_gguf(kind) for kind in GGUF_KINDS}


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from pytest_hemorrhage.models import default_model

    return default_model()


@pytest.fixture(scope="module")
def probes(model_and_tokenizer):
    return ph.Probes.builtin(model_and_tokenizer[1], n=16, max_length=48)


@pytest.fixture(scope="module")
def snapshot(model_and_tokenizer, probes, tmp_path_factory):
    path = tmp_path_factory.mktemp("snapshot") / "baseline.safetensors"
    ph.record_snapshot(model_and_tokenizer[0], probes, path)
    return ph.load_snapshot(path)


def open_file(files, kind, **options):
    return ph.llama_cpp(files[kind], n_threads=1, **options)


@slow
def test_the_f32_file_run_by_llama_cpp_matches_the_baseline(gguf_files, snapshot):
    source = open_file(gguf_files, "F32")
    report = ph.compare(snapshot, source)
    kl = report.metrics["kl"]
    assert report.passed and kl.ci_high < 1e-3, report
    assert source.modification == "GGUF F32"
    assert any("gives no hidden states" in note for note in report.notes)


@slow
def test_coarser_quantisations_do_more_damage(gguf_files, snapshot):
    kls = {kind: ph.compare(snapshot, open_file(gguf_files, kind)).metrics["kl"] for kind in QUANTISED}
    estimates = [kls[kind].estimate for kind in QUANTISED]
    assert estimates == sorted(estimates), kls
    assert kls["Q2_K"].ci_low > kls["Q8_0"].ci_high  # measurably worse, not by chance


@slow
def test_each_file_says_its_quantisation(gguf_files):
    assert {kind: open_file(gguf_files, kind).modification for kind in GGUF_KINDS} == \
        {kind: f"GGUF {kind}" for kind in GGUF_KINDS}


@slow
def test_llama_cpp_logits_agree_with_the_transformers_model(gguf_files, model_and_tokenizer, probes):
    model = model_and_tokenizer[0]
    source = open_file(gguf_files, "F32")
    with source.loaded(), torch.no_grad():
        for ids in probes.token_ids[:3]:
            ours = source.score(ids)
            theirs = model(torch.tensor([ids])).logits[0].float()
            assert ours.shape == theirs.shape and ours.dtype == torch.float32
            # llama.cpp keeps keys and values in float16 by default: differences of about 1e-3 of
            # the logits' scale (0.02 against 20), where float32 keys and values give about 5e-6.
            assert (ours - theirs).abs().max() < 3e-3 * theirs.abs().max(), (ours - theirs).abs().max()
            top2 = theirs.topk(2, dim=-1).values
            clear = top2[:, 0] - top2[:, 1] > 0.1  # where the top-1 is no near tie, both pick it
            assert clear.sum() > len(ids) // 2
            assert torch.equal(ours.argmax(-1)[clear], theirs.argmax(-1)[clear])


@slow
def test_probes_are_scored_from_a_clear_state(gguf_files, probes):
    first, second = probes.token_ids[:2]
    source = open_file(gguf_files, "Q8_0")
    with source.loaded():
        alone = source.score(second)
        source.score(first)
        assert torch.equal(source.score(second), alone)
        with source.loaded():  # nested: the same loaded file
            assert torch.equal(source.score(second[:5]), alone[:5])


@slow
def test_a_probe_longer_than_the_first_allocation_reopens_the_file_with_room(gguf_files, probes):
    long = (probes.token_ids[0] * 20)[:600]  # more than the 512 positions allocated first
    source = open_file(gguf_files, "Q8_0")
    with source.loaded():
        start = source.score(long[:40])
        whole = source.score(long)
    assert whole.shape == (600, 49152) and torch.allclose(whole[:40], start, atol=1e-3)


@slow
def test_a_probe_longer_than_n_ctx_is_refused_before_it_runs(gguf_files, probes):
    refusal = r"probe 0 has \d+ tokens, more than the 8 positions .*longer context \(n_ctx=\.\.\.\)"
    with pytest.raises(InvalidArgument, match=refusal):
        open_file(gguf_files, "Q8_0", n_ctx=8).check(probes)


@slow
def test_special_tokens_and_a_leading_start_token_round_trip(gguf_files, model_and_tokenizer):
    tokenizer = model_and_tokenizer[1]
    text = "<|im_start|>user\nHow many legs has a spider? é 日本<|im_end|>\n"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    source = open_file(gguf_files, "Q4_1")
    with source.loaded():
        assert source.tokenize(source.detokenize(ids)) == ids
        source.check(ph.Probes(token_ids=[ids, [0, *ids]]))  # <|endoftext|> first, as a start token


@pytest.fixture(scope="module")
def shifted_vocabulary(gguf_files, tmp_path_factory):
    """The shipped file with its vocabulary moved by one id, as a faulty conversion might write it."""
    gguf = pytest.importorskip("gguf")
    fields = gguf.GGUFReader(gguf_files["Q4_1"]).fields
    moved = {key: (lambda values: values[1:] + values[:1])(fields[key].contents())
             for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")}
    path = tmp_path_factory.mktemp("shifted") / "shifted-vocabulary.gguf"
    rewrite_gguf(gguf_files["Q4_1"], path, metadata=moved)
    return path


@slow
def test_a_file_whose_vocabulary_was_shifted_is_refused_naming_the_first_different_token(
        shifted_vocabulary, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    probes = ph.Probes.builtin(tokenizer, n=2, max_length=16)
    first = probes.token_ids[0][0]
    with pytest.raises(HemorrhageError, match="token mismatch: probe 0, position 0") as caught:
        ph.compare(model, ph.llama_cpp(shifted_vocabulary, n_threads=1), probes)
    names = tokenizer.convert_ids_to_tokens([first, first + 1])
    assert f"id {first} is {names[0]!r} to the tokenizer the probes were made with and {names[1]!r}" in \
        str(caught.value)


@slow
def test_probes_of_a_bert_layout_tokenizer_are_refused_naming_the_first_different_token(gguf_files, tmp_path):
    from model_folders import bert_tokenizer

    bert = bert_tokenizer(tmp_path / "bert")
    probes = ph.Probes.from_texts(bert, ["the cat sat", "a dog ran far"])
    assert probes.token_ids[0][0] == 2  # [CLS]
    with pytest.raises(HemorrhageError, match="token mismatch") as caught:
        open_file(gguf_files, "Q4_1").check(probes)
    assert "probe 0, position 0: id 2 is '[CLS]' to the tokenizer the probes were made with and '<|im_end|>'" in \
        str(caught.value)


@slow
def test_a_snapshot_of_another_vocabulary_is_refused_naming_both_sizes(gguf_files, tmp_path):
    from tiny_models import VOCAB, random_token_ids, tiny_llama

    path = tmp_path / "tiny.safetensors"
    ph.record_snapshot(tiny_llama(), random_token_ids(n=2, length=8), path)
    with pytest.raises(HemorrhageError, match="vocabulary mismatch") as caught:
        ph.compare(ph.load_snapshot(path), open_file(gguf_files, "Q4_1"))
    message = str(caught.value)
    assert f"has {VOCAB} token ids" in message and "49152" in message and str(path) in message


@slow
def test_a_file_that_is_not_gguf_is_named(llama_cpp, tmp_path):
    file = tmp_path / "broken.gguf"
    file.write_bytes(b"not a gguf file at all")
    with pytest.raises(HemorrhageError, match="llama.cpp cannot load") as caught:
        ph.llama_cpp(file).vocab_size
    assert str(file) in str(caught.value)
