"""Kaldi-compatible log-mel filterbank features and SpecAugment, in torch.

The on-device runtime (sherpa-onnx) computes features with kaldi-native-fbank, so training
features must match it sample for sample: same framing, edge reflection, DC removal,
pre-emphasis, window, FFT size, mel banks and log floor. tests/test_audio_features.py checks
this against kaldi_native_fbank directly.

Waveforms are float in [-1, 1] (not scaled by 32768), like sherpa-onnx's normalize_samples=True.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

__all__ = ["FbankConfig", "compute_fbank", "compute_fbank_batch", "num_frames", "spec_augment"]

# Kaldi floors mel energies (and the frame energy) at float32 epsilon before taking the log.
_EPS = float(np.finfo(np.float32).eps)


@dataclass
class FbankConfig:
    """Filterbank options, named and defaulted as in kaldi / sherpa-onnx.

    high_freq follows kaldi semantics: > 0 is an absolute frequency, <= 0 means nyquist + high_freq.
    The default -400 is what sherpa-onnx (our runtime) and lhotse/icefall pass; note that
    kaldi_native_fbank.MelBanksOptions itself defaults to 0 (= nyquist), so code that builds
    knf options by hand must set high_freq explicitly.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    snip_edges: bool = False
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    low_freq: float = 20.0
    high_freq: float = -400.0
    use_energy: bool = False
    energy_floor: float = 0.0
    use_log_fbank: bool = True
    use_power: bool = True

    @property
    def window_size(self) -> int:
        """Samples per frame (400 at 16 kHz / 25 ms)."""
        return int(self.sample_rate * 0.001 * self.frame_length_ms)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts (160 at 16 kHz / 10 ms)."""
        return int(self.sample_rate * 0.001 * self.frame_shift_ms)

    @property
    def padded_window_size(self) -> int:
        """FFT size: the window rounded up to a power of two (512 for 400)."""
        return 1 << (self.window_size - 1).bit_length()

    @property
    def feature_dim(self) -> int:
        return self.num_mel_bins + int(self.use_energy)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FbankConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown FbankConfig keys {sorted(unknown)}; valid keys are {sorted(known)}")
        return cls(**d)


def num_frames(num_samples: int, cfg: FbankConfig = FbankConfig()) -> int:
    """Number of frames kaldi produces for `num_samples` samples (after input is finished)."""
    shift, length = cfg.window_shift, cfg.window_size
    if cfg.snip_edges:
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    # Round num_samples / shift to the nearest integer.
    return (num_samples + shift // 2) // shift


def compute_fbank(waveform: torch.Tensor, cfg: FbankConfig = FbankConfig()) -> torch.Tensor:
    """Log-mel filterbank features, numerically compatible with kaldi_native_fbank.

    Args:
        waveform: [num_samples] float samples in [-1, 1] at cfg.sample_rate.
        cfg: filterbank options.

    Returns:
        feats: [num_frames, cfg.feature_dim] float32 (energy first if cfg.use_energy).
    """
    waveform = torch.as_tensor(waveform)
    if waveform.dim() != 1:
        raise ValueError(f"compute_fbank expects a 1-D waveform, got shape {tuple(waveform.shape)}")
    device = waveform.device
    waveform = waveform.to(torch.float32)

    n = waveform.numel()
    frames_count = num_frames(n, cfg)
    if frames_count == 0:
        return torch.zeros(0, cfg.feature_dim, device=device)

    frames = _extract_frames(waveform, frames_count, cfg)  # [T, window_size]

    if cfg.dither != 0.0:
        # Kaldi dithers each extracted window independently.
        frames = frames + cfg.dither * torch.randn_like(frames)
    if cfg.remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    if cfg.use_energy:
        # Kaldi's default raw_energy=true: energy after DC removal, before pre-emphasis/window.
        log_energy = frames.pow(2).sum(dim=1).clamp_min(_EPS).log()
        if cfg.energy_floor > 0.0:
            log_energy = log_energy.clamp_min(math.log(cfg.energy_floor))
    if cfg.preemph_coeff != 0.0:
        # x[i] -= c * x[i-1], and kaldi's edge rule x[0] -= c * x[0].
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - cfg.preemph_coeff * previous
    frames = frames * _window(cfg, device)

    padded = cfg.padded_window_size
    spectrum = torch.fft.rfft(frames, n=padded, dim=1)  # zero-pads to the FFT size
    power = spectrum.real.pow(2) + spectrum.imag.pow(2)  # [T, padded // 2 + 1]
    if not cfg.use_power:
        power = power.sqrt()

    # Kaldi's mel banks cover FFT bins 0 .. padded/2 - 1: the Nyquist bin never contributes.
    mel = power[:, : padded // 2] @ _mel_banks(cfg, device).T  # [T, num_mel_bins]
    if cfg.use_log_fbank:
        mel = mel.clamp_min(_EPS).log()
    if cfg.use_energy:
        mel = torch.cat([log_energy[:, None], mel], dim=1)
    return mel


def compute_fbank_batch(
    wavs: list[torch.Tensor], cfg: FbankConfig = FbankConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """compute_fbank on each waveform, zero-padded into one batch.

    Args:
        wavs: B waveforms, each [num_samples_b].

    Returns:
        feats: [B, T_max, cfg.feature_dim], zeros beyond each utterance's length.
        lengths: [B] int64 number of valid frames per utterance.
    """
    feats = [compute_fbank(w, cfg) for w in wavs]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
    t_max = int(lengths.max()) if len(feats) else 0
    device = feats[0].device if feats else torch.device("cpu")
    batch = torch.zeros(len(feats), t_max, cfg.feature_dim, device=device)
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = f
    return batch, lengths


def spec_augment(
    feats: torch.Tensor,
    lengths: torch.Tensor,
    num_freq_masks: int = 2,
    max_freq_width: int = 15,
    num_time_masks: int = 2,
    max_time_frac: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SpecAugment frequency and time masking (no time warping).

    Masked cells are set to the utterance's mean over its valid frames, which is neutral after
    per-utterance normalisation. Time masks stay inside each utterance's valid length and
    padding frames are never touched.

    Args:
        feats: [B, T, F] features.
        lengths: [B] valid frames per utterance.
        max_time_frac: the longest time mask is this fraction of the utterance's length.
        generator: makes the masks reproducible; uses torch's global RNG when None.

    Returns:
        feats: [B, T, F] masked copy (the input is not modified).
    """
    batch, t_max, n_freq = feats.shape
    lengths = lengths.to("cpu", torch.int64)
    valid = torch.arange(t_max)[None, :] < lengths[:, None]  # [B, T]
    valid = valid.to(feats.device)

    def randint(high: int) -> int:
        # Uniform in [0, high]; drawn on CPU so the generator's device never matters.
        return int(torch.randint(0, high + 1, (1,), generator=generator))

    mask = torch.zeros(batch, t_max, n_freq, dtype=torch.bool)
    for b in range(batch):
        length = int(lengths[b])
        if length == 0:
            continue
        for _ in range(num_freq_masks):
            width = randint(min(max_freq_width, n_freq))
            start = randint(n_freq - width)
            mask[b, :length, start : start + width] = True
        max_width = int(max_time_frac * length)
        for _ in range(num_time_masks):
            width = randint(max_width)
            start = randint(length - width)
            mask[b, start : start + width, :] = True
    mask = mask.to(feats.device)

    # Per-utterance mean over valid frames: [B, 1, 1].
    counts = (lengths.to(feats.device).clamp_min(1) * n_freq).to(feats.dtype)
    means = (feats * valid[:, :, None]).sum(dim=(1, 2)) / counts
    return torch.where(mask, means[:, None, None].expand_as(feats), feats)


