"""compare(): run baseline and candidate over the probes, stream metrics into accumulators, judge.

Probes go through in batches. For each batch the baseline's layer outputs are held only until
the candidate's matching layer has run; per-probe sums are all that survive the batch, so
memory stays flat as the probe set grows.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .capture import ModelAdapter, adapt, capture_layers, eager_attention
from .errors import HemorrhageDetected, HemorrhageError, InvalidArgument
from .metrics.activations import activation_sums, relative_error, sqnr_db
from .metrics.attention import attention_sums
from .metrics.outputs import OUTPUT_METRICS, token_output_metrics
from .probes import Probes, as_probes
from .report import LayerResult, MetricResult, Report
from .stats import Estimate, LogHistogram, UnitAccumulator, decide, mcnemar_exact, ratio_estimate
from .thresholds import THRESHOLD_SPECS, Thresholds

__all__ = ["compare", "assert_no_hemorrhage", "check_pair"]

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


def _storages(model: nn.Module) -> set[int]:
    out = set()
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type != "meta" and t.numel() > 0:
            out.add(t.untyped_storage().data_ptr())
    return out


def check_pair(baseline: nn.Module, candidate: nn.Module) -> None:
    """Reject pairs that cannot give a meaningful comparison (same object, shared storage, meta)."""
    if candidate is baseline:
        raise HemorrhageError(
            "candidate is baseline: the same model object was passed twice, so the comparison "
            "would be empty. Modify a copy (copy.deepcopy(baseline)) and pass that as the candidate."
        )
    for role, model in (("baseline", baseline), ("candidate", candidate)):
        meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
        if meta:
            raise HemorrhageError(
                f"{role}: parameter {meta[0]} is on the meta device (no data); load real weights "
                "(e.g. from_pretrained without device_map='meta', or model.to_empty() then load a state dict)"
            )
    shared = _storages(baseline) & _storages(candidate)
    if shared:
        names = [n for n, p in candidate.named_parameters() if p.untyped_storage().data_ptr() in shared]
        raise HemorrhageError(
            f"baseline and candidate share parameter storage ({len(shared)} tensors, e.g. "
            f"{names[0] if names else 'a buffer'}): the modification was probably applied in place, "
            "so the baseline changed too. Apply it to copy.deepcopy(baseline) instead."
        )


@contextlib.contextmanager
def _eval_mode(models: dict[str, nn.Module]) -> Iterator[None]:
    training = {role: m.training for role, m in models.items()}
    for role, was in training.items():
        if was:
            warnings.warn(
                f"{role} was in train mode (dropout active); it is compared in eval mode and its "
                "mode is restored afterwards. Call .eval() to silence this.",
                UserWarning,
                stacklevel=4,
            )
    try:
        for m in models.values():
            m.eval()
        yield
    finally:
        for role, m in models.items():
            m.train(training[role])


@contextlib.contextmanager
def _on_device(models: list[nn.Module], device: str | torch.device | None) -> Iterator[None]:
    if device is None:
        yield
        return
    device = torch.device(device)
    before = [next(iter(m.parameters()), torch.empty(0)).device for m in models]
    try:
        for m in models:
            m.to(device)
        yield
    finally:
        for m, dev in zip(models, before):
            m.to(dev)


class _Run:
    """Accumulators and bookkeeping of one comparison."""

    def __init__(self, probes: Probes, base: ModelAdapter | None, cand: ModelAdapter, attention: bool, topk: int,
                 snapshot: Any = None) -> None:
        self.probes = probes
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
        if self.snapshot is not None:
            self._run_snapshot_batch(batch)
            return
        stored: dict[str, torch.Tensor] = {}
        mask = batch.attention_mask.to(self.device) if batch.attention_mask is not None else None

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
        with capture_layers(self.cand.layers, measure):
            out_m, attn_m = self.cand.forward(batch, self.attention)
        self._layer_metrics(stored, cand_out, mask)
        stored.clear()
        cand_out.clear()
        self.kind = self.base.kind
        self._outputs(batch, out_b, out_m.to(self.device), mask)
        if self.attention and attn_b is not None and attn_m is not None:
            self._attention(attn_b, attn_m, mask)

    def _layer_metrics(self, base: dict[str, torch.Tensor], cand: dict[str, torch.Tensor],
                       mask: torch.Tensor | None) -> None:
        """All layers of a batch in a few large operations: per-layer small ops cost more than the math."""
        groups: dict[tuple, list[str]] = {}
        for name in cand:
            groups.setdefault((tuple(cand[name].shape), cand[name].device), []).append(name)
        for names in groups.values():
            b = torch.stack([base[n].to(self.device) for n in names])
            m = torch.stack([cand[n].to(self.device) for n in names])
            n_layers, n_rows = b.shape[0], b.shape[1]
            flat_mask = None
            if mask is not None and b.dim() == 4:
                flat_mask = mask.unsqueeze(0).expand(n_layers, -1, -1).reshape(n_layers * n_rows, -1)
            sums = activation_sums(b.flatten(0, 1), m.flatten(0, 1), flat_mask)
            per_layer = sums.view(n_layers, n_rows, 4).sum(1).to(torch.float64)
            index = torch.tensor([self.layer_index[n] for n in names], device=self.device)
            self.layer_sums.index_add_(0, index, per_layer)

    def _run_snapshot_batch(self, batch: Any) -> None:
        cand_out: dict[str, torch.Tensor] = {}

        def keep(name: str, h: torch.Tensor) -> None:
            if name in self.layer_index:
                cand_out[name] = h

        with capture_layers(self.cand.layers, keep):
            out_m, _ = self.cand.forward(batch)
        groups: dict[tuple, list[str]] = {}
        for name, h in cand_out.items():
            groups.setdefault((tuple(h.shape), h.device), []).append(name)
        for names in groups.values():  # all blocks of a batch at once, as for a live baseline
            sums = self.snapshot.layer_sums(names, batch, torch.stack([cand_out[n] for n in names]))
            index = torch.tensor([self.layer_index[n] for n in names], device=self.device)
            self.layer_sums.index_add_(0, index, sums.to(self.device))
        cand_out.clear()
        units, values = self.snapshot.output_metrics(batch, out_m.to(self.device), self.topk)
        self.tokens.add(units, values)
        self.kl_hist.add(values["kl"])

    def _outputs(self, batch: Any, out_b: torch.Tensor, out_m: torch.Tensor, mask: torch.Tensor | None) -> None:
        if out_b.shape != out_m.shape:
            what = "vocabulary" if self.base.kind == "lm" and out_b.shape[:-1] == out_m.shape[:-1] else "output shape"
            raise HemorrhageError(
                f"{what} mismatch: baseline output has shape {tuple(out_b.shape)}, candidate "
                f"{tuple(out_m.shape)}. Compare models with the same vocabulary and output head "
                "(and the same tokenizer)."
            )
        units = torch.tensor(batch.units, device=self.device)
        if self.base.kind == "lm":
            ids = batch.input_ids.to(self.device)
            # Right padding: each row's scored positions are one contiguous slice, so the logits are
            # read through views instead of being gathered into a copy.
            lengths = mask.sum(1).tolist()
            parts = [token_output_metrics(out_b[r, : n - 1], out_m[r, : n - 1], ids[r, 1:n], topk=self.topk)
                     for r, n in enumerate(lengths) if n > 1]
            values = {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}
            if not values:
                return
            rows = torch.cat([torch.full((int(n) - 1,), r, device=self.device)
                              for r, n in enumerate(lengths) if n > 1])
            self.tokens.add(units[rows], values)
            self.kl_hist.add(values["kl"])
            return
        # Tensor outputs (encoders, classifiers, vision): one unit per probe row.
        token_mask = mask if (mask is not None and out_b.dim() == 3) else None
        self.output_sums.index_add_(0, units, activation_sums(out_b, out_m, token_mask).to(torch.float64))
        if self.base.kind == "classifier":
            self.labels[units, 0] = out_b.argmax(-1).to(self.device)
            self.labels[units, 1] = out_m.argmax(-1).to(self.device)
            if batch.labels is not None:
                self.labels[units, 2] = batch.labels.to(self.device).long().view(-1)

    def _attention(self, attn_b: tuple, attn_m: tuple, mask: torch.Tensor | None) -> None:
        for i, (a_b, a_m) in enumerate(zip(attn_b, attn_m)):
            if a_b is None or a_m is None or a_b.shape != a_m.shape:
                continue
            sums = attention_sums(a_b, a_m.to(self.device), mask).sum(0).to(torch.float64)
            if i in self.attn_sums:
                self.attn_sums[i] += sums
            else:
                self.attn_sums[i] = sums

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
    candidate: nn.Module,
    probes: Any = None,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    layers: Any = "auto",
    *,
    attention: bool = False,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    output: str = "auto",
    topk: int = 5,
    progress: bool = False,
    name: str | None = None,
    **threshold_overrides: Any,
) -> Report:
    """Compare ``candidate`` against ``baseline`` on ``probes`` and judge against ``thresholds``.

    ``layers``: "auto" (decoder blocks found by structure), None (outputs only), a module name
    or glob pattern, a list of them, or a callable ``(name, module) -> bool``.
    ``attention=True`` switches Hugging Face models to eager attention for the run and adds
    per-head Jensen-Shannon divergence and entropy shift per layer.
    Extra keyword arguments are threshold overrides (``max_kl=0.01``).
    """
    thr = _resolve_thresholds(thresholds, threshold_overrides)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size: must be a positive integer, got {batch_size!r}")
    if not isinstance(topk, int) or topk < 1:
        raise InvalidArgument(f"topk: must be a positive integer, got {topk!r}")
    from .snapshot import Snapshot

    snapshot = baseline if isinstance(baseline, Snapshot) else None
    if snapshot is None and not isinstance(baseline, nn.Module):
        raise InvalidArgument(
            f"baseline: expected a torch.nn.Module or a Snapshot (load_snapshot), got {type(baseline).__name__}"
        )
    if snapshot is not None:
        if not isinstance(candidate, nn.Module):
            raise InvalidArgument(f"candidate: expected a torch.nn.Module, got {type(candidate).__name__}")
        if probes is None:
            probe_set = snapshot.probes
        else:
            probe_set = as_probes(probes)
            snapshot.check_identity(probes=probe_set)
        base = None
        models = {"candidate": candidate}
    else:
        check_pair(baseline, candidate)
        probe_set = as_probes(probes, baseline)
        base = adapt(baseline, layers, output)
        models = {"baseline": baseline, "candidate": candidate}
    cand = adapt(candidate, layers, output)
    with _on_device(list(models.values()), device), _eval_mode(models), \
            eager_attention(baseline, attention and snapshot is None), eager_attention(candidate, attention), \
            torch.inference_mode():
        run = _Run(probe_set, base, cand, attention, topk, snapshot)
        pad_id = _pad_id(candidate if snapshot is not None else baseline)
        batches = probe_set.batches(batch_size, pad_id=pad_id)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=math.ceil(len(probe_set) / batch_size), desc="hemorrhage", unit="batch")
        for batch in batches:
            run.run_batch(batch)
    return _build_report(run, thr, probe_set, baseline, candidate, name)


def _pad_id(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    pad = getattr(config, "pad_token_id", None) if config is not None else None
    return int(pad) if isinstance(pad, int) and pad >= 0 else 0


def _build_report(run: _Run, thr: Thresholds, probes: Probes, baseline: nn.Module, candidate: nn.Module,
                  name: str | None) -> Report:
    layers, nonfinite = run.layers()
    if run.kind == "lm":
        metrics = _lm_metrics(run, thr)
        quantiles = {k: run.kl_hist.quantile(q) for k, q in _KL_QUANTILES.items()}
        quantiles["max"] = float(run.kl_hist.max)
        if nonfinite is None and not all(math.isfinite(m.estimate) for m in metrics.values()):
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
    from .snapshot import Snapshot

    snapshot = baseline if isinstance(baseline, Snapshot) else None
    identity = {
        "baseline": f"snapshot {snapshot.path or '(in memory)'}" if snapshot else type(baseline).__name__,
        "candidate": type(candidate).__name__,
        "baseline_parameters": None if snapshot else sum(p.numel() for p in baseline.parameters()),
        "candidate_parameters": sum(p.numel() for p in candidate.parameters()),
        "probes": probes.name,
        "probes_sha256": probes.fingerprint(),
        "n_probes": len(probes),
    }
    modification = getattr(candidate, "hemorrhage_modification", None)
    if modification is not None and hasattr(modification, "describe"):
        identity["modification"] = modification.describe()
    return Report(
        metrics=metrics, layers=layers, thresholds=thr.to_dict(), kind=run.kind, kl_quantiles=quantiles,
        by_tag=by_tag, unmatched_layers={k: v for k, v in run.unmatched.items() if v}, nonfinite=nonfinite,
        identity=identity, name=name,
    )


def assert_no_hemorrhage(
    baseline: Any,
    candidate: nn.Module,
    probes: Any = None,
    *,
    thresholds: Thresholds | Mapping[str, Any] | None = None,
    layers: Any = "auto",
    **kwargs: Any,
) -> Report:
    """Compare and raise :class:`HemorrhageDetected` (an AssertionError) unless the check passes.

    Keyword arguments are those of :func:`compare`, threshold overrides included.
    Returns the report when the check passes.
    """
    report = compare(baseline, candidate, probes, thresholds=thresholds, layers=layers, **kwargs)
    if not report.passed:
        raise HemorrhageDetected(report.to_text(), report)
    return report
