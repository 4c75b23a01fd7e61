"""The tokenizer saved in a model's folder: finding the folder a model came from, loading its tokenizer.

A model loaded with ``AutoModelForCausalLM.from_pretrained(folder)`` remembers ``folder`` (its
``name_or_path``); when that folder holds tokenizer files, the tokenizer there is the model's.
Everything here reads local files only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import InvalidArgument

__all__ = ["TOKENIZER_FILES", "load_tokenizer", "model_folder_of", "folder_tokenizer"]

#: Files of which at least one is in a folder that ``tokenizer.save_pretrained`` wrote.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")

# Loaded tokenizers by folder and the modification times of its tokenizer files, so a model and
# its copies share one tokenizer object and a folder is read once.
_LOADED: dict[tuple[str, tuple[float, ...]], Any] = {}


def load_tokenizer(path: str | os.PathLike[str], role: str = "model") -> Any:
    """The tokenizer saved in ``path``, or an InvalidArgument saying how to save one there."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - missing files, unknown classes, missing libraries: one answer
        raise InvalidArgument(
            f"{role}: no tokenizer in {path} ({exc.__class__.__name__}); save it beside the model "
            "with tokenizer.save_pretrained(folder)"
        ) from None


def model_folder_of(model: Any) -> Path | None:
    """The existing local folder ``model`` was loaded from (``name_or_path`` or ``config._name_or_path``), or None."""
    config = getattr(model, "config", None)
    for text in (getattr(model, "name_or_path", None), getattr(config, "_name_or_path", None)):
        if isinstance(text, str) and text and Path(text).is_dir():
            return Path(text)
    return None


def _stamps(folder: Path) -> tuple[float, ...]:
    return tuple(p.stat().st_mtime for p in (folder / name for name in TOKENIZER_FILES) if p.is_file())


def folder_tokenizer(folder: Path) -> Any:
    """The tokenizer saved in ``folder`` (loaded once per folder and file state), or None when it holds none.

    Raises :class:`InvalidArgument` when tokenizer files are there but do not load.
    """
    stamps = _stamps(folder)
    if not stamps:
        return None
    key = (str(folder.resolve()), stamps)
    if key not in _LOADED:
        _LOADED[key] = load_tokenizer(folder)
    return _LOADED[key]
