"""Probe sets: the inputs both models see, as token batches or plain input tensors.

A probe is the unit of evidence: tokens inside one probe are correlated, so statistics
are computed over probes, never over tokens as if they were independent.
"""

from __future__ import annotations

import hashlib
import random
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .errors import InvalidArgument
from .tokenizer_files import folder_tokenizer, model_folder_of

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["Probes", "ProbeBatch", "as_probes", "register_tokenizer", "tokenizer_for"]

_REPR_TAGS = 5  # tags named in ``repr(Probes)``; more read as "..."


@dataclass
class ProbeBatch:
    """One batch of probes, right-padded.

    ``input_ids``/``attention_mask`` for token probes, or ``inputs`` for tensor probes.
    ``units`` holds the probe indices of the rows.
    """

    units: list[int]
    input_ids: "torch.Tensor | None" = None
    attention_mask: "torch.Tensor | None" = None
    inputs: "torch.Tensor | None" = None
    labels: "torch.Tensor | None" = None


@dataclass(repr=False)
class Probes:
    """An ordered set of probes with optional tags (for slicing reports) and labels.

    Build with :meth:`from_texts`, :meth:`from_token_ids`, :meth:`builtin` or
    :meth:`from_tensors` (inputs of models that do not take token ids).
    """

    token_ids: list[list[int]] | None = None
    tensors: "torch.Tensor | None" = None
    tags: list[str] = field(default_factory=list)
    labels: "torch.Tensor | None" = None
    name: str = "custom"
    #: The tokenizer the probes were made with (set by :meth:`from_texts` and :meth:`builtin`), or None.
    #: Comparisons check that it belongs to the models; it is no part of the probes' identity.
    tokenizer: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.token_ids is None) == (self.tensors is None):
            raise InvalidArgument("Probes needs exactly one of token_ids or tensors")
        n = len(self)
        if n == 0:
            raise InvalidArgument(
                "probes: the probe set is empty; pass at least one probe "
                "(or omit probes to use the built-in set)"
            )
        if self.token_ids is not None:
            for i, ids in enumerate(self.token_ids):
                if len(ids) < 2:
                    raise InvalidArgument(
                        f"probes: probe {i} has {len(ids)} token(s); a probe needs at least 2 tokens "
                        "so that at least one next token is scored. Drop it or give a longer text."
                    )
        if not self.tags:
            self.tags = ["all"] * n
        elif len(self.tags) != n:
            raise InvalidArgument(f"probes: {len(self.tags)} tags for {n} probes; give one tag per probe")
        if self.labels is not None and len(self.labels) != n:
            raise InvalidArgument(f"probes: {len(self.labels)} labels for {n} probes; give one label per probe")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_token_ids(
        cls, token_ids: Sequence[Sequence[int]], tags: Sequence[str] | None = None, name: str = "custom"
    ) -> "Probes":
        """Probes from lists of token ids (one list per probe)."""
        ids = [[int(t) for t in seq] for seq in token_ids]
        return cls(token_ids=ids, tags=list(tags or []), name=name)

    @classmethod
    def from_texts(
        cls,
        tokenizer: Any,
        texts: Sequence[str],
        *,
        tags: Sequence[str] | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        name: str = "texts",
    ) -> "Probes":
        """Tokenize ``texts`` (one probe each), truncating to ``max_length`` tokens."""
        if isinstance(texts, str):
            raise InvalidArgument("texts: expected a list of strings, got one string; wrap it in a list")
        ids = []
        for text in texts:
            enc = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
            ids.append(list(enc[:max_length] if max_length else enc))
        return cls(token_ids=ids, tags=list(tags or []), name=name, tokenizer=tokenizer)

    @classmethod
    def from_tensors(cls, inputs: "torch.Tensor", labels: "torch.Tensor | None" = None,
                     tags: Sequence[str] | None = None, name: str = "tensors") -> "Probes":
        """Probes for models that take a tensor (images, features): one row per probe."""
        return cls(tensors=inputs, labels=labels, tags=list(tags or []), name=name)

    @classmethod
    def builtin(
        cls, tokenizer: Any, n: int | None = 64, *, max_length: int = 128, seed: int = 0,
        tags: Sequence[str] | None = None,
    ) -> "Probes":
        """``n`` probes from the built-in corpus (written for this project), deterministic per seed.

        Probes are drawn round-robin over tags so every domain is represented.
        """
        order = _builtin_order(tags, seed)
        if n is not None:
            if n < 1:
                raise InvalidArgument(f"n: must be at least 1, got {n}")
            if n > len(order):
                raise InvalidArgument(f"n: the built-in corpus has {len(order)} probes, {n} were asked for")
            order = order[:n]
        return cls.from_texts(
            tokenizer, [s for _, s in order], tags=[t for t, _ in order], max_length=max_length,
            name=f"builtin(n={len(order)},max_length={max_length},seed={seed})",
        )

    @classmethod
    def builtin_split(
        cls, tokenizer: Any, sizes: Sequence[int], *, max_length: int = 128, seed: int = 0,
        tags: Sequence[str] | None = None, exclude: "Probes | Sequence[Probes] | None" = None,
    ) -> list["Probes"]:
        """Disjoint sets of built-in probes, one per entry of ``sizes`` (e.g. calibration and evaluation).

        The sets are consecutive runs of the order :meth:`builtin` draws for ``seed``, so the first
        equals ``builtin(tokenizer, sizes[0], ...)`` when nothing is excluded. Texts already in
        ``exclude`` (probes or a list of them, e.g. evaluation probes drawn with another seed) are
        skipped. A built-in text counts as present there when its token ids and those of an excluded
        probe agree over the shorter one's length: the same text drawn at another ``max_length``.
        """
        if isinstance(sizes, int) or not sizes:
            raise InvalidArgument(f"sizes: pass one size per set, e.g. (16, 32); got {sizes!r}")
        bad = [size for size in sizes if isinstance(size, bool) or not isinstance(size, int) or size < 1]
        if bad:
            raise InvalidArgument(f"sizes: every size must be an integer of at least 1; got {list(sizes)}")
        excluded = [exclude] if isinstance(exclude, Probes) else list(exclude or [])
        seen = _PrefixIndex(excluded)
        wanted = sum(sizes)
        drawn: list[tuple[str, list[int]]] = []
        order = _builtin_order(tags, seed)
        for tag, text in order:
            ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
            if not seen.shares_text(ids):
                drawn.append((tag, ids[:max_length] if max_length else ids))
                if len(drawn) == wanted:
                    break
        if len(drawn) < wanted:
            have = f"{len(drawn)} of its {len(order)} texts are not in exclude" if excluded else f"it has {len(order)}"
            raise InvalidArgument(f"sizes: {wanted} probes asked for in all; the built-in corpus has too few ({have})")
        call = f"builtin_split(sizes={list(sizes)},max_length={max_length},seed={seed})"
        apart = f", disjoint from {sum(len(p) for p in excluded)} probes" if excluded else ""
        out, start = [], 0
        for part, size in enumerate(sizes):
            chosen = drawn[start:start + size]
            start += size
            out.append(cls(token_ids=[ids for _, ids in chosen], tags=[tag for tag, _ in chosen],
                           name=f"{call}[{part}]{apart}", tokenizer=tokenizer))
        return out

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.token_ids) if self.token_ids is not None else int(self.tensors.shape[0])

    def __repr__(self) -> str:
        # A summary, never the token ids or tensors: a failing test or a Hypothesis example
        # that holds a probe set then prints one line.
        size = f"{self.n_tokens:,} tokens" if self.is_tokens else f"inputs {tuple(self.tensors.shape)}"
        tags = list(dict.fromkeys(self.tags))
        shown = ", ".join(tags[:_REPR_TAGS]) + (", ..." if len(tags) > _REPR_TAGS else "")
        return f"Probes({self.name!r}, {len(self)} probes, {size}, tags: {shown})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis's printer would otherwise list every dataclass field, token ids included.
        printer.text(repr(self))

    @property
    def is_tokens(self) -> bool:
        return self.token_ids is not None

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids) if self.token_ids is not None else len(self)

    def subset(self, indices: Sequence[int]) -> "Probes":
        """The probes at ``indices``, in that order."""
        idx = list(indices)
        tags = [self.tags[i] for i in idx]
        labels = self.labels[idx] if self.labels is not None else None
        if self.token_ids is not None:
            return Probes(token_ids=[self.token_ids[i] for i in idx], tags=tags, labels=labels, name=self.name,
                          tokenizer=self.tokenizer)
        return Probes(tensors=self.tensors[idx], tags=tags, labels=labels, name=self.name)

    def by_tag(self, tag: str) -> "Probes":
        """The probes tagged ``tag``."""
        idx = [i for i, t in enumerate(self.tags) if t == tag]
        if not idx:
            raise InvalidArgument(f"tag: no probe is tagged {tag!r}; tags present: {sorted(set(self.tags))}")
        return self.subset(idx)

    def fingerprint(self) -> str:
        """sha256 of the probe contents (token ids or tensor bytes) and tags."""
        h = hashlib.sha256()
        if self.token_ids is not None:
            for ids in self.token_ids:
                h.update(len(ids).to_bytes(4, "little"))
                h.update(np.asarray(ids, dtype="<i4").tobytes())
        else:
            t = self.tensors.detach().cpu().contiguous()
            h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
            h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes())
        h.update("\x00".join(self.tags).encode())
        return h.hexdigest()

    def batches(self, batch_size: int, pad_id: int = 0, order: Sequence[int] | None = None) -> Iterator[ProbeBatch]:
        """Right-padded batches of ``batch_size`` probes, similar lengths grouped together.

        ``order``: visit the probes in this order (consecutive chunks form the batches), e.g. a
        random permutation so that every prefix of the run is a random sample of the set.
        """
        import torch

        if batch_size < 1:
            raise InvalidArgument(f"batch_size: must be at least 1, got {batch_size}")
        if self.token_ids is None:
            visit = list(order) if order is not None else list(range(len(self)))
            for start in range(0, len(visit), batch_size):
                units = visit[start:start + batch_size]
                labels = self.labels[units] if self.labels is not None else None
                yield ProbeBatch(units=units, inputs=self.tensors[units], labels=labels)
            return
        if order is None:
            # Sorting by length keeps padding (wasted compute) small; results are per unit, so order is free.
            order = sorted(range(len(self)), key=lambda i: (len(self.token_ids[i]), i))
        order = list(order)
        for start in range(0, len(order), batch_size):
            units = order[start:start + batch_size]
            width = max(len(self.token_ids[i]) for i in units)
            ids = torch.full((len(units), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(units), width), dtype=torch.long)
            for row, i in enumerate(units):
                seq = self.token_ids[i]
                ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[row, : len(seq)] = 1
            yield ProbeBatch(units=units, input_ids=ids, attention_mask=mask)


