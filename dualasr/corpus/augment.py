"""Signal-level augmentation after TTS, and the energy VAD that trims engine silence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Augmentation:
    """Signal-level augmentation applied after TTS. Defaults are a no-op.

    speed: sox `speed` perturbation (tempo and pitch, like Kaldi's 0.9/1.1).
    noise: "white" or "pink" noise added at `snr_db` (relative to the speech part).
    reverb: sox reverberance in percent, 0 = off.
    telephone: 300-3400 Hz band and an 8 kHz round trip.
    gain_db: peak level of the speech in dBFS.
    seed: seeds the noise, so the same Augmentation yields the same file.
    """

    speed: float = 1.0
    noise: str | None = None
    snr_db: float = 20.0
    reverb: float = 0.0
    telephone: bool = False
    gain_db: float = -3.0
    seed: int = 0



def speech_bounds(x: np.ndarray, sample_rate: int = 16000, threshold_db: float = -40.0) -> tuple[int, int]:
    """[start, end) samples of the part louder than `threshold_db` below the loudest 10 ms
    frame. Cheap energy VAD for clean or mildly noisy single utterances."""
    hop = sample_rate // 100
    n = len(x) // hop
    if n == 0:
        return 0, len(x)
    rms = np.sqrt((x[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1) + 1e-20)
    loud = np.nonzero(rms >= rms.max() * 10 ** (threshold_db / 20))[0]
    if loud.size == 0:
        return 0, len(x)
    return int(loud[0] * hop), int(min(len(x), (loud[-1] + 1) * hop))


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    if kind != "pink":
        raise ValueError(f"unknown noise {kind!r}; use 'white' or 'pink'")
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)  # 1/f power
