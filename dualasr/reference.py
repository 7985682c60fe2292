"""The PyTorch eager reference with the runtime's Recognizer API (`dualasr transcribe --backend torch`).

Same audio front end as the torch-free runtime (dualasr.runtime.features.AudioFrontend:
kaldi_native_fbank features, streaming resampler) but the model runs in PyTorch eager from the
checkpoint: streaming = model.encoder.forward_chunk per chunk (same chunking and final zero-padded
partial chunk as the runtime), full = model.encoder(..., "full"); decoding = dualasr.decoding's
greedy_search / beam_search re-run over all encoder frames decoded so far. That makes it an
independent check of the exported graphs and of the runtime's incremental numpy search, and a
baseline for RTF; it is not meant to be fast (or memory-bounded: it keeps every encoder frame).

This module imports torch; dualasr.runtime never imports it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model
from .decoding import beam_search, greedy_search
from .runtime.features import AudioFrontend, sounding_from
from .runtime.recognizer import Result

__all__ = ["TorchRecognizer", "TorchStream", "resolve_checkpoint"]


def resolve_checkpoint(path: str | os.PathLike) -> tuple[Path, dict | None]:
    """A checkpoint file, or an export folder whose manifest names the checkpoint it holds ->
    (checkpoint path, manifest or None)."""
    path = Path(path)
    if path.is_file():
        return path, None
    from .runtime.recognizer import load_export_manifest

    manifest = load_export_manifest(path)
    rel = manifest.get("checkpoint")
    if not rel:
        raise ValueError(
            f"{path}: this export holds no checkpoint, which the torch backend needs; pass the "
            "checkpoint file itself as DIR, or re-export (the exporter copies it in)"
        )
    from .export.manifest import artifact_path

    return artifact_path(manifest, path, rel), manifest


class TorchStream:
    def __init__(self, rec: "TorchRecognizer", name: str | None):
        self._rec = rec
        self.name = name or "stream"
        self.frontend = AudioFrontend(rec.features, self.name)
        self.flushed = False
        self.state = rec.model.encoder.init_state(1) if rec.mode == "streaming" else None
        self.enc: list[torch.Tensor] = []  # [1, C, D] pieces
        self.frames_decoded = 0
        self._hyp = None
        self._decoded_frames = -1

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        self.frontend.accept_waveform(sample_rate, samples)

    def input_finished(self) -> None:
        self.frontend.input_finished()

    @property
    def input_done(self) -> bool:
        return self.frontend.input_done

    @property
    def frames_available(self) -> int:
        return self.frontend.num_available

    @property
    def audio_seconds(self) -> float:
        return self.frontend.samples_received / self.frontend.target_rate

    @property
    def result(self) -> Result:
        rec = self._rec
        hyp = self._rec._search(self)
        ids, frames = (hyp.tokens, hyp.frames) if hyp is not None else ([], [])
        return Result(
            text=rec.tokenizer.decode(ids),
            tokens=[rec.tokenizer.id_to_piece(i) for i in ids],
            token_ids=list(ids),
            timestamps=[round((f + 1) * rec.encoder_frame_s, 6) for f in frames],
            is_final=self.flushed,
        )


class TorchRecognizer:
    """Recognizer-like API on the PyTorch model (see dualasr.runtime.Recognizer for the calls).

    Args:
        checkpoint: checkpoint file, or an export folder that contains one (manifest "checkpoint").
        mode: "streaming" | "full"; chunk_ms: streaming chunk (default: the export's first, or 320).
        decoding: "greedy" | "beam"; beam: beam size; threads: torch intra-op threads (0: default).
    """

    name = backend_name = "torch"

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        mode: str = "streaming",
        chunk_ms: int | None = None,
        decoding: str = "greedy",
        beam: int = 4,
        threads: int = 0,
        max_symbols_per_frame: int = 3,
    ):
        t0 = time.perf_counter()
        if mode not in ("streaming", "full") or decoding not in ("greedy", "beam"):
            raise ValueError(f"bad mode {mode!r} or decoding {decoding!r}")
        if threads:
            torch.set_num_threads(int(threads))
        ckpt, manifest = resolve_checkpoint(checkpoint)
        self.model, config, tok_bytes = load_model(ckpt)
        self.tokenizer = _tokenizer_from_bytes(tok_bytes)
        cfg = self.model.cfg
        if manifest is not None:
            self.features = dict(manifest["features"])
            default_chunk = int(manifest["streaming"][0]["chunk_ms"]) if manifest.get("streaming") else 320
        else:
            from .features import FbankConfig

            self.features = FbankConfig(num_mel_bins=cfg.num_mel_bins).to_dict()
            default_chunk = 320
        self.mode, self.decoding, self.beam = mode, decoding, beam
        self.max_symbols_per_frame = max_symbols_per_frame
        self.sample_rate = int(self.features["sample_rate"])
        self.subsampling = cfg.subsampling
        self.frame_shift_s = float(self.features["frame_shift_ms"]) / 1000.0
        self.encoder_frame_s = self.subsampling * self.frame_shift_s
        self.chunk_ms = (chunk_ms or default_chunk) if mode == "streaming" else None
        self.chunk_frames = int(round(self.chunk_ms / (self.frame_shift_s * 1000))) if self.chunk_ms else 0
        if mode == "streaming" and (self.chunk_frames == 0 or self.chunk_frames % self.subsampling):
            raise ValueError(f"chunk_ms={self.chunk_ms} must be a positive multiple of {self.encoder_frame_s * 1000:.0f} ms")
        self.load_seconds = time.perf_counter() - t0

    def create_stream(self, name: str | None = None) -> TorchStream:
        return TorchStream(self, name)

    def is_ready(self, s: TorchStream) -> bool:
        if s.flushed:
            return False
        if self.mode == "full":
            return s.input_done
        return s.frames_available >= self.chunk_frames or s.input_done

    @torch.no_grad()
    def decode(self, s: TorchStream) -> None:
        while self.is_ready(s):
            if self.mode == "full":
                feats = torch.from_numpy(s.frontend.read(s.frames_available))[None]
                s.flushed = True
                if feats.shape[1] >= self.subsampling:
                    enc, _ = self.model.encoder(feats, None, "full")
                    s.enc.append(enc)
                    s.frames_decoded += enc.shape[1]
                return
            c = self.chunk_frames
            n = min(c, s.frames_available)
            chunk = np.zeros((1, c, s.frontend.fbank.dim), dtype=np.float32)
            chunk[0, :n] = s.frontend.read(n)
            if n < c:
                s.flushed = True
            valid = n // self.subsampling
            if valid:
                enc, s.state = self.model.encoder.forward_chunk(torch.from_numpy(chunk), s.state)
                s.enc.append(enc[:, :valid])
                s.frames_decoded += valid
            if s.input_done and s.frames_available == 0:
                s.flushed = True

    def decode_streams(self, streams: list[TorchStream]) -> None:
        for s in streams:
            self.decode(s)

    @torch.no_grad()
    def _search(self, s: TorchStream):
        """Search over every encoder frame so far (cached until new frames arrive)."""
        if s._decoded_frames == s.frames_decoded:
            return s._hyp
        # As the runtime: leading digital silence is not searched (dualasr.runtime.recognizer).
        skip = min(s.frames_decoded, sounding_from(s.frontend.fbank, self.subsampling))
        if s.frames_decoded == skip:
            s._hyp = None
        else:
            enc = torch.cat(s.enc, dim=1)[:, skip:]
            if self.decoding == "greedy":
                lens = torch.tensor([enc.shape[1]])
                s._hyp = greedy_search(self.model, enc, lens, self.max_symbols_per_frame)[0]
            else:
                s._hyp = beam_search(self.model, enc, beam=self.beam)
            s._hyp.frames = [f + skip for f in s._hyp.frames]
        s._decoded_frames = s.frames_decoded
        return s._hyp

    def is_endpoint(self, s: TorchStream) -> bool:
        return False

    def recognize(self, samples: np.ndarray, sample_rate: int, name: str = "<array>") -> Result:
        from .audio import prepare_samples

        s = self.create_stream(name)
        s.frontend.push(prepare_samples(samples, sample_rate, self.sample_rate, name=name))
        s.input_finished()
        self.decode(s)
        return s.result


def _tokenizer_from_bytes(data: bytes):
    """A Tokenizer from the sentencepiece bytes a checkpoint carries (via a private temp file)."""
    import tempfile

    from .tokenizer import Tokenizer

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "tokenizer.model"
        p.write_bytes(data)
        return Tokenizer(p)
