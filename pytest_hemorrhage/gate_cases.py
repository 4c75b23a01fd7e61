"""The CI-gate catalogue: changes that must pass (harmless) and changes that must fail (harmful).

"A CI gate is only worth having if it never fails a harmless change, never passes a harmful one."
Run the catalogue through ``compare`` to measure a gate's false alarms and misses:
``python -m benchmarks.gate_rates`` does so on the default model with the default thresholds.
Each :class:`GateCase` builds one comparison from a model, its tokenizer and a probe set:
``build(baseline, tokenizer, probes) -> (baseline_for_compare, candidate, probes_for_compare,
compare_kwargs)``, so a case may change the batch size, the probe order or the baseline side too.

Harmless cases are numerically equivalent: bit-identical copies, or refactors that only change the
order of floating-point operations (fused or split GEMMs, permuted channels or heads, norm folding,
another attention kernel, another batching). Harmful cases are changes that published work and this
project's own measurements show to damage a 135M model. The builders never modify the models they
are given: every change is made on a ``copy.deepcopy``.

The catalogue is written for Llama-shaped Hugging Face models (SmolLM2-135M): ``model.model.layers``
blocks with ``self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj`` and two RMSNorms. Cases named
``...-block-N`` need at least N + 1 blocks; the ``reload-from-cache`` ones compare against the
default model loaded again.
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from pytest_hemorrhage.errors import InvalidArgument
from pytest_hemorrhage.modify import DecodedModel, DecodingConfig, low_rank, prune, quantize
from pytest_hemorrhage.probes import Probes

__all__ = ["GateCase", "Built", "CASES", "harmless_cases", "harmful_cases", "FusedLinear", "FusedSlice"]

#: What a case builder returns: (baseline_for_compare, candidate, probes_for_compare, compare_kwargs).
Built = tuple[Any, Any, Probes, dict[str, Any]]
Builder = Callable[[nn.Module, Any, Probes], Built]


@dataclass(frozen=True)
class GateCase:
    """One catalogue entry: a name, ``"harmless"`` or ``"harmful"``, and how to build the comparison."""

    name: str
    kind: str
    build: Builder
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("harmless", "harmful"):
            raise InvalidArgument(f"kind={self.kind!r}; allowed: 'harmless' or 'harmful'")


# --------------------------------------------------------------------------- helpers


def _blocks(model: nn.Module) -> nn.ModuleList:
    return model.model.layers


def _copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """The Linear weights of the decoder blocks (embedding and head excluded: they are tied)."""
    for block in _blocks(model):
        for module in block.modules():
            if isinstance(module, nn.Linear):
                yield module.weight


def _plain(build_candidate: Callable[[nn.Module], Any], **kwargs: Any) -> Builder:
    """A builder that changes only the candidate: the baseline and probes go through unchanged."""

    def build(baseline: nn.Module, tokenizer: Any, probes: Probes) -> Built:
        return baseline, build_candidate(baseline), probes, dict(kwargs)

    return build


# --------------------------------------------------------------------------- equivalent refactors


class FusedLinear(nn.Module):
    """Several Linear layers that read the same input, computed as one concatenated GEMM.

    Each :class:`FusedSlice` stands where one of the original layers was. The first slice called
    with an input runs the fused GEMM; the others reuse its output for that same tensor object.
    """

    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.cat([lin.weight.detach() for lin in linears]), requires_grad=False)
        biases = [lin.bias for lin in linears]
        if any(b is not None for b in biases):
            self.bias = nn.Parameter(torch.cat([
                b.detach() if b is not None else torch.zeros(lin.out_features, dtype=lin.weight.dtype)
                for b, lin in zip(biases, linears)]), requires_grad=False)
        else:
            self.bias = None
        self.sizes = [lin.out_features for lin in linears]
        self._input: torch.Tensor | None = None
        self._parts: tuple[torch.Tensor, ...] = ()
        self._served: set[int] = set()

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        # Identity (not equality) of the input: the cached output is valid only for this very tensor.
        if self._input is not x or index in self._served:
            self._parts = F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
            self._input, self._served = x, set()
        self._served.add(index)
        out = self._parts[index]
        if len(self._served) == len(self.sizes):  # every slice served: drop the references
            self._input, self._parts = None, ()
        return out


class FusedSlice(nn.Module):
    """Output ``index`` of a :class:`FusedLinear`, standing in for one of the fused layers."""

    def __init__(self, fused: FusedLinear, index: int) -> None:
        super().__init__()
        self.fused = fused
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.part(x, self.index)


def _fuse(parent: nn.Module, names: tuple[str, ...]) -> None:
    fused = FusedLinear([getattr(parent, n) for n in names])
    for i, n in enumerate(names):
        setattr(parent, n, FusedSlice(fused, i))


def fused_qkv(model: nn.Module) -> nn.Module:
    """q, k and v projections of every attention computed by one concatenated Linear, then split."""
    out = _copy(model)
    for block in _blocks(out):
        _fuse(block.self_attn, ("q_proj", "k_proj", "v_proj"))
    return out


def fused_gate_up(model: nn.Module) -> nn.Module:
    """gate and up projections of every MLP computed by one concatenated Linear, then split."""
    out = _copy(model)
    for block in _blocks(out):
        _fuse(block.mlp, ("gate_proj", "up_proj"))
    return out


class SplitLinear(nn.Module):
    """A Linear computed as two Linears over halves of its outputs, concatenated."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        half = linear.out_features // 2
        self.first = nn.Linear(linear.in_features, half, bias=linear.bias is not None)
        self.second = nn.Linear(linear.in_features, linear.out_features - half, bias=linear.bias is not None)
        with torch.no_grad():
            self.first.weight.copy_(linear.weight[:half])
            self.second.weight.copy_(linear.weight[half:])
            if linear.bias is not None:
                self.first.bias.copy_(linear.bias[:half])
                self.second.bias.copy_(linear.bias[half:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.first(x), self.second(x)], dim=-1)


