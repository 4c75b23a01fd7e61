"""Diagnosis: which vulnerability pattern of *Model Hemorrhage* (Ma et al., 2025) a report shows.

:func:`diagnose` reads a :class:`~pytest_hemorrhage.report.Report` (and, when given, the two
models and the probes) and returns the patterns found, strongest first:

* ``information_loss_cascade``: the error a modification adds grows through the later blocks;
* ``attention_disruption``: attention patterns change sharply at some layers;
* ``prediction_divergence_amplification``: per-token KL is small, yet greedy continuations part early;
* ``activation_outlier_clipping``: quantized linear inputs lose their few largest channels.

Each pattern's ``score`` is how far its main statistic lies past that pattern's detection
threshold (1.0 = just detected), so scores of different patterns can be ordered.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .report import LayerResult, Report

__all__ = [
    "Pattern",
    "diagnose",
    "information_loss_cascade",
    "attention_disruption",
    "prediction_divergence_amplification",
    "activation_outlier_clipping",
    "UNTOUCHED_SQNR_DB",
    "CASCADE_MIN_DROP_DB",
    "CASCADE_MIN_WORSE_FRACTION",
    "CASCADE_MIN_LATER_LAYERS",
    "ATTENTION_MIN_JS",
    "ATTENTION_NOISE_JS",
    "ATTENTION_CONTRAST",
    "GENERATION_KL_NEAR_FACTOR",
    "GENERATION_MIN_DIVERGED_FRACTION",
    "GENERATION_EARLY_FRACTION",
    "GENERATION_MIN_AMPLIFICATION",
    "OUTLIER_CHANNEL_FRACTION",
    "OUTLIER_MIN_CHANNELS",
    "OUTLIER_MIN_ERROR_SHARE",
    "OUTLIER_MIN_MAGNITUDE_RATIO",
    "OUTLIER_MIN_RELATIVE_ERROR_RATIO",
    "OUTLIER_PROBES",
]

# ----------------------------------------------------------------------------- thresholds

# A layer at or above this SQNR is untouched: fp32 rounding differences measure above 100 dB and
# identical computations give +inf, while the mildest real modification (int8 weights) is near 40-50 dB.
UNTOUCHED_SQNR_DB = 60.0
# 3 dB = the error energy relative to the signal doubles between the first modified layer and the worst
# later one. Without amplification the SQNR stays flat or rises (later blocks add signal, not error).
CASCADE_MIN_DROP_DB = 3.0
# Most later layers must be worse than the first one: a single dip is not a cascade through depth.
CASCADE_MIN_WORSE_FRACTION = 0.75
# A trend needs at least two layers after the first modified one.
CASCADE_MIN_LATER_LAYERS = 2

# Jensen-Shannon divergence (nats, at most ln 2 = 0.693) of a layer's most changed head.
# At 0.05 nats an attention row has moved about a fifth of its mass (JS ~ TV^2 / 2 for small changes
# ... TV ~ 0.3): clearly disrupted whatever the other layers do.
ATTENTION_MIN_JS = 0.05
# Below this the change is rounding-level (int8 weights measure 1e-5 to 1e-4 nats): never disruption.
ATTENTION_NOISE_JS = 0.01
# A layer this many times above the median of the other layers stands out even under the absolute floor.
ATTENTION_CONTRAST = 5.0

# "Within or near" the KL threshold: up to twice max_kl. Further out, per-token damage alone explains
# any divergence of the continuations and the amplification is not the story.
GENERATION_KL_NEAR_FACTOR = 2.0
# At least half the continuations must diverge for divergence to be the rule, not an accident.
GENERATION_MIN_DIVERGED_FRACTION = 0.5
# "Early": the mean first divergence lies in the first half of the generated tokens.
GENERATION_EARLY_FRACTION = 0.5
# The continuations must part at least twice as early as independent per-token top-1 flips predict:
# with per-token agreement a, the first flip of N greedy tokens is expected after a(1 - a^N)/(1 - a).
GENERATION_MIN_AMPLIFICATION = 2.0

# The "few channels": the top 1 % by error energy (LLM.int8() finds a handful of outlier dimensions
# in thousands), but at least 4 so that small models with under 400 channels still get a group.
OUTLIER_CHANNEL_FRACTION = 0.01
OUTLIER_MIN_CHANNELS = 4
# Half the input error energy in about 1 % of the channels: 50x more than an even spread would hold.
OUTLIER_MIN_ERROR_SHARE = 0.5
# The channels must carry outliers: RMS at least 8x the median channel's (LLM.int8() calls a
# feature an outlier at magnitude >= 6 where typical values are below 1).
OUTLIER_MIN_MAGNITUDE_RATIO = 8.0
# Clipping removes a large part of a channel, rounding only a small one: the outlier channels' relative
# error must be 3x the other channels'. Error that merely scales with magnitude (carried from upstream
# blocks) has equal relative error everywhere and is not clipping.
OUTLIER_MIN_RELATIVE_ERROR_RATIO = 3.0
# A few probes suffice: outlier channels are a property of the layer, present on every token.
OUTLIER_PROBES = 4


# ----------------------------------------------------------------------------- the result


@dataclass
class Pattern:
    """One vulnerability pattern found in a report.

    ``name``: identifier (``"information_loss_cascade"``...); ``title``: its name for people;
    ``evidence``: one sentence with the measured numbers; ``numbers``: those numbers (JSON-able);
    ``score``: the main statistic over its detection threshold (>= 1; larger is stronger).
    """

    name: str
    title: str
    evidence: str
    numbers: dict[str, Any] = field(default_factory=dict)
    score: float = 1.0

    def describe(self) -> str:
        """One line: the title and the evidence with its numbers."""
        return f"{self.title}: {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: the fields plus ``description`` (:meth:`describe`)."""
        return {**asdict(self), "description": self.describe()}


