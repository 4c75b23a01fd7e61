"""The engine, compare(): pair two sources over the probes, stream metrics into accumulators, judge.

Probes go through in batches. For each batch both sources are observed (see
:mod:`pytest_hemorrhage.sources`) and the baseline's observation measures the candidate's;
per-probe sums are all that survive the batch, so memory stays flat as the probe set grows.
"""

from __future__ import annotations

import gc
import math
import time
import warnings
from contextlib import ExitStack
from dataclasses import replace
from typing import Any, Callable, Mapping

import torch

from . import arguments
from .capture import host_to
from .errors import HemorrhageError, InvalidArgument
from .generation import generation_metrics
from .metrics.activations import relative_error, sqnr_db
from .metrics.outputs import OUTPUT_METRICS
from .packed import without_autograd
from .probes import ProbeBatch, Probes
from .progress import COMPARED, COMPARING, OnProgress, ProgressEvent
from .report import LayerResult, MetricResult, Report
from .sequential import SequentialStop
from .sources import Observation, Source
from .sources.pairing import pair_sources
from .stats import Estimate, LogHistogram, UnitAccumulator, decide, mcnemar_exact, ratio_estimate
from .thresholds import THRESHOLD_SPECS, Thresholds
from .validate import is_out_of_memory

__all__ = ["compare"]

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


