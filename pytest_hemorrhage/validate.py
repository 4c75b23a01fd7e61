"""Input checks that run before a comparison: tokenizers, context length, token ids, out of memory.

Each check raises an error whose message names the cause and the fix; none modifies its inputs.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from typing import Any

from .errors import HemorrhageError, InvalidArgument
from .probes import Probes, as_probes, tokenizer_for

__all__ = ["check_tokenizers", "vocabulary_mismatch", "vocab_size", "ALLOW_MISMATCH_HINT", "check_context_length",
           "check_token_ids", "context_limit", "is_out_of_memory", "tokenizer_sha256", "TokenizerRecord"]

# Config attributes that hold the number of positions a model was built for, in the order tried.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")
_OOM_PHRASES = ("out of memory", "can't allocate memory")


# ---------------------------------------------------------------------- tokenizers
def tokenizer_sha256(tokenizer: Any) -> str | None:
    """sha256 of the tokenizer's full definition (vocabulary, merges, normaliser), or None."""
    if tokenizer is None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        text = backend.to_str()
    elif hasattr(tokenizer, "get_vocab"):
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    else:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TokenizerRecord:
    """The tokenizer a recorded baseline was made with: only its hash is left (None when it was not known).

    A recording (a :class:`~pytest_hemorrhage.snapshot.Snapshot`) carries one as ``tokenizer_record``.
    """

    sha256: str | None
    where: str


#: How to go on when a tokenizer difference is deliberate; every tokenizer mismatch ends with it.
ALLOW_MISMATCH_HINT = ("If the difference is deliberate, pass allow_tokenizer_mismatch=True "
                       "(hemorrhage compare: --allow-tokenizer-mismatch).")
_FIX = ("Compare models that share one tokenizer and build the probes with it; if a registration is "
        "wrong, fix it with register_tokenizer(model, tokenizer).")


def _vocab(tokenizer: Any) -> dict[str, int] | None:
    get_vocab = getattr(tokenizer, "get_vocab", None)
    return dict(get_vocab()) if callable(get_vocab) else None


def _token_count(tokenizer: Any, vocab: dict[str, int] | None) -> int | None:
    """How many ids ``tokenizer`` gives out: ``len(tokenizer)`` (added tokens included), else its vocabulary's size."""
    try:
        return len(tokenizer)
    except TypeError:
        return len(vocab) if vocab is not None else None


def _origin(tokenizer: Any) -> str | None:
    """Where the tokenizer was loaded from (its ``name_or_path``), or None when it does not say."""
    where = getattr(tokenizer, "name_or_path", None)
    return where if isinstance(where, str) and where else None


def _source_folder(tokenizer: Any) -> str:
    """`` (from FOLDER)`` when the tokenizer says where it was loaded from, else nothing."""
    where = _origin(tokenizer)
    return f" (from {where})" if where else ""


def _vocab_mismatch(role_a: str, vocab_a: dict[str, int], role_b: str, vocab_b: dict[str, int]) -> str | None:
    """A sentence describing how two vocabularies differ, or None when they agree."""
    if vocab_a == vocab_b:
        return None
    by_id_a = {i: t for t, i in vocab_a.items()}
    by_id_b = {i: t for t, i in vocab_b.items()}
    sizes = f"the {role_a} tokenizer has {len(vocab_a)} tokens, the {role_b} tokenizer {len(vocab_b)}"
    for i in sorted(set(by_id_a) | set(by_id_b)):
        if by_id_a.get(i) != by_id_b.get(i):
            return f"{sizes}; first difference at id {i}: {role_a} {by_id_a.get(i)!r}, {role_b} {by_id_b.get(i)!r}"
    return f"{sizes}; they map some token to different ids"  # one side gives a token two ids


def vocab_size(model: Any, outputs: bool = True) -> tuple[int, str] | None:
    """``(token ids, where that was read)`` of a model, or None when it does not say.

    Read from its output rows, else its input embedding rows, else ``config.vocab_size``;
    ``outputs=False`` leaves the output rows out: the ids its embedding can look up.
    """
    getters = [("get_output_embeddings", "output embedding rows")] if outputs else []
    for getter, where in getters + [("get_input_embeddings", "input embedding rows")]:
        try:  # transformers' default getters raise for models that do not define them
            module = getattr(model, getter)()
        except (AttributeError, NotImplementedError, TypeError):
            continue
        size = getattr(module, "num_embeddings", None) or getattr(module, "out_features", None)
        if isinstance(size, int) and size > 0:
            return size, where
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return (size, "config.vocab_size") if isinstance(size, int) and size > 0 else None


