"""The torch-free recognizer: a sherpa-onnx-like streaming API over an export folder.

    rec = Recognizer("export/", backend="onnxruntime", mode="streaming")
    s = rec.create_stream()
    for piece in microphone():                 # any sizes, any rate (resampled), int16 or float
        s.accept_waveform(16000, piece)
        while rec.is_ready(s):
            rec.decode(s)
        print(s.result.text)                   # partial result
        if rec.is_endpoint(s):                 # optional trailing-silence endpointing
            print("final:", s.result.text); rec.reset(s)
    s.input_finished(); rec.decode(s); print(s.result)

Per stream the recognizer keeps only fixed-size things: the encoder state tensors (manifest
"streaming"."states"), the predictor context/state per hypothesis, < 1 chunk of feature frames and
< 1 filter length of resampler input. Consumed audio and frames are dropped, so memory stays flat
on an endless stream; only the result's token list grows (call `reset` at endpoints to bound it).

Streaming: features are cut into chunks of `chunk_frames` (e.g. 32 frames = 320 ms); each chunk
runs the streaming step graph once and the search over its `chunk_frames // subsampling` encoder
frames. After input_finished() the last partial chunk is zero-padded and only its
`remaining // subsampling` complete encoder frames are decoded (the step graph is strictly causal,
so the result equals the streaming-mode encoder over the whole utterance).
Full: audio up to the manifest's max_full_seconds (30 s) is one encoder_full call on the whole
utterance after input_finished(), then the same search. Longer audio is decoded in overlapping
windows of at most that length as it arrives (see windows.py), so memory stays bounded whatever the
length.

Token timestamps are emission times: (encoder frame index + 1) * subsampling * frame_shift, i.e.
when the audio that produced the token has been fully heard.

`Recognizer.timers` (timers.StageTimers) says where the time goes: features, each graph, the
search around the graphs, building results. `dualasr bench` reads it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dualasr import MODES
from dualasr.audio import prepare_samples

from .backends import Backend, cap_threads, create_backend
from .features import AudioFrontend, sounding_from
from .graphs import ModelGraphs, split_states, stack_states
from .lm import OovPenalty, TokenNgramLM
from .search import LOOKAHEAD, Hyp, beam_search_step, greedy_search, initial_hyp, lm_start
from .timers import StageTimers
from .windows import Window, next_window, window_frames

__all__ = ["EndpointRule", "EndpointConfig", "Result", "Stream", "Recognizer", "load_export_manifest"]

DECODINGS = ("greedy", "beam")
# Shallow-fusion defaults, chosen on the held-out Asterisk prompts and TTS test voices (never on
# real_eval) with the whisper-tiny resume point, beam 8: benchmarks/results/lm_fusion.json.
DEFAULT_LM_WEIGHT = 0.4
DEFAULT_LM_TOKEN_BONUS = 1.5
# Chosen with the weight and bonus above on the Asterisk prompts and the TTS test voices from
# {0, -2, -4, -8} (benchmarks/results/lm_oov_penalty.json); never on real_eval.
DEFAULT_LM_OOV_PENALTY = -2.0


# ----------------------------------------------------------------------------- results / endpoint


@dataclass
class Result:
    """Recognition result of a stream (partial until is_final).

    tokens: sentencepiece pieces; token_ids: their ids; timestamps: emission time (s from the
    stream start) of each token; segment: how many times the stream was reset before.
    """

    text: str = ""
    tokens: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    is_final: bool = False
    segment: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EndpointRule:
    """Fires when trailing blank time >= min_trailing_silence, the segment is at least
    min_utterance_length long, and (if must_contain_nonsilence) something was decoded."""

    must_contain_nonsilence: bool
    min_trailing_silence: float
    min_utterance_length: float

    def fires(self, trailing_silence: float, utterance_length: float) -> bool:
        contains_nonsilence = utterance_length > trailing_silence
        return (
            (contains_nonsilence or not self.must_contain_nonsilence)
            and trailing_silence >= self.min_trailing_silence
            and utterance_length >= self.min_utterance_length
        )


@dataclass
class EndpointConfig:
    """sherpa-onnx's three default rules: 2.4 s of trailing blanks with nothing decoded, 1.2 s
    after something was decoded, or a 20 s segment."""

    rule1: EndpointRule = field(default_factory=lambda: EndpointRule(False, 2.4, 0.0))
    rule2: EndpointRule = field(default_factory=lambda: EndpointRule(True, 1.2, 0.0))
    rule3: EndpointRule = field(default_factory=lambda: EndpointRule(False, 0.0, 20.0))

    def fires(self, trailing_silence: float, utterance_length: float) -> bool:
        return any(r.fires(trailing_silence, utterance_length) for r in (self.rule1, self.rule2, self.rule3))


# ----------------------------------------------------------------------------- manifest


def load_export_manifest(export_dir: str | os.PathLike, verify_checksums: bool = True) -> dict:
    """dualasr.export.manifest.load_manifest: files, checksums and every value the runtime relies
    on are checked (ManifestError, a ValueError) before any model file is opened."""
    from dualasr.export.manifest import load_manifest

    return load_manifest(export_dir, verify_checksums=verify_checksums)


# ----------------------------------------------------------------------------- stream

_stream_ids = itertools.count()


class Stream:
    """One audio stream's state. Create with Recognizer.create_stream()."""

    def __init__(self, recognizer: "Recognizer", name: str | None = None):
        self._rec = recognizer
        self.name = name or f"stream {next(_stream_ids)}"
        self.frontend = AudioFrontend(recognizer.features, self.name)
        self.flushed = False  # the final (padded) chunk has been decoded
        self.frames_decoded = 0  # encoder frames decoded so far (absolute)
        self.segment = 0
        self.segment_start_frame = 0
        self.encoder_state = recognizer.graphs.encoder_initial_state() if recognizer.mode == "streaming" else []
        self.hyps: list[Hyp] = [initial_hyp(recognizer.graphs, recognizer.lm)]
        self._lock = threading.Lock()  # held while a thread works on the stream; never waited for

    @contextlib.contextmanager
    def owned(self, action: str):
        """Hold the stream for one action; a second thread acting on it meanwhile is an error,
        not a silent data race."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                f"{self.name}: {action} while another thread is using this stream; a stream belongs to one "
                "thread at a time (give each thread its own stream, or guard it with a lock)"
            )
        try:
            yield
        finally:
            self._lock.release()

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """Append audio: [N], [N, C] or [C, N]; int16/int32/uint8 or float in [-1, 1]; any rate
        (resampled to the model's rate without boundary artifacts; the rate must not change
        within a stream). An empty piece is a no-op.

        Raises:
            AudioError: NaN/Inf, float samples beyond [-2, 2], bad shape/dtype/rate (the message
                names the stream); RuntimeError: after input_finished(), or while another thread
                uses the stream.
        """
        with self.owned("accept_waveform"), self._rec.timers.stage("features"):
            self.frontend.accept_waveform(sample_rate, samples)

    def input_finished(self) -> None:
        """No more audio: the last frames (and the padded last chunk) become decodable."""
        with self.owned("input_finished"), self._rec.timers.stage("features"):
            self.frontend.input_finished()

    @property
    def input_done(self) -> bool:
        return self.frontend.input_done

    @property
    def audio_seconds(self) -> float:
        return self.frontend.samples_received / self.frontend.target_rate

    @property
    def frames_available(self) -> int:
        """Feature frames computed but not yet fed to the encoder."""
        return self.frontend.num_available

    @property
    def best(self) -> Hyp:
        """The highest-scoring hypothesis (with an LM, by its fused score, its last word counted
        as finished; the sentence's end is not scored)."""
        oov = self._rec.oov
        if oov is None:
            return max(self.hyps, key=lambda h: h.score)
        return max(self.hyps, key=lambda h: h.score + oov.final(h.word))

    @property
    def token_ids(self) -> list[int]:
        """The best hypothesis' token ids (what `result` decodes to text, without the decoding)."""
        return list(self.best.token_ids)

    @property
    def result(self) -> Result:
        """Built on each read (text, pieces, timestamps): read it when you need it, not per chunk."""
        rec = self._rec
        with rec.timers.stage("results"):
            best = self.best
            ids, frames = best.token_ids, best.frames  # reset() starts each segment with no tokens
            return Result(
                text=rec.tokenizer.decode(ids),
                tokens=[rec.tokenizer.id_to_piece(i) for i in ids],
                token_ids=list(ids),
                timestamps=[round((f + 1) * rec.encoder_frame_s, 6) for f in frames],
                is_final=self.flushed,
                segment=self.segment,
            )


# ----------------------------------------------------------------------------- recognizer


class Recognizer:
    """Streaming or full-context RNN-T recognition over an export folder, without torch.

    Args:
        export_dir: folder with manifest.json (checked, checksums included, before loading).
        backend: "onnxruntime", "executorch" (imports torch via its Python bindings), "coreml", or
            "torch": the export's checkpoint in PyTorch eager through the same graph modules the
            exporter traced (dualasr.export.wrappers), fp32 only; it imports torch, only then.
        precision: "fp32" or "int8" (Core ML: "fp16"/"int8"; "fp32" means its float model).
        mode: "streaming" (chunked step graph) or "full" (encoder_full on the whole utterance).
        chunk_ms: which exported chunk size to use (default: the first in the manifest).
        decoding: "greedy" or "beam" (modified beam search).
        beam: beam size for "beam".
        threads: intra-op threads (0: the runtime's default); more than the cores this process
            may use is capped there, with a RuntimeWarning.
        endpoint: None/False (off), True (sherpa-onnx's default rules) or an EndpointConfig.
        providers: onnxruntime execution providers by name (default ["cpu"]).
        max_symbols_per_frame: greedy cap (3, as dualasr.decoding.greedy_search).
        verify_checksums: sha256 every export file at load (size is always checked).
        lm: a token n-gram LM file (`dualasr lm`) built with this export's tokenizer, or a loaded
            `TokenNgramLM`, fused into beam search (decoding="beam" only).
        lm_weight: its weight in the fused score.
        lm_token_bonus: added per emitted token with an LM (offsets the LM's cost of saying more).
        lm_oov_penalty: added once per word outside the LM text's words (`lm.OovPenalty`); 0 turns it
            off, and so does an LM file that records no words (format 2).

    Threads: one Recognizer may serve many streams from many threads (tests/test_robustness.py
    runs 8 threads with results equal to each stream decoded alone). The recognizer itself is
    read-only after construction; all decoding state lives in the Stream. Rules:
      * a Stream belongs to one thread at a time: accept_waveform/input_finished/decode/reset on
        a stream another thread is using raise RuntimeError (so does listing a stream twice in
        one decode_streams call);
      * decode()/decode_streams() on *different* streams may run concurrently. onnxruntime
        sessions run concurrently (size `threads` so threads x streams fits the cores);
        ExecuTorch and Core ML serialize their graph calls with a per-backend lock (a loaded
        ExecuTorch Method owns its activation memory), so they are safe but not parallel: use one
        Recognizer per thread there when throughput matters.
    """

    def __init__(
        self,
        export_dir: str | os.PathLike,
        backend: str | Backend = "onnxruntime",
        precision: str = "fp32",
        mode: str = "streaming",
        chunk_ms: int | None = None,
        decoding: str = "greedy",
        beam: int = 4,
        threads: int = 0,
        endpoint: bool | EndpointConfig | None = None,
        providers: list[str] | None = None,
        max_symbols_per_frame: int = 3,
        verify_checksums: bool = True,
        lm: str | os.PathLike | TokenNgramLM | None = None,
        lm_weight: float = DEFAULT_LM_WEIGHT,
        lm_token_bonus: float = DEFAULT_LM_TOKEN_BONUS,
        lm_oov_penalty: float = DEFAULT_LM_OOV_PENALTY,
    ):
        t0 = time.perf_counter()
        self.timers = StageTimers()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
        if beam < 1 or max_symbols_per_frame < 1:
            raise ValueError("beam and max_symbols_per_frame must be >= 1")
        threads, too_many = cap_threads(threads)
        if too_many:
            warnings.warn(too_many, RuntimeWarning, stacklevel=2)
        from dualasr.export.manifest import artifact_path, max_full_seconds
        from dualasr.tokenizer import Tokenizer

        self.export_dir = Path(export_dir)
        self.manifest = m = load_export_manifest(export_dir, verify_checksums)
        self.mode, self.decoding, self.beam = mode, decoding, int(beam)
        self.max_symbols_per_frame = int(max_symbols_per_frame)
        self.features = dict(m["features"])
        self.sample_rate = int(self.features["sample_rate"])
        self.subsampling = int(m["subsampling"])
        self.frame_shift_s = float(m["frame_shift_ms"]) / 1000.0
        self.encoder_frame_s = self.subsampling * self.frame_shift_s
        self.blank_id = int(m["blank_id"])
        self.tokenizer = Tokenizer(artifact_path(m, self.export_dir, m["tokenizer"]["file"]))
        if self.tokenizer.vocab_size != int(m["vocab_size"]):
            raise ValueError(
                f"{self.export_dir}: tokenizer has {self.tokenizer.vocab_size} pieces but the model "
                f"{m['vocab_size']}; the export is inconsistent, re-export"
            )
        self.endpoint = EndpointConfig() if endpoint is True else (endpoint or None)
        if lm is not None and decoding != "beam":
            raise ValueError("an LM is fused into beam search only: pass decoding='beam' with lm")
        self.lm = lm if lm is None or isinstance(lm, TokenNgramLM) else TokenNgramLM.load(lm)
        if self.lm is not None:  # a file or an object: either must match this export's tokenizer
            self.lm.check_tokenizer(self.tokenizer.sha256, self.tokenizer.vocab_size,
                                    "the LM given" if lm is self.lm else str(lm))
        self.lm_weight, self.lm_token_bonus = float(lm_weight), float(lm_token_bonus)
        self.oov = None
        if self.lm is not None and self.lm.words and lm_oov_penalty:
            pieces = [self.tokenizer.id_to_piece(i) for i in range(self.tokenizer.vocab_size)]
            self.oov = OovPenalty(self.lm.words, pieces, lm_oov_penalty)

        step_graph, states = None, []
        if mode == "streaming":
            entry = self._streaming_entry(chunk_ms)
            step_graph, states = entry["graph"], entry["states"]
            self.chunk_frames = int(entry["chunk_frames"])
            self.chunk_ms = int(entry["chunk_ms"])
            if self.chunk_frames % self.subsampling:
                raise ValueError(f"manifest chunk of {self.chunk_frames} frames is not a multiple of subsampling")
        else:
            self.chunk_frames, self.chunk_ms = 0, None
        graphs = [step_graph if mode == "streaming" else "encoder_full", "predictor", "joiner"]
        if isinstance(backend, str):
            self.backend = create_backend(backend, self.export_dir, m, precision, threads, providers, graphs)
        else:
            self.backend = backend
        self.graphs = ModelGraphs(self.backend, m, step_graph, states, self.timers)
        # A joiner call per frame where the backend has no batch axis (rows would be calls anyway).
        self._lookahead = LOOKAHEAD if self.backend.supports_batch else 1
        self.graphs.check_probes(graphs, str(self.export_dir))
        if mode == "full":
            lo, hi = self._full_frame_limits(self.backend, precision)
            size, context = window_frames(max_full_seconds(m), self.frame_shift_s, self.subsampling, hi)
            self._full_min_frames, self._window = lo, (size, context, self.subsampling)
        self.load_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ setup helpers

    def _streaming_entry(self, chunk_ms: int | None) -> dict:
        entries = self.manifest["streaming"]
        if not entries:
            raise ValueError(f"{self.export_dir}: the export has no streaming graphs; use mode='full' or re-export")
        if chunk_ms is None:
            return entries[0]
        for e in entries:
            if int(e["chunk_ms"]) == int(chunk_ms):
                return e
        have = ", ".join(str(e["chunk_ms"]) for e in entries)
        raise ValueError(
            f"{self.export_dir}: no streaming graph for {chunk_ms} ms chunks (exported: {have} ms); "
            f"pick one of those or re-export with --chunk-ms {chunk_ms}"
        )

    def _full_frame_limits(self, backend: str | Backend, precision: str) -> tuple[int, int | None]:
        """(min, max) feature frames encoder_full accepts: the artifact's declared T range
        (ExecuTorch "dynamic_axes", Core ML "flexible_shapes", e.g. [12, 3000]); none for onnxruntime."""
        if not isinstance(backend, str):
            backend, precision = getattr(backend, "name", ""), getattr(backend, "precision", precision)
        fmt = {"onnxruntime": "onnx"}.get(backend, backend)
        art = self.manifest["artifacts"].get(fmt, {}).get(precision, {})
        ranges = art.get("dynamic_axes") or art.get("flexible_shapes") or {}
        rng = ranges.get("encoder_full", {}).get("T")
        if not rng:
            return 0, None
        return int(rng[0]), (int(rng[1]) if rng[1] else None)

    @property
    def lm_oov_penalty(self) -> float:
        """The OOV penalty the search applies (0.0: none, also for an LM that records no words)."""
        return self.oov.penalty if self.oov is not None else 0.0

    @property
    def backend_name(self) -> str:
        return getattr(self.backend, "name", type(self.backend).__name__)

    # ------------------------------------------------------------------ streams

    def create_stream(self, name: str | None = None) -> Stream:
        return Stream(self, name)

    def is_ready(self, stream: Stream) -> bool:
        """True when decode() has work: a full chunk (streaming), a full-mode window, or the end
        of input not yet decoded."""
        if stream.flushed:
            return False
        if self.mode == "full":
            return stream.input_done or self._next_window(stream) is not None
        return stream.frames_available >= self.chunk_frames or stream.input_done

    def decode(self, stream: Stream) -> None:
        """Decode everything that is ready in this stream (no-op if nothing is)."""
        self.decode_streams([stream])

    def decode_streams(self, streams: list[Stream]) -> None:
        """Decode several streams; in streaming mode one step-graph call per chunk serves all of
        them (batched where the backend has a batch axis, e.g. onnxruntime).

        Raises:
            RuntimeError: a stream is listed twice, or another thread is using one of them.
        """
        seen: set[int] = set()
        for s in streams:
            if id(s) in seen:
                raise RuntimeError(f"{s.name} is listed twice in decode_streams; list each stream once")
            seen.add(id(s))
        with contextlib.ExitStack() as held:
            for s in streams:
                held.enter_context(s.owned("decode"))
            if self.mode == "full":
                for s in streams:
                    if self.is_ready(s):
                        self._decode_full(s)
                return
            while True:
                ready = [s for s in streams if self.is_ready(s)]
                if not ready:
                    return
                self._decode_chunk(ready)

    def _decode_chunk(self, streams: list[Stream]) -> None:
        c, sub = self.chunk_frames, self.subsampling
        feats = np.zeros((len(streams), c, streams[0].frontend.fbank.dim), dtype=np.float32)
        valid: list[int] = []
        with self.timers.stage("features"):
            for i, s in enumerate(streams):
                n = min(c, s.frames_available)
                feats[i, :n] = s.frontend.read(n)
                if n < c:  # input finished: zero-pad the last partial chunk, decode its full frames only
                    s.flushed = True
                valid.append(n // sub)
        run = [i for i, s in enumerate(streams) if valid[i] > 0]
        if run:
            rows = [streams[i] for i in run]
            state = self._stack_encoder_states(rows)
            enc, new_state = self.graphs.encoder_step(feats if len(run) == len(streams) else feats[run], state)
            self._unstack_encoder_states(rows, new_state)
            self._search(rows, enc, [valid[i] for i in run])
        for s in streams:
            # A finished stream whose buffer drained exactly on a chunk boundary is final now.
            if s.input_done and s.frames_available == 0:
                s.flushed = True

    def _next_window(self, s: Stream) -> Window | None:
        fbank = s.frontend.fbank
        return next_window(s.frames_decoded * self.subsampling, fbank.num_frames_ready, s.input_done, *self._window)

    def _decode_full(self, s: Stream) -> None:
        """Every full-mode window that is ready (the whole utterance when it fits in one)."""
        fbank, sub = s.frontend.fbank, self.subsampling
        while (w := self._next_window(s)) is not None:
            if w.stop - w.start < self._full_min_frames:
                s.flushed = True
                raise ValueError(
                    f"{s.name}: {(w.stop - w.start) * self.frame_shift_s:.2f} s of audio is shorter than this "
                    f"export's full-context graph accepts ({self._full_min_frames * self.frame_shift_s:.2f} s); "
                    "use mode='streaming' for it"
                )
            with self.timers.stage("features"):
                feats = fbank.frames(w.start, w.stop)[None]
            enc = self.graphs.encoder_full(feats)
            first, last = (w.keep_from - w.start) // sub, (w.keep_to - w.start) // sub
            self._search([s], enc[:, first:last], [last - first])
            fbank.drop_until(w.keep_to - self._window[1])  # the next window's left context stays
        if s.input_done:
            s.flushed = True

    def _stack_encoder_states(self, streams: list[Stream]) -> list[np.ndarray]:
        return stack_states([s.encoder_state for s in streams], self.graphs.encoder_states)

    def _unstack_encoder_states(self, streams: list[Stream], state: list[np.ndarray]) -> None:
        for s, st in zip(streams, split_states(state, self.graphs.encoder_states, len(streams))):
            s.encoder_state = st

    def _search(self, streams: list[Stream], enc: np.ndarray, valid: list[int]) -> None:
        first = [s.frames_decoded for s in streams]
        # Frames of leading digital silence are not searched: nothing has been heard, so nothing
        # can be said (the model never saw such frames and emits e.g. "paym" on them; README).
        start = [min(valid[i], max(0, sounding_from(s.frontend.fbank, self.subsampling) - first[i]))
                 for i, s in enumerate(streams)]
        with self.timers.stage_without_graphs("search"):
            if self.decoding == "greedy":
                hyps = [s.hyps[0] for s in streams]
                greedy_search(self.graphs, hyps, enc, valid, first, self.max_symbols_per_frame, self.blank_id, start,
                              self._lookahead)
            else:
                for i, s in enumerate(streams):
                    for t in range(start[i], valid[i]):
                        s.hyps = beam_search_step(self.graphs, s.hyps, enc[i, t], first[i] + t, self.beam, self.blank_id,
                                                  self.lm, self.lm_weight, self.lm_token_bonus, self.oov)
        for s, v in zip(streams, valid):
            s.frames_decoded += v

    # ------------------------------------------------------------------ endpointing

    def is_endpoint(self, stream: Stream) -> bool:
        """True when an endpoint rule fires (always False when endpointing is off)."""
        if self.endpoint is None:
            return False
        best = stream.best
        seg_frames = stream.frames_decoded - stream.segment_start_frame
        last = best.frames[-1] + 1 if best.frames else stream.segment_start_frame
        trailing = stream.frames_decoded - last
        return self.endpoint.fires(trailing * self.encoder_frame_s, seg_frames * self.encoder_frame_s)

    def reset(self, stream: Stream) -> None:
        """Start a new segment: the result is cleared; encoder state, features and the predictor
        context carry on (as sherpa-onnx's Reset), so no audio is lost."""
        with stream.owned("reset"):
            best = stream.best
            stream.hyps = [Hyp([], [], 0.0, best.context, best.pred_out, best.pred_state, lm_start(self.lm))]
            stream.segment += 1
            stream.segment_start_frame = stream.frames_decoded

    # ------------------------------------------------------------------ one-shot

    def recognize(self, samples: np.ndarray, sample_rate: int, name: str = "<array>") -> Result:
        """Recognize a whole utterance (full mode: encoder_full once; streaming: chunk by chunk)."""
        s = self.create_stream(name)
        with self.timers.stage("features"):
            s.frontend.push(prepare_samples(samples, sample_rate, self.sample_rate, name=name))
        s.input_finished()
        self.decode(s)
        return s.result