def split_mlp_down(model: nn.Module) -> nn.Module:
    """Every down_proj computed as two half-width GEMMs (a tensor-parallel style split)."""
    out = _copy(model)
    for block in _blocks(out):
        block.mlp.down_proj = SplitLinear(block.mlp.down_proj)
    return out


@torch.no_grad()
def permute_mlp_channels(model: nn.Module, seed: int) -> nn.Module:
    """Permute every MLP's hidden channels: rows of gate/up and the matching columns of down."""
    out = _copy(model)
    gen = _seeded(seed)
    for block in _blocks(out):
        mlp = block.mlp
        perm = torch.randperm(mlp.gate_proj.out_features, generator=gen)
        mlp.gate_proj.weight.copy_(mlp.gate_proj.weight[perm])
        mlp.up_proj.weight.copy_(mlp.up_proj.weight[perm])
        mlp.down_proj.weight.copy_(mlp.down_proj.weight[:, perm])
    return out


def _head_permutation(n_heads: int, n_kv: int, gen: torch.Generator, across_groups: bool) -> tuple[list[int], list[int]]:
    """(query-head order, kv-head order): query heads shuffled inside their group, groups optionally too."""
    group = n_heads // n_kv
    kv_order = torch.randperm(n_kv, generator=gen).tolist() if across_groups else list(range(n_kv))
    q_order = []
    for kv in kv_order:
        inside = torch.randperm(group, generator=gen).tolist()
        q_order.extend(kv * group + i for i in inside)
    return q_order, kv_order


@torch.no_grad()
def permute_heads(model: nn.Module, seed: int, across_groups: bool = False) -> nn.Module:
    """Reorder attention heads exactly: query heads within their KV group (and, optionally, whole
    groups with their key/value head), with o_proj's input columns permuted to match."""
    out = _copy(model)
    cfg = out.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    gen = _seeded(seed)
    for block in _blocks(out):
        attn = block.self_attn
        q_order, kv_order = _head_permutation(n_heads, n_kv, gen, across_groups)
        q_rows = torch.cat([torch.arange(h * dim, (h + 1) * dim) for h in q_order])
        kv_rows = torch.cat([torch.arange(h * dim, (h + 1) * dim) for h in kv_order])
        attn.q_proj.weight.copy_(attn.q_proj.weight[q_rows])
        attn.o_proj.weight.copy_(attn.o_proj.weight[:, q_rows])
        attn.k_proj.weight.copy_(attn.k_proj.weight[kv_rows])
        attn.v_proj.weight.copy_(attn.v_proj.weight[kv_rows])
    return out


