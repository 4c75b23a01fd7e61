"""python -m benchmarks [overhead] [memory] [fuzz]: print a table and write benchmarks/results/*.json."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

NAMES = ("overhead", "memory", "fuzz", "efficiency", "sequential", "peer")


def main(argv: list[str]) -> int:
    chosen = [a for a in argv if not a.startswith("-")] or list(NAMES)
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