def _extract_frames(waveform: torch.Tensor, frames_count: int, cfg: FbankConfig) -> torch.Tensor:
    """Frames [frames_count, window_size] laid out exactly like kaldi's ExtractWindow."""
    shift, length, n = cfg.window_shift, cfg.window_size, waveform.numel()
    frame_index = torch.arange(frames_count, device=waveform.device)
    if cfg.snip_edges:
        starts = frame_index * shift
    else:
        # Frames are centred on shift * f + shift / 2.
        starts = frame_index * shift + shift // 2 - length // 2
    index = starts[:, None] + torch.arange(length, device=waveform.device)[None, :]
    if not cfg.snip_edges:
        # Kaldi reflects out-of-range samples about the edges (-1 -> 0, n -> n-1), repeatedly if
        # the waveform is shorter than a window; that is a period-2n symmetric extension.
        index = index.remainder(2 * n)
        index = torch.where(index >= n, 2 * n - 1 - index, index)
    return waveform[index]


_window_cache: dict[tuple, torch.Tensor] = {}
_mel_cache: dict[tuple, torch.Tensor] = {}


def _window(cfg: FbankConfig, device: torch.device) -> torch.Tensor:
    """[window_size] analysis window, computed in float64 then rounded to float32 like kaldi."""
    key = (cfg.window_type, cfg.window_size, str(device))
    if key not in _window_cache:
        size = cfg.window_size
        i = np.arange(size, dtype=np.float64)
        a = 2 * np.pi / (size - 1)
        kind = cfg.window_type
        if kind == "povey":  # like hamming but goes to zero at the edges
            w = (0.5 - 0.5 * np.cos(a * i)) ** 0.85
        elif kind == "hamming":
            w = 0.54 - 0.46 * np.cos(a * i)
        elif kind == "hanning":
            w = 0.5 - 0.5 * np.cos(a * i)
        elif kind == "hann":  # periodic, as torch.hann_window
            w = 0.5 - 0.5 * np.cos(2 * np.pi / size * i)
        elif kind == "sine":
            w = np.sin(0.5 * a * i)
        elif kind == "rectangular":
            w = np.ones(size)
        elif kind == "blackman":
            w = 0.42 - 0.5 * np.cos(a * i) + 0.08 * np.cos(2 * a * i)
        else:
            raise ValueError(
                f"unknown window_type {kind!r}; use povey, hamming, hanning, hann, sine, rectangular or blackman"
            )
        _window_cache[key] = torch.from_numpy(w.astype(np.float32)).to(device)
    return _window_cache[key]