def _norm_and_linears(block: nn.Module, which: str) -> tuple[nn.Module, list[nn.Linear]]:
    if which == "attention":
        attn = block.self_attn
        return block.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj]
    return block.post_attention_layernorm, [block.mlp.gate_proj, block.mlp.up_proj]


@torch.no_grad()
def rescale_norms(model: nn.Module, factor: float, which: str = "attention") -> nn.Module:
    """Multiply each RMSNorm weight by ``factor`` and the Linears it feeds by ``1/factor``."""
    out = _copy(model)
    for block in _blocks(out):
        norm, linears = _norm_and_linears(block, which)
        norm.weight.mul_(factor)
        for lin in linears:
            lin.weight.mul_(1.0 / factor)
    return out


@torch.no_grad()
def fold_norms(model: nn.Module, which: str = "attention") -> nn.Module:
    """Fold each RMSNorm's weight into the Linears it feeds (W <- W diag(g)) and set it to ones."""
    out = _copy(model)
    for block in _blocks(out):
        norm, linears = _norm_and_linears(block, which)
        for lin in linears:
            lin.weight.mul_(norm.weight.unsqueeze(0))
        norm.weight.fill_(1.0)
    return out


@torch.no_grad()
def _each_block_weight(model: nn.Module, seed: int,
                       change: Callable[[torch.Tensor, torch.Generator], None]) -> nn.Module:
    """A copy whose block weights each went through ``change(weight, generator)``, in place and in order."""
    out = _copy(model)
    gen = _seeded(seed)
    for w in _weights(out):
        change(w, gen)
    return out


def ulp_flips(model: nn.Module, fraction: float, seed: int) -> nn.Module:
    """Move about ``fraction`` of the block weights (drawn with replacement) by one unit in the last place."""

    def flip(w: torch.Tensor, gen: torch.Generator) -> None:
        flat = w.view(-1)
        idx = torch.randint(flat.numel(), (max(1, round(fraction * flat.numel())),), generator=gen)
        toward = torch.where(torch.rand(idx.shape, generator=gen) < 0.5, math.inf, -math.inf)
        flat[idx] = torch.nextafter(flat[idx], toward)

    return _each_block_weight(model, seed, flip)


def tiny_noise(model: nn.Module, relative: float, seed: int) -> nn.Module:
    """Add noise of relative size ``relative`` (well below fp32's 6e-8 resolution) to block weights."""
    return _each_block_weight(model, seed, lambda w, gen: w.add_(w * relative * torch.randn(w.shape, generator=gen)))


def fp64_round_trip(model: nn.Module) -> nn.Module:
    """Cast to float64 and back: every fp32 value survives exactly."""
    return _copy(model).double().float()


def with_attention(model: nn.Module, implementation: str) -> nn.Module:
    """A copy that runs another attention kernel (``"eager"`` or ``"sdpa"``)."""
    out = _copy(model)
    out.set_attn_implementation(implementation)
    return out


def _empty_like(model: nn.Module) -> nn.Module:
    """A fresh model of the same class and config, weights left uninitialised (they are overwritten)."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        fresh = type(model)(copy.deepcopy(model.config))
    return fresh.eval()


def safetensors_round_trip(model: nn.Module) -> nn.Module:
    """Serialise the state dict with safetensors and load it into a freshly built model."""
    from safetensors.torch import load, save

    # safetensors refuses shared storage (the tied head): store independent copies.
    blob = save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()})
    fresh = _empty_like(model)
    fresh.load_state_dict(load(blob), strict=True)
    return fresh


def pretrained_round_trip(model: nn.Module) -> nn.Module:
    """``save_pretrained`` to a temporary folder and ``from_pretrained`` back, as users ship models."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        loaded = type(model).from_pretrained(folder, dtype=torch.float32)
    return loaded.eval()


