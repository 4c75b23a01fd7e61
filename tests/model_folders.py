"""Model folders as the ``hemorrhage`` command reads them: a tiny model saved with a word tokenizer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch


def _corpus_words(size: int) -> list[str]:
    """The first ``size`` distinct lower-case words of the built-in corpus."""
    from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS

    seen: dict[str, None] = {}
    for _, snippet in BUILTIN_SNIPPETS:
        for word in re.findall(r"\w+", snippet.lower()):
            seen.setdefault(word)
    return list(seen)[:size]


def save_word_tokenizer(folder: Path, size: int = 120) -> None:
    """A word-level tokenizer over the built-in corpus, small enough for the tiny models' vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(_corpus_words(size))}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)


def bert_tokenizer(folder: Path, size: int = 40) -> Any:
    """A BERT word-piece tokenizer saved in ``folder``: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then
    ``size - 5`` words of the built-in corpus. Texts start with [CLS] and end with [SEP]."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_corpus_words(size - 5)]) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    tokenizer.save_pretrained(folder)
    return tokenizer


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
