"""A side that runs outside PyTorch (llama.cpp, ONNX Runtime, a server): token ids in, scores out.

A runtime holds no torch model: it gives no hidden states (layer metrics are absent, and the
report says so), no attention, and nothing a mitigation could modify. It is fed the probes'
token ids as they are, never texts, so both sides score the very same tokens; before any
batch, :meth:`RuntimeSource.check` asks the runtime whether it reads those ids as the baseline's
tokenizer does (its vocabulary size, and its own tokenizer's round trip of every probe).

A subclass says what the runtime is (``runtime``, ``target``), how many ids its output has
(:attr:`vocab_size`), how long a probe may be (:attr:`context_length`), and scores one probe
(:meth:`score`); this class does the batching, the checks, and the report's wording.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Iterator, Sequence

import torch

from ..errors import HemorrhageError, InvalidArgument
from ..probes import ProbeBatch, Probes, as_probes
from .observation import TensorObservation

__all__ = ["RuntimeSource", "require", "NO_HIDDEN_STATES"]

#: The report's note when a side gives no hidden states; ``{side}`` is the side's label.
NO_HIDDEN_STATES = ("the candidate ({side}) gives no hidden states: layer metrics are absent, and where the "
                    "damage starts cannot be located from this comparison")


def require(module: str, extra: str, what: str, note: str = "") -> Any:
    """Import ``module`` for ``what``, or raise naming the install command of the extra that has it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise HemorrhageError(
            f"{what} needs the Python package '{module.split('.')[0]}', which is not installed ({exc}). "
            f"Install it with: pip install 'pytest-hemorrhage[{extra}]'{note}"
        ) from exc


