"""Open a candidate that runs outside PyTorch: a GGUF file in llama.cpp, an ONNX file in ONNX Runtime,
or a model behind an OpenAI-compatible completions server.

Each opener returns a source that stands wherever a candidate model does::

    snapshot = ph.load_snapshot("baseline.safetensors")
    ph.assert_no_hemorrhage(snapshot, ph.llama_cpp("model-Q4_K_M.gguf"))

The runtimes are optional extras; the core imports none of them, and opening one that is not
installed names the install command.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import InvalidArgument

__all__ = ["llama_cpp", "onnx_runtime", "openai_server", "open_runtime", "RUNTIMES"]


def llama_cpp(path: str | os.PathLike[str], **options: Any) -> Any:
    """A GGUF file run by llama.cpp (``pip install 'pytest-hemorrhage[llamacpp]'``); see :class:`~.sources.llamacpp.LlamaCppSource`."""
    from .sources.llamacpp import LlamaCppSource

    return LlamaCppSource(path, **options)


def onnx_runtime(path: str | os.PathLike[str], **options: Any) -> Any:
    """An ONNX file run by ONNX Runtime (``pip install 'pytest-hemorrhage[onnx]'``); see :class:`~.sources.onnx.OnnxSource`."""
    from .sources.onnx import OnnxSource

    return OnnxSource(path, **options)


def openai_server(url: str, **options: Any) -> Any:
    """A model behind an OpenAI-compatible completions server (``pip install 'pytest-hemorrhage[server]'``);
    see :class:`~.sources.openai.OpenAISource`."""
    from .sources.openai import OpenAISource

    return OpenAISource(url, **options)


#: ``hemorrhage compare --runtime NAME``: the opener of each runtime name.
RUNTIMES = {"llama.cpp": llama_cpp, "onnx": onnx_runtime, "openai": openai_server}


def open_runtime(name: str, target: str, **options: Any) -> Any:
    """The candidate source of runtime ``name`` (a key of :data:`RUNTIMES`) on ``target`` (a file or a URL)."""
    opener = RUNTIMES.get(name)
    if opener is None:
        raise InvalidArgument(f"runtime {name!r}: expected one of {', '.join(RUNTIMES)}")
    return opener(target, **options)
