"""Baseline snapshots: a recorded fingerprint of the baseline that stands in for the model.

Per scored token the snapshot keeps the baseline's top-k log-probabilities with their token
ids, ``tail_samples`` token ids drawn from the rest of the distribution (importance samples
of the tail, so KL stays unbiased without storing the whole vocabulary), the tail mass and the
log-probability of the real next token. Per decoder block it keeps, for every token, the
squared norm of the hidden state and a ``sketch_dim``-dimensional random projection of it
(random ±1 signs drawn per token, then a fixed ±1 matrix), from which SQNR and cosine are
estimated without bias.

The file is safetensors (tensors) with JSON metadata in its header; it is never unpickled,
its header size is bounded before anything is allocated, and its content hash is checked.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .capture import host_to
from .arguments import flag
from .errors import InvalidArgument, SnapshotError
from .files import atomic_write_bytes
from .probes import Probes, as_probes, tokenizer_for
from .sources.module import ModuleSource, evaluating
from .validate import TokenizerRecord, check_tokenizers, tokenizer_sha256

__all__ = [
    "Snapshot",
    "record_snapshot",
    "load_snapshot",
    "model_identity",
    "tokenizer_sha256",
    "snapshot_path",
    "sketch_projection",
    "sketch_signs",
    "sign_keys",
    "sketch_tokens",
    "UPDATE_HINT",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "pytest-hemorrhage-snapshot"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024 * 1024
_ALLOWED_DTYPES = {"F16": 2, "F32": 4, "I32": 4, "I64": 8}
UPDATE_HINT = "rerun with --hemorrhage-update to re-record the snapshot"


# ---------------------------------------------------------------------- identity
def _config_dict(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return {"class": type(model).__name__}
    data = config.to_dict()
    volatile = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash",
                "_attn_implementation", "_attn_implementation_autoset", "use_cache", "quantization_config")
    return {k: v for k, v in data.items() if k not in volatile}


def model_identity(model: nn.Module) -> dict[str, str]:
    """Class name and sha256 hashes of the config and of every parameter and buffer."""
    config = json.dumps(_config_dict(model), sort_keys=True, default=str)
    h = hashlib.sha256()
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    for name in sorted(state):
        t = _offloaded_value(model, name) if state[name].device.type == "meta" else state[name].detach()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return {
        "class": type(model).__name__,
        "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
        "parameters_sha256": h.hexdigest(),
    }


def _offloaded_value(model: nn.Module, name: str) -> torch.Tensor:
    """The stored value of a parameter that accelerate offloaded (it is a meta tensor on the module)."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        module = model.get_submodule(".".join(parts[:depth])) if depth else model
        weights = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
        key = ".".join(parts[depth:])
        if weights is not None and key in weights:
            return weights[key].detach()
    raise SnapshotError(
        f"parameter {name} is on the meta device and no accelerate offload map holds it; load real weights "
        "before recording (from_pretrained without device_map='meta')"
    )


# ---------------------------------------------------------------------- sketches
@functools.lru_cache(maxsize=8)
def sketch_projection(seed: int, dim: int, hidden: int, device: torch.device) -> torch.Tensor:
    # Cached: rebuilding it on the host and copying it over for every batch would stall a GPU.
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (dim, hidden), generator=g) * 2 - 1).to(device, torch.float32)


_M31 = (1 << 31) - 1


