"""A candidate that is an ONNX file of a causal language model, run by ONNX Runtime.

The file takes ``input_ids`` (and, where the graph has them, ``attention_mask`` and
``position_ids``) and gives the next-token logits of every position. A whole batch of probes is
scored by one ``session.run``: the batches are right-padded, so the mask (and, in a causal model,
the order of the tokens) keeps the padding from touching any probe's scores.

A graph exported for generation with a key-value cache (inputs named ``past_key_values.*``, as
optimum exports decoders) is fed an empty cache: zero past positions, and ``use_cache_branch``
false where the graph has that switch. Any other input the graph needs is an error that names it.

An ONNX file carries no tokenizer: the probes' ids are fed as they are and checked against the
number of logits the graph returns. Pass ``tokenizer=`` (the Hugging Face tokenizer the file was
exported with) to also check each probe's round trip through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import HemorrhageError, InvalidArgument
from ..probes import ProbeBatch
from .observation import TensorObservation
from .runtime import RuntimeSource, require

__all__ = ["OnnxSource", "graph_modification"]

_WHAT = "the ONNX Runtime runtime"
_INPUT_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
                 "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(bool)": np.bool_}
#: Operators that only a quantised graph holds, and how the report names such a graph.
_QUANTISED_OPS = (
    ({"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger"}, "ONNX int8 (dynamic)"),
    ({"MatMulNBits"}, "ONNX int4 weights (MatMulNBits)"),
    ({"QLinearMatMul", "QLinearConv", "QuantizeLinear"}, "ONNX int8 (static)"),
)


def graph_modification(op_types: set[str]) -> str:
    """How a graph made of ``op_types`` differs from a float export: its quantisation, or plain "ONNX"."""
    for ops, name in _QUANTISED_OPS:
        if ops & op_types:
            return name
    return "ONNX"


class OnnxSource(RuntimeSource):
    """An ONNX causal language model run by ONNX Runtime (``pip install 'pytest-hemorrhage[onnx]'``).

    ``providers`` are ONNX Runtime's execution providers in order of preference (default: the CPU
    one only, so that results do not depend on the machine); ``threads`` caps its intra-op
    threads (default: ONNX Runtime's own choice); ``tokenizer`` adds the round-trip token check.
    """

    runtime = "ONNX Runtime"

    def __init__(self, path: str | os.PathLike[str], *, providers: Sequence[str] | None = None,
                 threads: int | None = None, tokenizer: Any = None, role: str = "candidate") -> None:
        self._ort = require("onnxruntime", "onnx", _WHAT)
        file = Path(path)
        if not file.is_file():
            where = "a folder" if file.is_dir() else "not found"
            raise InvalidArgument(
                f"{role}: the ONNX file {file} is {where}. Pass the path of a .onnx file, such as one written "
                "by pytest_hemorrhage.onnx_export.export_causal_lm(model, path)"
            )
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise InvalidArgument(f"threads must be a positive whole number, got {threads!r}")
        super().__init__(str(file), role)
        self.path = file
        self.providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        self.threads = threads
        self.tokenizer = tokenizer
        self._session: Any = None
        self._vocab: int | None = None
        self._modification: str | None = None

    # ------------------------------------------------------------------ the session
    def _release(self) -> None:
        self._session = None  # made on first use inside the outermost ``with loaded()``

    def _run_session(self) -> Any:
        if self._session is not None:
            return self._session
        if not self.is_loaded:
            raise HemorrhageError(f"{self.label} was used outside 'with source.loaded():'")
        options = self._ort.SessionOptions()
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            session = self._ort.InferenceSession(str(self.path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own classes for bad files and providers
            raise HemorrhageError(
                f"ONNX Runtime could not open {self.path}: {exc}. Check that it is a complete ONNX file (with its "
                "external data files next to it) and that the providers are installed "
                f"(available here: {', '.join(self._ort.get_available_providers())})"
            ) from exc
        self._inputs = {i.name: i for i in session.get_inputs()}
        if "input_ids" not in self._inputs:
            raise HemorrhageError(
                f"{self.label} takes no input named 'input_ids' (its inputs: {', '.join(self._inputs)}); "
                "export the model with its token ids as 'input_ids'"
            )
        self._logits = self._logits_output(session)
        self._session = session
        return session

    def _logits_output(self, session: Any) -> str:
        outputs = session.get_outputs()
        named = [o for o in outputs if o.name == "logits"] or [o for o in outputs if len(o.shape or ()) == 3]
        if not named:
            raise HemorrhageError(
                f"{self.label} has no 'logits' output of shape [batch, sequence, vocabulary] (its outputs: "
                f"{', '.join(o.name for o in outputs)}); export the causal language model with its logits"
            )
        size = named[0].shape[-1]
        if isinstance(size, int) and size > 0:
            self._vocab = size
        return named[0].name

    # ------------------------------------------------------------------ what the runtime is
    @property
    def vocab_size(self) -> int:
        if self._vocab is None:
            with self.loaded():
                self._run_session()
                if self._vocab is None:  # a symbolic vocabulary axis: one token tells
                    self._vocab = int(self._run_batch(torch.zeros(1, 1, dtype=torch.long),
                                                      torch.ones(1, 1, dtype=torch.long)).shape[-1])
        return self._vocab

    @property
    def modification(self) -> str:
        if self._modification is None:
            onnx = require("onnx", "onnx", _WHAT)
            proto = onnx.load(str(self.path), load_external_data=False)
            ops = {node.op_type for node in proto.graph.node}
            for function in proto.functions:
                ops |= {node.op_type for node in function.node}
            self._modification = graph_modification(ops)
        return self._modification

    def tokenize(self, text: str) -> list[int] | None:
        return None if self.tokenizer is None else list(self.tokenizer.encode(text, add_special_tokens=False))

    def detokenize(self, ids: Sequence[int]) -> str | None:
        if self.tokenizer is None:
            return None
        return self.tokenizer.decode(list(ids), clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------------ scoring
    def score(self, ids: Sequence[int]) -> torch.Tensor:
        row = torch.tensor([list(ids)], dtype=torch.long)
        with self.loaded():
            return self._run_batch(row, torch.ones_like(row))[0]

    def observe(self, batch: ProbeBatch, blocks: Sequence[str] = (), attentions: bool = False) -> TensorObservation:
        """Every row of ``batch`` in one run; padded positions are zero, as the baseline's are never read."""
        mask = batch.attention_mask
        logits = self._run_batch(batch.input_ids, mask)
        expected = (*batch.input_ids.shape, self.vocab_size)
        if tuple(logits.shape) != expected:
            raise HemorrhageError(f"{self.label} returned logits of shape {tuple(logits.shape)} for a batch of "
                                  f"shape {tuple(batch.input_ids.shape)}; expected {expected}")
        return TensorObservation(batch, "lm", logits * mask.unsqueeze(-1).to(logits.dtype))

    def _run_batch(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        session = self._run_session()
        feeds = {name: self._feed(name, info, ids, mask) for name, info in self._inputs.items()}
        try:
            (logits,) = session.run([self._logits], feeds)
        except Exception as exc:  # onnxruntime's own error classes
            raise HemorrhageError(f"ONNX Runtime failed to run {self.path} on a batch of shape "
                                  f"{tuple(ids.shape)}: {exc}") from exc
        return torch.from_numpy(np.ascontiguousarray(logits)).float()

    def _feed(self, name: str, info: Any, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        dtype = _INPUT_DTYPES.get(info.type)
        if dtype is None:
            raise HemorrhageError(f"{self.label}: input {name!r} has type {info.type}, which this source cannot feed")
        if name == "input_ids":
            return ids.numpy().astype(dtype)
        if name == "attention_mask":
            return mask.numpy().astype(dtype)
        if name == "position_ids":
            return (mask.cumsum(-1) - 1).clamp(min=0).numpy().astype(dtype)
        if name == "use_cache_branch":
            return np.zeros([d if isinstance(d, int) else 1 for d in info.shape], dtype=dtype)
        if name.startswith("past_key_values") or name.startswith("past."):
            return self._empty_past(name, info, ids.shape[0], dtype)
        raise HemorrhageError(
            f"{self.label} needs the input {name!r}, which this source does not know how to fill (it feeds "
            "input_ids, attention_mask, position_ids and an empty past_key_values cache); export the model "
            "with those inputs only"
        )

    def _empty_past(self, name: str, info: Any, batch: int, dtype: Any) -> np.ndarray:
        """A cache input with no past positions: the batch axis first, the one other free axis empty."""
        shape = list(info.shape)
        free = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if not free or free[0] != 0 or len(free) != 2:
            raise HemorrhageError(
                f"{self.label}: cannot tell the past-length axis of the cache input {name!r} (shape {shape}); "
                "export the model without a key-value cache"
            )
        shape[0], shape[free[1]] = batch, 0
        return np.zeros(shape, dtype=dtype)