def reload_default(_model: nn.Module) -> nn.Module:
    """The default model loaded again from its cache."""
    from pytest_hemorrhage.models import default_model

    return default_model()[0]


# --------------------------------------------------------------------------- damaging changes


@torch.no_grad()
def reinit_block(model: nn.Module, index: int, seed: int = 0) -> nn.Module:
    """Re-initialise every Linear of block ``index`` as at the start of training (N(0, 0.02))."""
    out = _copy(model)
    gen = _seeded(seed)
    std = getattr(out.config, "initializer_range", 0.02)
    for module in _blocks(out)[index].modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
    return out


@torch.no_grad()
def zero_module(model: nn.Module, index: int, path: str) -> nn.Module:
    """Zero the weight of ``path`` (e.g. ``self_attn.o_proj``) in block ``index``."""
    out = _copy(model)
    _blocks(out)[index].get_submodule(path).weight.zero_()
    return out


def swapped_tokenizer(model: nn.Module, seed: int) -> nn.Module:
    """The candidate reads every token id through a fixed random permutation of the vocabulary,
    as if the text had been tokenised with another tokenizer."""
    out = _copy(model)
    embedding = out.get_input_embeddings()
    perm = torch.randperm(embedding.num_embeddings, generator=_seeded(seed))

    def remap(_module: nn.Module, args: tuple) -> tuple:
        return (perm.to(args[0].device)[args[0]], *args[1:])

    embedding.register_forward_pre_hook(remap)
    return out


def _sampling(temperature: float) -> Builder:
    """Baseline sampled at T=1, candidate (a copy) sampled at ``temperature``."""

    def build(baseline: nn.Module, tokenizer: Any, probes: Probes) -> Built:
        base = DecodedModel(baseline, DecodingConfig(do_sample=True, temperature=1.0))
        cand = DecodedModel(_copy(baseline), DecodingConfig(do_sample=True, temperature=temperature))
        return base, cand, probes, {}

    return build


# --------------------------------------------------------------------------- builders that change the setup


def _batch(size: int) -> Builder:
    return _plain(_copy, batch_size=size)


def _shuffled(seed: int, batch_size: int | None = None) -> Builder:
    """Both sides see the probes in a shuffled order (compare pairs probes by index)."""

    def build(baseline: nn.Module, tokenizer: Any, probes: Probes) -> Built:
        order = torch.randperm(len(probes), generator=_seeded(seed)).tolist()
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        return baseline, _copy(baseline), probes.subset(order), kwargs

    return build


def _baseline_side(make_baseline: Callable[[nn.Module], nn.Module], candidate_is_original: bool = True) -> Builder:
    """The changed model stands on the baseline side; the candidate is the original (or a copy)."""

    def build(baseline: nn.Module, tokenizer: Any, probes: Probes) -> Built:
        cand = baseline if candidate_is_original else _copy(baseline)
        return make_baseline(baseline), cand, probes, {}

    return build


def _both(make: Callable[[nn.Module], nn.Module]) -> Builder:
    """The same change on both sides (two independent copies)."""

    def build(baseline: nn.Module, tokenizer: Any, probes: Probes) -> Built:
        return make(baseline), make(baseline), probes, {}

    return build


# --------------------------------------------------------------------------- the catalogue