def _mix31(x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer hash (xorshift-multiply); every product stays below 2**62, so int64 never overflows."""
    x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & _M31
    x = ((x ^ (x >> 12)) * 0x297A2D39) & _M31
    return x ^ (x >> 15)


def sketch_signs(seed: int, unit: int, length: int, hidden: int, device: torch.device,
                 scheme: str = "hash") -> torch.Tensor:
    """The random ±1 signs of a probe's tokens: a counter-based hash, the same on every device.

    ``scheme="generator"`` reproduces snapshots recorded before the hash (a CPU generator per probe,
    slow on accelerators because the signs had to be drawn on the host and copied over).
    """
    if scheme == "generator":
        g = torch.Generator().manual_seed(seed * 1_000_003 + unit + 1)
        return (torch.randint(0, 2, (length, hidden), generator=g) * 2 - 1).to(device, torch.float32)
    rows = sign_keys(seed, [unit], [length], device).unsqueeze(1)
    cols = ((torch.arange(hidden, device=device, dtype=torch.int64) * 0x5BD1E995) & _M31).unsqueeze(0)
    bits = (_mix31(rows ^ cols) >> 16) & 1
    return (1 - 2 * bits).to(torch.float32)


def sign_keys(seed: int, units: list[int], lengths: list[int], device: torch.device) -> torch.Tensor:
    """Per token of the given probes, the hash key of its row of signs (int64, on ``device``).

    Token ``t`` of probe ``u`` has sign ``1 - 2·((mix(key ^ colhash(j)) >> 16) & 1)`` in column ``j``.
    """
    bases = [((seed * 1_000_003 + unit + 1) * 2654435761) & _M31 for unit in units]
    pos = torch.cat([torch.arange(n, dtype=torch.int64) + base for base, n in zip(bases, lengths)])
    return _mix31(host_to(pos, device) & _M31)


def sketch_tokens(h: torch.Tensor, signs: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Project token rows ``h`` [n, D] to [n, d]: E‖sketch(x)‖² = ‖x‖² for every x."""
    return (h.float() * signs) @ proj.T / math.sqrt(proj.shape[0])


# ---------------------------------------------------------------------- the snapshot
@dataclass
class Snapshot:
    """A recorded baseline. Pass it to :func:`compare` wherever a baseline model goes."""

    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    path: Path | None = None
    _offsets: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _device: dict[tuple[str, torch.device], torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        lengths = self.tensors["lengths"].long()
        zero = torch.zeros(1, dtype=torch.long)
        self._offsets["tokens"] = torch.cat([zero, lengths.cumsum(0)])
        self._offsets["scored"] = torch.cat([zero, (lengths - 1).cumsum(0)])

    @property
    def probes(self) -> Probes:
        """The probes the snapshot was recorded on (token ids and tags)."""
        tokens = self.tensors["tokens"].tolist()
        off = self._offsets["tokens"].tolist()
        ids = [tokens[off[i]:off[i + 1]] for i in range(len(off) - 1)]
        return Probes(token_ids=ids, tags=list(self.meta["probes"]["tags"]), name=self.meta["probes"]["name"])

    @property
    def layer_names(self) -> list[str]:
        return list(self.meta["layers"])

    @property
    def n_scored_tokens(self) -> int:
        return int(self.tensors["target_logp"].shape[0])

    @property
    def bytes_per_scored_token(self) -> float:
        """Stored tensor bytes divided by the number of scored tokens."""
        total = sum(t.numel() * t.element_size() for t in self.tensors.values())
        return total / max(1, self.n_scored_tokens)

    @property
    def tokenizer_record(self) -> TokenizerRecord:
        """The tokenizer the baseline was recorded with, as a hash (None when it was not known)."""
        return TokenizerRecord(self.meta.get("tokenizer_sha256"), f"the snapshot {self.path}" if self.path
                               else "the snapshot")

    def identity_mismatches(self, baseline: nn.Module | None = None, tokenizer: Any = None,
                            probes: Probes | None = None) -> list[str]:
        """What differs between this snapshot and the current baseline, tokenizer and probes."""
        problems = []
        if baseline is not None:
            current = model_identity(baseline)
            recorded = self.meta["model"]
            for key, what in (("config_sha256", "model config"), ("parameters_sha256", "model parameters")):
                if recorded.get(key) != current[key]:
                    problems.append(f"{what} hash differs (recorded {str(recorded.get(key))[:12]}, "
                                    f"current {current[key][:12]})")
        if tokenizer is not None:
            recorded_tok = self.meta.get("tokenizer_sha256")
            current_tok = tokenizer_sha256(tokenizer)
            if recorded_tok is not None and current_tok is not None and recorded_tok != current_tok:
                problems.append(f"tokenizer hash differs (recorded {recorded_tok[:12]}, current {current_tok[:12]})")
        if probes is not None and probes.fingerprint() != self.meta["probes"]["sha256"]:
            problems.append(
                f"probe hash differs (recorded {self.meta['probes']['sha256'][:12]} for "
                f"{self.meta['probes']['name']}, current {probes.fingerprint()[:12]} for {probes.name})"
            )
        return problems

    def check_identity(self, baseline: nn.Module | None = None, tokenizer: Any = None,
                       probes: Probes | None = None) -> None:
        """Raise :class:`SnapshotError` naming what differs, if anything."""
        problems = self.identity_mismatches(baseline, tokenizer, probes)
        if problems:
            where = f" {self.path}" if self.path else ""
            raise SnapshotError(
                f"snapshot{where} does not match the current run: " + "; ".join(problems)
                + f". If the change is intended, {UPDATE_HINT}."
            )

    # ------------------------------------------------------------------ comparison
    def token_rows(self, units: list[int], lengths: list[int], key: str) -> torch.Tensor:
        """Flat row indices into per-token arrays for ``units`` (``key``: "tokens" or "scored")."""
        off = self._offsets[key]
        rows = [torch.arange(int(off[u]), int(off[u]) + n) for u, n in zip(units, lengths)]
        return torch.cat(rows)

    def stored_on(self, key: str, device: torch.device) -> torch.Tensor:
        """The recorded tensor ``key`` on ``device``, copied there once and kept for later comparisons."""
        cached = self._device.get((key, device))
        if cached is None:
            cached = self._device[(key, device)] = self.tensors[key].to(device)
        return cached


# ---------------------------------------------------------------------- recording
def record_snapshot(
    baseline: nn.Module,
    probes: Any = None,
    path: str | Path | None = None,
    *,
    tokenizer: Any = None,
    layers: Any = "auto",
    topk: int = 32,
    tail_samples: int = 64,
    sketch_dim: int = 16,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
    allow_tokenizer_mismatch: bool = False,
) -> Snapshot:
    """Record ``baseline`` on ``probes``; write it to ``path`` (atomically) when given.

    Returns the :class:`Snapshot`, which :func:`compare` accepts in place of the baseline. The
    hash of ``tokenizer`` (else the baseline's, else the one the probes were made with) is
    recorded, and a candidate compared later must have the same one. Probes whose tokenizer does
    not belong to the baseline are refused, as :func:`compare` refuses them, unless
    ``allow_tokenizer_mismatch=True``.
    """
    for name, value, low in (("topk", topk, 1), ("tail_samples", tail_samples, 1), ("sketch_dim", sketch_dim, 1),
                             ("batch_size", batch_size, 1)):
        if not isinstance(value, int) or value < low:
            raise InvalidArgument(f"{name}: must be an integer >= {low}, got {value!r}")
    probe_set = as_probes(probes, baseline)
    check_tokenizers(baseline, None, probe_set, allow=flag("allow_tokenizer_mismatch", allow_tokenizer_mismatch))
    for known in (tokenizer, tokenizer_for(baseline), probe_set.tokenizer):
        if known is not None:
            tokenizer = known
            break
    if not probe_set.is_tokens:
        raise InvalidArgument("probes: snapshots are recorded for language models on token probes")
    source = ModuleSource(baseline, "baseline", layers)
    source.check(probe_set)
    lengths = torch.tensor([len(ids) for ids in probe_set.token_ids], dtype=torch.int32)
    n_tok, n_scored = int(lengths.sum()), int((lengths - 1).sum())
    zero = torch.zeros(1, dtype=torch.long)
    tok_off = torch.cat([zero, lengths.long().cumsum(0)])
    sc_off = torch.cat([zero, (lengths.long() - 1).cumsum(0)])
    arrays: dict[str, torch.Tensor] = {}
    layer_names = source.layer_names
    gen = torch.Generator().manual_seed(seed)
    with evaluating(baseline), torch.inference_mode():
        batches = probe_set.batches(batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=math.ceil(len(probe_set) / batch_size), desc="snapshot", unit="batch")
        for batch in batches:
            seen = source.observe(batch, layer_names)
            if seen.kind != "lm":
                raise InvalidArgument(
                    f"baseline: snapshots need a causal language model; {type(baseline).__name__} "
                    f"produces {seen.kind} outputs"
                )
            _record_batch(arrays, batch, seen.outputs, seen.blocks, layer_names, tok_off, sc_off, n_tok, n_scored,
                          topk, tail_samples, sketch_dim, seed, gen)
    tensors = {
        "tokens": torch.tensor([t for ids in probe_set.token_ids for t in ids], dtype=torch.int32),
        "lengths": lengths,
        **arrays,
    }
    if torch.isnan(tensors["top_logp"]).any() or torch.isnan(tensors["target_logp"]).any():
        raise SnapshotError("the baseline produced NaN log-probabilities; fix the baseline before recording it")
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": model_identity(baseline),
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "probes": {"sha256": probe_set.fingerprint(), "name": probe_set.name, "tags": probe_set.tags,
                   "n": len(probe_set)},
        "layers": layer_names,
        "vocab_size": int(arrays["vocab"][0]) if "vocab" in arrays else None,
        "topk": topk,
        "tail_samples": tail_samples,
        "sketch": {"dim": sketch_dim, "seed": seed, "signs": "hash"},
    }
    arrays.pop("vocab", None)
    tensors.pop("vocab", None)
    meta["content_sha256"] = _content_sha256(tensors)
    snap = Snapshot(meta=meta, tensors=tensors, path=Path(path) if path else None)
    if path is not None:
        write_snapshot(snap, path)
    return snap


def _record_batch(arrays, batch, logits, captured, layer_names, tok_off, sc_off, n_tok, n_scored,
                  topk, tail_samples, sketch_dim, seed, gen) -> None:
    vocab = logits.shape[-1]
    k = min(topk, vocab)
    if not arrays:
        arrays["vocab"] = torch.tensor([vocab])
        arrays["top_ids"] = torch.zeros(n_scored, k, dtype=torch.int32)
        arrays["top_logp"] = torch.zeros(n_scored, k, dtype=torch.float32)
        arrays["tail_ids"] = torch.zeros(n_scored, tail_samples, dtype=torch.int32)
        arrays["tail_logp"] = torch.zeros(n_scored, tail_samples, dtype=torch.float32)
        arrays["tail_mass"] = torch.zeros(n_scored, dtype=torch.float32)
        arrays["target_logp"] = torch.zeros(n_scored, dtype=torch.float32)
        arrays["sketches"] = torch.zeros(len(layer_names), n_tok, sketch_dim, dtype=torch.float16)
        arrays["norms"] = torch.zeros(len(layer_names), n_tok, dtype=torch.float32)
    mask = batch.attention_mask.to(logits.device)
    ids = batch.input_ids.to(logits.device)
    for row, unit in enumerate(batch.units):
        n = int(mask[row].sum())
        lp = torch.log_softmax(logits[row, : n - 1].float(), dim=-1)
        top_lp, top_ids = lp.topk(k, dim=-1)
        rows = slice(int(sc_off[unit]), int(sc_off[unit]) + n - 1)
        arrays["top_ids"][rows] = top_ids.int().cpu()
        arrays["top_logp"][rows] = top_lp.cpu()
        p = lp.double().exp()
        tail_p = p.scatter(-1, top_ids, 0.0)
        mass = tail_p.sum(-1)
        arrays["tail_mass"][rows] = mass.float().cpu()
        # Importance samples of the tail, drawn from p restricted to the tail (uniform if it is empty).
        weights = torch.where(mass.unsqueeze(-1) > 0, tail_p, torch.ones_like(tail_p))
        draws = torch.multinomial(weights.float().cpu(), tail_samples, replacement=True, generator=gen)
        arrays["tail_ids"][rows] = draws.int()
        arrays["tail_logp"][rows] = lp.cpu().gather(-1, draws)
        arrays["target_logp"][rows] = lp.gather(-1, ids[row, 1:n].unsqueeze(-1)).squeeze(-1).cpu()
        tok_rows = slice(int(tok_off[unit]), int(tok_off[unit]) + n)
        signs = None
        for li, name in enumerate(layer_names):
            h = captured[name][row, :n].float()
            hidden = h.shape[-1]
            proj = sketch_projection(seed, sketch_dim, hidden, h.device)
            if signs is None:
                signs = sketch_signs(seed, unit, n, hidden, h.device, "hash")
            norms = h.norm(dim=-1)
            y = sketch_tokens(h, signs, proj) / norms.clamp_min(1e-30).unsqueeze(-1)
            arrays["sketches"][li, tok_rows] = y.half().cpu()
            arrays["norms"][li, tok_rows] = norms.cpu()


# ---------------------------------------------------------------------- files
def _content_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_snapshot(snapshot: Snapshot, path: str | Path) -> Path:
    """Write ``snapshot`` to ``path`` atomically (temporary file, fsync, rename)."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in snapshot.tensors.items()},
                metadata={"hemorrhage": json.dumps(snapshot.meta, sort_keys=True)})
    atomic_write_bytes(path, data)
    snapshot.path = Path(path)
    return snapshot.path


def _read_header(data: bytes, path: Path) -> dict[str, Any]:
    if len(data) < 8:
        raise SnapshotError(f"snapshot {path} is truncated ({len(data)} bytes); {UPDATE_HINT}")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER_BYTES:
        raise SnapshotError(
            f"snapshot {path} claims a {size}-byte header (at most {MAX_HEADER_BYTES} allowed): it is "
            f"damaged or not a snapshot; {UPDATE_HINT}"
        )
    if 8 + size > len(data):
        raise SnapshotError(f"snapshot {path} is truncated (header needs {size} bytes, file has "
                            f"{len(data) - 8}); {UPDATE_HINT}")
    try:
        header = json.loads(data[8:8 + size])
    except ValueError:
        raise SnapshotError(f"snapshot {path} has an unreadable header; {UPDATE_HINT}") from None
    if not isinstance(header, dict):
        raise SnapshotError(f"snapshot {path} has an unreadable header; {UPDATE_HINT}")
    body = len(data) - 8 - size
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in _ALLOWED_DTYPES:
            raise SnapshotError(f"snapshot {path}: tensor {name!r} has an unsupported entry; {UPDATE_HINT}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d < 2**40 for d in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            raise SnapshotError(f"snapshot {path}: tensor {name!r} has an absurd shape or offsets; {UPDATE_HINT}")
        begin, end = offsets
        expected = math.prod(shape) * _ALLOWED_DTYPES[info["dtype"]]
        if not (0 <= begin <= end <= body) or end - begin != expected:
            raise SnapshotError(
                f"snapshot {path} is truncated or damaged: tensor {name!r} needs bytes {begin}-{end} of a "
                f"{body}-byte body; {UPDATE_HINT}"
            )
    return header


_REQUIRED = ("tokens", "lengths", "top_ids", "top_logp", "tail_ids", "tail_logp", "tail_mass", "target_logp",
             "sketches", "norms")


def load_snapshot(path: str | Path, *, root: str | Path | None = None) -> Snapshot:
    """Read and verify a snapshot (size bounds, format version, content hash, finite values).

    ``root``: when given, ``path`` must lie inside this folder.
    """
    from safetensors.torch import load

    path = Path(path)
    if root is not None:
        path = _inside(Path(root), path)
    if not path.is_file():
        raise SnapshotError(f"no snapshot at {path}; record one with record_snapshot(baseline, probes, path) "
                            "or run pytest with --hemorrhage-update")
    data = path.read_bytes()
    header = _read_header(data, path)
    metadata = header.get("__metadata__")
    raw_meta = metadata.get("hemorrhage") if isinstance(metadata, dict) else None
    try:
        meta = json.loads(raw_meta) if isinstance(raw_meta, str) else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not a pytest-hemorrhage snapshot (no '{FORMAT}' metadata); {UPDATE_HINT}")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"snapshot {path} has format version {version!r}; this pytest-hemorrhage reads version "
            f"{FORMAT_VERSION}. Install the version that wrote it, or {UPDATE_HINT}."
        )
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise SnapshotError(f"snapshot {path} cannot be read ({exc}); {UPDATE_HINT}") from None
    missing = [k for k in _REQUIRED if k not in tensors]
    if missing:
        raise SnapshotError(f"snapshot {path} lacks tensors {missing}; {UPDATE_HINT}")
    if _content_sha256(tensors) != meta.get("content_sha256"):
        raise SnapshotError(
            f"snapshot {path} was modified after it was written (content hash mismatch); "
            f"restore it from version control or {UPDATE_HINT}"
        )
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise SnapshotError(f"snapshot {path}: tensor {name!r} holds NaN or Inf values; {UPDATE_HINT}")
    lengths = tensors["lengths"]
    if int(lengths.long().sum()) != tensors["tokens"].numel() or int((lengths.long() - 1).sum()) != tensors[
            "target_logp"].numel():
        raise SnapshotError(f"snapshot {path}: token counts do not add up; {UPDATE_HINT}")
    return Snapshot(meta=meta, tensors=tensors, path=path)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _inside(root: Path, path: Path) -> Path:
    root_resolved = root.resolve()
    full = (root / path).resolve() if not path.is_absolute() else path.resolve()
    if full != root_resolved and root_resolved not in full.parents:
        raise SnapshotError(
            f"snapshot path {path} escapes the snapshot folder {root}; name snapshots with plain names "
            "inside that folder"
        )
    return full


def snapshot_path(root: str | Path, name: str) -> Path:
    """``root/<sanitised name>.safetensors``; names from test ids cannot escape ``root``."""
    plain = name.replace("::", "_").replace("/", "_")  # the separators of a pytest node id
    clean = _SAFE.sub("_", plain).strip("._") or "snapshot"
    if clean != plain:  # "t[a b]" and "t[a?b]" both clean to "t_a_b_": a hash of the id keeps them apart
        clean = clean[:183] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    elif len(clean) > 200:  # keep long ids that share a prefix apart
        clean = clean[:183] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return _inside(Path(root), Path(clean + ".safetensors"))
