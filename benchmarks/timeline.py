"""Where a GPU waits: idle gaps and blocking calls read from a torch profiler (Chrome) trace.

A check costs more than its plain forward passes for two reasons: the kernels it adds, and the
time the GPU sits idle because the host is busy or blocked. ``analyse_trace`` measures the second:
the union of the GPU's busy intervals, every idle gap between them, and for each gap the Python
frame that launched the kernel which ended it (so the host code that kept the GPU waiting is named).
Host calls into the CUDA runtime or driver that block (a synchronisation, a copy to pageable
memory) are listed by the Python frame that made them.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

GPU_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}
HOST_CALL_CATEGORIES = {"cuda_runtime", "cuda_driver"}
# Frames of these packages name a site; torch's own Python layers are skipped over.
SITE_MARKERS = ("pytest_hemorrhage", "transformers", "benchmarks", "accelerate")


def _frames_at(python_events: list[dict], queries: list[tuple[float, int]]) -> dict[int, list[str]]:
    """Python frames (outermost first) enclosing each query time ``(t, id)``; frames nest, so one sweep does."""
    events = sorted(python_events, key=lambda e: (e["ts"], -e.get("dur", 0.0)))
    out: dict[int, list[str]] = {}
    stack: list[dict] = []
    i = 0
    for t, qid in sorted(queries):
        while i < len(events) and events[i]["ts"] <= t:
            ev = events[i]
            while stack and stack[-1]["ts"] + stack[-1].get("dur", 0.0) <= ev["ts"]:
                stack.pop()
            stack.append(ev)
            i += 1
        out[qid] = [f["name"] for f in stack if f["ts"] + f.get("dur", 0.0) >= t]
    return out


def site_of(frames: Iterable[str]) -> str:
    """The innermost frame that belongs to this project, transformers or accelerate; else the innermost."""
    frames = list(frames)
    for name in reversed(frames):
        if any(marker in name for marker in SITE_MARKERS):
            return name
    return frames[-1] if frames else "(no Python frame)"


def _merged(intervals: list[tuple[float, float, dict]]) -> list[tuple[float, float, dict]]:
    """Union of (start, end, first event) intervals, sorted; the event is the first one of each run."""
    merged: list[list] = []
    for start, end, ev in sorted(intervals, key=lambda x: x[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, ev])
    return [tuple(m) for m in merged]  # type: ignore[misc]


def analyse_trace(trace: dict, min_gap_us: float = 10.0, blocking_us: float = 50.0, top: int = 12) -> dict:
    """Busy and idle GPU time of a Chrome trace, idle time by the site that ended each gap, blocking host calls.

    The window runs from the first GPU event to the last; host time outside it (setup before the
    first kernel, the report after the last) is given separately.

    All times in the result are milliseconds. ``min_gap_us``: shorter gaps are counted in the idle
    total but not attributed (launch latency); ``blocking_us``: host CUDA calls at least this long
    are counted as blocking.
    """
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    gpu = [(e["ts"], e["ts"] + e.get("dur", 0.0), e) for e in events if e.get("cat") in GPU_CATEGORIES]
    if not gpu:
        return {"gpu_events": 0}
    host_calls = [e for e in events if e.get("cat") in HOST_CALL_CATEGORIES]
    launch_by_correlation = {e["args"]["correlation"]: e for e in host_calls if "correlation" in e.get("args", {})}
    python = defaultdict(list)
    for e in events:
        if e.get("cat") == "python_function":
            python[e.get("tid")].append(e)

    runs = _merged(gpu)
    window_start, window_end = runs[0][0], runs[-1][1]
    span_start = min(e["ts"] for e in events)
    span_end = max(e["ts"] + e.get("dur", 0.0) for e in events)
    busy = sum(end - start for start, end, _ in runs)
    gaps = []
    for (_, prev_end, _), (start, _, first) in zip(runs, runs[1:]):
        if start - prev_end >= min_gap_us:
            gaps.append((start - prev_end, first))
    blocking = [e for e in host_calls if e.get("dur", 0.0) >= blocking_us and "Launch" not in e["name"]]

    queries: dict[Any, list[tuple[float, int]]] = defaultdict(list)
    launchers: list[dict | None] = []
    for qid, (_, kernel) in enumerate(gaps):
        launch = launch_by_correlation.get(kernel.get("args", {}).get("correlation"))
        launchers.append(launch)
        if launch is not None:
            queries[launch.get("tid")].append((launch["ts"], qid))
    offset = len(gaps)
    for j, call in enumerate(blocking):
        queries[call.get("tid")].append((call["ts"], offset + j))
    frames: dict[int, list[str]] = {}
    for tid, qs in queries.items():
        frames.update(_frames_at(python.get(tid, []), qs))

    idle_by_site: dict[str, float] = defaultdict(float)
    for qid, (gap, kernel) in enumerate(gaps):
        if launchers[qid] is None:
            idle_by_site[f"(launch not traced) before {kernel['name'][:60]}"] += gap
        else:
            idle_by_site[site_of(frames.get(qid, []))] += gap
    blocking_by_site: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for j, call in enumerate(blocking):
        entry = blocking_by_site[f"{call['name']} at {site_of(frames.get(offset + j, []))}"]
        entry[0] += 1
        entry[1] += call["dur"]

    def ranked(items: dict, key: Callable) -> list:
        return sorted(items.items(), key=key, reverse=True)[:top]

    return {
        "gpu_events": len(gpu),
        "host_before_first_kernel_ms": (window_start - span_start) / 1e3,
        "host_after_last_kernel_ms": (span_end - window_end) / 1e3,
        "window_ms": (window_end - window_start) / 1e3,
        "busy_ms": busy / 1e3,
        "idle_ms": (window_end - window_start - busy) / 1e3,
        "gaps_attributed": len(gaps),
        "idle_ms_attributed": sum(g for g, _ in gaps) / 1e3,
        "idle_ms_by_site": {site: round(us / 1e3, 3) for site, us in ranked(idle_by_site, lambda kv: kv[1])},
        "blocking_calls_by_site": {site: {"count": n, "ms": round(us / 1e3, 3)}
                                   for site, (n, us) in ranked(blocking_by_site, lambda kv: kv[1][1])},
    }


def profile_trace(fn: Callable[[], object], path: str | Path | None = None) -> dict:
    """Run ``fn`` once under the torch profiler (CPU, CUDA, Python stacks) and return its Chrome trace.

    With ``path`` (ending in .json.gz) the trace is also written there, for chrome://tracing or Perfetto.
    """
    import tempfile

    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    fn()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, with_stack=True) as prof:
        fn()
        sync()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        text = raw.read_text()
    if path is not None:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    return json.loads(text)
