"""Streaming log-mel filterbank on kaldi_native_fbank (torch-free).

`StreamingFbank` takes waveform pieces as they arrive and hands out complete feature frames;
consumed frames are dropped (`pop`), so a stream of any length keeps a bounded buffer. The frames
equal `dualasr.features.compute_fbank` (the training features) to kaldi's float tolerance, because
every option is set explicitly from the export manifest's "features" dict: kaldi_native_fbank's own
defaults differ (dither 3e-5, snip_edges true, 23 bins, high_freq 0).

Porting note: this is the same OnlineFbank sherpa-onnx uses in C++ (kaldi-native-fbank).
"""

from __future__ import annotations

import numpy as np

from dualasr.export.manifest import FEATURE_TYPES

__all__ = ["FEATURE_KEYS", "knf_options", "StreamingFbank", "AudioFrontend", "compute_features", "silence_frame",
           "sounding_from"]

# The keys of dualasr.features.FbankConfig.to_dict() (that module imports torch, so the manifest
# contract lists them; tests/test_runtime.py checks the two agree).
FEATURE_KEYS = tuple(FEATURE_TYPES)
# Windows kaldi_native_fbank implements ("hann", the periodic torch window, is training-only).
_KNF_WINDOWS = ("povey", "hamming", "hanning", "sine", "rectangular", "blackman")


def knf_options(features: dict):
    """kaldi_native_fbank.FbankOptions equal to a FbankConfig dict (manifest["features"]).

    Raises:
        ValueError: unknown or missing keys, or a window kaldi_native_fbank lacks.
    """
    import kaldi_native_fbank as knf

    unknown = set(features) - set(FEATURE_KEYS)
    missing = set(FEATURE_KEYS) - set(features)
    if unknown or missing:
        raise ValueError(
            f"manifest features: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
            "re-export with this dualasr version"
        )
    if features["window_type"] not in _KNF_WINDOWS:
        raise ValueError(
            f"manifest features: window_type {features['window_type']!r} is not supported by "
            f"kaldi_native_fbank (use one of {_KNF_WINDOWS})"
        )
    opts = knf.FbankOptions()
    fo, mo = opts.frame_opts, opts.mel_opts
    fo.samp_freq = float(features["sample_rate"])
    fo.frame_length_ms = float(features["frame_length_ms"])
    fo.frame_shift_ms = float(features["frame_shift_ms"])
    fo.dither = float(features["dither"])
    fo.snip_edges = bool(features["snip_edges"])
    fo.preemph_coeff = float(features["preemph_coeff"])
    fo.remove_dc_offset = bool(features["remove_dc_offset"])
    fo.window_type = str(features["window_type"])
    mo.num_bins = int(features["num_mel_bins"])
    mo.low_freq = float(features["low_freq"])
    mo.high_freq = float(features["high_freq"])
    opts.use_energy = bool(features["use_energy"])
    opts.energy_floor = float(features["energy_floor"])
    opts.use_log_fbank = bool(features["use_log_fbank"])
    opts.use_power = bool(features["use_power"])
    return opts


class StreamingFbank:
    """Incremental fbank: accept_waveform(...)* , input_finished(), read(n) frames as they complete.

    Frame indices are absolute from the stream start; `read` returns the oldest unread frames and
    forgets them. With snip_edges=False the last frame or two need the right edge (reflected), so
    they appear only after input_finished().
    """

    def __init__(self, features: dict):
        import kaldi_native_fbank as knf

        self.sample_rate = int(features["sample_rate"])
        self.dim = int(features["num_mel_bins"]) + int(bool(features["use_energy"]))
        self._fbank = knf.OnlineFbank(knf_options(features))
        self._next = 0  # absolute index of the oldest unread frame
        self.finished = False
        self._silence = silence_frame(features)
        self.sound_from: int | None = None  # first frame read that is not digital silence

    def accept_waveform(self, samples: np.ndarray) -> None:
        """samples: [N] float32 in [-1, 1] at self.sample_rate (already checked/resampled)."""
        if self.finished:
            raise RuntimeError("accept_waveform after input_finished(); create a new stream")
        if samples.size:
            self._fbank.accept_waveform(self.sample_rate, np.ascontiguousarray(samples, dtype=np.float32))

    def input_finished(self) -> None:
        if not self.finished:
            self._fbank.input_finished()
            self.finished = True

    @property
    def num_frames_ready(self) -> int:
        """Frames computed so far, absolute (consumed ones included)."""
        return int(self._fbank.num_frames_ready)

    @property
    def num_available(self) -> int:
        """Computed frames not read yet."""
        return self.num_frames_ready - self._next

    @property
    def num_consumed(self) -> int:
        return self._next

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) by absolute index -> [stop - start, dim] float32, kept in memory
        (the full mode reads a window's left context twice)."""
        if start < self._next or stop > self.num_frames_ready or stop < start:
            raise ValueError(f"frames [{start}, {stop}) are not held (held: [{self._next}, {self.num_frames_ready}))")
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        for i in range(start, stop):
            out[i - start] = self._fbank.get_frame(i)
        if self.sound_from is None or start < self.sound_from:
            sound = np.nonzero(np.abs(out - self._silence).max(axis=1, initial=0.0) > 1e-4)[0]
            if sound.size:
                self.sound_from = start + int(sound[0]) if self.sound_from is None else min(self.sound_from, start + int(sound[0]))
        return out

    def drop_until(self, index: int) -> None:
        """Forget the frames before absolute `index` (keeps memory flat on endless streams)."""
        n = min(index, self.num_frames_ready) - self._next
        if n > 0:
            self._fbank.pop(n)
            self._next += n

    def read(self, n: int) -> np.ndarray:
        """The next n unread frames -> [n, dim] float32; they are then dropped from memory."""
        if n > self.num_available:
            raise ValueError(f"asked for {n} frames but only {self.num_available} are ready")
        out = self.frames(self._next, self._next + n)
        self.drop_until(self._next + n)
        return out


def silence_frame(features: dict) -> np.ndarray:
    """The feature frame of digital silence (all samples zero, or constant: DC removal makes that
    zero too): the log floor in every bin. [dim] float32."""
    import kaldi_native_fbank as knf

    fbank = knf.OnlineFbank(knf_options(features))
    fbank.accept_waveform(float(features["sample_rate"]), np.zeros(int(features["sample_rate"]) // 10, np.float32))
    fbank.input_finished()
    return np.asarray(fbank.get_frame(0), dtype=np.float32)


def sounding_from(fbank: StreamingFbank, subsampling: int) -> int:
    """The first encoder frame whose features are not all digital silence, as far as frames have
    been read (a very large number while everything read so far is silent)."""
    return (1 << 62) if fbank.sound_from is None else fbank.sound_from // subsampling


def compute_features(samples: np.ndarray, features: dict) -> np.ndarray:
    """Whole-utterance fbank: [N] float32 at features["sample_rate"] -> [T, dim] float32."""
    fb = StreamingFbank(features)
    fb.accept_waveform(samples)
    fb.input_finished()
    return fb.read(fb.num_available)


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
        from dualasr.audio import AudioError, channel_axis, prepare_samples

        from .resample import StreamingResampler

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
