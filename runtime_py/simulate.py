"""Real-time simulation: feed audio in N ms pieces as a microphone would and measure the runtime.

Per utterance (`simulate`):
  chunk compute p50/p90/max  - time of each decode() call that had work (one chunk: step graph +
                               search), ms
  rtf                        - total compute (features, resampling, decoding) / audio duration
  first_partial_latency_s    - when the first non-empty partial is available, from the audio
                               start: arrival time of the piece that produced it + queueing +
                               compute (see below)
  emission_latency_s         - the paper's: emission time of the last token of the final
                               hypothesis (its encoder frame end) - end of speech
  final_latency_s            - when the final text is available (the last token has appeared in
                               the partial result) - end of speech, in the same simulated clock:
                               adds chunking delay and compute to emission_latency_s
  load_s, peak_rss_mb

Clock: without pacing the piece k (audio up to t_k) "arrives" at t_k; its processing starts at
max(t_k, end of the previous processing) and takes the measured compute time. This is the wall
clock a real-time run would see, without sleeping. With realtime=True the feed is actually paced
at wall-clock speed and latencies are measured on the wall clock.

End of speech: given (e.g. a manifest's "speech_end"), else dualasr.metrics.energy_end_of_speech.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from dualasr.metrics import emission_latency, energy_end_of_speech, latency_percentiles

__all__ = ["SimulationResult", "SetSimulation", "simulate", "simulate_set", "peak_rss_mb", "current_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float:
    """Current resident set size (MiB); Linux /proc, else the peak."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / (1024 * 1024)
    except OSError:
        return peak_rss_mb()


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")


@dataclass
class SimulationResult:
    name: str
    text: str
    token_ids: list[int]
    timestamps: list[float]
    audio_s: float
    feed_ms: float
    mode: str
    backend: str
    feeds: int  # pieces fed (+1 for the end of input)
    chunks: int  # decode() calls that had work: one per chunk in streaming, one in full mode
    chunk_compute_ms: dict[str, float]  # p50, p90, max over those decode() calls
    compute_s: float
    rtf: float
    first_partial_latency_s: float | None
    speech_end_s: float
    emission_latency_s: float | None
    final_latency_s: float | None
    load_s: float
    peak_rss_mb: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SetSimulation:
    results: list[SimulationResult] = field(default_factory=list)

    def summary(self) -> dict:
        r = self.results
        audio = sum(x.audio_s for x in r)
        compute = sum(x.compute_s for x in r)
        chunk_ms = [v for x in r for v in ([x.chunk_compute_ms["p50"]] if x.chunks else [])]
        emis = latency_percentiles([x.emission_latency_s for x in r])
        final = latency_percentiles([x.final_latency_s for x in r])
        first = latency_percentiles([x.first_partial_latency_s for x in r])
        return {
            "utterances": len(r),
            "audio_s": audio,
            "compute_s": compute,
            "rtf": compute / audio if audio else float("nan"),
            "chunk_compute_ms_p50": _pct(chunk_ms, 50),
            "chunk_compute_ms_max": max((x.chunk_compute_ms["max"] for x in r if x.chunks), default=float("nan")),
            "latency_at_50_s": emis["p50"],
            "latency_at_90_s": emis["p90"],
            "final_latency_at_50_s": final["p50"],
            "final_latency_at_90_s": final["p90"],
            "first_partial_at_50_s": first["p50"],
            "first_partial_at_90_s": first["p90"],
            "load_s": r[0].load_s if r else float("nan"),
            "peak_rss_mb": max((x.peak_rss_mb for x in r), default=float("nan")),
        }

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "results": [x.to_dict() for x in self.results]}


