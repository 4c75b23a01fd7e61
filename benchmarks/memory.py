"""Peak memory of compare() as the probe set grows: memory must stay flat (streaming)."""

from __future__ import annotations

import json
import subprocess
import sys


def _child(n: int, max_length: int) -> dict:
    import pytest_hemorrhage as ph
    from pytest_hemorrhage.modify import quantize

    from .common import default_model_and_probes, peak_rss

    model, _, probes = default_model_and_probes(n, max_length)
    candidate = quantize(model, bits=8)
    with peak_rss() as rss:
        ph.compare(model, candidate, probes)
    return {"probes": n, "rss_before": rss["before"], "rss_peak": rss["peak"],
            "growth": rss["peak"] - rss["before"]}


def run(sizes: tuple[int, ...] = (64, 1024), max_length: int = 64) -> dict:
    """Each size in a fresh process, so one run's peak cannot hide the other's."""
    results = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-m", "benchmarks.memory", str(n), str(max_length)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    small, large = results[0], results[-1]
    return {
        "sizes": list(sizes),
        "runs": results,
        "ratio_peak_rss": large["rss_peak"] / small["rss_peak"],
        "ratio_peak_growth_during_compare": large["growth"] / small["growth"],
    }


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]), int(sys.argv[2]))))
