"""Streaming log-mel filterbank for the torch-free runtime.

`StreamingFbank` takes waveform pieces as they arrive and hands out complete feature frames, a
chunk of frames per call (dualasr.fbank, the one filterbank implementation, vectorized over the
chunk). It keeps only the samples the frames not yet read need (`read` / `drop_until` forget the
rest), so a stream of any length keeps a bounded buffer. The frames equal kaldi-native-fbank's
OnlineFbank (what sherpa-onnx computes in C++) and the training features (tests/test_runtime.py,
tests/test_audio_features.py).
"""

from __future__ import annotations

import numpy as np

from dualasr.audio import AudioError, channel_axis, prepare_samples
from dualasr.export.manifest import FEATURE_TYPES
from dualasr.fbank import compute_fbank, fbank_for

from .resample import StreamingResampler

__all__ = ["StreamingFbank", "AudioFrontend", "compute_features", "silence_frame", "sounding_from"]


def _check_keys(features: dict) -> None:
    unknown = set(features) - set(FEATURE_TYPES)  # FbankConfig's keys (dualasr.export.manifest)
    missing = set(FEATURE_TYPES) - set(features)
    if unknown or missing:
        raise ValueError(
            f"manifest features: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
            "re-export with this dualasr version"
        )


class StreamingFbank:
    """Incremental fbank: accept_waveform(...)* , input_finished(), read(n) frames as they complete.

    Frame indices are absolute from the stream start; `read` returns the oldest unread frames and
    forgets them. With snip_edges=False the last frame or two need the right edge (reflected), so
    they appear only after input_finished().

    Raises:
        ValueError: features with unknown or missing keys, or options the filterbank lacks.
    """

    def __init__(self, features: dict):
        _check_keys(features)
        self._fbank = fbank_for(features)
        self.sample_rate = self._fbank.sample_rate
        self.dim = self._fbank.dim
        self._kept = np.zeros(0, dtype=np.float32)  # samples [_kept_from, _kept_from + len) ...
        self._pending: list[np.ndarray] = []  # ... then these pieces, joined when frames are computed
        self._kept_from = 0
        self._received = 0
        self._next = 0  # absolute index of the oldest unread frame
        self.finished = False
        self._silence = self._fbank.silence
        self.sound_from: int | None = None  # first frame read that is not digital silence

    def accept_waveform(self, samples: np.ndarray) -> None:
        """samples: [N] float32 in [-1, 1] at self.sample_rate (already checked/resampled)."""
        if self.finished:
            raise RuntimeError("accept_waveform after input_finished(); create a new stream")
        if samples.size:
            self._pending.append(np.array(samples, dtype=np.float32))  # a copy: the caller may reuse its buffer
            self._received += samples.size

    def input_finished(self) -> None:
        self.finished = True

    @property
    def num_frames_ready(self) -> int:
        """Frames computable so far, absolute (consumed ones included)."""
        return self._fbank.num_frames(self._received, self.finished)

    @property
    def num_available(self) -> int:
        """Computable frames not read yet."""
        return self.num_frames_ready - self._next

    def _samples(self) -> np.ndarray:
        if self._pending:
            self._kept = np.concatenate([self._kept, *self._pending])
            self._pending.clear()
        return self._kept

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) by absolute index -> [stop - start, dim] float32, in one call; the
        samples stay (the full mode reads a window's left context twice)."""
        if start < self._next or stop > self.num_frames_ready or stop < start:
            raise ValueError(f"frames [{start}, {stop}) are not held (held: [{self._next}, {self.num_frames_ready}))")
        out = self._fbank.compute(self._samples(), start, stop, self._kept_from,
                                  self._received if self.finished else None)
        if self.sound_from is None or start < self.sound_from:
            sound = np.nonzero(np.abs(out - self._silence).max(axis=1, initial=0.0) > 1e-4)[0]
            if sound.size:
                self.sound_from = start + int(sound[0]) if self.sound_from is None else min(self.sound_from, start + int(sound[0]))
        return out

    def drop_until(self, index: int) -> None:
        """Forget the frames before absolute `index` and the samples only they need (keeps memory
        flat on endless streams). The last window of samples stays: the final frames reflect it."""
        index = min(index, self.num_frames_ready)
        if index <= self._next:
            return
        self._next = index
        keep_from = max(0, min(self._fbank.start(index), self._received - self._fbank.window_size))
        if keep_from > self._kept_from:
            self._kept = self._samples()[keep_from - self._kept_from:]
            self._kept_from = keep_from

    def read(self, n: int) -> np.ndarray:
        """The next n unread frames -> [n, dim] float32; they are then dropped from memory."""
        if n > self.num_available:
            raise ValueError(f"asked for {n} frames but only {self.num_available} are ready")
        out = self.frames(self._next, self._next + n)
        self.drop_until(self._next + n)
        return out

    def buffered_samples(self) -> int:
        """Samples held (those the unread frames need, and the last window)."""
        return self._received - self._kept_from


def silence_frame(features: dict) -> np.ndarray:
    """The feature frame of digital silence (all samples zero, or constant: DC removal makes that
    zero too): the log floor in every bin. [dim] float32."""
    _check_keys(features)
    return fbank_for(features).silence


def sounding_from(fbank: StreamingFbank, subsampling: int) -> int:
    """The first encoder frame whose features are not all digital silence, as far as frames have
    been read (a very large number while everything read so far is silent)."""
    return (1 << 62) if fbank.sound_from is None else fbank.sound_from // subsampling


def compute_features(samples: np.ndarray, features: dict) -> np.ndarray:
    """Whole-utterance fbank: [N] float32 at features["sample_rate"] -> [T, dim] float32."""
    _check_keys(features)
    return compute_fbank(samples, features)


class AudioFrontend:
    """Audio in -> feature frames out, for one stream: checks and converts each piece like
    dualasr.audio.prepare_samples (dtype scaling, mixdown, NaN/Inf and range errors naming the
    stream), resamples with a StreamingResampler when the input rate differs from the model's
    (no clicks at piece boundaries), and feeds a StreamingFbank.
    """

    def __init__(self, features: dict, name: str):
        self.name = name
        self.target_rate = int(features["sample_rate"])
        self.fbank = StreamingFbank(features)
        self.input_rate: int | None = None
        self._resampler = None
        self._layout: tuple[int, int] | None = None  # (channel axis, channels) of 2-D pieces
        self.samples_received = 0  # at the target rate
        self.input_done = False

    def accept_waveform(self, sample_rate: int, samples: np.ndarray) -> None:
        """samples: [N], [N, C] or [C, N]; int16/int32/uint8 or float in [-1, 1]; any rate (it must
        not change within a stream). An empty piece is a no-op (microphones deliver those).

        Raises:
            AudioError: bad rate/shape/dtype, NaN/Inf, floats beyond [-2, 2], rate change.
            RuntimeError: after input_finished().
        """
        if self.input_done:
            raise RuntimeError(f"{self.name}: accept_waveform after input_finished(); create a new stream")
        x = np.asarray(samples)
        if x.size == 0:
            return
        rate = self.input_rate
        if rate is None:
            # Validate the rate with prepare_samples' own message before committing to it.
            prepare_samples(np.zeros(1, np.float32), sample_rate, self.target_rate, name=self.name)
            rate = int(sample_rate)
        elif sample_rate != rate:
            raise AudioError(
                f"{self.name}: sample rate changed from {rate} to {sample_rate} Hz mid-stream; "
                "create a new stream for audio at another rate"
            )
        layout = self._layout
        if x.ndim == 2:
            # A stream keeps the channel layout of its first unambiguous 2-D piece (> 8 frames): a
            # later 1-frame stereo piece [1, 2] alone would read as [channels=1, frames=2].
            if layout is None and max(x.shape) > 8:
                axis = channel_axis(x, self.name)
                layout = (axis, x.shape[axis])
            elif layout is not None and x.shape[layout[0]] != layout[1]:
                raise AudioError(
                    f"{self.name}: piece of shape {x.shape} does not have this stream's {layout[1]} channels "
                    f"on axis {layout[0]}; keep one channel layout per stream"
                )
        axis = layout[0] if layout is not None and x.ndim == 2 else None
        x = prepare_samples(x, rate, rate, name=self.name, channel_axis=axis)
        # The piece is valid: only now commit the stream's rate and layout (a refused piece leaves no trace).
        if self.input_rate is None:
            self.input_rate = rate
            if rate != self.target_rate:
                self._resampler = StreamingResampler(rate, self.target_rate)
        if layout is not None:
            self._layout = layout
        if self._resampler is not None:
            x = self._resampler.accept(x)
        self.push(x)

    def push(self, x: np.ndarray) -> None:
        """Already checked float32 samples at the target rate."""
        if self.input_rate is None:
            self.input_rate = self.target_rate
        self.samples_received += x.size
        self.fbank.accept_waveform(x)

    def input_finished(self) -> None:
        if self.input_done:
            return
        if self._resampler is not None:
            self.push(self._resampler.flush())
        self.fbank.input_finished()
        self.input_done = True

    @property
    def num_available(self) -> int:
        return self.fbank.num_available

    def read(self, n: int) -> np.ndarray:
        return self.fbank.read(n)

    def buffered_samples(self) -> int:
        """Resampler input held back (bounded by its filter length)."""
        return 0 if self._resampler is None else int(self._resampler._buf.size)