def diagnose(report: Report, baseline: Any = None, candidate: Any = None, probes: Any = None) -> list[Pattern]:
    """The vulnerability patterns ``report`` shows, strongest first; ``[]`` for a healthy report.

    ``activation_outlier_clipping`` needs the activations themselves: it is measured only when
    ``baseline`` and ``candidate`` (``nn.Module``s) are given, on ``probes`` (or the built-in set of a
    baseline with a registered tokenizer), and otherwise skipped, never guessed from the report.
    """
    found = [
        information_loss_cascade(report),
        attention_disruption(report),
        prediction_divergence_amplification(report),
    ]
    if baseline is not None and candidate is not None:
        found.append(activation_outlier_clipping(report, baseline, candidate, probes))
    return sorted((p for p in found if p is not None), key=lambda p: -p.score)


# ----------------------------------------------------------------------------- cascade


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def information_loss_cascade(report: Report) -> Pattern | None:
    """SQNR falling with depth after the first layer that departs from the untouched level.

    Reported only when the damage matters: the report does not pass, or some later layer is below
    the report's ``min_layer_sqnr_db`` (a healthy int8 model also loses a few dB through depth).
    """
    layers = [l for l in report.layers if not math.isnan(l.sqnr_db)]
    first_pos = next((i for i, l in enumerate(layers) if l.sqnr_db < UNTOUCHED_SQNR_DB), None)
    if first_pos is None:
        return None
    first = layers[first_pos]
    later = [l for l in layers[first_pos + 1:] if math.isfinite(l.sqnr_db)]
    if len(later) < CASCADE_MIN_LATER_LAYERS:
        return None
    worst = min(later, key=lambda l: l.sqnr_db)
    drop = first.sqnr_db - worst.sqnr_db
    worse = sum(l.sqnr_db < first.sqnr_db for l in later) / len(later)
    chain = [first] + later
    slope = _slope([float(i) for i in range(len(chain))], [l.sqnr_db for l in chain])
    limit = report.thresholds.get("min_layer_sqnr_db")
    harmful = not report.passed or (limit is not None and worst.sqnr_db < limit)
    if drop < CASCADE_MIN_DROP_DB or worse < CASCADE_MIN_WORSE_FRACTION or slope >= 0 or not harmful:
        return None
    numbers = {
        "first_modified_layer": first.name,
        "first_modified_index": first.index,
        "worst_layer": worst.name,
        "sqnr_first_db": round(first.sqnr_db, 3),
        "sqnr_worst_db": round(worst.sqnr_db, 3),
        "sqnr_drop_db": round(drop, 3),
        "slope_db_per_layer": round(slope, 4),
        "later_worse_fraction": round(worse, 4),
        "later_layers": len(later),
    }
    evidence = (
        f"error grows {drop:.1f} dB from {first.name} to {worst.name} (SQNR {first.sqnr_db:.1f} -> "
        f"{worst.sqnr_db:.1f} dB, {slope:+.2f} dB per layer; {worse:.0%} of {len(later)} later layers worse "
        "than the first modified one)"
    )
    return Pattern("information_loss_cascade", "information-loss cascade", evidence, numbers,
                   score=drop / CASCADE_MIN_DROP_DB)