def _builtin_order(tags: Sequence[str] | None, seed: int) -> list[tuple[str, str]]:
    """Every built-in ``(tag, text)`` in the order drawn for ``seed``: round-robin over the sorted tags."""
    from .corpus import BUILTIN_SNIPPETS

    pool = [(t, s) for t, s in BUILTIN_SNIPPETS if tags is None or t in tags]
    if not pool:
        raise InvalidArgument(f"tags: none of {list(tags or [])} is a built-in tag")
    rng = random.Random(seed)
    by_tag: dict[str, list[str]] = {}
    for tag, text in pool:
        by_tag.setdefault(tag, []).append(text)
    for texts in by_tag.values():
        rng.shuffle(texts)
    order: list[tuple[str, str]] = []
    tag_names = sorted(by_tag)
    while any(by_tag.values()):
        for tag in tag_names:
            if by_tag[tag]:
                order.append((tag, by_tag[tag].pop()))
    return order


class _PrefixIndex:
    """Token-id sequences, looked up by whether one agrees with a query over the shorter length."""

    def __init__(self, probe_sets: Sequence[Probes]) -> None:
        # Every probe has at least 2 tokens, so the first two ids narrow a lookup to a few candidates.
        self._by_start: dict[tuple[int, ...], list[list[int]]] = {}
        for probes in probe_sets:
            if not isinstance(probes, Probes) or not probes.is_tokens:
                raise InvalidArgument(
                    f"exclude: expected token Probes or a list of them, got {type(probes).__name__} "
                    "(tensor probes hold no texts to exclude)"
                )
            for ids in probes.token_ids:
                self._by_start.setdefault(tuple(ids[:2]), []).append(ids)

    def shares_text(self, ids: Sequence[int]) -> bool:
        """True when ``ids`` and an indexed sequence agree over the shorter one's length."""
        ids = list(ids)
        for other in self._by_start.get(tuple(ids[:2]), ()):
            n = min(len(ids), len(other))
            if ids[:n] == other[:n]:
                return True
        return False


