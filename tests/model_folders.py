"""Model folders as the ``hemorrhage`` command reads them: a tiny model saved with a word tokenizer."""

from __future__ import annotations

import re
from pathlib import Path

import torch


def save_word_tokenizer(folder: Path, size: int = 120) -> None:
    """A word-level tokenizer over the built-in corpus, small enough for the tiny models' vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS

    seen: dict[str, None] = {}
    for _, snippet in BUILTIN_SNIPPETS:
        for word in re.findall(r"\w+", snippet.lower()):
            seen.setdefault(word)
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(list(seen)[:size])}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)


def save_model_folder(model: torch.nn.Module, folder: Path) -> str:
    """Save ``model`` and a word tokenizer into ``folder``; returns the folder as a string."""
    model.save_pretrained(folder)
    save_word_tokenizer(folder)
    return str(folder)


def break_block(model: torch.nn.Module, index: int, scale: float = 30.0) -> torch.nn.Module:
    """A copy of a tiny Llama with noise ``scale`` standard deviations wide added to block ``index``'s matrices."""
    import copy

    broken = copy.deepcopy(model)
    with torch.no_grad():
        for p in broken.model.layers[index].parameters():
            if p.dim() == 2:
                p.add_(scale * p.std() * torch.randn_like(p))
    return broken