def _harmless() -> list[GateCase]:
    cases = [
        GateCase("deep-copy", "harmless", _plain(_copy), "copy.deepcopy"),
        GateCase("fp32-fp64-fp32", "harmless", _plain(fp64_round_trip), "cast to float64 and back"),
        GateCase("deep-copy-on-baseline-side", "harmless", _baseline_side(_copy),
                 "a deep copy as baseline, the original model as candidate"),
        GateCase("reload-from-cache", "harmless", _plain(reload_default), "default_model() loaded again"),
        GateCase("reload-from-cache-as-baseline", "harmless", _baseline_side(reload_default),
                 "default_model() loaded again as baseline, the original as candidate"),
        GateCase("safetensors-state-dict", "harmless", _plain(safetensors_round_trip),
                 "state dict through safetensors into a freshly built model"),
        GateCase("save-from-pretrained", "harmless", _plain(pretrained_round_trip),
                 "save_pretrained then from_pretrained"),
        GateCase("eager-attention", "harmless", _plain(lambda m: with_attention(m, "eager")),
                 "candidate on eager attention, baseline on SDPA"),
        GateCase("eager-attention-baseline", "harmless", _baseline_side(lambda m: with_attention(m, "eager")),
                 "baseline on eager attention, candidate on SDPA"),
        GateCase("eager-attention-both", "harmless", _both(lambda m: with_attention(m, "eager")),
                 "both sides on eager attention"),
        GateCase("eager-attention-batch-1", "harmless",
                 _plain(lambda m: with_attention(m, "eager"), batch_size=1), "eager candidate, batch size 1"),
        GateCase("fused-qkv", "harmless", _plain(fused_qkv), "q, k, v from one concatenated Linear"),
        GateCase("fused-qkv-baseline", "harmless", _baseline_side(fused_qkv),
                 "fused-QKV model as baseline, the original as candidate"),
        GateCase("fused-gate-up", "harmless", _plain(fused_gate_up), "MLP gate and up from one Linear"),
        GateCase("fused-qkv-and-gate-up", "harmless", _plain(lambda m: fused_gate_up(fused_qkv(m))),
                 "both fusions"),
        GateCase("split-down-proj", "harmless", _plain(split_mlp_down), "down_proj as two half-width GEMMs"),
        GateCase("fused-qkv-permuted-mlp", "harmless", _plain(lambda m: fused_qkv(permute_mlp_channels(m, 7))),
                 "fused QKV on top of a permuted MLP"),
        GateCase("tiny-noise-1e-9-s0", "harmless", _plain(lambda m: tiny_noise(m, 1e-9, 0)),
                 "relative noise 1e-9: below fp32 resolution, rounds back to the same weights"),
    ]
    for size in (1, 2, 3, 4, 5, 6, 12, 16):
        cases.append(GateCase(f"batch-size-{size}", "harmless", _batch(size), f"deep copy, batch size {size}"))
    for seed in range(5):
        cases.append(GateCase(f"shuffled-probes-s{seed}", "harmless", _shuffled(seed),
                              "both sides see the probes in a shuffled order"))
    for seed, size in ((10, 1), (11, 3), (12, 5)):
        cases.append(GateCase(f"shuffled-probes-s{seed}-batch-{size}", "harmless", _shuffled(seed, size),
                              f"shuffled probes, batch size {size}"))
    for seed in range(5):
        cases.append(GateCase(f"permuted-mlp-channels-s{seed}", "harmless",
                              _plain(lambda m, s=seed: permute_mlp_channels(m, s)),
                              "MLP hidden channels permuted, down_proj columns to match"))
    for seed in range(3):
        cases.append(GateCase(f"permuted-heads-in-group-s{seed}", "harmless",
                              _plain(lambda m, s=seed: permute_heads(m, s)),
                              "query heads permuted inside their KV group, o_proj to match"))
    for seed in range(3):
        cases.append(GateCase(f"permuted-kv-groups-s{seed}", "harmless",
                              _plain(lambda m, s=seed: permute_heads(m, s, across_groups=True)),
                              "KV groups and the heads inside them permuted, o_proj to match"))
    for factor, which in ((2.0, "attention"), (2.0, "mlp"), (3.0, "attention"), (0.7, "mlp"), (1.5, "attention")):
        cases.append(GateCase(f"norm-x{factor:g}-{which}-linears-x1/{factor:g}", "harmless",
                              _plain(lambda m, f=factor, w=which: rescale_norms(m, f, w)),
                              f"RMSNorm weight x{factor:g}, following Linears x1/{factor:g}"))
    for which in ("attention", "mlp"):
        cases.append(GateCase(f"fold-norm-into-{which}", "harmless", _plain(lambda m, w=which: fold_norms(m, w)),
                              "RMSNorm weight folded into the Linears it feeds"))
    for fraction, seed in ((0.01, 0), (0.01, 1), (0.1, 2), (0.1, 3)):
        cases.append(GateCase(f"ulp-flips-{fraction:g}-s{seed}", "harmless",
                              _plain(lambda m, f=fraction, s=seed: ulp_flips(m, f, s)),
                              f"{fraction:.0%} of block weights moved by one ulp"))
    cases.append(GateCase("same-sampling-settings", "harmless", _sampling(1.0),
                          "sampling at T=1 on both sides (DecodedModel)"))
    return cases


