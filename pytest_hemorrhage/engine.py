"""The engine, compare(): run baseline and candidate over the probes, stream metrics into accumulators, judge.

Probes go through in batches. For each batch the baseline's layer outputs are held only until
the candidate's matching layer has run; per-probe sums are all that survive the batch, so
memory stays flat as the probe set grows.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import torch
from torch import nn

from .capture import ModelAdapter, adapt, capture_layers, eager_attention, host_to, parameter_count
from .errors import HemorrhageError, InvalidArgument
from .metrics.activations import activation_sums, layer_activation_sums, relative_error, sqnr_db
from .metrics.attention import attention_sums
from .metrics.outputs import OUTPUT_METRICS, token_output_metrics
from .probes import Probes, as_probes
from .report import LayerResult, MetricResult, Report
from .sources.module import check_pair, evaluating, on_device, pad_id
from .stats import Estimate, LogHistogram, UnitAccumulator, decide, mcnemar_exact, ratio_estimate
from .thresholds import THRESHOLD_SPECS, Thresholds

__all__ = ["compare", "generation_metrics"]

_KL_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99_9": 0.999}


def _resolve_thresholds(thresholds: Thresholds | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> Thresholds:
    if thresholds is None:
        base = Thresholds()
    elif isinstance(thresholds, Thresholds):
        base = thresholds
    elif isinstance(thresholds, Mapping):
        base = Thresholds().merged(thresholds, source="thresholds")
    else:
        raise InvalidArgument(
            f"thresholds: expected Thresholds or a dict, got {type(thresholds).__name__}"
        )
    return base.merged(overrides, source="keyword arguments") if overrides else base


def _seen_tokens(prefix: torch.Tensor, vocab: int) -> torch.Tensor:
    """``[T, V]`` booleans: whether token v occurs in ``prefix[: t + 1]`` (what a repetition penalty sees)."""
    onehot = torch.zeros(prefix.shape[0], vocab, dtype=torch.bool, device=prefix.device)
    onehot[torch.arange(prefix.shape[0], device=prefix.device), prefix.clamp(0, vocab - 1)] = True
    return onehot.cummax(dim=0).values


def _penalised(logits: torch.Tensor, seen: torch.Tensor, config: Any) -> torch.Tensor:
    """Float32 logits after the repetition penalty of ``config`` (Hugging Face convention)."""
    scores = logits.float()
    penalty = 1.0 if config is None else config.repetition_penalty
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores > 0, scores / penalty, scores * penalty), scores)


def _drawn_from(scores: torch.Tensor, config: Any) -> torch.Tensor:
    """The distribution the next token is drawn from: the sampler's for sampling, the model's otherwise.

    Greedy decoding draws from a one-hot; its KL is infinite for every changed argmax, so greedy
    sides are compared on the model's distribution and judged by top-1 agreement.
    """
    if config is None or not config.do_sample:
        return scores
    from dataclasses import replace

    from .modify.decoding import effective_log_probs

    return effective_log_probs(scores, replace(config, repetition_penalty=1.0))


class _Run:
    """Accumulators and bookkeeping of one comparison."""

    def __init__(self, probes: Probes, base: ModelAdapter | None, cand: ModelAdapter, attention: bool, topk: int,
                 snapshot: Any = None, decoding: tuple[Any, Any] | None = None) -> None:
        self.probes = probes
        self.decoding = decoding
        self.base = base
        self.snapshot = snapshot
        self.cand = cand
        self.attention = attention and snapshot is None
        self.topk = topk
        self.device = base.device if base is not None else cand.device
        self.kind = "lm" if snapshot is not None else None
        n = len(probes)
        base_names = snapshot.layer_names if snapshot is not None else [name for name, _ in base.layers]
        self.base_names = base_names
        cand_names = {name for name, _ in cand.layers}
        self.layer_names = [name for name in base_names if name in cand_names]
        self.unmatched = {
            "baseline": [name for name in base_names if name not in cand_names],
            "candidate": [name for name, _ in cand.layers if name not in set(base_names)],
        }
        self.layer_index = {name: i for i, name in enumerate(self.layer_names)}
        self.layer_sums = torch.zeros(len(self.layer_names), 4, dtype=torch.float64, device=self.device)
        self.tokens = UnitAccumulator(n, OUTPUT_METRICS, self.device)
        self.kl_hist = LogHistogram(device=self.device)
        self.output_sums = torch.zeros(n, 4, dtype=torch.float64, device=self.device)
        self.labels = torch.full((n, 3), -1, dtype=torch.long, device=self.device)  # base, cand, true
        self.attn_sums: dict[int, torch.Tensor] = {}
        self.shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    # ------------------------------------------------------------------ per batch
    def run_batch(self, batch: Any) -> None:
        """Measure one batch; accumulators change only once the whole batch has been measured.

        That makes a batch safe to retry in smaller pieces after an out-of-memory error.
        """
        commits = self._run_snapshot_batch(batch) if self.snapshot is not None else self._run_live_batch(batch)
        for commit in commits:
            commit()

    def _run_live_batch(self, batch: Any) -> list:
        stored: dict[str, torch.Tensor] = {}
        mask = host_to(batch.attention_mask, self.device) if batch.attention_mask is not None else None

        def keep(name: str, h: torch.Tensor) -> None:
            if name in self.layer_index:
                stored[name] = h

        cand_out: dict[str, torch.Tensor] = {}

        def measure(name: str, h: torch.Tensor) -> None:
            if name in stored:
                b = stored[name]
                if b.shape != h.shape:
                    raise HemorrhageError(
                        f"layer {name}: baseline output shape {tuple(b.shape)} differs from candidate "
                        f"{tuple(h.shape)}; exclude the layer with layers=[...] or compare outputs only (layers=None)"
                    )
                cand_out[name] = h

        with capture_layers(self.base.layers, keep):
            out_b, attn_b = self.base.forward(batch, self.attention)
        if self.cand is self.base:  # one model under two decoding settings: one forward serves both
            out_m, attn_m = out_b, attn_b
        else:
            with capture_layers(self.cand.layers, measure):
                out_m, attn_m = self.cand.forward(batch, self.attention)
        commits = self._layer_metrics(stored, cand_out, mask)
        stored.clear()
        cand_out.clear()
        self.kind = self.base.kind
        commits += self._outputs(batch, out_b, out_m.to(self.device), mask)
        if self.attention and attn_b is not None and attn_m is not None:
            commits += self._attention(attn_b, attn_m, mask)
        return commits

    def _layer_metrics(self, base: dict[str, torch.Tensor], cand: dict[str, torch.Tensor],
                       mask: torch.Tensor | None) -> list:
        """All layers of a batch, grouped by output shape; each group's per-token sums are reduced together."""
        commits = []
        groups: dict[tuple, list[str]] = {}
        for name in cand:
            groups.setdefault((tuple(cand[name].shape), cand[name].device), []).append(name)
        for names in groups.values():
            pairs = [(base[n].to(self.device), cand[n].to(self.device)) for n in names]
            per_layer = layer_activation_sums(pairs, mask).to(torch.float64)
            index = host_to(torch.tensor([self.layer_index[n] for n in names]), self.device)
            commits.append(lambda index=index, per_layer=per_layer: self.layer_sums.index_add_(0, index, per_layer))
        return commits

    def _run_snapshot_batch(self, batch: Any) -> list:
        cand_out: dict[str, torch.Tensor] = {}
        commits = []

        def keep(name: str, h: torch.Tensor) -> None:
            if name in self.layer_index:
                cand_out[name] = h

        with capture_layers(self.cand.layers, keep):
            out_m, _ = self.cand.forward(batch)
        groups: dict[tuple, list[str]] = {}
        for name, h in cand_out.items():
            groups.setdefault((tuple(h.shape), h.device), []).append(name)
        for names in groups.values():  # all blocks of a batch at once, as for a live baseline
            sums = self.snapshot.layer_sums(names, batch, [cand_out[n] for n in names])
            index = host_to(torch.tensor([self.layer_index[n] for n in names]), self.device)
            commits.append(lambda index=index, sums=sums.to(self.device): self.layer_sums.index_add_(0, index, sums))
        cand_out.clear()
        units, values = self.snapshot.output_metrics(batch, out_m.to(self.device), self.topk)
        return commits + [lambda: self.tokens.add(units, values), lambda: self.kl_hist.add(values["kl"])]

    def _outputs(self, batch: Any, out_b: torch.Tensor, out_m: torch.Tensor, mask: torch.Tensor | None) -> list:
        if out_b.shape != out_m.shape:
            what = "vocabulary" if self.base.kind == "lm" and out_b.shape[:-1] == out_m.shape[:-1] else "output shape"
            raise HemorrhageError(
                f"{what} mismatch: baseline output has shape {tuple(out_b.shape)}, candidate "
                f"{tuple(out_m.shape)}. Compare models with the same vocabulary and output head "
                "(and the same tokenizer)."
            )
        units = host_to(torch.tensor(batch.units), self.device)
        if self.base.kind == "lm":
            ids = host_to(batch.input_ids, self.device)
            # The mask is still on the host here: reading lengths from it costs no device sync.
            scored = [(r, int(n) - 1) for r, n in enumerate(batch.attention_mask.sum(1).tolist()) if n > 1]
            if not scored:
                return []
            if out_b.device.type == "cpu" or self.decoding is not None:
                # Right padding: each row's scored positions are one contiguous slice, so the logits are
                # read through views instead of being gathered into a copy (host memory is the limit).
                parts = [self._token_metrics(out_b[r, :n], out_m[r, :n], ids[r, : n + 1]) for r, n in scored]
                values = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            else:
                # On an accelerator, one gathered batch means a few large kernels instead of many per row.
                width = out_b.shape[1]
                flat = host_to(torch.cat([torch.arange(n) + r * width for r, n in scored]), self.device)
                values = token_output_metrics(out_b.flatten(0, 1), out_m.flatten(0, 1),
                                              ids.flatten().index_select(0, flat + 1), topk=self.topk, rows=flat)
            rows = host_to(torch.cat([torch.full((n,), r) for r, n in scored]), self.device)
            return [lambda: self.tokens.add(units[rows], values), lambda: self.kl_hist.add(values["kl"])]
        # Tensor outputs (encoders, classifiers, vision): one unit per probe row.
        token_mask = mask if (mask is not None and out_b.dim() == 3) else None
        sums = activation_sums(out_b, out_m, token_mask).to(torch.float64)
        commits = [lambda: self.output_sums.index_add_(0, units, sums)]
        if self.base.kind == "classifier":
            label_b, label_m = out_b.argmax(-1).to(self.device), out_m.argmax(-1).to(self.device)
            true = host_to(batch.labels, self.device).long().view(-1) if batch.labels is not None else None

            def set_labels() -> None:
                self.labels[units, 0] = label_b
                self.labels[units, 1] = label_m
                if true is not None:
                    self.labels[units, 2] = true

            commits.append(set_labels)
        return commits

    def _token_metrics(self, logits_b: torch.Tensor, logits_m: torch.Tensor, ids: torch.Tensor) -> dict:
        """Per-token output metrics of one probe; ``ids`` holds the probe's tokens (targets are ``ids[1:]``)."""
        targets = ids[1:]
        if self.decoding is None:
            return token_output_metrics(logits_b, logits_m, targets, topk=self.topk)
        # Decoding comparison: KL, top-1 and top-k of the distributions tokens are actually drawn from;
        # dNLL and dp of the models' own (repetition-penalised) distributions, since perplexity is a
        # property of the model and a truncated sampler would make it infinite.
        seen = _seen_tokens(ids[:-1], logits_b.shape[-1])
        raw_b, raw_m = (_penalised(logits, seen, config)
                        for logits, config in ((logits_b, self.decoding[0]), (logits_m, self.decoding[1])))
        effective = token_output_metrics(_drawn_from(raw_b, self.decoding[0]), _drawn_from(raw_m, self.decoding[1]),
                                         targets, topk=self.topk)
        raw = token_output_metrics(raw_b, raw_m, targets, topk=self.topk)
        return {**effective, "dnll": raw["dnll"], "dp2": raw["dp2"]}

    def _attention(self, attn_b: tuple, attn_m: tuple, mask: torch.Tensor | None) -> list:
        updates = {}
        for i, (a_b, a_m) in enumerate(zip(attn_b, attn_m)):
            if a_b is None or a_m is None or a_b.shape != a_m.shape:
                continue
            updates[i] = attention_sums(a_b, a_m.to(self.device), mask).sum(0).to(torch.float64)

        def commit() -> None:
            for i, sums in updates.items():
                self.attn_sums[i] = self.attn_sums[i] + sums if i in self.attn_sums else sums

        return [commit]

    # ------------------------------------------------------------------ results
    def layers(self) -> tuple[list[LayerResult], dict[str, str] | None]:
        sums = self.layer_sums.cpu().tolist()
        results, nonfinite = [], None
        base_names = self.base_names
        for name, (signal, error, cos, tokens) in zip(self.layer_names, sums):
            idx = self.layer_names.index(name)
            if nonfinite is None and not all(math.isfinite(v) for v in (error, cos)):
                if not math.isfinite(signal):
                    raise HemorrhageError(
                        f"the baseline produced non-finite values (NaN/Inf) in {name}; check the baseline "
                        "model and its dtype (fp16 overflow?) before comparing against it"
                    )
                nonfinite = {"layer": name, "where": "activations"}
            attn = self.attn_sums.get(base_names.index(name)) if name in base_names else None
            js = shift = None
            if attn is not None:
                a = attn.cpu()
                rows = a[:, 2].clamp_min(1)
                js = (a[:, 0] / rows).tolist()
                shift = (a[:, 1] / rows).tolist()
            results.append(LayerResult(
                name=name, index=idx, sqnr_db=sqnr_db(signal, error), rel_error=relative_error(signal, error),
                cosine=cos / tokens if tokens else math.nan, n_tokens=int(tokens),
                attention_js=js, entropy_shift=shift,
            ))
        return results, nonfinite


