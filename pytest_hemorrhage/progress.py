"""Progress of a check while it runs: events for a front end to show, and the lines they read as.

The core (the engine, the orchestrator, the mitigation search) never writes to a terminal: it
calls an ``on_progress`` callback with a :class:`ProgressEvent`, and each front end decides where
and whether the lines go (pytest through its terminal reporter, the ``hemorrhage`` command on
standard error). :class:`ProgressLines` turns events into lines for any of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["ProgressEvent", "OnProgress", "ProgressLines", "format_seconds"]

COMPARING = "comparing"  # a batch of probes was measured (also sent once with done=0 at the start)
COMPARED = "compared"  # the comparison finished
MITIGATING = "mitigating"  # the mitigation search starts
MITIGATION = "mitigation"  # one mitigation was tried and re-measured (or failed)
MITIGATED = "mitigated"  # the mitigation search finished

STAGES = (COMPARING, COMPARED, MITIGATING, MITIGATION, MITIGATED)


def format_seconds(seconds: float) -> str:
    """``0.4 s``, ``52 s``, ``6 min 12 s``: precise where it is short, rounded where it is long."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a check. ``stage`` is one of :data:`STAGES`; ``seconds`` is the time spent in it so far.

    ``check``: the check's name, when it has one. ``done`` / ``total``: probes measured, for
    ``comparing`` and ``compared``. ``mitigation``: the name of the mitigation a ``mitigation``
    event is about. ``outcome``: the verdict (``compared``), the mitigations about to be tried
    (``mitigating``), or how one ended (``mitigation``: ``passes``, ``still fails``, why it failed).
    """

    stage: str
    seconds: float = 0.0
    check: str | None = None
    done: int = 0
    total: int = 0
    mitigation: str | None = None
    outcome: str = ""

    def describe(self) -> str:
        """What happened, in words: ``compared 32 probes in 52 s: fail`` and the like."""
        took = format_seconds(self.seconds)
        if self.stage == COMPARING:
            return f"comparing: {self.done}/{self.total} probes, {took}"
        if self.stage == COMPARED:
            return f"compared {self.total} probes in {took}: {self.outcome}"
        if self.stage == MITIGATING:
            return f"trying mitigations on copies: {self.outcome}"
        if self.stage == MITIGATION:
            return f"tried {self.mitigation} in {took}: {self.outcome}"
        return f"mitigations tried in {took}"


#: The callback the core calls; it must be quick and must not raise.
OnProgress = Callable[[ProgressEvent], None]


class ProgressLines:
    """An ``on_progress`` callback that writes ``hemorrhage: <check>: <what happened>`` lines.

    ``line(text)`` writes a lasting line. ``update(text)``, when given (a live terminal), rewrites
    one line in place with the probes measured so far, at most every ``interval`` seconds; without
    it only the lasting lines are written (logs stay short).
    """

    def __init__(self, line: Callable[[str], None], update: Callable[[str], None] | None = None, *,
                 interval: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._line = line
        self._update = update
        self._interval = interval
        self._clock = clock
        self._last_update = -float("inf")

    def __call__(self, event: ProgressEvent) -> None:
        text = "hemorrhage: " + (f"{event.check}: " if event.check else "") + event.describe()
        if event.stage != COMPARING:
            self._line(text)
            return
        now = self._clock()
        if self._update is not None and (event.done == 0 or now - self._last_update >= self._interval):
            self._last_update = now
            self._update(text)
