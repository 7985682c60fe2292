"""Polyphase FIR resampling in numpy: scipy.signal's firwin (Kaiser window), upfirdn and
resample_poly, so that the runtime resamples audio without scipy.

Each returns what its scipy namesake returns for 1-D input, float rounding aside
(tests/test_polyphase.py checks them against scipy). All three reduce to one sum,

    y[n] = sum_k x[k] * h[n*down + offset - k*up]      (x and h are zero outside their range)

computed from strided views of the input in blocks, so the temporaries stay small whatever the
input's length.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["firwin", "upfirdn", "resample_poly"]

# Outputs x taps per matrix-vector product: bounds the temporaries whatever the input length.
_BLOCK_ELEMENTS = 1 << 20


def firwin(numtaps: int, cutoff: float, window: tuple[str, float] = ("kaiser", 5.0)) -> np.ndarray:
    """Low-pass FIR filter by the window method, as scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta)).

    Args:
        numtaps: filter length.
        cutoff: cutoff frequency relative to Nyquist, 0 < cutoff < 1.
        window: ("kaiser", beta), the only window supported.

    Returns:
        h: [numtaps] float64, scaled to unit gain at DC (the taps sum to 1).
    """
    if window[0] != "kaiser" or len(window) != 2:
        raise ValueError(f"only the ('kaiser', beta) window is implemented, got {window!r}")
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be between 0 and 1 (relative to Nyquist), got {cutoff}")
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, float(window[1]))
    return h / h.sum()


def _fir_sum(h: np.ndarray, x: np.ndarray, up: int, down: int, offset: int, num_out: int) -> np.ndarray:
    """y[n] = sum_k x[k] * h[n*down + offset - k*up] for n in [0, num_out) -> [num_out] float64 (offset >= 0).

    With n*down + offset = q*up + r (0 <= r < up), output n is one phase of the filter,
    h[r + i*up] (i = 0, 1, ...), against x[q - i]. Outputs n = c, c + up, c + 2*up, ... share r,
    and their q step by `down`: each such class is a strided window view of x times one phase
    vector, with no per-output indexing.
    """
    taps = -(-h.size // up)  # the most input samples one output touches
    padded = np.zeros(taps * up)
    padded[: h.size] = h
    phases = padded.reshape(taps, up).T[:, ::-1].copy()  # phases[r, j] = h[r + (taps - 1 - j) * up]
    out = np.zeros(num_out)
    x = np.asarray(x, dtype=np.float64)
    if num_out == 0 or x.size == 0:
        return out
    last_q = ((num_out - 1) * down + offset) // up
    xp = np.concatenate([np.zeros(taps - 1), x, np.zeros(max(0, last_q + 1 - x.size))])
    windows = sliding_window_view(xp, taps)  # windows[q] = x[q - taps + 1 .. q], zeros outside x
    rows = max(1, _BLOCK_ELEMENTS // taps)
    for c in range(min(up, num_out)):
        q0, r = divmod(c * down + offset, up)
        count = (num_out - 1 - c) // up + 1
        for m in range(0, count, rows):
            m1 = min(m + rows, count)
            out[c + m * up : c + m1 * up : up] = windows[q0 + m * down : q0 + (m1 - 1) * down + 1 : down] @ phases[r]
    return out


def upfirdn(h: np.ndarray, x: np.ndarray, up: int = 1, down: int = 1) -> np.ndarray:
    """Upsample x by `up` (zeros between samples), filter with h, keep every `down`-th sample:
    scipy.signal.upfirdn(h, x, up, down) for 1-D x.

    Returns:
        y: [((len(x) - 1) * up + len(h) - 1) // down + 1] float64.
    """
    h = np.asarray(h, dtype=np.float64)
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be positive integers, got {up}, {down}")
    if h.ndim != 1 or h.size == 0:
        raise ValueError("h must be a non-empty 1-D array")
    x = np.asarray(x)
    num_out = max(0, ((x.shape[0] - 1) * up + h.size - 1) // down + 1)  # the full convolution, decimated
    return _fir_sum(h, x, up, down, 0, num_out)


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Resample 1-D x by up/down with scipy.signal.resample_poly's default filter: Kaiser
    (beta 5) windowed sinc of 2*half_len + 1 taps, half_len = 10 * max(up, down), cutoff
    1/max(up, down) of Nyquist, gain `up`, centred on each output (zero padding at the edges).

    Returns:
        y: [ceil(len(x) * up / down)] float64 (x itself, as a copy, when up == down).
    """
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be positive integers, got {up}, {down}")
    g = math.gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    x = np.asarray(x)
    if up == down:
        return x.copy()
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = firwin(2 * half_len + 1, 1.0 / max_rate) * up
    return _fir_sum(h, x, up, down, half_len, -(-x.shape[0] * up // down))