def _harmful() -> list[GateCase]:
    cases = []
    for bits, granularity in ((2, "per_channel"), (2, "per_group"), (3, "per_channel"), (3, "per_group")):
        cases.append(GateCase(f"rtn-{bits}bit-{granularity}", "harmful",
                              _plain(lambda m, b=bits, g=granularity: quantize(m, bits=b, granularity=g, group_size=64)),
                              f"RTN {bits}-bit {granularity} (groups of 64)"))
    cases += [
        GateCase("rtn-3bit-asymmetric-per-group", "harmful",
                 _plain(lambda m: quantize(m, bits=3, symmetric=False, granularity="per_group", group_size=64)),
                 "RTN 3-bit asymmetric per group of 64"),
        GateCase("int4-per-tensor", "harmful", _plain(lambda m: quantize(m, bits=4, granularity="per_tensor")),
                 "RTN 4-bit, one scale per matrix"),
        GateCase("magnitude-prune-70", "harmful", _plain(lambda m: prune(m, sparsity=0.7)),
                 "70 % unstructured magnitude pruning"),
        GateCase("nm-prune-2of4", "harmful", _plain(lambda m: prune(m, method="nm", n=2, m=4)), "2:4 pruning"),
        GateCase("drop-30pct-blocks", "harmful", _plain(lambda m: prune(m, sparsity=0.3, method="blocks")),
                 "30 % of decoder blocks removed"),
        GateCase("prune-half-heads", "harmful", _plain(lambda m: prune(m, sparsity=0.5, method="heads")),
                 "half the attention heads of every block removed"),
        GateCase("low-rank-10pct-down-proj", "harmful",
                 _plain(lambda m: low_rank(m, rank_ratio=0.1, targets=("mlp.down_proj",))),
                 "every down_proj replaced by its rank-10 % SVD approximation"),
        GateCase("sampling-T2-vs-T1", "harmful", _sampling(2.0), "sampling at T=2 against T=1"),
        GateCase("sampling-T0.5-vs-T1", "harmful", _sampling(0.5), "sampling at T=0.5 against T=1"),
        GateCase("swapped-tokenizer-s0", "harmful", _plain(lambda m: swapped_tokenizer(m, 0)),
                 "token ids read through a random vocabulary permutation"),
        GateCase("swapped-tokenizer-s1", "harmful", _plain(lambda m: swapped_tokenizer(m, 1)),
                 "token ids read through a random vocabulary permutation"),
        GateCase("zero-mlp-block-3", "harmful", _plain(lambda m: zero_module(m, 3, "mlp.down_proj")),
                 "block 3's MLP output zeroed"),
    ]
    for index in (0, 7, 15, 29):
        cases.append(GateCase(f"reinit-block-{index}", "harmful", _plain(lambda m, i=index: reinit_block(m, i)),
                              f"block {index} re-initialised at random"))
    for index in (0, 14):
        cases.append(GateCase(f"zero-attention-block-{index}", "harmful",
                              _plain(lambda m, i=index: zero_module(m, i, "self_attn.o_proj")),
                              f"block {index}'s attention output zeroed"))
    return cases


CASES: tuple[GateCase, ...] = tuple(_harmless() + _harmful())


def harmless_cases() -> list[GateCase]:
    """The cases the gate must pass."""
    return [c for c in CASES if c.kind == "harmless"]


def harmful_cases() -> list[GateCase]:
    """The cases the gate must fail."""
    return [c for c in CASES if c.kind == "harmful"]