# Natural ranges: a t-interval must not report a proportion below 0 or a KL below 0.
_RANGES = {"kl": (0.0, math.inf), "top1": (0.0, 1.0), "topk": (0.0, 1.0), "label_agreement": (0.0, 1.0),
           "flip_rate": (0.0, 1.0), "rms_dp": (0.0, 1.0), "output_cosine": (-1.0, 1.0),
           "output_rel_error": (0.0, math.inf), "ppl_ratio": (0.0, math.inf)}


def _metric(name: str, est: Estimate, thresholds: Thresholds, n_tokens: int, **extra: Any) -> MetricResult:
    if name in _RANGES:
        lo, hi = _RANGES[name]
        clamp = (lambda x: min(max(x, lo), hi) if not math.isnan(x) else x)
        est = Estimate(clamp(est.value), clamp(est.low), clamp(est.high), est.se, est.k)
    key = next((k for k, spec in THRESHOLD_SPECS.items() if spec.metric == name), None)
    threshold = getattr(thresholds, key) if key else None
    result = MetricResult(
        name=name, estimate=est.value, ci_low=est.low, ci_high=est.high, n_units=est.k, n_tokens=n_tokens,
        extra={"confidence": thresholds.confidence, **extra},
    )
    if threshold is not None:
        result.threshold = float(threshold)
        result.threshold_key = key
        result.direction = THRESHOLD_SPECS[key].direction
        result.verdict, result.more_probes_needed = decide(est, result.threshold, result.direction)
    return result


