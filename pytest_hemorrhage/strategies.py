"""Hypothesis strategies for modification configs that shrink toward MILDER modifications.

Hypothesis shrinks integers toward their lower bound and picks the first
option of ``sampled_from``/``one_of``, so every default strategy draws an
integer "harshness" ``k >= 0`` and maps it to the parameter (``bits = 8 - k``,
``sparsity = k / 1000``, ``rank_ratio = 1 - k / 1000``, ...), with the mildest
choice listed first. Floats are drawn on a fine integer grid because
Hypothesis shrinks raw floats toward "simple" values (0.75) rather than toward
a failure boundary.

Strategies map drawn tuples to the config (rather than ``st.builds``), so a
falsifying example prints the config's own ``repr``, e.g.
``PruningConfig(sparsity=0.068)``: only the fields that apply and differ
from their defaults, and it evals back to an equal config. Keep models and
probe sets out of ``@given``: build them once (a fixture or a module-level
value) and draw only the configs, so the example prints no weights or token
ids.

Every parameter takes a plain value (validated at call time, raising
``InvalidArgument``) or a Hypothesis strategy. Hypothesis is imported only here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .arguments import fraction, must_be, positive_int
from .modify import (
    Composed,
    DecodingConfig,
    ExpansionConfig,
    LowRankConfig,
    Modification,
    PruningConfig,
    QuantizationConfig,
)

if TYPE_CHECKING:  # pragma: no cover
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "quantization_configs",
    "pruning_configs",
    "lowrank_configs",
    "expansion_configs",
    "decoding_configs",
    "modifications",
    "KINDS",
]

#: Kinds accepted by :func:`modifications`.
KINDS = ("quantize", "prune", "lowrank", "expand", "decoding")

_GRID = 1000  # resolution of float parameters: steps of 0.001


def _st() -> Any:
    import hypothesis.strategies as st

    return st


def _is_strategy(value: Any) -> bool:
    from hypothesis.strategies import SearchStrategy

    return isinstance(value, SearchStrategy)


def _param(value: Any, validate: Callable[[Any], object]) -> SearchStrategy[Any]:
    """A strategy as is; a plain value validated now and wrapped in ``just``."""
    if _is_strategy(value):
        return value
    validate(value)
    return _st().just(value)


def _grid(low: float, high: float) -> SearchStrategy[float]:
    """Floats in [low, high] on a 0.001 grid, shrinking toward ``low``."""
    steps = round((high - low) * _GRID)
    return _st().integers(0, steps).map(lambda k: round(low + k / _GRID, 6))


# --------------------------------------------------------------------------- per kind


def quantization_configs(
    bits: int | SearchStrategy[int] | None = None,
    symmetric: bool | SearchStrategy[bool] | None = None,
    granularity: str | SearchStrategy[str] | None = None,
    group_size: int | SearchStrategy[int] | None = None,
    activation: str | None | SearchStrategy[str | None] = None,
) -> SearchStrategy[QuantizationConfig]:
    """Weight-quantization configs; defaults: bits 8..2, asymmetric before symmetric,
    per-group before per-channel before per-tensor, group sizes 16..128, no activation quant."""
    st = _st()
    b = (
        st.integers(0, 6).map(lambda k: 8 - k)
        if bits is None
        else _param(bits, lambda v: QuantizationConfig(bits=v))
    )
    # Asymmetric has one more level and a tighter range than symmetric: milder, so drawn first.
    sym = (
        st.sampled_from((False, True))
        if symmetric is None
        else _param(symmetric, lambda v: QuantizationConfig(symmetric=v))
    )
    gran = (
        st.sampled_from(("per_group", "per_channel", "per_tensor"))
        if granularity is None
        else _param(granularity, lambda v: QuantizationConfig(granularity=v))
    )
    group = (
        st.sampled_from((16, 32, 64, 128))
        if group_size is None
        else _param(group_size, lambda v: QuantizationConfig(group_size=v))
    )
    act = _param(activation, lambda v: QuantizationConfig(activation=v))
    def build(drawn: tuple[int, bool, str, int, str | None]) -> QuantizationConfig:
        bits_, sym_, gran_, group_, act_ = drawn
        # The group size is drawn either way (same shrinking), but kept only where it applies.
        group_kw = {"group_size": group_} if gran_ == "per_group" else {}
        return QuantizationConfig(bits=bits_, symmetric=sym_, granularity=gran_, activation=act_, **group_kw)  # type: ignore[arg-type]

    return st.tuples(b, sym, gran, group, act).map(build)


def pruning_configs(
    sparsity: float | SearchStrategy[float] | None = None,
    method: str | SearchStrategy[str] | None = None,
    n_m: tuple[int, int] | SearchStrategy[tuple[int, int]] | None = None,
    max_sparsity: float = 0.9,
) -> SearchStrategy[PruningConfig]:
    """Pruning configs; defaults: sparsity 0..``max_sparsity`` (0.001 steps), methods
    magnitude, nm, channels, heads, blocks (mildest first), N:M among 4:8, 2:4, 1:4."""
    st = _st()
    fraction("max_sparsity", max_sparsity, high_open=True)
    sp = _grid(0.0, max_sparsity) if sparsity is None else _param(sparsity, lambda v: PruningConfig(sparsity=v))
    meth = (
        st.sampled_from(("magnitude", "nm", "channels", "heads", "blocks"))
        if method is None
        else _param(method, lambda v: PruningConfig(method=v))
    )

    def check_nm(v: Any) -> None:
        if not isinstance(v, tuple) or len(v) != 2:
            raise must_be("n_m", "a pair (n, m) with 1 <= n <= m", v)
        PruningConfig(method="nm", n=v[0], m=v[1])

    nm = st.sampled_from(((4, 8), (2, 4), (1, 4))) if n_m is None else _param(n_m, check_nm)

    def build(drawn: tuple[float, str, tuple[int, int]]) -> PruningConfig:
        s, meth_, nm_ = drawn
        if meth_ == "nm":
            return PruningConfig(method="nm", n=nm_[0], m=nm_[1])
        return PruningConfig(sparsity=s, method=meth_)  # type: ignore[arg-type]

    return st.tuples(sp, meth, nm).map(build)


def lowrank_configs(
    rank_ratio: float | SearchStrategy[float] | None = None, min_ratio: float = 0.05
) -> SearchStrategy[LowRankConfig]:
    """Low-rank configs; default rank_ratio ``1 - x`` for x in [0, 1 - min_ratio] (0.001 steps)."""
    fraction("min_ratio", min_ratio, low_open=True)
    if rank_ratio is None:
        ratio = _grid(0.0, 1.0 - min_ratio).map(lambda x: round(1.0 - x, 6))
    else:
        ratio = _param(rank_ratio, lambda v: LowRankConfig(rank_ratio=v))
    return ratio.map(lambda r: LowRankConfig(rank_ratio=r))


def expansion_configs(
    mode: str | SearchStrategy[str] | None = None, count: int | SearchStrategy[int] | None = None
) -> SearchStrategy[ExpansionConfig]:
    """Expansion configs; defaults: identity before duplicate, 1..2 inserted blocks."""
    st = _st()
    if mode is None:
        md = st.sampled_from(("identity", "duplicate"))
    else:
        md = _param(mode, lambda v: ExpansionConfig(mode=v))
    cnt = st.integers(1, 2) if count is None else _param(count, lambda v: ExpansionConfig(count=v))
    return st.tuples(md, cnt).map(lambda t: ExpansionConfig(mode=t[0], count=t[1]))  # type: ignore[arg-type]


def decoding_configs(
    temperature: float | SearchStrategy[float] | None = None,
    top_k: int | SearchStrategy[int] | None = None,
    top_p: float | SearchStrategy[float] | None = None,
    repetition_penalty: float | SearchStrategy[float] | None = None,
    do_sample: bool | SearchStrategy[bool] = True,
) -> SearchStrategy[DecodingConfig]:
    """Decoding configs; defaults: temperature ``1 + x`` or ``1 / (1 + x)`` (x in [0, 1]),
    top-k off then 50 down to 1, top_p ``1 - x`` (x in [0, 0.5]), repetition penalty ``1 + x`` (x in [0, 0.5])."""
    st = _st()
    if temperature is None:
        temp = st.tuples(st.booleans(), _grid(0.0, 1.0)).map(
            lambda t: round(1.0 / (1.0 + t[1]), 6) if t[0] else round(1.0 + t[1], 6)
        )
    else:
        temp = _param(temperature, lambda v: DecodingConfig(temperature=v))
    # k = 0 disables top-k (mildest); then 50, 49, ..., 1 grow harsher.
    if top_k is None:
        tk = st.integers(0, 50).map(lambda j: 0 if j == 0 else 51 - j)
    else:
        tk = _param(top_k, lambda v: DecodingConfig(top_k=v))
    if top_p is None:
        tp = _grid(0.0, 0.5).map(lambda x: round(1.0 - x, 6))
    else:
        tp = _param(top_p, lambda v: DecodingConfig(top_p=v))
    rp = (
        _grid(0.0, 0.5).map(lambda x: round(1.0 + x, 6))
        if repetition_penalty is None
        else _param(repetition_penalty, lambda v: DecodingConfig(repetition_penalty=v))
    )
    ds = _param(do_sample, lambda v: DecodingConfig(do_sample=v))
    return st.tuples(ds, temp, tk, tp, rp).map(
        lambda t: DecodingConfig(do_sample=t[0], temperature=t[1], top_k=t[2], top_p=t[3], repetition_penalty=t[4])
    )


# --------------------------------------------------------------------------- any kind

_BUILDERS: dict[str, Callable[[], SearchStrategy[Any]]] = {
    "quantize": quantization_configs,
    "prune": pruning_configs,
    "lowrank": lowrank_configs,
    "expand": expansion_configs,
    "decoding": decoding_configs,
}


def _order_steps(steps: list[Modification]) -> Modification:
    """One config, or a Composed with at most one decoding step, moved last."""
    weights = [s for s in steps if not isinstance(s, DecodingConfig)]
    decoding = [s for s in steps if isinstance(s, DecodingConfig)][:1]
    ordered = weights + decoding
    return ordered[0] if len(ordered) == 1 else Composed(tuple(ordered))


def modifications(
    kinds: Sequence[str] | str = ("quantize", "prune", "lowrank"),
    max_composed: int = 1,
) -> SearchStrategy[Modification]:
    """A config of one of ``kinds`` (earlier kinds shrink first), or, with ``max_composed > 1``,
    a :class:`Composed` of up to that many (shrinking toward fewer steps)."""
    what = f"a non-empty subset of {KINDS}"
    try:
        chosen = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    except TypeError:
        raise must_be("kinds", what, kinds) from None
    if not chosen or any(k not in KINDS for k in chosen):
        raise must_be("kinds", what, kinds)
    positive_int("max_composed", max_composed)
    st = _st()
    one = st.one_of(*(_BUILDERS[k]() for k in dict.fromkeys(chosen)))
    if max_composed == 1:
        return one
    return st.lists(one, min_size=1, max_size=max_composed).map(_order_steps)