# ----------------------------------------------------------------------------- attention


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return 0.0 if n == 0 else (s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def attention_disruption(report: Report) -> Pattern | None:
    """Layers whose most changed head has a high attention JS (needs ``compare(..., attention=True)``).

    A layer is disrupted when that JS is at least :data:`ATTENTION_MIN_JS`, or above
    :data:`ATTENTION_NOISE_JS` and :data:`ATTENTION_CONTRAST` times the median of the other layers.
    """
    measured: list[tuple[LayerResult, float]] = [
        (l, max(l.attention_js)) for l in report.layers if l.attention_js and all(map(math.isfinite, l.attention_js))
    ]
    if not measured:
        return None
    disrupted: list[tuple[LayerResult, float, float]] = []
    for i, (layer, js) in enumerate(measured):
        rest = _median([v for j, (_, v) in enumerate(measured) if j != i])
        floor = min(ATTENTION_MIN_JS, max(ATTENTION_NOISE_JS, ATTENTION_CONTRAST * rest))
        if js >= floor:
            disrupted.append((layer, js, floor))
    if not disrupted:
        return None
    worst, worst_js, worst_floor = max(disrupted, key=lambda d: d[1])
    heads = {layer.name: [h for h, v in enumerate(layer.attention_js) if v >= floor]
             for layer, _, floor in disrupted}
    names = [layer.name for layer, _, _ in disrupted]
    others = [js for layer, js in measured if layer.name not in names]
    numbers = {
        "layers": names,
        "first_layer": names[0],
        "max_js": round(worst_js, 6),
        "max_js_layer": worst.name,
        "heads": heads,
        "other_layers_median_js": round(_median(others), 6) if others else None,
    }
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    worst_heads = ", ".join(map(str, heads[worst.name]))
    rest_text = f"; other layers median {_median(others):.2g}" if others else ""
    evidence = (
        f"attention JS up to {worst_js:.3g} nats at {shown} (heads {worst_heads} of {worst.name}"
        f"{rest_text})"
    )
    return Pattern("attention_disruption", "attention disruption", evidence, numbers,
                   score=worst_js / worst_floor)


# ----------------------------------------------------------------------------- generation


def _expected_first_flip(agreement: float, new_tokens: int) -> float:
    """E[min(T, N)] for a first flip T after independent per-token agreements ``agreement``."""
    if agreement >= 1.0:
        return float(new_tokens)
    return agreement * (1.0 - agreement**new_tokens) / (1.0 - agreement)


def prediction_divergence_amplification(report: Report) -> Pattern | None:
    """Small per-token KL, yet greedy continuations (``report.generation``) diverge early.

    Needs ``compare(..., generation=N)``; compares the mean first divergence with what the
    per-token top-1 agreement predicts for independent flips (the amplification factor).
    """
    gen = getattr(report, "generation", None)
    kl = report.metrics.get("kl")
    if not gen or kl is None or not math.isfinite(kl.estimate):
        return None
    new_tokens = int(gen["new_tokens"])
    mean_first = float(gen["first_divergence_mean"])
    diverged = float(gen["diverged_fraction"])
    if new_tokens <= 0:
        return None
    max_kl = kl.threshold if kl.threshold is not None else report.thresholds.get("max_kl")
    if max_kl is None:
        from .thresholds import Thresholds

        max_kl = Thresholds().max_kl
    early = mean_first <= GENERATION_EARLY_FRACTION * new_tokens
    if kl.estimate > GENERATION_KL_NEAR_FACTOR * max_kl or diverged < GENERATION_MIN_DIVERGED_FRACTION or not early:
        return None
    top1 = report.metrics.get("top1")
    expected = amplification = None
    if top1 is not None and math.isfinite(top1.estimate):
        expected = _expected_first_flip(top1.estimate, new_tokens)
        amplification = expected / max(mean_first, 0.5)  # a divergence at token 0 counts as half a token
        if amplification < GENERATION_MIN_AMPLIFICATION:
            return None
        score = amplification / GENERATION_MIN_AMPLIFICATION
    else:
        score = (1.0 - mean_first / new_tokens) / (1.0 - GENERATION_EARLY_FRACTION)
    numbers = {
        "kl": kl.estimate,
        "max_kl": max_kl,
        "new_tokens": new_tokens,
        "first_divergence_mean": mean_first,
        "first_divergence_min": int(gen["first_divergence_min"]),
        "token_agreement": float(gen["token_agreement"]),
        "diverged_fraction": diverged,
        "expected_first_divergence": round(expected, 3) if expected is not None else None,
        "amplification": round(amplification, 3) if amplification is not None else None,
    }
    predicted = f" where per-token top-1 agreement predicts {expected:.1f} ({amplification:.1f}x earlier)" \
        if expected is not None else ""
    evidence = (
        f"per-token KL {kl.estimate:.3g} (up to {max_kl:.3g} allowed) yet {diverged:.0%} of greedy "
        f"continuations diverge within {new_tokens} tokens, after {mean_first:.1f} tokens on average"
        f"{predicted}"
    )
    return Pattern("prediction_divergence_amplification", "prediction divergence amplification", evidence,
                   numbers, score=score)


# ----------------------------------------------------------------------------- outlier clipping


def _quantized_input_linears(candidate: Any) -> list[str]:
    """Names of the candidate's linears whose input is fake-quantized (they carry an activation quantizer)."""
    from .modify._common import linear_modules
    from .modify.quantize import ACTIVATION_QUANT_ATTR

    return [name for name, module in linear_modules(candidate) if ACTIVATION_QUANT_ATTR in module._modules]


def _channel_error_sums(baseline: Any, candidate: Any, names: list[str], probes: Any) -> dict[str, Any]:
    """Per linear, per input channel over valid tokens: (sum x_b^2, sum (x_b - x_m)^2).

    ``x_b`` is the baseline linear's input, ``x_m`` what the candidate's linear consumes (after its
    activation quantizer: forward hooks see the arguments as the pre-hooks left them).
    """
    import torch

    from .sources.module import evaluating, pad_id
    from .modify._common import model_device
    from .packed import without_autograd

    sums: dict[str, Any] = {}
    base_in: dict[str, Any] = {}
    state: dict[str, Any] = {}

    def keep(name: str):
        def hook(_m: Any, args: tuple, _out: Any) -> None:
            base_in[name] = args[0].detach()
        return hook

    def measure(name: str):
        def hook(_m: Any, args: tuple, _out: Any) -> None:
            b = base_in.pop(name).float()
            m = args[0].detach().float().to(b.device)
            mask = state["mask"]
            if mask.shape != b.shape[:-1]:  # a layer that flattens tokens: count every row
                mask = torch.ones(b.shape[:-1])
            w = mask.to(b.device).float().unsqueeze(-1)
            signal = (b.square() * w).flatten(0, -2).sum(0)
            error = ((b - m).square() * w).flatten(0, -2).sum(0)
            if name in sums:
                sums[name][0] += signal
                sums[name][1] += error
            else:
                sums[name] = [signal.double(), error.double()]
        return hook

    handles = [baseline.get_submodule(n).register_forward_hook(keep(n)) for n in names]
    handles += [candidate.get_submodule(n).register_forward_hook(measure(n)) for n in names]
    try:
        with evaluating(roles={"baseline": baseline, "candidate": candidate}), without_autograd(candidate):
            for batch in probes.batches(OUTLIER_PROBES, pad_id=pad_id(baseline)):
                state["mask"] = batch.attention_mask
                kwargs = {"attention_mask": batch.attention_mask.to(model_device(baseline))}
                baseline(batch.input_ids.to(model_device(baseline)), **kwargs)
                kwargs = {"attention_mask": batch.attention_mask.to(model_device(candidate))}
                candidate(batch.input_ids.to(model_device(candidate)), **kwargs)
    finally:
        for h in handles:
            h.remove()
    return sums


def _clipping_numbers(name: str, signal: Any, error: Any, n_tokens: int) -> dict[str, Any] | None:
    """Concentration of one linear's input error in its largest channels, or None when absent."""
    import torch

    channels = signal.numel()
    total = float(error.sum())
    if channels < 2 * OUTLIER_MIN_CHANNELS or total <= 0.0:
        return None
    k = max(OUTLIER_MIN_CHANNELS, math.ceil(OUTLIER_CHANNEL_FRACTION * channels))
    top = torch.topk(error, k).indices
    rest = torch.ones(channels, dtype=torch.bool)
    rest[top] = False
    share = float(error[top].sum()) / total
    rms = (signal / max(n_tokens, 1)).sqrt()
    median_rms = float(rms.median())
    magnitude = float(rms[top].mean()) / median_rms if median_rms > 0 else math.inf
    rel_top = math.sqrt(float(error[top].sum()) / max(float(signal[top].sum()), 1e-30))
    rel_rest = math.sqrt(float(error[rest].sum()) / max(float(signal[rest].sum()), 1e-30))
    rel_ratio = rel_top / rel_rest if rel_rest > 0 else math.inf
    if (share < OUTLIER_MIN_ERROR_SHARE or magnitude < OUTLIER_MIN_MAGNITUDE_RATIO
            or rel_ratio < OUTLIER_MIN_RELATIVE_ERROR_RATIO):
        return None
    return {
        "module": name,
        "channels": channels,
        "top_channels": sorted(int(c) for c in top),
        "top_error_share": round(share, 4),
        "top_magnitude_ratio": round(min(magnitude, 1e9), 3),
        "top_relative_error": round(rel_top, 4),
        "other_relative_error": round(rel_rest, 6),
    }


def activation_outlier_clipping(report: Report, baseline: Any, candidate: Any, probes: Any = None) -> Pattern | None:
    """Input error of quantized linears concentrated in the few channels with the largest activations.

    Measured over :data:`OUTLIER_PROBES` probes on every linear whose input the candidate quantizes
    (this package's activation quantizer, ``modify.quantize(..., activation=...)``); None when there is
    none. ``report`` is accepted for symmetry with the other patterns; the models are the evidence.
    """
    from torch import nn

    from .errors import InvalidArgument
    from .probes import as_probes

    if not isinstance(baseline, nn.Module) or not isinstance(candidate, nn.Module):
        raise InvalidArgument(
            "activation_outlier_clipping: baseline and candidate must be torch.nn.Modules (a snapshot has no "
            "activations to measure); pass the live models or call diagnose(report) without them"
        )
    in_baseline = {n for n, _ in baseline.named_modules()}
    names = [n for n in _quantized_input_linears(candidate) if n in in_baseline]
    if not names:
        return None
    probe_set = as_probes(probes, baseline)
    if not probe_set.is_tokens:
        return None
    probe_set = probe_set.subset(range(min(OUTLIER_PROBES, len(probe_set))))
    n_tokens = sum(len(t) for t in probe_set.token_ids)
    sums = _channel_error_sums(baseline, candidate, names, probe_set)
    hits = [h for h in (_clipping_numbers(n, s.cpu(), e.cpu(), n_tokens) for n, (s, e) in sums.items()) if h]
    if not hits:
        return None
    worst = max(hits, key=lambda h: h["top_error_share"])
    numbers = {**worst, "affected_modules": [h["module"] for h in hits], "measured_modules": len(names),
               "probes": len(probe_set)}
    k = len(worst["top_channels"])
    more = f"; {len(hits) - 1} more linears alike" if len(hits) > 1 else ""
    evidence = (
        f"in {worst['module']} {k} of {worst['channels']} input channels hold {worst['top_error_share']:.0%} "
        f"of the input error energy; their activations are {worst['top_magnitude_ratio']:.0f}x the median "
        f"channel's and lose {worst['top_relative_error']:.0%} of their size to clipping{more}"
    )
    return Pattern("activation_outlier_clipping", "activation outlier clipping", evidence, numbers,
                   score=worst["top_error_share"] / OUTLIER_MIN_ERROR_SHARE)
