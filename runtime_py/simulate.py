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

End of speech: given (e.g. a manifest's "speech_end"), else dualasr.metrics.EndOfSpeech.

`simulate_file` reads the file block by block (dualasr.audio.AudioReader) and resamples each
block with a StreamingResampler, so a file of any length needs the same memory.
"""

from __future__ import annotations

import itertools
import os
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from dualasr.metrics import EndOfSpeech, emission_latency, latency_percentiles

__all__ = ["SimulationResult", "SetSimulation", "simulate", "simulate_file", "simulate_set", "peak_rss_mb",
           "current_rss_mb"]

FEED_MS = 100.0  # a typical microphone buffer; smaller than a chunk, so a chunk is decoded as soon as it is complete


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB). On Linux the memory map's high-water mark
    (VmHWM): ru_maxrss there survives exec, so a process started by a large parent (a test runner,
    the bench) would report the parent's peak at fork time instead of its own."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
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
    chunk_seconds: list[float]  # each of those calls' compute time
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
    """Run one utterance through `recognizer` (a Recognizer, or any object with its create_stream /
    is_ready / decode API, e.g. the bench's peers) as a live stream.

    Args:
        samples: [N] audio (any dtype/rate accepted by Stream.accept_waveform).
        feed_ms: piece size (default FEED_MS).
        realtime: sleep so pieces arrive at wall-clock speed.
        speech_end_s: end of speech (default: energy-based detection on the samples).
    """
    from dualasr.audio import prepare_samples

    x = prepare_samples(samples, sample_rate, recognizer.sample_rate, name=name)
    piece = _piece_samples(recognizer, feed_ms)
    pieces = (x[start:start + piece] for start in range(0, x.size, piece))
    return _run(recognizer, pieces, feed_ms, realtime, speech_end_s, name)


def simulate_file(recognizer, path: str | os.PathLike, feed_ms: float | None = None, realtime: bool = False,
                  name: str | None = None) -> SimulationResult:
    """simulate() on an audio file ("-": standard input), read and resampled block by block.

    Raises:
        AudioError: the file is unusable (named in the message).
    """
    from dualasr.audio import AudioReader

    with AudioReader(path, name) as reader:
        return _run(recognizer, _file_pieces(reader, recognizer.sample_rate, _piece_samples(recognizer, feed_ms)),
                    feed_ms, realtime, None, reader.name)


def _piece_samples(recognizer, feed_ms: float | None) -> int:
    return max(1, int(round(recognizer.sample_rate * float(feed_ms or FEED_MS) / 1000.0)))


def _file_pieces(reader, rate: int, piece: int) -> Iterator[np.ndarray]:
    """A file's audio as checked mono float32 pieces of `piece` samples at `rate`."""
    from dualasr.audio import prepare_samples

    from .resample import StreamingResampler

    resampler = None
    pending = np.zeros(0, dtype=np.float32)
    for block in reader.blocks(max(piece, reader.sample_rate)):  # about one second per read
        x = prepare_samples(block, reader.sample_rate, reader.sample_rate, name=reader.name, channel_axis=1)
        if reader.sample_rate != rate:
            resampler = resampler or StreamingResampler(reader.sample_rate, rate)
            x = resampler.accept(x)
        pending = np.concatenate([pending, x])
        while pending.size >= piece:
            yield pending[:piece]
            pending = pending[piece:]
    if resampler is not None:
        pending = np.concatenate([pending, resampler.flush()])
    for start in range(0, pending.size, piece):
        yield pending[start:start + piece]


def _run(recognizer, pieces: Iterable[np.ndarray], feed_ms: float | None, realtime: bool,
         speech_end_s: float | None, name: str) -> SimulationResult:
    """Feed model-rate float32 pieces as they would arrive and measure (see the module docstring)."""
    rate = recognizer.sample_rate
    ends = EndOfSpeech(rate) if speech_end_s is None else None
    stream = recognizer.create_stream(name)

    feed_times: list[float] = []  # per piece: accept_waveform + all decoding it triggered
    chunk_times: list[float] = []  # per decode() call that had work (normally one chunk)
    clock = 0.0  # simulated (or real) time when the processor is next free, s from audio start
    first_partial: float | None = None
    last_ids: list[int] = []
    changed_at: float | None = None  # when the partial result last changed: the final text is out then
    received = 0
    wall0 = time.perf_counter()
    for piece in itertools.chain(pieces, [None]):  # None: end of input
        if piece is not None:
            received += piece.size
            if ends is not None:
                ends.accept(piece)
        arrival = received / rate
        if realtime:
            delay = arrival - (time.perf_counter() - wall0)
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        if piece is None:
            stream.input_finished()
        else:
            stream.accept_waveform(rate, piece)
        while recognizer.is_ready(stream):
            t1 = time.perf_counter()
            recognizer.decode(stream)
            chunk_times.append(time.perf_counter() - t1)
        # token_ids where the stream has it: building the whole result text per piece would make
        # an hour-long file quadratic in time.
        ids = stream.token_ids if hasattr(stream, "token_ids") else stream.result.token_ids
        dt = time.perf_counter() - t0
        feed_times.append(dt)
        done = (time.perf_counter() - wall0) if realtime else max(clock, arrival) + dt
        clock = done
        if first_partial is None and ids:
            first_partial = done
        if ids != last_ids:
            last_ids, changed_at = ids, done

    final = stream.result
    audio_s = received / rate
    speech_end_s = ends.seconds if ends is not None else speech_end_s
    compute = float(sum(feed_times))
    return SimulationResult(
        name=name,
        text=final.text,
        token_ids=final.token_ids,
        timestamps=final.timestamps,
        audio_s=audio_s,
        feed_ms=float(feed_ms or FEED_MS),
        mode=recognizer.mode,
        backend=getattr(recognizer, "backend_name", "?"),
        feeds=len(feed_times),
        chunks=len(chunk_times),
        chunk_compute_ms={
            "p50": _pct(chunk_times, 50) * 1000,
            "p90": _pct(chunk_times, 90) * 1000,
            "max": max(chunk_times) * 1000 if chunk_times else float("nan"),
        },
        chunk_seconds=chunk_times,
        compute_s=compute,
        rtf=compute / audio_s if audio_s else float("nan"),
        first_partial_latency_s=first_partial,
        speech_end_s=float(speech_end_s),
        emission_latency_s=emission_latency(final.timestamps, speech_end_s),
        final_latency_s=None if not final.token_ids or changed_at is None else changed_at - float(speech_end_s),
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