def vocabulary_mismatch(baseline: Any, candidate: Any, recorded: int | None = None) -> str | None:
    """"vocabulary mismatch: ..." when the two sides have different numbers of token ids, else None.

    Read from the models (:func:`vocab_size`) before any forward pass; ``recorded``: the number of
    logits a recorded baseline (a snapshot) holds per token, in place of ``baseline``'s.
    """
    base = (recorded, "recorded logits") if recorded is not None else vocab_size(baseline)
    cand = vocab_size(candidate)
    if base is None or cand is None or base[0] == cand[0]:
        return None
    base_name = "the snapshot" if recorded is not None else f"the baseline {type(baseline).__name__}"
    return (f"vocabulary mismatch: {base_name} has {base[0]} token ids ({base[1]}), the candidate "
            f"{type(candidate).__name__} {cand[0]} ({cand[1]}): the two models do not share a vocabulary, so "
            "their next-token distributions cannot be compared on any probes. Compare models with the same "
            "vocabulary and output head (and the same tokenizer)")


# The tokenizer's id for the start (end) of a text, and the config key that names the model's.
_SPECIAL_TOKENS = (("start", ("bos_token_id", "cls_token_id"), "bos_token_id"),
                   ("end", ("eos_token_id", "sep_token_id"), "eos_token_id"))


def _special_ids(config: Any, key: str, size: int | None) -> set[int]:
    """The ids ``config.<key>`` names (one or a list), leaving out ids past the vocabulary (unset defaults)."""
    value = getattr(config, key, None)
    values = value if isinstance(value, (list, tuple)) else [value]
    return {v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0
            and (size is None or v < size)}


def _misfit(role: str, tokenizer: Any, count: int | None, model_role: str, model: Any) -> str | None:
    """How ``tokenizer`` shows it is not ``model``'s (too many tokens, other start/end ids), or None."""
    size = vocab_size(model)
    name = f"the {model_role} {type(model).__name__}"
    tok = f"the {role} tokenizer{_source_folder(tokenizer)}"
    if size is not None and count is not None and count > size[0]:
        return f"{tok} has {count} tokens, more than the {size[0]} token ids of {name} ({size[1]})"
    config = getattr(model, "config", None)
    for what, attributes, key in _SPECIAL_TOKENS:
        wanted = _special_ids(config, key, size[0] if size else None)
        tok_id = next((v for v in (getattr(tokenizer, a, None) for a in attributes) if isinstance(v, int)), None)
        if wanted and tok_id is not None and tok_id not in wanted:
            convert = getattr(tokenizer, "convert_ids_to_tokens", None)
            shown = f" ({convert(tok_id)!r})" if callable(convert) else ""
            return (f"{tok} marks the {what} of a text with id {tok_id}{shown}, {name} with "
                    f"config.{key} = {getattr(config, key)}")
    return None


def check_tokenizers(baseline: Any, candidate: Any, probes: Any = None, *, allow: bool = False) -> str | None:
    """Raise :class:`HemorrhageError` when the known tokenizers disagree with each other or with the models.

    Tokenizers are those of ``baseline`` and ``candidate`` (:func:`~pytest_hemorrhage.probes.tokenizer_for`:
    registered, or found in the model's folder) and ``probes.tokenizer`` when the probes carry one
    (:meth:`~pytest_hemorrhage.probes.Probes.from_texts` and ``builtin`` record it).
    Vocabularies (``get_vocab()``) are compared pairwise; a pair with an unknown side is skipped.
    Each tokenizer is then checked against each model: no more tokens than the model has ids
    (fewer is fine: embedding matrices are often padded), and the same start and end token ids as
    the model's ``config.bos_token_id`` / ``config.eos_token_id`` where both are known.
    A recorded baseline (one with a ``tokenizer_record``, such as a
    :class:`~pytest_hemorrhage.snapshot.Snapshot`) is checked through the tokenizer hash it was
    recorded with. ``allow=True`` (a deliberate mismatch) warns instead of raising, and returns the
    warning's text for the report's notes; otherwise, and when all agree, the result is None.
    """
    problem = _tokenizer_mismatch(baseline, candidate, probes)
    if problem is None:
        return None
    if not allow:
        raise HemorrhageError(f"{problem} {ALLOW_MISMATCH_HINT}")
    note = f"allowed (allow_tokenizer_mismatch=True): {problem}"
    warnings.warn(note, UserWarning, stacklevel=3)
    return note


