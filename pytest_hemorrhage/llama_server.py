"""Start llama-cpp-python's OpenAI-compatible server on a GGUF file, for a test or a measurement.

::

    with serve_gguf("model-Q4_K_M.gguf") as url:
        report = ph.compare(snapshot, ph.openai_server(url, model="model", tokenizer=tokenizer))

The server is a child process on a free local port, waited for with a bounded poll and always
stopped on the way out (``pip install 'pytest-hemorrhage[llamacpp,server]'``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import HemorrhageError
from .sources.runtime import require

__all__ = ["serve_gguf"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_gguf(path: str | os.PathLike[str], *, alias: str = "model", api_key: str | None = None,
               n_ctx: int = 512, threads: int = 1, wait: float = 180.0) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/v1``) of a llama-cpp-python server on ``path``, serving it as ``alias``.

    ``api_key``: the key the server requires (passed to it on its command line, never printed).
    ``wait``: seconds to wait for the server to answer before giving up with its log.
    """
    require("llama_cpp.server", "llamacpp", "serving a GGUF file", note=" and pip install 'pytest-hemorrhage[server]'")
    httpx = require("httpx", "server", "serving a GGUF file")
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--model_alias", alias,
               "--logits_all", "true", "--verbose", "false"]
    if api_key:
        command += ["--api_key", api_key]
    url = f"http://127.0.0.1:{port}/v1"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + wait
            while True:
                if process.poll() is not None:
                    raise HemorrhageError(f"the llama-cpp-python server on {Path(path).name} exited with code "
                                          f"{process.returncode} before answering: {_tail(log, api_key)}")
                try:
                    if httpx.get(f"{url}/models", headers=headers, timeout=2.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise HemorrhageError(f"the llama-cpp-python server on {Path(path).name} did not answer within "
                                          f"{wait:g} s: {_tail(log, api_key)}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _tail(log, api_key: str | None) -> str:
    log.seek(0)
    text = log.read().decode("utf-8", "replace")[-1500:]
    return text.replace(api_key, "***") if api_key else text
