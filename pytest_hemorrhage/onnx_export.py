"""ONNX files of a Hugging Face causal language model, to run as candidates in ONNX Runtime.

:func:`export_causal_lm` writes a graph from ``input_ids`` and ``attention_mask`` (both
``[batch, sequence]``, any size) to ``logits``; :func:`quantize_dynamic_int8` writes ONNX
Runtime's dynamic int8 quantisation of such a file; :func:`default_model_onnx` keeps both for the
embedded default model in the cache, keyed by the shipped GGUF file's hash like the converted
model (see :mod:`pytest_hemorrhage.models`). Files are written beside their target under a
temporary name and moved into place when complete.

torch, onnx and onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from .errors import HemorrhageError, InvalidArgument
from .sources.runtime import require

__all__ = ["export_causal_lm", "quantize_dynamic_int8", "default_model_onnx", "EXPORTERS", "ONNX_KINDS"]

#: ``exporter=`` choices: torch's dynamo-based exporter, the TorchScript tracer, or dynamo first
#: and the tracer when dynamo fails.
EXPORTERS = ("auto", "dynamo", "torchscript")
#: ``default_model_onnx(kind)`` choices.
ONNX_KINDS = ("fp32", "int8")
_WHAT = "exporting to ONNX"
_ONNX_CACHE_PREFIX = "onnx-smollm2-135m-instruct-"
#: Above this many bytes of weights a graph keeps them in a separate file (protobuf stops at 2 GiB).
_EXTERNAL_DATA_BYTES = 1800 * 1024 * 1024


def _logits_module(model: Any) -> Any:
    """``model`` as a module from (input_ids, attention_mask) to logits alone, without a cache."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    return LogitsOnly(model).eval()


def _example_inputs(model: Any) -> tuple[Any, Any]:
    """Two rows of eight ids, the second padded: a tracer then specialises on neither size nor a full mask."""
    import torch

    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 2)
    ids = torch.arange(16).reshape(2, 8) % vocab
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's exporters print progress and warn about every traced branch; keep a caller's output clean."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            exporter_log.setLevel(level)


def _export(module: Any, inputs: tuple[Any, Any], path: Path, exporter: str, external: bool) -> None:
    import torch

    names = dict(input_names=["input_ids", "attention_mask"], output_names=["logits"])
    with _quiet(), torch.no_grad():
        if exporter == "dynamo":
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            axes = {0: batch, 1: sequence}
            torch.onnx.export(module, inputs, str(path), dynamo=True, external_data=external, verbose=False,
                              dynamic_shapes={"input_ids": axes, "attention_mask": axes}, **names)
        else:
            axes = {0: "batch", 1: "sequence"}
            torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=17,
                              dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes}, **names)


def _publish_files(folder: Path, target: Path) -> None:
    """Move every file of ``folder`` beside ``target``; the graph itself last, so it never names missing data."""
    files = sorted(folder.iterdir(), key=lambda p: p.name == target.name)
    for file in files:
        with open(file, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(file, target.parent / file.name)


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A private folder beside ``target`` whose files become ``target`` (and its data files) on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield folder / target.name
        if not (folder / target.name).is_file():
            raise HemorrhageError(f"the ONNX exporter reported success but wrote no {target.name}")
        _publish_files(folder, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_causal_lm(model: Any, path: str | os.PathLike[str], *, exporter: str = "auto") -> Path:
    """Write ``model`` (a Hugging Face causal LM) as an ONNX graph from token ids and mask to logits.

    ``exporter`` is one of :data:`EXPORTERS`: ``"dynamo"`` (torch's current exporter, slower to run
    but exact for every shape), ``"torchscript"`` (the tracer: fast, and fine for the standard
    Hugging Face decoders), or ``"auto"`` (dynamo, then the tracer if dynamo fails). Both axes of
    both inputs are dynamic. The model is exported on its device and dtype, in eval mode; it is left
    unchanged. Returns the path written.
    """
    import torch

    if exporter not in EXPORTERS:
        raise InvalidArgument(f"exporter must be one of {', '.join(map(repr, EXPORTERS))}, got {exporter!r}")
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgument(f"model must be a Hugging Face causal language model (a torch module), "
                              f"got {type(model).__name__}")
    require("onnx", "onnx", _WHAT)
    if exporter != "torchscript":
        require("onnxscript", "onnx", _WHAT)
    target = Path(path)
    was_training = model.training
    model.eval()
    module = _logits_module(model)
    device = next(model.parameters()).device
    inputs = tuple(t.to(device) for t in _example_inputs(model))
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > _EXTERNAL_DATA_BYTES
    failures = []
    try:
        for name in (("dynamo", "torchscript") if exporter == "auto" else (exporter,)):
            try:
                with _staging(target) as staged:
                    _export(module, inputs, staged, name, external)
                return target
            except (HemorrhageError, InvalidArgument):
                raise
            except Exception as exc:  # the exporters raise many kinds; each is reported below
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
    finally:
        model.train(was_training)
    raise HemorrhageError(
        f"torch could not export {type(model).__name__} to ONNX ({'; '.join(failures)}). Try the other "
        f"exporter (exporter='dynamo' or 'torchscript'), or export with optimum-onnx and pass the file"
    )


def quantize_dynamic_int8(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
                          per_channel: bool = False) -> Path:
    """Write ONNX Runtime's dynamic quantisation of ``source``: int8 weights (QInt8) for every MatMul,
    activations quantised at run time. Returns ``target``."""
    quantization = require("onnxruntime.quantization", "onnx", "ONNX Runtime's int8 quantisation")
    src, dst = Path(source), Path(target)
    if not src.is_file():
        raise InvalidArgument(f"the ONNX file {src} to quantise was not found")
    if src.resolve() == dst.resolve():
        raise InvalidArgument(f"quantize_dynamic_int8: the target {dst} is the source; write the int8 file "
                              "under another name")
    # onnxruntime logs a suggestion to pre-process on the root logger at every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with _staging(dst) as staged:
            quantization.quantize_dynamic(str(src), str(staged), weight_type=quantization.QuantType.QInt8,
                                          per_channel=per_channel)
    finally:
        root.setLevel(level)
    return dst


def default_model_onnx(kind: str = "fp32", *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The embedded default model as an ONNX file: ``"fp32"`` (exported once with torch's dynamo
    exporter, about two minutes on 2 cores) or ``"int8"`` (ONNX Runtime's dynamic int8 of it).

    Both are cached in ``onnx-smollm2-135m-instruct-<sha16>/`` under the cache folder of
    :mod:`pytest_hemorrhage.models`, keyed by the shipped GGUF file's hash.
    """
    from . import models

    if kind not in ONNX_KINDS:
        raise InvalidArgument(f"kind must be one of {', '.join(map(repr, ONNX_KINDS))}, got {kind!r}")
    converted = models.default_model_cache_path(cache_dir=cache_dir)
    folder = converted.parent / (_ONNX_CACHE_PREFIX + converted.name.removeprefix("smollm2-135m-instruct-"))
    fp32 = folder / "model-fp32.onnx"
    if not fp32.is_file():
        model, _ = models.default_model(cache_dir=cache_dir)
        print(f"pytest-hemorrhage: exporting the default model to ONNX once (about two minutes on 2 cores) "
              f"and caching it to {fp32}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        export_causal_lm(model, fp32)
        logging.getLogger(__name__).debug("exported %s in %.1f s", fp32, time.perf_counter() - started)
    if kind == "fp32":
        return fp32
    int8 = folder / "model-int8.onnx"
    if not int8.is_file():
        quantize_dynamic_int8(fp32, int8)
    return int8