class _Run:
    """Accumulators and bookkeeping of one comparison of ``baseline`` against ``candidate``."""

    def __init__(self, probes: Probes, baseline: Source, candidate: Source, attention: bool, topk: int) -> None:
        self.baseline = baseline
        self.candidate = candidate
        self.attention = attention and baseline.attentions and candidate.attentions
        self.topk = topk
        self.decoding = baseline.decoding is not None or candidate.decoding is not None
        self.device = baseline.device if baseline.device is not None else candidate.device
        self.kind = baseline.kind
        n = len(probes)
        self.base_names = base_names = baseline.layer_names
        cand_names = candidate.layer_names
        in_base, in_cand = set(base_names), set(cand_names)
        self.layer_names = [name for name in base_names if name in in_cand]
        # A runtime candidate has no blocks at all: a note says so once, instead of listing every baseline block.
        runtime = not cand_names and candidate.model is None
        self.unmatched = {
            "baseline": [] if runtime else [name for name in base_names if name not in in_cand],
            "candidate": [name for name in cand_names if name not in in_base],
        }
        self.layer_index = {name: i for i, name in enumerate(self.layer_names)}
        self.layer_sums = torch.zeros(len(self.layer_names), 4, dtype=torch.float64, device=self.device)
        self.tokens = UnitAccumulator(n, OUTPUT_METRICS, self.device)
        self.kl_hist = LogHistogram(device=self.device)
        self.output_sums = torch.zeros(n, 4, dtype=torch.float64, device=self.device)
        self.labels = torch.full((n, 3), -1, dtype=torch.long, device=self.device)  # base, cand, true
        self.attn_sums: dict[int, torch.Tensor] = {}

    @property
    def bounds(self) -> dict[str, str]:
        """Metrics the candidate gives only lower bounds of, with the reason (see :func:`_bounded`)."""
        return dict(getattr(self.candidate, "metric_bounds", None) or {})

    # ------------------------------------------------------------------ per batch
    def run_batch(self, batch: ProbeBatch) -> None:
        """Measure one batch; accumulators change only once the whole batch has been measured.

        That makes a batch safe to retry in smaller pieces after an out-of-memory error.
        """
        for commit in self._measure(batch):
            commit()

    def _measure(self, batch: ProbeBatch) -> list:
        device = self.device
        mask = host_to(batch.attention_mask, device) if batch.attention_mask is not None else None
        base = self.baseline.observe(batch, self.layer_names, self.attention)
        cand = self.candidate.observe(batch, base.block_names, self.attention)
        commits = self._layer_commits(base, cand, mask)
        for observation in (base, cand):  # the blocks' outputs are not needed past this point
            observation.blocks.clear()
        self.kind = base.kind
        if self.kind == "lm":
            measured = base.token_metrics(cand, self.topk, device)
            if measured is not None:
                units, values = measured
                commits += [lambda: self.tokens.add(units, values), lambda: self.kl_hist.add(values["kl"])]
        else:
            units, sums, labels = base.output_sums(cand, mask, device)
            commits.append(lambda: self.output_sums.index_add_(0, units, sums))
            if labels is not None:
                commits.append(lambda: self._set_labels(units, labels))
        if self.attention:
            attention = base.attention_sums(cand, mask, device)
            commits.append(lambda: self._add_attention(attention))
        return commits

    def _layer_commits(self, base: Observation, cand: Observation, mask: torch.Tensor | None) -> list:
        """All blocks of a batch, grouped by output shape; each group's per-token sums are reduced together."""
        commits = []
        groups: dict[tuple, list[str]] = {}
        for name, h in cand.blocks.items():
            groups.setdefault((tuple(h.shape), h.device), []).append(name)
        for names in groups.values():
            sums = base.layer_sums(names, cand, mask, self.device)
            index = host_to(torch.tensor([self.layer_index[n] for n in names]), self.device)
            commits.append(lambda index=index, sums=sums: self.layer_sums.index_add_(0, index, sums))
        return commits

    def _set_labels(self, units: torch.Tensor, labels: tuple) -> None:
        for column, values in enumerate(labels):
            if values is not None:
                self.labels[units, column] = values

    def _add_attention(self, attention: Mapping[int, torch.Tensor]) -> None:
        for i, sums in attention.items():
            self.attn_sums[i] = self.attn_sums[i] + sums if i in self.attn_sums else sums

    # ------------------------------------------------------------------ results
    def layers(self) -> tuple[list[LayerResult], dict[str, str] | None]:
        sums = self.layer_sums.cpu().tolist()
        results, nonfinite = [], None
        for idx, (name, (signal, error, cos, tokens)) in enumerate(zip(self.layer_names, sums)):
            if nonfinite is None and not all(math.isfinite(v) for v in (error, cos)):
                if not math.isfinite(signal):
                    raise HemorrhageError(
                        f"the baseline produced non-finite values (NaN/Inf) in {name}; check the baseline "
                        "model and its dtype (fp16 overflow?) before comparing against it"
                    )
                nonfinite = {"layer": name, "where": "activations"}
            attn = self.attn_sums.get(self.base_names.index(name))
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
    return _bounded(run.bounds, {
        "kl": _metric("kl", est["kl"], thresholds, n_tokens),
        "top1": _metric("top1", est["top1"], thresholds, n_tokens),
        "topk": _metric("topk", est["topk"], thresholds, n_tokens, k=run.topk),
        "ppl_ratio": _metric("ppl_ratio", est["dnll"].map(math.exp), thresholds, n_tokens,
                             mean_dnll=est["dnll"].value),
        "rms_dp": _metric("rms_dp", est["dp2"].map(lambda x: math.sqrt(max(x, 0.0))), thresholds, n_tokens),
    })