def _lm_metrics(run: _Run, thresholds: Thresholds, units: list[int] | None = None) -> dict[str, MetricResult]:
    sums, counts = run.tokens.numpy()
    if units is not None:
        sums = {k: v[units] for k, v in sums.items()}
        counts = counts[units]
    conf = thresholds.confidence
    n_tokens = int(counts.sum())
    est = {name: ratio_estimate(sums[name], counts, conf) for name in OUTPUT_METRICS}
    return {
        "kl": _metric("kl", est["kl"], thresholds, n_tokens),
        "top1": _metric("top1", est["top1"], thresholds, n_tokens),
        "topk": _metric("topk", est["topk"], thresholds, n_tokens, k=run.topk),
        "ppl_ratio": _metric("ppl_ratio", est["dnll"].map(math.exp), thresholds, n_tokens,
                             mean_dnll=est["dnll"].value),
        "rms_dp": _metric("rms_dp", est["dp2"].map(lambda x: math.sqrt(max(x, 0.0))), thresholds, n_tokens),
    }


def _tensor_metrics(run: _Run, thresholds: Thresholds) -> dict[str, MetricResult]:
    sums = run.output_sums.cpu().numpy()
    signal, error, cos, tokens = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]
    conf = thresholds.confidence
    n_tokens = int(tokens.sum())
    nsr = ratio_estimate(error, signal, conf)  # noise-to-signal power ratio
    to_db = (lambda x: -10.0 * math.log10(x) if x > 0 else (math.inf if x == 0 else math.nan))
    sqnr = Estimate(to_db(nsr.value), to_db(nsr.high), to_db(nsr.low), nsr.se, nsr.k)
    rel = nsr.map(lambda x: math.sqrt(max(x, 0.0)))
    out = {
        "output_sqnr_db": _metric("output_sqnr_db", sqnr, thresholds, n_tokens),
        "output_rel_error": _metric("output_rel_error", rel, thresholds, n_tokens),
        "output_cosine": _metric("output_cosine", ratio_estimate(cos, tokens, conf), thresholds, n_tokens),
    }
    if run.kind == "classifier":
        labels = run.labels.cpu().numpy()
        ones = (labels[:, 0] >= 0).astype(float)
        agree = (labels[:, 0] == labels[:, 1]).astype(float)
        out["label_agreement"] = _metric("label_agreement", ratio_estimate(agree, ones, conf), thresholds, len(agree))
        if (labels[:, 2] >= 0).all():
            correct_b = labels[:, 0] == labels[:, 2]
            correct_m = labels[:, 1] == labels[:, 2]
            b = int((correct_b & ~correct_m).sum())
            c = int((~correct_b & correct_m).sum())
            flips = (correct_b != correct_m).astype(float)
            out["flip_rate"] = _metric(
                "flip_rate", ratio_estimate(flips, ones, conf), thresholds, len(flips),
                correct_to_wrong=b, wrong_to_correct=c, mcnemar_p=mcnemar_exact(b, c),
                baseline_accuracy=float(correct_b.mean()), candidate_accuracy=float(correct_m.mean()),
            )
    return out


