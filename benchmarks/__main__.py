"""python -m benchmarks [NAME ...]: print a table and write benchmarks/results/NAME.json.

Names: the speed, memory and statistics benchmarks, plus the paper's claims on the default model
(claims_pruning, claims_scaling_decoding, claims_sweep), the gate error rates (gate_rates) and the
PyTorch quantizers as candidates (quantizers); llama.cpp candidates (runtime_llamacpp, which needs llama-cpp-python),
ONNX Runtime candidates (runtime_onnx), a llama.cpp server (runtime_server), and why the GGUF candidates
fail: runtime against compression and the block to blame (attribution).
With no name, the speed, memory and statistics ones run (the claims take tens of minutes each).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DEFAULT = ("overhead", "memory", "load_time", "fuzz", "efficiency", "sequential", "peer")
NAMES = DEFAULT + ("claims_pruning", "claims_scaling_decoding", "claims_sweep", "gate_rates", "quantizers",
                   "runtime_llamacpp", "runtime_onnx", "runtime_server", "attribution")


def main(argv: list[str]) -> int:
    chosen = [a for a in argv if not a.startswith("-")] or list(DEFAULT)
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(NAMES)}", file=sys.stderr)
        return 2
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    for name in chosen:
        module = __import__(f"benchmarks.{name}", fromlist=["run"])
        start = time.perf_counter()
        result = module.run()
        result["wall_s"] = round(time.perf_counter() - start, 1)
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(f"== {name}")
        for key, value in result.items():
            if not isinstance(value, (list, dict)):
                print(f"  {key:45s} {value:.4g}" if isinstance(value, float) else f"  {key:45s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
