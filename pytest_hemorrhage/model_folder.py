"""Loading a Hugging Face model folder (what ``save_pretrained`` wrote) as a baseline or candidate.

The one loader behind every place that takes a path instead of a model: the ``hemorrhage``
command, ``compare``/``check`` given a path, and the ``hemorrhage_model`` option.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import InvalidArgument
from .probes import register_missing_tokenizer, register_tokenizer
from .tokenizer_files import load_tokenizer

__all__ = ["check_model_folder", "load_model", "load_tokenizer"]

_SAVE_HINT = "model.save_pretrained(folder)"


def check_model_folder(path: str | os.PathLike[str], role: str = "model") -> Path:
    """``path`` as a folder, or an InvalidArgument naming why it is not a model folder (before any weights load)."""
    folder = Path(path)
    if not folder.exists():
        raise InvalidArgument(f"{role}: {path} does not exist; give the folder {_SAVE_HINT} wrote")
    if not folder.is_dir():
        raise InvalidArgument(
            f"{role}: {path} is a file, not a Hugging Face model folder; give the folder {_SAVE_HINT} wrote"
        )
    if not (folder / "config.json").is_file():
        raise InvalidArgument(
            f"{role}: {path} is not a Hugging Face model folder (no config.json); save one with {_SAVE_HINT}"
        )
    return folder


def load_model(path: str | os.PathLike[str], role: str = "model") -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a Hugging Face folder, local files only, the model in eval mode.

    The tokenizer is registered for the model, so ``probes=None`` builds the built-in probes with
    it. A folder without a tokenizer still loads (the tokenizer is then None); only the built-in
    probes need one, and asking for them says so.
    """
    from transformers import AutoModelForCausalLM

    folder = check_model_folder(path, role)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    try:
        tokenizer = load_tokenizer(folder, role)
    except InvalidArgument:
        register_missing_tokenizer(
            model, f"{folder} holds no tokenizer; save it there with tokenizer.save_pretrained(folder)")
        return model, None
    register_tokenizer(model, tokenizer)
    return model, tokenizer