_TOKENIZERS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_NO_TOKENIZER_REASONS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def register_tokenizer(model: Any, tokenizer: Any) -> None:
    """Remember ``tokenizer`` for ``model`` so that ``probes=None`` can build the built-in probe set."""
    _TOKENIZERS[model] = tokenizer


def register_missing_tokenizer(model: Any, reason: str) -> None:
    """Remember why ``model`` has no tokenizer (e.g. its folder holds none), for the ``probes=None`` error."""
    _NO_TOKENIZER_REASONS[model] = reason


def tokenizer_for(model: Any) -> Any:
    """The tokenizer of ``model``, or None when none is known.

    That is the one registered for it (``default_model`` and :func:`~pytest_hemorrhage.model_folder.load_model`
    register theirs), else the one saved in the local folder the model was loaded from
    (``AutoModelForCausalLM.from_pretrained(folder)``; read once, then registered).
    """
    try:
        known = _TOKENIZERS.get(model)
        if known is not None or model in _NO_TOKENIZER_REASONS:
            return known
    except TypeError:  # not weak-referenceable
        return None
    folder = model_folder_of(model)
    if folder is None:
        return None
    try:
        found = folder_tokenizer(folder)
    except InvalidArgument as exc:  # files there that do not load: said where a tokenizer is needed
        register_missing_tokenizer(model, f"the tokenizer files in its folder do not load: {exc}")
        return None
    if found is None:
        register_missing_tokenizer(model, f"its folder {folder} holds no tokenizer; save it there with "
                                          "tokenizer.save_pretrained(folder)")
    else:
        register_tokenizer(model, found)
    return found


