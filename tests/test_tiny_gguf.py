"""The tiny GGUF writer: llama.cpp runs the written file as the torch model it came from.

llama.cpp's logits are compared with the torch model's own forward pass (an independent
computation), with an F32 key/value cache so that the only differences left are float32 rounding.
"""

import random

import llama_cpp
import numpy as np
import pytest
import torch
from tiny_gguf import ROUND_TRIP_VOCAB, write_tiny_gguf
from tiny_models import tiny_llama

from pytest_hemorrhage.gguf_model import rope_rows_to_llama_cpp

F32 = 0  # ggml's type id of float32, for the key/value cache
MODELS = {
    "default": dict(seed=0),
    "small-vocab": dict(seed=3, layers=2, vocab=64, init_std=0.2),
}
SEQUENCES = [[7], [3, 77, 12, 99, 5, 64, 1, 127, 40, 41, 42, 11, 0], list(range(0, 128, 3))]


def open_gguf(path, **options) -> llama_cpp.Llama:
    # One thread: on a tiny model llama.cpp's worker threads only wait for each other (seconds, not milliseconds)
    return llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=64, n_threads=1, n_threads_batch=1,
                           verbose=False, **options)


def llama_cpp_logits(llama: llama_cpp.Llama, ids: list[int]) -> np.ndarray:
    llama.reset()
    llama.eval(ids)
    return np.array(llama.scores[: len(ids)])


def torch_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.fixture(scope="module")
def written(tmp_path_factory, one_thread):
    """name -> (torch model, GGUF file of it)."""
    folder = tmp_path_factory.mktemp("gguf")
    out = {}
    for name, kwargs in {**MODELS, "other-seed": dict(seed=1)}.items():
        model = tiny_llama(**kwargs)
        write_tiny_gguf(model, folder / f"{name}.gguf")
        out[name] = model, folder / f"{name}.gguf"
    return out


@pytest.mark.parametrize("name", MODELS)
def test_llama_cpp_logits_equal_the_torch_models(written, name):
    model, path = written[name]
    llama = open_gguf(path, type_k=F32, type_v=F32)
    vocab = model.config.vocab_size
    config = model.config
    assert llama.n_vocab() == vocab and llama.n_embd() == config.hidden_size
    assert llama.metadata["llama.context_length"] == str(config.max_position_embeddings)
    assert llama.metadata["llama.block_count"] == str(config.num_hidden_layers)
    assert llama.metadata["general.file_type"] == "0"  # all F32
    for ids in SEQUENCES:
        ids = [t % vocab for t in ids]
        expected = torch_logits(model, ids)
        got = llama_cpp_logits(llama, ids)
        assert got.shape == expected.shape
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() < 1e-4 * scale, ids


def test_another_seed_gives_another_file_and_other_logits(written):
    model, path = written["default"]
    other_model, other_path = written["other-seed"]
    assert path.read_bytes() != other_path.read_bytes()
    ids = SEQUENCES[1]
    mine, theirs = llama_cpp_logits(open_gguf(path), ids), llama_cpp_logits(open_gguf(other_path), ids)
    assert np.abs(mine - theirs).max() > 0.1 * np.abs(mine).max()
    # the other file is still its own model's
    other = torch_logits(other_model, ids)
    assert np.abs(theirs - other).max() < 0.01 * np.abs(other).max()


@pytest.mark.parametrize("name", MODELS)
def test_detokenize_then_tokenize_gives_back_every_ascii_id(written, name):
    model, path = written[name]
    llama = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    ids = list(range(min(model.config.vocab_size, ROUND_TRIP_VOCAB)))
    rng = random.Random(0)
    sequences = [ids, ids[::-1], *[[rng.choice(ids) for _ in range(40)] for _ in range(50)]]
    for seq in sequences:
        text = llama.detokenize(seq)
        assert len(text) == len(seq)  # one byte per token
        assert llama.tokenize(text, add_bos=False, special=True) == seq


def test_rope_rows_pair_each_row_with_the_one_half_a_head_away():
    heads, head_dim = 2, 6
    rows = torch.arange(heads * head_dim).unsqueeze(1).float()
    got = rope_rows_to_llama_cpp(rows, heads).squeeze(1).long().tolist()
    # head 0 holds rows 0..5 (halves 0,1,2 | 3,4,5), head 1 rows 6..11
    assert got == [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]


def test_a_vocabulary_beyond_one_token_per_byte_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at most 256 ids"):
        write_tiny_gguf(tiny_llama(layers=1, vocab=300), tmp_path / "big.gguf")
    assert not list(tmp_path.iterdir())