class RuntimeSource:
    """Base of the sides that run the probes' token ids in another runtime and return every logit."""

    #: A short name of the runtime for the report ("llama.cpp", "ONNX Runtime").
    runtime = "runtime"
    model = None
    decoding = None
    attentions = False
    topk_limit: int | None = None
    parameters = None
    kind = "lm"
    pad_id = 0  # rows are cut to their length before scoring: the pad id is never read
    layer_names: list[str] = []

    def __init__(self, target: Any, role: str = "candidate") -> None:
        self.target = target
        self.role = role
        self._depth = 0  # how many ``with loaded()`` are open
        self.origin = self

    # ------------------------------------------------------------------ what a subclass provides
    @property
    def vocab_size(self) -> int:
        """How many scores the runtime returns per token."""
        raise NotImplementedError

    @property
    def context_length(self) -> int | None:
        """The longest probe the runtime takes, or None for no limit."""
        return None

    def score(self, ids: Sequence[int]) -> torch.Tensor:
        """``[len(ids), vocab_size]`` float32 next-token logits of one probe (row t predicts ``ids[t + 1]``)."""
        raise NotImplementedError

    def tokenize(self, text: str) -> list[int] | None:
        """The runtime's own tokenization of ``text`` (no start token added), or None when it has none."""
        return None

    def detokenize(self, ids: Sequence[int]) -> str | None:
        """The text of ``ids`` by the runtime's own tokenizer, or None when it has none."""
        return None

    def token_string(self, token: int) -> str | None:
        """The vocabulary's own string of ``token`` (what a Hugging Face tokenizer's ``convert_ids_to_tokens``
        gives, e.g. ``"Ġthe"``), or None when the runtime does not say."""
        return None

    def token_text(self, token: int) -> str:
        """How messages show one token id."""
        return repr(self.detokenize([token])) if self.detokenize([token]) is not None else f"id {token}"

    @contextlib.contextmanager
    def loaded(self) -> Iterator[None]:
        """The runtime ready to score (a file loaded, a session made) however deeply nested: acquired on
        entering the outermost ``with``, released when it ends, so nested uses share one load."""
        if self._depth == 0:
            self._acquire()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._release()

    @property
    def is_loaded(self) -> bool:
        """Whether a ``with loaded()`` is open."""
        return self._depth > 0

    def _acquire(self) -> None:
        """Load the runtime (on entering the outermost :meth:`loaded`); a subclass may defer it to first use."""

    def _release(self) -> None:
        """Free what :meth:`_acquire` or later use loaded."""

    # ------------------------------------------------------------------ the Source protocol
    @property
    def label(self) -> str:
        return f"{self.runtime} {self.target}"

    @property
    def modification(self) -> str | None:
        return None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def paired_with(self, candidate: Any, generation: int) -> Any:
        if self.decoding is not None or candidate.decoding is not None or generation:
            raise InvalidArgument(
                f"decoding settings and generation=... need a live torch model; the {self.role} runs in "
                f"{self.runtime}. Compare next-token distributions only, or pass torch models."
            )
        return candidate

    def probes_for(self, probes: Any) -> Probes:
        if probes is None:
            raise InvalidArgument(
                f"probes: a {self.runtime} baseline has no tokenizer of the project's kind to build the built-in "
                "probes with; pass probes=Probes.builtin(tokenizer) or a snapshot as the baseline"
            )
        return as_probes(probes)

    def check_vocabulary(self, size: int, baseline: str) -> None:
        """Raise when the runtime scores another number of token ids than ``size``, those of ``baseline``."""
        if self.vocab_size != size:
            raise HemorrhageError(
                f"vocabulary mismatch: {baseline} has {size} token ids, the {self.role} ({self.label}) "
                f"{self.vocab_size}: the two do not share a vocabulary, so their next-token distributions cannot "
                "be compared. Compare a file converted from the baseline model, or a baseline (snapshot) of the "
                "model this file was converted from."
            )

    def check(self, probes: Probes) -> None:
        """Raise when the runtime cannot score ``probes`` as the baseline does (see the module's docstring)."""
        if not probes.is_tokens:
            raise InvalidArgument(f"{self.label} scores token ids; these probes are tensors")
        with self.loaded():
            self._check_ids(probes)

    def _check_ids(self, probes: Probes) -> None:
        size, limit = self.vocab_size, self.context_length
        for i, ids in enumerate(probes.token_ids):
            bad = next((t for t in ids if not 0 <= t < size), None)
            if bad is not None:
                raise HemorrhageError(
                    f"token mismatch: probe {i} holds token id {bad}, outside the {size} ids of {self.label}. "
                    "The probes were made with another tokenizer than the runtime's: record the snapshot "
                    "(or build the probes) with the tokenizer of the model this file was converted from."
                )
            if limit is not None and len(ids) > limit:
                raise InvalidArgument(
                    f"probe {i} has {len(ids)} tokens, more than the {limit} positions {self.label} was opened "
                    "with; open it with a longer context (n_ctx=...) or use shorter probes (max_length=...)"
                )
        self._check_token_strings(probes)
        self._check_round_trip(probes)

    def _check_token_strings(self, probes: Probes) -> None:
        """Every id of the probes must be the same token in the runtime's vocabulary as in the tokenizer
        the probes were made with (when they carry it): a vocabulary shifted or replaced in conversion
        keeps the ids valid and self-consistent, and only this comparison shows it."""
        convert = getattr(probes.tokenizer, "convert_ids_to_tokens", None)
        if convert is None:
            return
        distinct = sorted({t for ids in probes.token_ids for t in ids})
        theirs = dict(zip(distinct, convert(distinct)))
        ours = {t: self.token_string(t) for t in distinct}
        differing = {t for t in distinct if ours[t] is not None and ours[t] != theirs[t]}
        if not differing:
            return
        i, at, token = next((i, at, t) for i, ids in enumerate(probes.token_ids) for at, t in enumerate(ids)
                            if t in differing)
        raise HemorrhageError(
            f"token mismatch: probe {i}, position {at}: id {token} is {theirs[token]!r} to the tokenizer the probes "
            f"were made with and {ours[token]!r} to {self.label} ({len(differing)} of the {len(distinct)} ids the "
            "probes use differ). The file's vocabulary is not the probes' tokenizer's: convert the file from the "
            "baseline model with its tokenizer, or build the probes with this model's tokenizer."
        )

    def _check_round_trip(self, probes: Probes) -> None:
        """The runtime's tokenizer must give back each probe's ids from the probe's own text.

        Ids made by another tokenizer decode to text that the runtime splits differently; the first
        token where the two disagree is named. A tokenizer that normalises text (a different split
        of the same text) would show here too, which is why only the ids, not the text, are fed.
        """
        for i, ids in enumerate(probes.token_ids):
            text = self.detokenize(ids)
            if text is None:
                return
            again = self.tokenize(text)
            if again is None or list(again) == list(ids):
                continue
            at = next((j for j, (a, b) in enumerate(zip(ids, again)) if a != b), min(len(ids), len(again)))
            probe_token = self.token_text(ids[at]) if at < len(ids) else "(end of probe)"
            runtime_token = self.token_text(again[at]) if at < len(again) else "(end of text)"
            raise HemorrhageError(
                f"token mismatch: {self.label} tokenizes probe {i} differently from the ids it was given; "
                f"first difference at position {at}: probe id {ids[at] if at < len(ids) else '-'} {probe_token}, "
                f"runtime id {again[at] if at < len(again) else '-'} {runtime_token}. The probes (or the snapshot) "
                "were made with another tokenizer than this file's, or the conversion changed the vocabulary: "
                "convert the file from the baseline model, or record the snapshot with this model's tokenizer."
            )

    @contextlib.contextmanager
    def opened(self, device: Any, attention: bool) -> Iterator[None]:
        if attention:
            raise InvalidArgument(f"attention=True: {self.label} gives no attention probabilities; "
                                  "leave attention off for a runtime candidate")
        with self.loaded():
            yield

    def observe(self, batch: ProbeBatch, blocks: Sequence[str] = (), attentions: bool = False) -> TensorObservation:
        lengths = batch.attention_mask.sum(1).tolist()
        ids = batch.input_ids
        outputs = torch.zeros(ids.shape[0], ids.shape[1], self.vocab_size)
        for row, n in enumerate(lengths):
            n = int(n)
            if n:
                logits = self.score(ids[row, :n].tolist())
                if tuple(logits.shape) != (n, self.vocab_size):
                    raise HemorrhageError(
                        f"{self.label} returned scores of shape {tuple(logits.shape)} for a probe of {n} tokens; "
                        f"expected ({n}, {self.vocab_size})"
                    )
                outputs[row, :n] = logits
        return TensorObservation(batch, "lm", outputs)