def compare(
    baseline: Any,
    candidate: Any,
    probes: Any = None,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    layers: Any = "auto",
    *,
    attention: bool = False,
    generation: int = 0,
    sequential: bool = False,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    output: str = "auto",
    topk: int = 5,
    progress: bool = False,
    name: str | None = None,
    **threshold_overrides: Any,
) -> Report:
    """Compare ``candidate`` against ``baseline`` on ``probes`` and judge against ``thresholds``.

    ``baseline`` and ``candidate`` are ``nn.Module`` objects; the baseline may be a :class:`Snapshot`;
    either may be a :class:`~pytest_hemorrhage.modify.DecodedModel` (a model plus decoding
    settings), and then KL, top-1 and top-k compare the distributions tokens are drawn from
    (after temperature, top-k, top-p and repetition penalty) along the probe tokens.
    ``layers``: "auto" (decoder blocks found by structure), None (outputs only), a module name
    or glob pattern, a list of them, or a callable ``(name, module) -> bool``.
    ``attention=True`` switches Hugging Face models to eager attention for the run and adds
    per-head Jensen-Shannon divergence and entropy shift per layer.
    ``generation=N`` also continues each probe's first tokens greedily for ``N`` new tokens with
    both models and reports where the continuations first diverge (``report.generation``).
    ``sequential=True`` visits the probes in a seeded random order and stops as soon as a
    confidence sequence (valid under optional stopping) shows every gated metric clearly passing
    or one clearly failing; ``report.sequential`` says how many probes were used.
    A batch that runs out of memory is retried in halves and the rest of the run uses the
    smaller batch size (with a warning). Extra keyword arguments are threshold overrides
    (``max_kl=0.01``).
    """
    from .snapshot import Snapshot
    from .validate import check_context_length, check_token_ids, check_tokenizers

    thr = _resolve_thresholds(thresholds, threshold_overrides)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size: must be a positive integer, got {batch_size!r}")
    if not isinstance(topk, int) or topk < 1:
        raise InvalidArgument(f"topk: must be a positive integer, got {topk!r}")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise InvalidArgument(f"generation: must be a number of new tokens >= 0, got {generation!r}")
    described = candidate
    baseline, base_decoding = unwrap_decoding(baseline)
    candidate, cand_decoding = unwrap_decoding(candidate)
    decoding = (base_decoding, cand_decoding) if (base_decoding or cand_decoding) else None
    snapshot = baseline if isinstance(baseline, Snapshot) else None
    if snapshot is None and not isinstance(baseline, nn.Module):
        raise InvalidArgument(
            f"baseline: expected a torch.nn.Module or a Snapshot (load_snapshot), got {type(baseline).__name__}"
        )
    if not isinstance(candidate, nn.Module):
        raise InvalidArgument(f"candidate: expected a torch.nn.Module, got {type(candidate).__name__}")
    shared = decoding is not None and candidate is baseline
    if snapshot is not None:
        if decoding is not None or generation:
            raise InvalidArgument(
                "decoding settings and generation=... need the live baseline model: a snapshot holds "
                "only the baseline's top log-probabilities. Pass the baseline model instead."
            )
        check_tokenizers(snapshot, candidate, probes)
        if probes is None:
            probe_set = snapshot.probes
        else:
            probe_set = as_probes(probes)
            snapshot.check_identity(probes=probe_set)
        base = None
        models = {"candidate": candidate}
    else:
        if shared and base_decoding == cand_decoding:
            raise HemorrhageError(
                "candidate is baseline: the same model with the same decoding settings was passed twice, so "
                "the comparison would be empty. Change the candidate's DecodingConfig or compare a modified copy."
            )
        if not shared:
            check_pair(baseline, candidate)
        check_tokenizers(baseline, candidate, probes)
        probe_set = as_probes(probes, baseline)
        base = adapt(baseline, None if shared else layers, output)
        models = {"baseline": baseline} if shared else {"baseline": baseline, "candidate": candidate}
    for model in models.values():
        check_context_length(model, probe_set)
        check_token_ids(model, probe_set)
    cand = base if shared else adapt(candidate, layers, output)
    with on_device(list(models.values()), device), evaluating(roles=models), \
            eager_attention(baseline, attention and snapshot is None), \
            eager_attention(candidate, attention and not shared), torch.inference_mode():
        run = _Run(probe_set, base, cand, attention, topk, snapshot, decoding)
        pad = pad_id(candidate if snapshot is not None else baseline)
        stopper = _SequentialStop(probe_set, thr) if sequential else None
        used = _run_batches(run, probe_set, batch_size, pad, progress, stopper)
        gen = None
        if generation:
            gen = generation_metrics(baseline, candidate, probe_set, generation, batch_size=used,
                                     decoding=decoding or (None, None))
    report = _build_report(run, thr, probe_set, baseline, candidate, name, described)
    report.generation = gen
    if stopper is not None:
        stopper.annotate(report, run)
    if decoding is not None:
        report.identity["decoding"] = {
            role: config.describe() if config is not None else "model distribution"
            for role, config in zip(("baseline", "candidate"), decoding)
        }
    if used != batch_size:
        report.identity["batch_size"] = used
        report.notes.append(f"ran out of memory at batch size {batch_size}; measured with batch size {used}")
    return report


