"""Filterbank features and SpecAugment for training, in torch.

The options, FbankConfig, are part of the export contract (dualasr.export.manifest, torch-free:
the runtime reads them from the manifest). The filterbank itself is dualasr.fbank (numpy,
torch-free): the one kaldi-compatible implementation (window sizes, FFT size and mel banks are
derived there), which the runtime runs chunk by chunk; `compute_fbank` hands it a tensor. The
on-device runtime (sherpa-onnx) computes features with kaldi-native-fbank, so they must match it
sample for sample; tests/test_audio_features.py checks this against kaldi_native_fbank directly.

Waveforms are float in [-1, 1] (not scaled by 32768), like sherpa-onnx's normalize_samples=True.
"""

from __future__ import annotations

import torch

from dualasr.export.manifest import FbankConfig

from .fbank import compute_fbank as _fbank

__all__ = ["FbankConfig", "compute_fbank", "num_frames", "spec_augment"]


def num_frames(num_samples: int, cfg: FbankConfig = FbankConfig()) -> int:
    """Number of frames kaldi produces for `num_samples` samples (after input is finished)."""
    from .fbank import fbank_for

    return fbank_for(cfg.to_dict()).num_frames(num_samples)


def compute_fbank(waveform: torch.Tensor, cfg: FbankConfig = FbankConfig()) -> torch.Tensor:
    """Log-mel filterbank features, numerically compatible with kaldi_native_fbank (dualasr.fbank).

    Args:
        waveform: [num_samples] float samples in [-1, 1] at cfg.sample_rate.
        cfg: filterbank options.

    Returns:
        feats: [num_frames, cfg.feature_dim] float32 (energy first if cfg.use_energy), on the
        waveform's device.
    """
    waveform = torch.as_tensor(waveform)
    feats = _fbank(waveform.detach().to("cpu", torch.float32).numpy(), cfg.to_dict())
    return torch.from_numpy(feats).to(waveform.device)


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
