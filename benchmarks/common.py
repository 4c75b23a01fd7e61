"""Shared helpers: timing, peak-RSS sampling, the default model and its probes."""

from __future__ import annotations

import os
import statistics
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss(interval: float = 0.005) -> Iterator[dict]:
    """Sample the resident set size in a thread; yields a dict with ``peak`` and ``before``."""
    out = {"before": rss_bytes(), "peak": rss_bytes()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            out["peak"] = max(out["peak"], rss_bytes())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak"] = max(out["peak"], rss_bytes())


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Minimum wall time of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def paired_ratio(check: Callable[[], object], reference: Callable[[], object], repeats: int = 5,
                 sync: Callable[[], object] = lambda: None) -> dict:
    """Median, lowest and highest of ``repeats`` ratios time(check) / time(reference), the two timed
    alternately after a warm-up of each: pairing cancels the slow drifts of a shared machine that
    separately taken best-of-N times fold into the ratio. ``sync`` waits for queued device work."""
    check(), reference()
    ratios = []
    for _ in range(repeats):
        times = []
        for fn in (reference, check):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        ratios.append(times[1] / times[0])
    return {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}


def plain_forward(model: torch.nn.Module, probes, batch_size: int = 8) -> None:
    """What a comparison can never beat: the model's own forward pass over the probes."""
    with torch.inference_mode():
        for batch in probes.batches(batch_size):
            model(batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)


def default_model_and_probes(n: int, max_length: int = 128):
    from pytest_hemorrhage.models import default_model

    model, tokenizer = default_model()
    return model, tokenizer, repeated_builtin(tokenizer, n, max_length)


def repeated_builtin(tokenizer, n: int, max_length: int = 128):
    """``n`` built-in probes, cycling through the corpus when ``n`` exceeds it."""
    from pytest_hemorrhage.corpus import BUILTIN_SNIPPETS
    from pytest_hemorrhage.probes import Probes

    base = Probes.builtin(tokenizer, n=None, max_length=max_length)
    ids = [base.token_ids[i % len(base)] for i in range(n)]
    tags = [base.tags[i % len(base)] for i in range(n)]
    assert len(BUILTIN_SNIPPETS) == len(base)
    return Probes(token_ids=ids, tags=tags, name=f"builtin-cycled(n={n},max_length={max_length})")