def _bounded(bounds: Mapping[str, str], metrics: dict[str, MetricResult]) -> dict[str, MetricResult]:
    """Mark the metrics ``bounds`` names (metric -> why) as lower bounds, and judge them as such.

    A lower bound can prove harm on a metric where high is harmful, never its absence; on one
    where low is harmful it can prove the absence of harm, never harm. The verdict it cannot
    give becomes inconclusive, and more probes would not help, so none are suggested.
    """
    for name, reason in bounds.items():
        m = metrics.get(name)
        if m is None:
            continue
        m.bound = "lower"
        m.extra["bound_reason"] = reason
        unprovable = "pass" if m.direction == "max" else "fail"
        if m.verdict in (unprovable, "inconclusive"):
            m.verdict, m.more_probes_needed = "inconclusive", None
    return metrics


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
    allow_tokenizer_mismatch: bool = False,
    on_progress: OnProgress | None = None,
    **threshold_overrides: Any,
) -> Report:
    """Compare ``candidate`` against ``baseline`` on ``probes`` and judge against ``thresholds``.

    ``baseline`` and ``candidate`` are ``nn.Module`` objects; the baseline may be a :class:`Snapshot`;
    either may be a :class:`~pytest_hemorrhage.modify.DecodedModel` (a model plus decoding
    settings), and then KL, top-1 and top-k compare the distributions tokens are drawn from
    (after temperature, top-k, top-p and repetition penalty) along the probe tokens; either may
    be a :class:`~pytest_hemorrhage.sources.Source` of its own.
    ``layers``: "auto" (decoder blocks found by structure), None (outputs only), a module name
    or glob pattern, a list of them, or a callable ``(name, module) -> bool``.
    ``attention=True`` switches Hugging Face models to eager attention for the run and adds
    per-head Jensen-Shannon divergence and entropy shift per layer.
    ``generation=N`` also continues each probe's first tokens greedily for ``N`` new tokens with
    both models and reports where the continuations first diverge (``report.generation``).
    ``sequential=True`` visits the probes in a seeded random order and stops as soon as a
    confidence sequence (valid under optional stopping) shows every gated metric clearly passing
    or one clearly failing; ``report.sequential`` says how many probes were used.
    The tokenizers known for the models and the probes must agree with each other and with the
    models (:func:`~pytest_hemorrhage.validate.check_tokenizers`); ``allow_tokenizer_mismatch=True``
    turns a mismatch into a warning and a note in the report, for deliberate cases.
    A batch that runs out of memory is retried in halves and the rest of the run uses the
    smaller batch size (with a warning). ``progress=True`` shows a progress bar on standard
    error; ``on_progress`` is called with a :class:`~pytest_hemorrhage.progress.ProgressEvent`
    after each batch (probes measured, seconds so far) and once at the end (the verdict).
    Extra keyword arguments are threshold overrides (``max_kl=0.01``).
    """
    thr = _resolve_thresholds(thresholds, threshold_overrides)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size: must be a positive integer, got {batch_size!r}")
    if not isinstance(topk, int) or topk < 1:
        raise InvalidArgument(f"topk: must be a positive integer, got {topk!r}")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise InvalidArgument(f"generation: must be a number of new tokens >= 0, got {generation!r}")
    base, cand, probe_set, notes = pair_sources(baseline, candidate, probes, layers=layers, output=output,
                                                generation=generation,
                                                allow_tokenizer_mismatch=arguments.flag("allow_tokenizer_mismatch",
                                                                                        allow_tokenizer_mismatch))
    _check_applies(base, cand, attention, topk)
    with ExitStack() as opened:
        for source in (base, cand):
            opened.enter_context(source.opened(device, attention))
        opened.enter_context(without_autograd(*(getattr(source, "model", None) for source in (base, cand))))
        run = _Run(probe_set, base, cand, attention, topk)
        pad = next((source.pad_id for source in (base, cand) if source.pad_id is not None), 0)
        stopper = SequentialStop(len(probe_set), thr) if sequential else None
        counter = _ProbeCounter(on_progress, name, len(probe_set))
        used = _run_batches(run, probe_set, batch_size, pad, progress, stopper, counter)
        gen = None
        if generation:
            gen = generation_metrics(base.model, cand.model, probe_set, generation, batch_size=used,
                                     decoding=(base.decoding, cand.decoding))
    report = _build_report(run, thr, probe_set, name)
    report.notes.extend(notes)
    report.notes.extend(f"{report.metrics[m].label} is a lower bound: {why}"
                        for m, why in run.bounds.items() if m in report.metrics)
    report.generation = gen
    if stopper is not None:
        stopper.annotate(report, run.kind, run.tokens)
    if run.decoding:
        report.identity["decoding"] = {
            role: source.decoding.describe() if source.decoding is not None else "model distribution"
            for role, source in (("baseline", base), ("candidate", cand))
        }
    if used != batch_size:
        report.identity["batch_size"] = used
        report.notes.append(f"ran out of memory at batch size {batch_size}; measured with batch size {used}")
    if on_progress is not None:
        on_progress(ProgressEvent(COMPARED, counter.seconds(), name, counter.done, len(probe_set),
                                  outcome=report.verdict))
    return report