def _tokenizer_mismatch(baseline: Any, candidate: Any, probes: Any) -> str | None:
    cand_tok = tokenizer_for(candidate)
    probe_tok = getattr(probes, "tokenizer", None)
    record = getattr(baseline, "tokenizer_record", None)
    if isinstance(record, TokenizerRecord):
        for role, tok in (("candidate", cand_tok), ("probes", probe_tok)):
            current = tokenizer_sha256(tok)
            if record.sha256 is not None and current is not None and current != record.sha256:
                return (f"tokenizer mismatch: {record.where} was recorded with tokenizer {record.sha256[:12]}, the "
                        f"{role} tokenizer{_source_folder(tok)} is {current[:12]}. {_FIX} If the baseline's "
                        "tokenizer changed on purpose, record the snapshot again (rerun with --hemorrhage-update, or "
                        "hemorrhage snapshot BASELINE_MODEL_DIR --out FILE).")
        base_tok = None
    else:
        base_tok = tokenizer_for(baseline)
    known = [(role, tok) for role, tok in (("baseline", base_tok), ("candidate", cand_tok), ("probes", probe_tok))
             if tok is not None]
    vocabs = {id(tok): _vocab(tok) for _, tok in known}  # get_vocab() builds a new dict on every call
    for a, (role_a, tok_a) in enumerate(known):
        for role_b, tok_b in known[a + 1:]:
            vocab_a, vocab_b = vocabs[id(tok_a)], vocabs[id(tok_b)]
            if tok_a is tok_b or vocab_a is None or vocab_b is None:
                continue
            problem = _vocab_mismatch(role_a, vocab_a, role_b, vocab_b)
            if problem:
                sources = "; ".join(f"{role} tokenizer from {_origin(tok)}"
                                    for role, tok in ((role_a, tok_a), (role_b, tok_b)) if _origin(tok))
                return f"tokenizer mismatch: {problem}{f' ({sources})' if sources else ''}. {_FIX}"
    models = [(role, model) for role, model in (("baseline", baseline), ("candidate", candidate))
              if model is not None and not isinstance(getattr(model, "tokenizer_record", None), TokenizerRecord)]
    checked: set[tuple[int, int]] = set()
    for role, tok in known:
        for model_role, model in models:
            if (id(tok), id(model)) in checked:
                continue
            checked.add((id(tok), id(model)))
            problem = _misfit(role, tok, _token_count(tok, vocabs[id(tok)]), model_role, model)
            if problem:
                return (f"tokenizer mismatch: {problem}, so it is not that model's tokenizer. Build the probes with "
                        f"the models' own tokenizer (Probes.builtin(tokenizer) or Probes.from_texts(tokenizer, "
                        f"texts)); if a registration is wrong, fix it with register_tokenizer(model, tokenizer).")
    return None


# ---------------------------------------------------------------------- probe shape vs model
def context_limit(model: Any) -> tuple[int, str] | None:
    """(positions, ``config.<key>``) the model was built for, or None when its config does not say."""
    config = getattr(model, "config", None)
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None) if config is not None else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, f"config.{key}"
    return None


def _token_probes(model: Any, probes: Any) -> Probes | None:
    probe_set = probes if isinstance(probes, Probes) else as_probes(probes, model)
    return probe_set if probe_set.is_tokens else None


def check_context_length(model: Any, probes: Any) -> None:
    """Raise :class:`InvalidArgument` when a probe is longer than the model's context.

    The limit is ``config.max_position_embeddings`` (or ``n_positions`` / ``n_ctx``); models
    without one, and tensor probes, are not checked. ``probes``: anything :func:`as_probes` takes.
    """
    limit = context_limit(model)
    probe_set = _token_probes(model, probes) if limit is not None else None
    if probe_set is None:
        return
    positions, source = limit
    too_long = [i for i, ids in enumerate(probe_set.token_ids) if len(ids) > positions]
    if not too_long:
        return
    first = too_long[0]
    others = f" ({len(too_long) - 1} more probes too)" if len(too_long) > 1 else ""
    raise InvalidArgument(
        f"probes: probe {first} has {len(probe_set.token_ids[first])} tokens, longer than the "
        f"{positions}-token context of {type(model).__name__} ({source}){others}. Build the probes with "
        f"Probes.builtin(tokenizer, max_length={positions}) or Probes.from_texts(tokenizer, texts, "
        f"max_length={positions}), or truncate each probe to at most {positions} tokens."
    )


def check_token_ids(model: Any, probes: Any) -> None:
    """Raise :class:`InvalidArgument` when a probe holds a token id outside the model's vocabulary.

    Such ids crash the embedding lookup with an index error (or read garbage on some devices);
    they usually mean the probes were tokenized with another model's tokenizer.
    """
    known = vocab_size(model, outputs=False)
    probe_set = _token_probes(model, probes) if known is not None else None
    if probe_set is None:
        return
    size = known[0]
    for i, ids in enumerate(probe_set.token_ids):
        if 0 <= min(ids) and max(ids) < size:
            continue
        bad = next(t for t in ids if not 0 <= t < size)
        raise InvalidArgument(
            f"probes: probe {i} holds token id {bad}, outside the vocabulary of {type(model).__name__} "
            f"(ids 0-{size - 1}). Tokenize the probes with this model's tokenizer "
            "(Probes.from_texts(tokenizer, texts) or Probes.builtin(tokenizer))."
        )


# ---------------------------------------------------------------------- out of memory
def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` reports an allocation failure (GPU or CPU), so a smaller batch may succeed.

    True for ``torch.OutOfMemoryError``, Python's ``MemoryError``, and a ``RuntimeError`` whose
    message says "out of memory" (CUDA, MPS, XPU) or "can't allocate memory" (CPU allocator).
    """
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(phrase in text for phrase in _OOM_PHRASES)
    return False
