"""A GGUF file run by llama.cpp (through ``llama-cpp-python``) as a side of a comparison.

Each probe's token ids are fed as they are, from a cleared state, and llama.cpp returns the
logits of every position (``logits_all``): llama.cpp's own kernels score the probes, not a
dequantised copy of the weights in PyTorch. The file is loaded once however many times
:meth:`LlamaCppSource.loaded` is entered inside another, and freed when the outermost exits.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import HemorrhageError, InvalidArgument
from .runtime import RuntimeSource, require

__all__ = ["LlamaCppSource"]

_INSTALL_NOTE = " (llama-cpp-python builds from source: it needs a C compiler and cmake, and takes minutes)"
#: Positions allocated when no ``n_ctx`` is given; a longer probe reopens the file with room for it.
_FIRST_CONTEXT = 512


class LlamaCppSource(RuntimeSource):
    """The GGUF file at ``path`` run by llama.cpp: every logit of every probe position.

    Args:
        path: a ``.gguf`` file.
        n_ctx: the most positions a probe may have; by default the model's training context, with
            room allocated for the longest probe seen.
        n_threads: CPU threads llama.cpp uses; by default half the cores. On a busy machine, more
            threads than free cores make llama.cpp many times slower (its threads spin while waiting).
        role: ``"candidate"`` (or ``"baseline"``), for messages.
    """

    runtime = "llama.cpp"

    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int | None = None, n_threads: int | None = None,
                 role: str = "candidate") -> None:
        file = Path(path)
        if not file.is_file():
            what = "is a folder" if file.is_dir() else "does not exist"
            raise InvalidArgument(f"{role}: the GGUF file {path} {what}; pass the path of a .gguf file "
                                  "(llama.cpp runs one file, e.g. model-Q4_K_M.gguf)")
        for name, value in (("n_ctx", n_ctx), ("n_threads", n_threads)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidArgument(f"{name}: a positive integer or None, got {value!r}")
        super().__init__(file, role)
        self._lib = require("llama_cpp", "llamacpp", "the llama.cpp runtime", note=_INSTALL_NOTE)
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max((os.cpu_count() or 1) // 2, 1)
        self._llama: Any = None
        self._facts: dict[str, Any] | None = None  # read on the first load, kept after it is freed

    @property
    def n_threads(self) -> int:
        """The CPU threads llama.cpp runs on."""
        return self._n_threads

    # ------------------------------------------------------------------ what the file says
    @property
    def vocab_size(self) -> int:
        return self._fact("n_vocab")

    @property
    def context_length(self) -> int:
        return self._n_ctx or self._fact("n_ctx_train")

    @property
    def modification(self) -> str:
        """The file's quantisation as recorded in its ``general.file_type``, e.g. ``"GGUF Q4_K_M"``."""
        return f"GGUF {self._fact('file_type')}"

    def _fact(self, name: str) -> Any:
        if self._facts is None:
            with self.loaded():
                pass
        assert self._facts is not None
        return self._facts[name]

    def _read_facts(self, llama: Any) -> dict[str, Any]:
        recorded = llama.metadata.get("general.file_type")
        return {"n_vocab": llama.n_vocab(), "n_ctx_train": self._lib.llama_model_n_ctx_train(llama.model),
                "file_type": self._file_type_name(int(recorded)) if recorded is not None else
                "(file type not recorded)"}

    def _file_type_name(self, code: int) -> str:
        """``Q4_K_M`` for llama.cpp's ``LLAMA_FTYPE_MOSTLY_Q4_K_M``; ``F32`` for ``LLAMA_FTYPE_ALL_F32``."""
        for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_"):
            for name in dir(self._lib):
                if name.startswith(prefix) and getattr(self._lib, name) == code:
                    return name.removeprefix(prefix)
        named = self._lib.llama_ftype_name(code)
        return named.decode() if named else f"file type {code}"

    # ------------------------------------------------------------------ loading
    def _acquire(self) -> None:
        if self._llama is None:
            self._open(min(_FIRST_CONTEXT, self._n_ctx or _FIRST_CONTEXT))

    def _release(self) -> None:
        self._close()

    def _open(self, n_ctx: int) -> None:
        try:
            self._llama = self._lib.Llama(str(self.target), logits_all=True, n_ctx=n_ctx, n_batch=min(n_ctx, 512),
                                          n_threads=self._n_threads, n_threads_batch=self._n_threads,
                                          verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise HemorrhageError(f"llama.cpp cannot load {self.target} ({exc}): is it a GGUF file of a model "
                                  "this llama.cpp version supports, complete and not corrupted?") from exc
        if self._facts is None:
            self._facts = self._read_facts(self._llama)

    def _close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _llama_for(self, n: int) -> Any:
        """The loaded model, reopened with room for ``n`` positions when it has fewer."""
        if self._llama is None:
            raise HemorrhageError(f"{self.label} is not loaded: score probes inside `with source.loaded():`")
        if n > self._llama.n_ctx():
            if n > self.context_length:
                raise InvalidArgument(f"a probe of {n} tokens is longer than the {self.context_length} positions "
                                      f"{self.label} takes; use shorter probes (max_length=...)")
            self._close()
            self._open(min(self.context_length, max(2 * _FIRST_CONTEXT, 1 << (n - 1).bit_length())))
        return self._llama

    # ------------------------------------------------------------------ scoring and tokens
    def score(self, ids: Sequence[int]) -> torch.Tensor:
        llama = self._llama_for(len(ids))
        llama.reset()  # no probe sees another's cached keys and values
        llama.eval(list(ids))
        return torch.from_numpy(llama.scores[: len(ids)].copy())

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's tokenization of ``text``: no start token added, special tokens' texts read as those tokens."""
        with self.loaded():
            return list(self._llama.tokenize(text.encode("utf-8", "surrogateescape"), add_bos=False, special=True))

    def token_string(self, token: int) -> str:
        """The string the GGUF file's vocabulary holds for ``token`` (``tokenizer.ggml.tokens``)."""
        with self.loaded():
            text = self._lib.llama_vocab_get_text(self._vocab(), token)
        return text.decode("utf-8", "replace") if text is not None else ""

    def _vocab(self) -> Any:
        return self._lib.llama_model_get_vocab(self._llama.model)

    def detokenize(self, ids: Sequence[int]) -> str:
        """llama.cpp's text of ``ids``, special tokens written out; bytes that are not UTF-8 kept as escapes
        so that :meth:`tokenize` reads back exactly the same bytes."""
        with self.loaded():
            vocab = self._vocab()
            tokens = (self._lib.llama_token * max(len(ids), 1))(*ids)
            size = 16 * len(ids) + 16
            for _ in range(2):
                buffer = ctypes.create_string_buffer(size)
                n = self._lib.llama_detokenize(vocab, tokens, len(ids), buffer, size, False, True)
                if n >= 0:
                    return buffer.raw[:n].decode("utf-8", "surrogateescape")
                size = -n
        raise HemorrhageError(f"llama.cpp could not write out the text of {len(ids)} tokens of {self.target}")
