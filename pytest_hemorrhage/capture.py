"""Model adapters: find what to compare inside a model, and capture it with hooks.

Hugging Face decoder-only models are recognised by structure (the ``nn.ModuleList`` of
identical blocks holding most parameters, and a causal-LM output), not by a list of
architectures. Plain ``nn.Module``s choose layers with a names filter.
"""

from __future__ import annotations

import contextlib
import itertools
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from .errors import InvalidArgument

__all__ = ["ModelAdapter", "adapt", "find_decoder_blocks", "capture_layers", "LayerSpec", "module_tensors",
           "parameter_count"]

LayerSpec = "str | Sequence[str] | Callable[[str, nn.Module], bool] | None"


def module_tensors(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(parameters, buffers) of ``model`` and its submodules, each once, from one walk over the modules.

    ``parameters()`` and ``buffers()`` each walk the module tree through a stack of generators;
    on a large model every such walk costs a measurable slice of a GPU comparison's host time.
    """
    params: dict[int, torch.Tensor] = {}
    buffers: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for registry, out in ((module._parameters, params), (module._buffers, buffers)):
            for t in registry.values():
                if t is not None:
                    out.setdefault(id(t), t)
    return list(params.values()), list(buffers.values())


def parameter_count(model: nn.Module) -> int:
    """Number of parameter elements, shared (tied) parameters counted once, as ``model.parameters()`` does."""
    return sum(p.numel() for p in module_tensors(model)[0])


def find_decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The ``ModuleList`` of same-class blocks with the most parameters, as (name, list)."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        classes = {type(child) for child in module}
        if len(classes) != 1:
            continue
        n_params = parameter_count(module)
        if n_params == 0:
            continue
        if best is None or n_params > best[0]:
            best = (n_params, name, module)
    return None if best is None else (best[1], best[2])


def _select_layers(model: nn.Module, layers: Any) -> list[tuple[str, nn.Module]]:
    if layers is None or layers is False:
        return []
    if isinstance(layers, str) and layers == "auto":
        found = find_decoder_blocks(model)
        if found is None:
            return []
        prefix, blocks = found
        return [(f"{prefix}.{i}" if prefix else str(i), block) for i, block in enumerate(blocks)]
    named = [(n, m) for n, m in model.named_modules() if n]
    if callable(layers):
        chosen = [(n, m) for n, m in named if layers(n, m)]
        what = "the layers filter"
    else:
        patterns = [layers] if isinstance(layers, str) else list(layers)
        chosen = []
        for pattern in patterns:
            hits = [(n, m) for n, m in named if n == pattern or fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise InvalidArgument(
                    f"layers: no module of {type(model).__name__} is named {pattern!r}; names look like "
                    f"{', '.join(n for n, _ in named[:5])} (see model.named_modules())"
                )
            chosen.extend(h for h in hits if h not in chosen)
        what = f"layers={layers!r}"
    if not chosen:
        raise InvalidArgument(f"layers: {what} selected no module of {type(model).__name__}")
    return chosen


def host_to(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a host tensor to ``device`` without stalling the launch queue.

    A copy from pageable host memory to a GPU waits for every queued kernel first; from pinned
    memory it is queued like a kernel, so the host keeps launching the next batch's work.
    """
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


@dataclass
class ModelAdapter:
    """How to run a model on probes and what to read from it."""

    model: nn.Module
    layers: list[tuple[str, nn.Module]] = field(default_factory=list)
    kind: str = "auto"  # "lm", "classifier" or "tensor", settled on the first batch
    _device: torch.device | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        """Where inputs go; found once (walking a large model's parameters every batch costs host time)."""
        if self._device is None:
            # Offloaded (meta) weights are loaded on demand by accelerate: the first real one says where.
            self._device = torch.device("cpu")
            for t in itertools.chain(self.model.parameters(), self.model.buffers()):
                if t.device.type != "meta":
                    self._device = t.device
                    break
        return self._device

    @property
    def is_hf(self) -> bool:
        return hasattr(self.model, "config") and hasattr(self.model, "can_generate")

    def forward(self, batch: Any, attentions: bool = False) -> tuple[torch.Tensor, tuple | None]:
        """Run one probe batch; return (output tensor, attention probabilities or None)."""
        device = self.device
        if batch.input_ids is not None:
            kwargs: dict[str, Any] = {"attention_mask": host_to(batch.attention_mask, device)}
            if self.is_hf:
                kwargs["use_cache"] = False
                if attentions:
                    kwargs["output_attentions"] = True
            out = self.model(host_to(batch.input_ids, device), **kwargs)
        else:
            out = self.model(host_to(batch.inputs, device))
        tensor = _output_tensor(out)
        attn = getattr(out, "attentions", None) if attentions else None
        if self.kind == "auto":
            self.kind = self._infer_kind(tensor, batch)
        return tensor, attn

    def _infer_kind(self, tensor: torch.Tensor, batch: Any) -> str:
        can_generate = getattr(self.model, "can_generate", None)
        causal = bool(callable(can_generate) and can_generate())
        if batch.input_ids is not None and causal and tensor.dim() == 3:
            return "lm"
        if tensor.dim() == 2 and tensor.is_floating_point() and _looks_like_classifier(self.model):
            return "classifier"
        return "tensor"


def _looks_like_classifier(model: nn.Module) -> bool:
    name = type(model).__name__
    return "Classification" in name or "Classifier" in name or getattr(
        getattr(model, "config", None), "num_labels", None
    ) not in (None,) and "For" in name


def _output_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state", "prediction_logits"):
        value = getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        for value in out.values():
            if isinstance(value, torch.Tensor):
                return value
    raise InvalidArgument(
        f"model output: cannot find a tensor in a {type(out).__name__}; return a tensor, a tuple "
        "starting with one, or a Hugging Face output with logits / last_hidden_state"
    )


def adapt(model: nn.Module, layers: Any = "auto", kind: str = "auto") -> ModelAdapter:
    """Build the adapter for ``model``; ``layers``: "auto", None, a name/pattern, a list, or a callable."""
    if not isinstance(model, nn.Module):
        raise InvalidArgument(
            f"model: expected a torch.nn.Module, got {type(model).__name__}; pass the model object "
            "(or a snapshot from load_snapshot for the baseline)"
        )
    if kind not in ("auto", "lm", "classifier", "tensor"):
        raise InvalidArgument(f"output: must be 'auto', 'lm', 'classifier' or 'tensor', got {kind!r}")
    return ModelAdapter(model=model, layers=_select_layers(model, layers), kind=kind)


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return getattr(output, "last_hidden_state", None)


@contextlib.contextmanager
def capture_layers(
    layers: Sequence[tuple[str, nn.Module]],
    on_output: Callable[[str, torch.Tensor], None],
) -> Iterator[None]:
    """Call ``on_output(name, hidden_state)`` for each layer's forward output; hooks always removed."""
    handles = []
    try:
        for name, module in layers:
            def hook(_mod: nn.Module, _inp: Any, output: Any, _name: str = name) -> None:
                tensor = _first_tensor(output)
                if tensor is not None:
                    on_output(_name, tensor.detach())

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def eager_attention(model: nn.Module, wanted: bool) -> Iterator[bool]:
    """Switch a Hugging Face model to eager attention (which returns probabilities) for the block."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None) if config is not None else None
    if not wanted or config is None:
        yield False
        return
    switched = False
    try:
        if previous != "eager":
            setter = getattr(model, "set_attn_implementation", None)
            if callable(setter):
                setter("eager")
            else:
                config._attn_implementation = "eager"
            switched = True
        yield True
    finally:
        if switched and previous is not None:
            setter = getattr(model, "set_attn_implementation", None)
            if callable(setter):
                setter(previous)
            else:
                config._attn_implementation = previous
