"""Where a Recognizer spends its time, kept by the Recognizer itself (`Recognizer.timers`).

Stages, each with seconds and calls summed over every stream and thread since the last reset():
  features  audio checks, resampling and filterbank (accept_waveform, input_finished, chunk reads)
  <graph>   inside the backend, one stage per graph name: the encoder graph
            (encoder_streaming_<C>ms or encoder_full), predictor, joiner
  search    the RNN-T search around its predictor/joiner calls (their time excluded)
  results   building Result objects (text, pieces, timestamps)
Whatever else a decode call costs (chunk assembly, batching encoder states) is the caller's wall
time minus these. Always on: each thread adds to its own totals (no lock), a perf_counter pair and
two dict updates per entry.
"""

from __future__ import annotations

import threading
import time

__all__ = ["StageTimers"]


class _Totals:
    """One thread's seconds and calls per stage, and its running total of graph seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.graph_seconds = 0.0


class _Stage:
    """`with timers.stage(name):` (a class, not a generator: it runs several times per chunk)."""

    __slots__ = ("_totals", "_stage", "_exclude_graphs", "_t0", "_g0")

    def __init__(self, totals: _Totals, stage: str, exclude_graphs: bool):
        self._totals, self._stage, self._exclude_graphs = totals, stage, exclude_graphs

    def __enter__(self) -> None:
        self._g0 = self._totals.graph_seconds
        self._t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self._t0
        t = self._totals
        if self._exclude_graphs:
            seconds -= t.graph_seconds - self._g0
        t.seconds[self._stage] = t.seconds.get(self._stage, 0.0) + seconds
        t.calls[self._stage] = t.calls.get(self._stage, 0) + 1


class StageTimers:
    """Seconds and calls per stage (see the module docstring); safe to use from several threads."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[_Totals] = []  # every thread's totals, for snapshot() and reset()
        self._lock = threading.Lock()

    def _totals(self) -> _Totals:
        try:
            return self._local.totals
        except AttributeError:
            totals = self._local.totals = _Totals()
            with self._lock:
                self._all.append(totals)
            return totals

    def add_graph(self, graph: str, seconds: float) -> None:
        """One graph call: its own stage, and the running graph total the search excludes."""
        t = self._totals()
        t.seconds[graph] = t.seconds.get(graph, 0.0) + seconds
        t.calls[graph] = t.calls.get(graph, 0) + 1
        t.graph_seconds += seconds

    def stage(self, stage: str) -> _Stage:
        """Context manager timing one stage."""
        return _Stage(self._totals(), stage, False)

    def stage_without_graphs(self, stage: str) -> _Stage:
        """Context manager timing a stage that calls graphs, less the time inside them (counted as
        their own stages)."""
        return _Stage(self._totals(), stage, True)

    def snapshot(self) -> dict[str, dict]:
        """{"seconds": {stage: s}, "calls": {stage: n}}, summed over threads (copies)."""
        seconds: dict[str, float] = {}
        calls: dict[str, int] = {}
        with self._lock:
            for t in self._all:
                for k, v in dict(t.seconds).items():  # dict(): one atomic copy under the GIL
                    seconds[k] = seconds.get(k, 0.0) + v
                for k, n in dict(t.calls).items():
                    calls[k] = calls.get(k, 0) + n
        return {"seconds": seconds, "calls": calls}

    def reset(self) -> None:
        """Zero every stage (call it while no thread is decoding)."""
        with self._lock:
            for t in self._all:
                t.seconds.clear()
                t.calls.clear()