def _mel_banks(cfg: FbankConfig, device: torch.device) -> torch.Tensor:
    """[num_mel_bins, padded_window_size // 2] triangular kaldi mel filters.

    Computed in float32 like kaldi so bin edges fall on exactly the same FFT bins.
    """
    key = (cfg.sample_rate, cfg.num_mel_bins, cfg.padded_window_size, cfg.low_freq, cfg.high_freq, str(device))
    if key not in _mel_cache:
        f32 = np.float32
        num_bins = cfg.num_mel_bins
        num_fft_bins = cfg.padded_window_size // 2
        nyquist = f32(0.5) * f32(cfg.sample_rate)
        low = f32(cfg.low_freq)
        high = f32(cfg.high_freq) if cfg.high_freq > 0 else nyquist + f32(cfg.high_freq)
        if num_bins < 3 or not (0 <= low < nyquist and 0 < high <= nyquist and low < high):
            raise ValueError(
                f"bad mel options: num_mel_bins={num_bins}, low_freq={low}, high_freq={high} "
                f"(nyquist {nyquist}); need num_mel_bins >= 3 and 0 <= low < high <= nyquist"
            )

        def mel_scale(f: np.ndarray) -> np.ndarray:
            return (f32(1127.0) * np.log(f32(1.0) + np.asarray(f, dtype=f32) / f32(700.0))).astype(f32)

        fft_bin_width = f32(cfg.sample_rate) / f32(cfg.padded_window_size)
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
            raise ValueError(f"num_mel_bins={num_bins} is too large for an FFT of size {cfg.padded_window_size}")
        _mel_cache[key] = torch.from_numpy(weights).to(device)
    return _mel_cache[key]