def unwrap_decoding(model: Any) -> tuple[Any, Any]:
    """``(model, DecodingConfig)`` for a DecodedModel, ``(model, None)`` otherwise."""
    from .modify.decoding import DecodedModel

    if isinstance(model, DecodedModel):
        return model.model, model.config
    return model, None


def _split(batch: Any) -> tuple[Any, Any]:
    """Two halves of a probe batch (rows keep their unit indices)."""
    from dataclasses import replace

    half = len(batch.units) // 2

    def part(sl: slice) -> Any:
        def cut(t: Any) -> Any:
            return t[sl] if t is not None else None

        return replace(batch, units=batch.units[sl], input_ids=cut(batch.input_ids),
                       attention_mask=cut(batch.attention_mask), inputs=cut(batch.inputs), labels=cut(batch.labels))

    return part(slice(0, half)), part(slice(half, None))


def _run_batches(run: _Run, probes: Probes, batch_size: int, pad_id: int, progress: bool,
                 stopper: "_SequentialStop | None" = None) -> int:
    """Feed the probes through ``run``; on out-of-memory halve the batch. Returns the batch size used.

    With a ``stopper``, probes go in its random order and the loop ends once it decides.
    """
    from .validate import is_out_of_memory

    size = batch_size
    order = stopper.order if stopper is not None else None
    pending = list(probes.batches(batch_size, pad_id=pad_id, order=order))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(probes), desc="hemorrhage", unit="probe")
    try:
        while pending:
            batch = pending.pop(0)
            if len(batch.units) > size:  # after an out-of-memory error every batch is cut to the new size
                pending[:0] = list(_split(batch))
                continue
            try:
                run.run_batch(batch)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if len(batch.units) == 1:
                    raise HemorrhageError(
                        "out of memory with a single probe per batch: shorten the probes "
                        "(Probes.builtin(tokenizer, max_length=...)), run on a device with more memory "
                        "(--hemorrhage-device), or compare outputs only (layers=None)"
                    ) from exc
                _free_memory(run.device)
                size = max(1, len(batch.units) // 2)
                warnings.warn(f"out of memory at batch size {len(batch.units)}; continuing with batch size {size}",
                              UserWarning, stacklevel=3)
                pending[:0] = list(_split(batch))
                continue
            if bar is not None:
                bar.update(len(batch.units))
            if stopper is not None and pending and stopper.should_stop(run):
                break
    finally:
        if bar is not None:
            bar.close()
    return size


# threshold key -> (per-token quantity, threshold on that quantity's scale)
_SEQUENTIAL_SCALE = {
    "max_kl": ("kl", lambda t: t),
    "min_top1_agreement": ("top1", lambda t: t),
    "min_topk_overlap": ("topk", lambda t: t),
    "max_ppl_ratio": ("dnll", math.log),
    "max_rms_dp": ("dp2", lambda t: t * t),
}


class _SequentialStop:
    """Early stopping for compare(..., sequential=True) (see :mod:`pytest_hemorrhage.sequential`)."""

    SEED = 0

    def __init__(self, probes: Probes, thresholds: Thresholds) -> None:
        import random

        from .sequential import SequentialRule

        self.order = list(range(len(probes)))
        random.Random(self.SEED).shuffle(self.order)
        self.rule = SequentialRule(len(probes), thresholds.confidence)
        self.gated = {key: value for key, value in thresholds.gated().items() if key in _SEQUENTIAL_SCALE}
        self.looks: list = []
        self.decision = "continue"

    def _looks(self, run: _Run) -> list:
        sums, counts = run.tokens.numpy()
        seen = counts > 0
        out = []
        for key, threshold in self.gated.items():
            quantity, scale = _SEQUENTIAL_SCALE[key]
            values = sums[quantity][seen] / counts[seen]
            out.append(self.rule.look(THRESHOLD_SPECS[key].metric, values, scale(threshold),
                                      THRESHOLD_SPECS[key].direction))
        return out

    def should_stop(self, run: _Run) -> bool:
        if run.kind != "lm" or not self.gated:
            return False
        self.looks = self._looks(run)
        self.decision = self.rule.verdict(self.looks)
        return self.decision != "continue"

    def annotate(self, report: Report, run: _Run) -> None:
        """Record how far the run went and let a sequential decision set the verdicts."""
        used = int((run.tokens.counts > 0).sum()) if run.kind == "lm" else len(self.order)
        info: dict[str, Any] = {"probes_used": used, "probes_total": len(self.order),
                                "fraction_used": used / len(self.order), "decision": self.decision,
                                "confidence": self.rule.confidence}
        if run.kind != "lm":
            report.notes.append("sequential stopping applies to language models; every probe was used")
        elif self.decision != "continue":
            info["looks"] = [vars(look) for look in self.looks]
            for look in self.looks:
                metric = report.metrics.get(look.metric)
                if metric is not None:
                    metric.verdict = look.decision
                    metric.more_probes_needed = None
                    metric.extra["sequence_bounds_per_probe"] = [look.low, look.high]
        report.sequential = info


def _free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def generation_metrics(baseline: nn.Module, candidate: nn.Module, probes: Probes, new_tokens: int, *,
                       batch_size: int = 8, prompt_tokens: int = 32,
                       decoding: tuple[Any, Any] = (None, None)) -> dict[str, Any]:
    """Greedy continuations of each probe's first tokens by both models: where do they first differ?

    The prompt is the first ``min(prompt_tokens, shortest probe - 1)`` tokens of every probe (one
    length, so no padding). Each side uses its own repetition penalty. Returns the mean and
    minimum first-divergence position, the mean token agreement and the fraction of probes whose
    continuations differ at all.
    """
    from .metrics.generation import first_divergence, token_agreement
    from .modify.decoding import generate_greedy

    if not probes.is_tokens:
        raise InvalidArgument("generation: needs token probes (a language model); got tensor probes")
    length = max(1, min(prompt_tokens, min(len(ids) for ids in probes.token_ids) - 1))
    prompts = torch.tensor([ids[:length] for ids in probes.token_ids], dtype=torch.long)
    firsts, agreements = [], []
    for chunk in prompts.split(batch_size):
        outs = []
        for model, config in ((baseline, decoding[0]), (candidate, decoding[1])):
            device = next(iter(model.parameters())).device
            outs.append(generate_greedy(model, chunk.to(device), new_tokens, config)[:, length:].cpu())
        firsts.append(first_divergence(outs[0], outs[1]))
        agreements.append(token_agreement(outs[0], outs[1]))
    first = torch.cat(firsts).double()
    return {
        "new_tokens": new_tokens,
        "prompt_tokens": length,
        "n_units": len(probes),
        "first_divergence_mean": float(first.mean()),
        "first_divergence_min": int(first.min()),
        "token_agreement": float(torch.cat(agreements).double().mean()),
        "diverged_fraction": float((first < new_tokens).double().mean()),
    }


def _build_report(run: _Run, thr: Thresholds, probes: Probes, baseline: nn.Module, candidate: nn.Module,
                  name: str | None, described: Any = None) -> Report:
    # Identity first: it needs no result, so on an accelerator this host work overlaps the last
    # batch's queued kernels instead of following the first read-back of the accumulators.
    identity = _identity(probes, baseline, candidate, described)
    layers, nonfinite = run.layers()
    if run.kind == "lm":
        metrics = _lm_metrics(run, thr)
        quantiles = {k: run.kl_hist.quantile(q) for k, q in _KL_QUANTILES.items()}
        quantiles["max"] = float(run.kl_hist.max)
        # A sampler that truncates the vocabulary gives an honest infinite KL; only NaN means broken numbers then.
        broken = (math.isnan if run.decoding is not None else (lambda x: not math.isfinite(x)))
        if nonfinite is None and any(broken(m.estimate) for m in metrics.values()):
            nonfinite = {"layer": "output logits", "where": "output"}
    else:
        metrics = _tensor_metrics(run, thr)
        quantiles = {}
        if nonfinite is None and not math.isfinite(metrics["output_cosine"].estimate):
            nonfinite = {"layer": "output", "where": "output"}
    by_tag: dict[str, dict[str, float]] = {}
    tags = sorted(set(probes.tags))
    if run.kind == "lm" and (len(tags) > 1 or tags != ["all"]):
        for tag in tags:
            units = [i for i, t in enumerate(probes.tags) if t == tag]
            tm = _lm_metrics(run, thr, units)
            by_tag[tag] = {"n_units": len(units), "n_tokens": tm["kl"].n_tokens, "kl": tm["kl"].estimate,
                           "top1": tm["top1"].estimate, "ppl_ratio": tm["ppl_ratio"].estimate}
    return Report(
        metrics=metrics, layers=layers, thresholds=thr.to_dict(), kind=run.kind, kl_quantiles=quantiles,
        by_tag=by_tag, unmatched_layers={k: v for k, v in run.unmatched.items() if v}, nonfinite=nonfinite,
        identity=identity, name=name,
    )


def _identity(probes: Probes, baseline: Any, candidate: nn.Module, described: Any) -> dict[str, Any]:
    """What was compared: model classes and sizes, probe set and hash, the modification's description."""
    from .snapshot import Snapshot

    snapshot = baseline if isinstance(baseline, Snapshot) else None
    identity = {
        "baseline": f"snapshot {snapshot.path or '(in memory)'}" if snapshot else type(baseline).__name__,
        "candidate": type(candidate).__name__,
        "baseline_parameters": None if snapshot else parameter_count(baseline),
        "candidate_parameters": parameter_count(candidate),
        "probes": probes.name,
        "probes_sha256": probes.fingerprint(),
        "n_probes": len(probes),
    }
    # A DecodedModel describes its sampler; the model inside may carry a weight modification too.
    sources = [described] if described is not None and described is not candidate else []
    sources.append(candidate)
    texts: list[str] = []
    for source in sources:
        modification = getattr(source, "hemorrhage_modification", None)
        if modification is not None and hasattr(modification, "describe") and modification.describe() not in texts:
            texts.append(modification.describe())
    if texts:
        identity["modification"] = " + ".join(reversed(texts))
    return identity
