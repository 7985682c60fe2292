"""Kaldi-compatible log-mel filterbank in numpy: the one implementation, used by training
(dualasr.features.compute_fbank) and by the runtime (dualasr.runtime.features, a chunk of frames
per call). Torch-free.

The features must match kaldi-native-fbank (what sherpa-onnx computes on device) sample for
sample: same framing, edge reflection, DC removal, pre-emphasis, window, FFT size, mel banks and
log floor. tests/test_audio_features.py checks this against kaldi_native_fbank directly. Options
are a FbankConfig dict (manifest["features"], dualasr.export.manifest.FEATURE_TYPES); waveforms
are float in [-1, 1] (not scaled by 32768), like sherpa-onnx's normalize_samples=True.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["Fbank", "fbank_for", "compute_fbank"]

# Kaldi floors mel energies (and the frame energy) at float32 epsilon before taking the log.
EPS = float(np.finfo(np.float32).eps)
WINDOWS = ("povey", "hamming", "hanning", "hann", "sine", "rectangular", "blackman")


def _window(kind: str, size: int) -> np.ndarray:
    """[size] analysis window, computed in float64 then rounded to float32 like kaldi."""
    i = np.arange(size, dtype=np.float64)
    a = 2 * np.pi / (size - 1)
    if kind == "povey":  # like hamming but goes to zero at the edges
        w = (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    elif kind == "hamming":
        w = 0.54 - 0.46 * np.cos(a * i)
    elif kind == "hanning":
        w = 0.5 - 0.5 * np.cos(a * i)
    elif kind == "hann":  # periodic, as torch.hann_window (not a kaldi window)
        w = 0.5 - 0.5 * np.cos(2 * np.pi / size * i)
    elif kind == "sine":
        w = np.sin(0.5 * a * i)
    elif kind == "rectangular":
        w = np.ones(size)
    elif kind == "blackman":
        w = 0.42 - 0.5 * np.cos(a * i) + 0.08 * np.cos(2 * a * i)
    else:
        raise ValueError(f"unknown window_type {kind!r}; use one of {', '.join(WINDOWS)}")
    return w.astype(np.float32)


def _mel_banks(sample_rate: int, num_bins: int, padded: int, low_freq: float, high_freq: float) -> np.ndarray:
    """[num_bins, padded // 2] triangular kaldi mel filters, computed in float32 like kaldi so bin
    edges fall on exactly the same FFT bins. high_freq <= 0 means nyquist + high_freq."""
    f32 = np.float32
    num_fft_bins = padded // 2
    nyquist = f32(0.5) * f32(sample_rate)
    low = f32(low_freq)
    high = f32(high_freq) if high_freq > 0 else nyquist + f32(high_freq)
    if num_bins < 3 or not (0 <= low < nyquist and 0 < high <= nyquist and low < high):
        raise ValueError(
            f"bad mel options: num_mel_bins={num_bins}, low_freq={low}, high_freq={high} "
            f"(nyquist {nyquist}); need num_mel_bins >= 3 and 0 <= low < high <= nyquist"
        )

    def mel_scale(f: np.ndarray) -> np.ndarray:
        return (f32(1127.0) * np.log(f32(1.0) + np.asarray(f, dtype=f32) / f32(700.0))).astype(f32)

    fft_bin_width = f32(sample_rate) / f32(padded)
    mel_low, mel_high = mel_scale(low), mel_scale(high)
    delta = (mel_high - mel_low) / f32(num_bins + 1)
    fft_mels = mel_scale(fft_bin_width * np.arange(num_fft_bins, dtype=f32))  # [num_fft_bins]

    b = np.arange(num_bins, dtype=f32)[:, None]
    left = mel_low + b * delta
    center = mel_low + (b + f32(1)) * delta
    right = mel_low + (b + f32(2)) * delta
    rising = (fft_mels - left) / (center - left)
    falling = (right - fft_mels) / (right - center)
    weights = np.where(fft_mels <= center, rising, falling)
    weights = np.where((fft_mels > left) & (fft_mels < right), weights, f32(0)).astype(f32)
    if not (weights > 0).any(axis=1).all():
        raise ValueError(f"num_mel_bins={num_bins} is too large for an FFT of size {padded}")
    return weights


class Fbank:
    """The filterbank for one set of options. Frames are indexed from the signal's start; frame f
    covers samples [start(f), start(f) + window_size), reflected about the signal's edges where
    that reaches outside it (snip_edges=False), exactly as kaldi's ExtractWindow.

    Args:
        features: a FbankConfig dict. Dither must be 0: the runtime is deterministic.
    """

    def __init__(self, features: dict):
        if float(features["dither"]) != 0.0:
            raise ValueError(f"features: dither {features['dither']} is not supported (use 0: recognition must "
                             "be deterministic); re-export with the default FbankConfig")
        self.sample_rate = int(features["sample_rate"])
        self.window_size = int(self.sample_rate * 0.001 * float(features["frame_length_ms"]))
        self.window_shift = int(self.sample_rate * 0.001 * float(features["frame_shift_ms"]))
        if self.window_size < 2 or self.window_shift < 1:
            raise ValueError(f"features: frame_length_ms / frame_shift_ms give {self.window_size} / "
                             f"{self.window_shift} samples per frame; both must be positive")
        self.padded = 1 << (self.window_size - 1).bit_length()  # FFT size: 512 for 400
        self.snip_edges = bool(features["snip_edges"])
        self.remove_dc_offset = bool(features["remove_dc_offset"])
        self.preemph_coeff = float(features["preemph_coeff"])
        self.use_energy = bool(features["use_energy"])
        self.energy_floor = float(features["energy_floor"])
        self.use_log_fbank = bool(features["use_log_fbank"])
        self.use_power = bool(features["use_power"])
        self.window = _window(str(features["window_type"]), self.window_size)
        # Kaldi's mel banks cover FFT bins 0 .. padded/2 - 1: the Nyquist bin never contributes.
        self.mel_t = np.ascontiguousarray(_mel_banks(self.sample_rate, int(features["num_mel_bins"]), self.padded,
                                                     float(features["low_freq"]), float(features["high_freq"])).T)
        self.dim = int(features["num_mel_bins"]) + int(self.use_energy)
        # Digital silence (all samples zero, or constant: DC removal makes that zero too): the log
        # floor in every bin. [dim]
        self.silence = self.compute(np.zeros(2 * self.window_size, np.float32), 0, 1, 0, 2 * self.window_size)[0]

    def start(self, frame: int) -> int:
        """First sample of a frame (negative: reflected about the start)."""
        if self.snip_edges:
            return frame * self.window_shift
        return frame * self.window_shift + self.window_shift // 2 - self.window_size // 2  # centred

    def num_frames(self, num_samples: int, finished: bool = True) -> int:
        """Frames of a signal of num_samples; before the input is finished, only those that do not
        reach past its end (the last one or two need the right edge reflected)."""
        shift, size = self.window_shift, self.window_size
        if self.snip_edges:
            return 0 if num_samples < size else 1 + (num_samples - size) // shift
        total = (num_samples + shift // 2) // shift  # num_samples / shift, rounded
        if finished:
            return total
        inside = num_samples - size - self.start(0)  # samples past the end of frame 0
        return max(0, min(total, inside // shift + 1 if inside >= 0 else 0))

    def _reflected(self, samples: np.ndarray, lo: int, hi: int, offset: int, total: int | None) -> np.ndarray:
        """Signal samples [lo, hi) with those before 0 (and, once the length `total` is known and
        frames are centred, those from `total` on) reflected about the edge: -1 -> 0, n -> n - 1.

        Only the reflected ends are gathered by index; the rest is one slice.
        """
        end = total if total is not None and not self.snip_edges else None
        if end is not None and (lo < -end or hi > 2 * end):
            # A signal shorter than a window: reflected again and again (period-2n symmetric extension).
            index = np.remainder(np.arange(lo, hi), 2 * end)
            return samples[np.where(index >= end, 2 * end - 1 - index, index) - offset]
        parts = []
        if lo < 0:
            parts.append(samples[-1 - np.arange(lo, min(hi, 0)) - offset])
        inner_hi = hi if end is None else min(hi, end)
        if inner_hi > max(lo, 0):
            parts.append(samples[max(lo, 0) - offset:inner_hi - offset])
        if end is not None and hi > end:
            parts.append(samples[2 * end - 1 - np.arange(max(lo, end), hi) - offset])
        return np.concatenate(parts)

    def compute(self, samples: np.ndarray, first: int, stop: int, offset: int = 0,
                total: int | None = None) -> np.ndarray:
        """Frames [first, stop) -> [stop - first, dim] float32.

        Args:
            samples: [N] float32, absolute samples [offset, offset + N) of the signal.
            total: the signal's length once the input is finished (frames reaching past it are
                reflected about it); None while it goes on (then no frame may reach past samples).
        """
        count = stop - first
        if count <= 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        size, shift = self.window_size, self.window_shift
        lo, hi = self.start(first), self.start(stop - 1) + size  # the samples the frames cover
        if lo >= offset and hi <= offset + samples.size:  # inside the signal
            covered = samples[lo - offset:hi - offset]
        else:  # reflected about the edges, as kaldi's ExtractWindow
            covered = self._reflected(samples, lo, hi, offset, total)
        # The frames as a strided view of the hi - lo = (count - 1) * shift + size samples they
        # cover. as_strided, not sliding_window_view: the streaming runtime computes one chunk at a
        # time, and the latter's checks cost as much as the framing itself there.
        step = covered.strides[0]
        frames = as_strided(covered, (count, size), (shift * step, step), writeable=False)
        frames = frames.astype(np.float32, copy=False)  # [T, window]
        if self.remove_dc_offset:
            frames = frames - frames.mean(axis=1, keepdims=True)
        if self.use_energy:
            # Kaldi's default raw_energy=true: energy after DC removal, before pre-emphasis/window.
            log_energy = np.log(np.maximum((frames * frames).sum(axis=1), EPS))
            if self.energy_floor > 0.0:
                log_energy = np.maximum(log_energy, math.log(self.energy_floor))
        # Pre-emphasis x[i] -= c * x[i-1] (kaldi's edge rule: x[0] -= c * x[0]) and the window,
        # computed in place in the zero-padded FFT input (no temporaries of the frames' size).
        c = np.float32(self.preemph_coeff)
        padded = np.zeros((count, self.padded), dtype=np.float32)
        body = padded[:, 1:size]
        np.multiply(frames[:, :-1], -c, out=body)
        body += frames[:, 1:]
        body *= self.window[1:]
        padded[:, 0] = frames[:, 0] * ((1 - c) * self.window[0])
        spectrum = np.fft.rfft(padded, axis=1)
        power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag  # [T, padded // 2 + 1]
        if not self.use_power:
            power = np.sqrt(power)
        mel = power[:, : self.padded // 2] @ self.mel_t  # [T, num_mel_bins]
        if self.use_log_fbank:
            mel = np.log(np.maximum(mel, EPS))
        if self.use_energy:
            mel = np.concatenate([log_energy[:, None], mel], axis=1)
        return mel.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=16)
def _cached(items: tuple) -> Fbank:
    return Fbank(dict(items))


def fbank_for(features: dict) -> Fbank:
    """The (shared, immutable) Fbank of these options: window and mel banks are computed once."""
    return _cached(tuple(sorted(features.items())))


def compute_fbank(samples: np.ndarray, features: dict) -> np.ndarray:
    """Whole-utterance fbank: [N] float at features["sample_rate"] -> [num_frames, dim] float32."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"compute_fbank expects a 1-D waveform, got shape {samples.shape}")
    fb = fbank_for(features)
    return fb.compute(samples, 0, fb.num_frames(samples.size), 0, samples.size)
