"""Where a Recognizer spends its time, kept by the Recognizer itself (`Recognizer.timers`).

Stages, each with seconds and calls summed over every stream and thread since the last reset():
  features  audio checks, resampling and filterbank (accept_waveform, input_finished, chunk reads)
  <graph>   inside the backend, one stage per graph name: the encoder graph
            (encoder_streaming_<C>ms or encoder_full), predictor, joiner
  search    the RNN-T search around its predictor/joiner calls (their time excluded)
  results   building Result objects (text, pieces, timestamps)
Whatever else a decode call costs (chunk assembly, batching encoder states) is the caller's wall
time minus these. Always on: a perf_counter pair and a lock per entry, well under a microsecond.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["StageTimers"]


class StageTimers:
    """Seconds and calls per stage (see the module docstring); safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._calls: dict[str, int] = {}
        self._graph_time = threading.local()  # this thread's graph seconds, to exclude from search

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
            self._calls[stage] = self._calls.get(stage, 0) + 1

    def add_graph(self, graph: str, seconds: float) -> None:
        """A graph call: its own stage, and this thread's running graph total."""
        self.add(graph, seconds)
        self._graph_time.seconds = self.thread_graph_seconds() + seconds

    def thread_graph_seconds(self) -> float:
        """Seconds this thread has spent in graphs so far (only differences are meaningful)."""
        return getattr(self._graph_time, "seconds", 0.0)

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    @contextlib.contextmanager
    def stage_without_graphs(self, stage: str) -> Iterator[None]:
        """Time a stage that calls graphs, less the time inside them (counted as their own stages)."""
        t0, g0 = time.perf_counter(), self.thread_graph_seconds()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0 - (self.thread_graph_seconds() - g0))

    def snapshot(self) -> dict[str, dict]:
        """{"seconds": {stage: s}, "calls": {stage: n}} (copies)."""
        with self._lock:
            return {"seconds": dict(self._seconds), "calls": dict(self._calls)}

    def reset(self) -> None:
        with self._lock:
            self._seconds.clear()
            self._calls.clear()