def as_probes(probes: Any, baseline: Any = None) -> Probes:
    """Coerce what a user passed as ``probes`` into :class:`Probes`.

    Accepts Probes, a list of token-id lists, a 2-D LongTensor of token ids, a float tensor of
    inputs, or None (the built-in set, which needs a tokenizer: pass ``Probes.builtin(tokenizer)``).
    """
    import torch

    if isinstance(probes, Probes):
        return probes
    if probes is None:
        tok = tokenizer_for(baseline)
        if tok is None:
            try:
                reason = _NO_TOKENIZER_REASONS.get(baseline)
            except TypeError:  # not weak-referenceable
                reason = None
            raise InvalidArgument(
                "probes: none given and no tokenizer is known for the baseline"
                + (f" ({reason})" if reason else "")
                + "; pass probes=Probes.builtin(tokenizer) or Probes.from_texts(tokenizer, texts), or register "
                "the model's tokenizer once: ph.register_tokenizer(model, tokenizer)"
            )
        return Probes.builtin(tok)
    if isinstance(probes, torch.Tensor):
        if probes.numel() == 0:
            raise InvalidArgument("probes: the probe tensor is empty; pass at least one probe")
        if probes.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
            if probes.dim() != 2:
                raise InvalidArgument(
                    f"probes: a token-id tensor must be 2-D (probes x tokens), got shape {tuple(probes.shape)}"
                )
            return Probes.from_token_ids(probes.tolist())
        return Probes.from_tensors(probes)
    if isinstance(probes, (list, tuple)):
        if len(probes) == 0:
            raise InvalidArgument(
                "probes: the probe list is empty; pass at least one probe (or omit it for the built-in set)"
            )
        if all(isinstance(p, str) for p in probes):
            raise InvalidArgument(
                "probes: got strings; tokenize them with Probes.from_texts(tokenizer, texts)"
            )
        return Probes.from_token_ids(probes)
    raise InvalidArgument(
        f"probes: cannot use a {type(probes).__name__}; pass Probes, a list of token-id lists, "
        "or a 2-D tensor of token ids"
    )