def simulate(
    recognizer,
    samples: np.ndarray,
    sample_rate: int,
    feed_ms: float | None = None,
    realtime: bool = False,
    speech_end_s: float | None = None,
    name: str = "<array>",
) -> SimulationResult:
    """Run one utterance through `recognizer` (Recognizer or dualasr.reference.TorchRecognizer)
    as a live stream.

    Args:
        samples: [N] audio (any dtype/rate accepted by Stream.accept_waveform).
        feed_ms: piece size (default 100 ms, a typical microphone buffer; smaller than a chunk, so
            a chunk is decoded as soon as its last frame is complete).
        realtime: sleep so pieces arrive at wall-clock speed.
        speech_end_s: end of speech (default: energy-based detection on the samples).
    """
    from dualasr.audio import prepare_samples

    x = prepare_samples(samples, sample_rate, recognizer.sample_rate, name=name)
    rate = recognizer.sample_rate
    feed_ms = float(feed_ms or 100)
    piece = max(1, int(round(rate * feed_ms / 1000.0)))
    if speech_end_s is None:
        speech_end_s = energy_end_of_speech(x, rate)
    stream = recognizer.create_stream(name)

    feed_times: list[float] = []  # per piece: accept_waveform + all decoding it triggered
    chunk_times: list[float] = []  # per decode() call that had work (normally one chunk)
    clock = 0.0  # simulated (or real) time when the processor is next free, s from audio start
    first_partial: float | None = None
    history: list[tuple[float, list[int]]] = []  # (time available, token ids) after each piece
    wall0 = time.perf_counter()
    starts = list(range(0, x.size, piece))
    for start in starts + [None]:  # None: end of input
        arrival = x.size / rate if start is None else min(start + piece, x.size) / rate
        if realtime:
            delay = arrival - (time.perf_counter() - wall0)
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        if start is None:
            stream.input_finished()
        else:
            stream.accept_waveform(rate, x[start : start + piece])
        while recognizer.is_ready(stream):
            t1 = time.perf_counter()
            recognizer.decode(stream)
            chunk_times.append(time.perf_counter() - t1)
        ids = stream.result.token_ids
        dt = time.perf_counter() - t0
        feed_times.append(dt)
        done = (time.perf_counter() - wall0) if realtime else max(clock, arrival) + dt
        clock = done
        if first_partial is None and ids:
            first_partial = done
        history.append((done, list(ids)))

    final = stream.result
    final_time = None
    if final.token_ids:
        for t, ids in history:
            if ids == final.token_ids:
                final_time = t
                break
    audio_s = x.size / rate
    compute = float(sum(feed_times))
    return SimulationResult(
        name=name,
        text=final.text,
        token_ids=final.token_ids,
        timestamps=final.timestamps,
        audio_s=audio_s,
        feed_ms=feed_ms,
        mode=recognizer.mode,
        backend=getattr(recognizer, "backend_name", "?"),
        feeds=len(feed_times),
        chunks=len(chunk_times),
        chunk_compute_ms={
            "p50": _pct(chunk_times, 50) * 1000,
            "p90": _pct(chunk_times, 90) * 1000,
            "max": max(chunk_times) * 1000 if chunk_times else float("nan"),
        },
        compute_s=compute,
        rtf=compute / audio_s if audio_s else float("nan"),
        first_partial_latency_s=first_partial,
        speech_end_s=float(speech_end_s),
        emission_latency_s=emission_latency(final.timestamps, speech_end_s),
        final_latency_s=None if final_time is None else final_time - float(speech_end_s),
        load_s=float(getattr(recognizer, "load_seconds", float("nan"))),
        peak_rss_mb=peak_rss_mb(),
    )


def simulate_set(recognizer, items: list[dict], feed_ms: float | None = None, realtime: bool = False) -> SetSimulation:
    """items: [{"samples", "sample_rate", optional "name", "speech_end"}] -> per-utterance results
    plus Latency@50/@90 over the set (summary())."""
    out = SetSimulation()
    for i, it in enumerate(items):
        out.results.append(
            simulate(recognizer, it["samples"], it["sample_rate"], feed_ms, realtime,
                     it.get("speech_end"), it.get("name", f"utt{i}"))
        )
    return out
