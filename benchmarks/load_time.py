"""How long the default model takes to become usable: the first conversion, then a cached load.

Each step runs in a fresh process against an empty cache folder, so neither the import cache nor
the model cache of this process can flatter it. Reported per step: imports (torch and the package),
``default_model()`` wall time and CPU time, a second call in the same process (transformers' model
code already imported), and the load average when the step started: on a
shared machine the wall times stretch with the load, CPU time much less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile


def _child() -> dict:
    import time

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    import torch  # noqa: F401

    import pytest_hemorrhage as ph

    imported_wall, imported_cpu = time.perf_counter(), time.process_time()
    ph.models.default_model()
    loaded_wall, loaded_cpu = time.perf_counter(), time.process_time()
    ph.models.default_model()
    again_wall = time.perf_counter()
    return {
        "imports_s": round(imported_wall - start_wall, 2),
        "imports_cpu_s": round(imported_cpu - start_cpu, 2),
        "default_model_s": round(loaded_wall - imported_wall, 2),
        "default_model_cpu_s": round(loaded_cpu - imported_cpu, 2),
        "second_call_same_process_s": round(again_wall - loaded_wall, 2),
    }


def _step(cache: str) -> dict:
    env = dict(os.environ, HEMORRHAGE_CACHE_DIR=cache)
    load_average = os.getloadavg()[0]
    out = subprocess.run([sys.executable, "-m", "benchmarks.load_time"], env=env,
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]), load_average_1min=round(load_average, 2))


def run() -> dict:
    """The first use (conversion into an empty cache), then a later use (cached), each in a new process."""
    with tempfile.TemporaryDirectory(prefix="hemorrhage-cache-") as cache:
        first = _step(cache)
        later = _step(cache)
    result = {f"first_{key}": value for key, value in first.items()}
    result.update({f"later_{key}": value for key, value in later.items()})
    result["cpu_count"] = os.cpu_count()
    return result


if __name__ == "__main__":
    print(json.dumps(_child()))