def _check_applies(baseline: Source, candidate: Source, attention: bool, topk: int) -> None:
    """Refuse options the sources cannot honour, rather than leave them out unsaid."""
    if attention:
        blind = next((source for source in (baseline, candidate) if not source.attentions), None)
        if blind is not None:
            raise InvalidArgument(
                f"attention=True: the {blind.role} ({blind.label}) gives no attention probabilities (a snapshot "
                "records none); compare against the live baseline model for attention metrics, or leave attention off"
            )
    for source in (baseline, candidate):
        limit = getattr(source, "topk_limit", None)  # a Source of its own may not say
        if limit is not None and topk > limit:
            raise InvalidArgument(
                f"topk: {topk} asked for, but the {source.role} ({source.label}) holds the top {limit} tokens only; "
                f"pass topk={limit} or less, or record the snapshot again with record_snapshot(..., topk={topk})"
            )


class _ProbeCounter:
    """Counts the probes measured and tells ``on_progress`` after each batch (and once before the first)."""

    def __init__(self, on_progress: OnProgress | None, name: str | None, total: int) -> None:
        self._on_progress, self._name, self._total = on_progress, name, total
        self._start = time.perf_counter()
        self.done = 0
        self(0)

    def seconds(self) -> float:
        return time.perf_counter() - self._start

    def __call__(self, probes: int) -> None:
        self.done += probes
        if self._on_progress is not None:
            self._on_progress(ProgressEvent(COMPARING, self.seconds(), self._name, self.done, self._total))


def _split(batch: ProbeBatch) -> tuple[ProbeBatch, ProbeBatch]:
    """Two halves of a probe batch (rows keep their unit indices)."""
    half = len(batch.units) // 2

    def part(sl: slice) -> ProbeBatch:
        def cut(t: Any) -> Any:
            return t[sl] if t is not None else None

        return replace(batch, units=batch.units[sl], input_ids=cut(batch.input_ids),
                       attention_mask=cut(batch.attention_mask), inputs=cut(batch.inputs), labels=cut(batch.labels))

    return part(slice(0, half)), part(slice(half, None))


def _run_batches(run: _Run, probes: Probes, batch_size: int, pad_id: int, progress: bool,
                 stopper: SequentialStop | None = None, measured: Callable[[int], None] | None = None) -> int:
    """Feed the probes through ``run``; on out-of-memory halve the batch. Returns the batch size used.

    With a ``stopper``, probes go in its random order and the loop ends once it decides.
    ``measured(n)`` is called after each batch of ``n`` probes.
    """
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
            if measured is not None:
                measured(len(batch.units))
            if stopper is not None and pending and stopper.should_stop(run.kind, run.tokens):
                break
    finally:
        if bar is not None:
            bar.close()
    return size


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _build_report(run: _Run, thr: Thresholds, probes: Probes, name: str | None) -> Report:
    # Identity first: it needs no result, so on an accelerator this host work overlaps the last
    # batch's queued kernels instead of following the first read-back of the accumulators.
    identity = _identity(probes, run.baseline, run.candidate)
    layers, nonfinite = run.layers()
    if run.kind == "lm":
        metrics = _lm_metrics(run, thr)
        quantiles = {k: run.kl_hist.quantile(q) for k, q in _KL_QUANTILES.items()}
        quantiles["max"] = float(run.kl_hist.max)
        # A sampler that truncates the vocabulary gives an honest infinite KL; only NaN means broken numbers then.
        broken = (math.isnan if run.decoding else (lambda x: not math.isfinite(x)))
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


def _identity(probes: Probes, baseline: Source, candidate: Source) -> dict[str, Any]:
    """What was compared: the two sides and their sizes, probe set and hash, the modification's description."""
    identity = {
        "baseline": baseline.label,
        "candidate": candidate.label,
        "baseline_parameters": baseline.parameters,
        "candidate_parameters": candidate.parameters,
        "probes": probes.name,
        "probes_sha256": probes.fingerprint(),
        "n_probes": len(probes),
    }
    if candidate.modification is not None:
        identity["modification"] = candidate.modification
    return identity
