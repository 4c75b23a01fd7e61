"""A GGUF file's tensors against the Hugging Face model it was converted from.

- :func:`gguf_names`: the file's tensor name of each of the model's parameters;
- :func:`dequantised_tensors`: the file's tensors dequantised, under the model's parameter names
  (transformers' own GGUF reader, which also undoes llama.cpp's rotary row order);
- :func:`write_reference_gguf`: the model's own weights in float32, laid out as the file (its
  metadata, tokenizer and tensor names): the unquantised reference of an attribution, for a user
  who has the quantised file and the Hugging Face model but no unquantised conversion.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .capture import find_decoder_blocks
from .errors import InvalidArgument
from .gguf_files import rewrite_gguf
from .models import _quiet_transformers
from .sources.runtime import require

__all__ = ["gguf_names", "dequantised_tensors", "rope_rows_to_llama_cpp", "write_reference_gguf"]

#: Architectures whose converter reorders the query and key rows for llama.cpp's rotary layout.
_ROPE_REORDERED = ("llama",)


def dequantised_tensors(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors dequantised to float32 under the baseline's parameter names, checked for shape."""
    require("gguf", "llamacpp", "reading a GGUF file's tensors")
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    with _quiet_transformers():
        tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    params = dict(model.named_parameters())  # tied weights appear once, under their first name
    for name, tensor in tensors.items():
        if name not in params:
            raise InvalidArgument(f"candidate: {path} holds tensor {name!r}, which the baseline "
                                  f"{type(model).__name__} does not have; pass the model the file was converted from")
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise InvalidArgument(f"candidate: tensor {name!r} is {tuple(tensor.shape)} in {path} and "
                                  f"{tuple(params[name].shape)} in the baseline; pass the model the file was "
                                  "converted from")
    missing = [name for name in params if name not in tensors]
    if missing:
        raise InvalidArgument(f"candidate: {path} has no tensor for the baseline's {missing[0]!r}"
                              f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; pass the model "
                              "the file was converted from")
    return {name: tensor.to(torch.float32) for name, tensor in tensors.items()}


def gguf_names(model: nn.Module, path: Path) -> dict[str, str]:
    """The file's name of each of the baseline's parameters (``model.layers.1.self_attn.q_proj.weight`` ->
    ``blk.1.attn_q.weight``), by gguf's own name table for the file's architecture."""
    gguf = require("gguf", "llamacpp", "reading a GGUF file's tensors")
    architecture = gguf.GGUFReader(path).fields["general.architecture"].contents()
    arch = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == architecture), None)
    if arch is None:
        raise InvalidArgument(f"candidate: {path} is of architecture {architecture!r}, which the installed gguf "
                              "package does not know; upgrade it with `pip install -U gguf`")
    blocks = find_decoder_blocks(model)
    table = gguf.get_tensor_name_map(arch, len(blocks[1]) if blocks else 0)
    out = {}
    for name, _ in model.named_parameters():
        found = table.get_name(name, try_suffixes=(".weight", ".bias"))
        if found is None:
            raise InvalidArgument(f"candidate: no GGUF tensor name is known for the baseline's {name!r} in "
                                  f"architecture {architecture!r}")
        out[name] = found
    return out


def rope_rows_to_llama_cpp(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """``weight``'s rows reordered from Hugging Face's rotary layout to llama.cpp's ("llama" architecture).

    Hugging Face rotates row ``j`` of a head with row ``j + d/2`` (the two halves of the head);
    llama.cpp rotates adjacent rows ``2j`` and ``2j + 1``. Row ``2j + s`` of each head in the file
    is therefore row ``j + s*d/2`` of the same head in the model.
    """
    head_dim = weight.shape[0] // heads
    half = head_dim // 2
    within = [(r % 2) * half + r // 2 for r in range(head_dim)]
    return weight[[h * head_dim + i for h in range(heads) for i in within]]


def write_reference_gguf(model: nn.Module, candidate: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write ``model``'s own weights in float32 to ``target``, laid out as the GGUF file ``candidate``.

    Every metadata key (tokenizer included) and tensor name is the candidate's; each tensor is the
    model's parameter of that name, its rows in llama.cpp's rotary order where the architecture
    needs it, and ``general.file_type`` says all-F32. The file is read back with transformers' GGUF
    reader and must give the model's weights exactly, or it is refused. Needs ``gguf``.
    """
    gguf = require("gguf", "llamacpp", "writing a reference GGUF file")
    candidate, target = Path(candidate), Path(target)
    reader = gguf.GGUFReader(candidate)
    architecture = reader.fields["general.architecture"].contents()
    parameter_of = {name: parameter for parameter, name in gguf_names(model, candidate).items()}
    heads = {"attn_q": f"{architecture}.attention.head_count", "attn_k": f"{architecture}.attention.head_count_kv"}
    replaced = {}
    for tensor in reader.tensors:
        if tensor.name not in parameter_of:
            raise InvalidArgument(f"candidate: {candidate} holds tensor {tensor.name!r}, which the baseline "
                                  f"{type(model).__name__} has no parameter for; pass the model the file was "
                                  "converted from")
        weight = model.get_parameter(parameter_of[tensor.name]).detach().to(torch.float32).cpu()
        kind = tensor.name.split(".")[-2]
        if architecture in _ROPE_REORDERED and kind in heads and weight.dim() == 2:
            weight = rope_rows_to_llama_cpp(weight, int(reader.fields[heads[kind]].contents()))
        data = np.ascontiguousarray(weight.numpy())
        replaced[tensor.name] = tensor._replace(tensor_type=gguf.GGMLQuantizationType.F32, data=data,
                                                n_bytes=data.nbytes)
    rewrite_gguf(candidate, target, metadata={gguf.Keys.General.FILE_TYPE: int(gguf.LlamaFileType.ALL_F32)},
                 tensors_from=replaced)
    read_back = dequantised_tensors(model, target)
    wrong = next((name for name, tensor in read_back.items()
                  if not torch.equal(tensor, model.get_parameter(name).detach().to(torch.float32).cpu())), None)
    if wrong is not None:
        target.unlink()
        raise InvalidArgument(f"a reference GGUF of architecture {architecture!r} cannot be written from the "
                              f"baseline's weights: {wrong!r} does not read back as written (a layout this writer "
                              "does not know); pass your own unquantised conversion as the reference")
    return target
