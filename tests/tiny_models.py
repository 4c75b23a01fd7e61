"""Tiny randomly initialised Hugging Face models built from configs, and a tiny tokenizer (no download)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from pytest_hemorrhage.probes import Probes

VOCAB = 128


def tiny_llama(seed: int = 0, layers: int = 4, vocab: int = VOCAB, init_std: float = 0.02) -> LlamaForCausalLM:
    """A random Llama; ``init_std`` above the default 0.02 gives peaked, less uniform next-token distributions."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False, initializer_range=init_std,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed: int = 0, layers: int = 3, vocab: int = VOCAB) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab, n_embd=64, n_layer=layers, n_head=4, n_positions=256,
        bos_token_id=0, eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_qwen2(seed: int = 0, layers: int = 3, vocab: int = VOCAB) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    return Qwen2ForCausalLM(cfg).eval()


def random_token_ids(n: int = 8, length: int = 24, vocab: int = VOCAB, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, length), generator=g)


def llama_and_probes(n: int = 8, length: int = 20) -> tuple[LlamaForCausalLM, torch.Tensor, Probes]:
    """A tiny Llama, ``n`` random probes of ``length`` token ids, and the same probes tagged "code" and
    "prose" in turn (for the per-tag tables)."""
    torch.manual_seed(0)
    ids = random_token_ids(n=n, length=length)
    return tiny_llama(), ids, Probes.from_token_ids(ids.tolist(), tags=["code", "prose"] * (n // 2))


def snapshot_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A cloned state dict, to check later that a function left ``model`` untouched."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Whether ``model`` still holds exactly ``state`` (same keys, bit-identical tensors)."""
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def fused_and_plain_reports(base, cand, probes, monkeypatch, batch_size: int) -> list[tuple[Any, Any]]:
    """(through the fused kernels, through the PyTorch formulas) for a live and a snapshot comparison."""
    import pytest_hemorrhage as ph

    snap = ph.record_snapshot(base, probes, batch_size=batch_size)

    def both():
        return ph.compare(base, cand, probes, batch_size=batch_size), ph.compare(snap, cand, batch_size=batch_size)

    fused = both()
    monkeypatch.setenv("HEMORRHAGE_FUSED", "0")
    plain = both()
    monkeypatch.delenv("HEMORRHAGE_FUSED")
    return list(zip(fused, plain))


def assert_reports_agree(got, expected, rel: float, sqnr_db: float, cosine: float) -> None:
    """Every metric estimate within ``rel``, every layer's SQNR and cosine within the given distances."""
    import pytest

    for name, metric in expected.metrics.items():
        assert got.metrics[name].estimate == pytest.approx(metric.estimate, rel=rel, abs=rel / 10), name
    assert [layer.name for layer in got.layers] == [layer.name for layer in expected.layers]
    for a, b in zip(got.layers, expected.layers):
        assert a.sqnr_db == pytest.approx(b.sqnr_db, abs=sqnr_db), a.name
        assert a.cosine == pytest.approx(b.cosine, abs=cosine), a.name
