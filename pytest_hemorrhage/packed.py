"""Weights that another quantizer packed: tensor subclasses and quantized modules.

torchao (``quantize_``) and optimum-quanto (``quantize`` + ``freeze``) keep ``nn.Linear`` modules
but replace their weights by tensor subclasses that wrap integer data and scales;
``torch.ao.quantization.quantize_dynamic`` and HQQ replace each ``nn.Linear`` by a quantized
module whose weight is packed integer data, no float ``weight`` at all. Such a model runs and can
be hooked, but its weights cannot be read or written as plain float tensors: the mitigations that
edit weights say so (:func:`packed_by`) instead of failing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

__all__ = ["storage_pointers", "packed_by", "packed_modules", "is_packed_tensor", "cannot_edit", "module_tree_copy",
           "without_autograd"]

# Module prefixes of quantized linear modules -> the library that made them: torch's own
# (torch.ao.quantization.quantize_dynamic, convert) and HQQ's HQQLinear.
_QUANTIZED_MODULES = {"torch.ao.nn.quantized": "torch.ao.quantization", "torch.nn.quantized": "torch.ao.quantization",
                      "torch.ao.nn.intrinsic.quantized": "torch.ao.quantization", "hqq.": "hqq"}


def storage_pointers(tensor: torch.Tensor) -> set[int]:
    """The data pointers of the storages behind ``tensor``: its own, or, for a wrapper subclass
    (torchao, quanto), those of the plain tensors it wraps (a wrapper has no storage of its own)."""
    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        return set().union(*(storage_pointers(getattr(tensor, name)) for name in names))
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return set()
    return {tensor.untyped_storage().data_ptr()}


def is_packed_tensor(tensor: torch.Tensor) -> bool:
    """A quantized tensor: a wrapper subclass (torchao, quanto) or one of torch's quantized dtypes.
    torch.distributed's DTensor, a wrapper of float shards, is none."""
    plain = tensor.data if isinstance(tensor, nn.Parameter) else tensor
    if type(plain).__module__.startswith("torch.distributed"):
        return False
    return is_traceable_wrapper_subclass(plain) or plain.is_quantized


def _library(kind: type) -> str:
    """``torchao``, ``optimum.quanto`` or ``torch.ao.quantization``: who made an object of class ``kind``."""
    module = kind.__module__
    if module.startswith("optimum.quanto"):
        return "optimum.quanto"
    if module == "torch" or module.startswith("torch."):  # a quantized module, or a tensor of a quantized dtype
        return "torch.ao.quantization"
    return module.split(".")[0]


def _packing(module: nn.Module) -> str | None:
    """``"torchao (Int8Tensor)"`` when ``module`` holds packed weights, else None."""
    kind = type(module)
    library = next((name for prefix, name in _QUANTIZED_MODULES.items() if kind.__module__.startswith(prefix)), None)
    if library is not None:
        return f"{library} ({kind.__module__}.{kind.__name__})"
    for tensor in module._parameters.values():
        if tensor is not None and is_packed_tensor(tensor):
            plain = tensor.data if isinstance(tensor, nn.Parameter) else tensor
            return f"{_library(type(plain))} ({type(plain).__name__})"
    return None


def packed_modules(model: nn.Module) -> dict[str, str]:
    """``{module name: who packed it}`` for every module of ``model`` whose own weights are packed
    (the outermost such module: a quantized linear, not the packed parameters inside it)."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if any(name.startswith(outer + ".") for outer in found):
            continue
        packing = _packing(module)
        if packing is not None:
            found[name] = packing
    return found


def packed_by(model: object) -> str | None:
    """``"torchao (Int8Tensor)"``: who packed ``model``'s weights (the first such module), else None."""
    if not isinstance(model, nn.Module):
        return None
    for module in model.modules():
        packing = _packing(module)
        if packing is not None:
            return packing
    return None


def without_autograd(*models: object) -> AbstractContextManager:
    """``torch.inference_mode()``, or ``torch.no_grad()`` when one of ``models`` holds packed weights:
    some tensor subclasses (optimum-quanto's 4-bit weights) make views that inference mode refuses
    ("Cannot set version_counter for inference tensor")."""
    return torch.no_grad() if any(packed_by(m) is not None for m in models) else torch.inference_mode()


def cannot_edit(model: object, what: str) -> str | None:
    """``"<what> cannot run: the candidate's weights are packed by torchao (Int8Tensor); ..."``, the
    reason a mitigation that reads or rewrites float weights gives for a packed ``model``, else None."""
    who = packed_by(model)
    if who is None:
        return None
    return (f"{what} cannot run: the candidate's weights are packed by {who}, not float tensors it can "
            "read or rewrite; apply the fix to the float model before quantizing it")


def module_tree_copy(model: nn.Module) -> nn.Module:
    """A new tree of modules over the same tensors: modules can be swapped in the copy, and hooks
    registered on it, without touching ``model``. Works where ``copy.deepcopy`` does not (frozen
    optimum-quanto weights cannot be deep-copied) and costs no weight memory; the tensors are shared,
    so the copy must not write them."""
    new = nn.Module.__new__(type(model))
    new.__dict__ = {key: value.copy() if isinstance(value, dict) else value for key, value in model.__dict__.items()}
    for name, child in model._modules.items():
        new._modules[name] = None if child is None else module_tree_copy(child)
    return new
