"""A streaming polyphase resampler equal to scipy.signal.resample_poly on the whole signal.

`dualasr.audio.prepare_samples` resamples a complete array with resample_poly. A microphone
delivers pieces, and resampling each piece on its own clicks at every boundary (each piece gets
zero-padded edges). This keeps the input history the FIR filter needs, so feeding a signal in any
split yields the same samples as one resample_poly call (float rounding aside).

Filter (as resample_poly's default): Kaiser(beta=5) windowed sinc, 2*half_len+1 taps with
half_len = 10 * max(up, down), cutoff 1/max(up, down) of Nyquist, gain `up`. Output sample n is
    y[n] = sum_j x[j] * h[n*down + half_len - j*up]      (x = 0 outside the signal)
and the output length is ceil(len(x) * up / down).

Porting note: a plain FIR loop; C++ ports can use the same formula (or sherpa-onnx's
LinearResample, which is a different filter and so not bit-comparable).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["StreamingResampler"]


class StreamingResampler:
    def __init__(self, in_rate: int, out_rate: int):
        from dualasr.polyphase import firwin  # scipy's, in numpy: the runtime does not need scipy

        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        g = math.gcd(int(in_rate), int(out_rate))
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.up, self.down = self.out_rate // g, self.in_rate // g
        max_rate = max(self.up, self.down)
        self.half_len = 10 * max_rate
        self.h = firwin(2 * self.half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        self._buf = np.zeros(0, dtype=np.float64)  # input samples from absolute index _buf_start
        self._buf_start = 0
        self._received = 0  # input samples seen
        self._next_out = 0  # next output index
        self._finished = False

    def _last_needed(self, n: np.ndarray | int):
        return (n * self.down + self.half_len) // self.up

    def _compute(self, n0: int, n1: int) -> np.ndarray:
        """Outputs n0..n1-1 from the buffered input (input beyond what was received counts as 0).

        One upfirdn call (dualasr.polyphase, scipy's in numpy) over the input segment they need: upfirdn's output m is
        sum_k seg[k] h[m*down - k*up], which is output n when seg starts at an input index j0 with
        m = n + (half_len - j0*up) / down an integer; j0 is the first needed input, moved back by
        fewer than `down` samples (zeros, or samples too old to reach h) until it is.
        """
        from dualasr.polyphase import upfirdn

        if n1 <= n0:
            return np.zeros(0, dtype=np.float32)
        up, down, half = self.up, self.down, self.half_len
        j_first = max(0, -((half - n0 * down) // up))  # ceil((n0*down - half)/up)
        j0 = j_first - ((j_first * up - half) * pow(up, -1, down)) % down if down > 1 else j_first
        j_end = min(self._received, ((n1 - 1) * down + half) // up + 1)
        lead = max(0, self._buf_start - j0)  # before the buffer: never reaches h, so zeros are exact
        seg = np.concatenate([np.zeros(lead), self._buf[max(j0, self._buf_start) - self._buf_start:max(0, j_end - self._buf_start)]])
        m0 = n0 + (half - j0 * up) // down
        z = upfirdn(self.h, seg, up, down)[m0:m0 + (n1 - n0)] if seg.size else np.zeros(0)
        return np.concatenate([z, np.zeros(n1 - n0 - z.size)]).astype(np.float32)

    def _trim(self) -> None:
        """Forget input no future output needs (keeps memory flat on long streams)."""
        first_needed = max(0, -((self.half_len - self._next_out * self.down) // self.up))
        drop = min(first_needed - self._buf_start, self._buf.size)
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """samples: [N] float -> the resampled outputs that are now complete, [M] float32."""
        if self._finished:
            raise RuntimeError("resampler already flushed")
        if self.up == self.down:
            return np.asarray(samples, dtype=np.float32)
        self._buf = np.concatenate([self._buf, np.asarray(samples, dtype=np.float64)])
        self._received += len(samples)
        # Largest n whose last needed input index is < received.
        n_end = (((self._received - 1) * self.up - self.half_len) // self.down) + 1 if self._received else 0
        n_end = max(n_end, self._next_out)
        while n_end > self._next_out and self._last_needed(n_end - 1) >= self._received:
            n_end -= 1
        out = self._compute(self._next_out, n_end)
        self._next_out = n_end
        self._trim()
        return out

    def flush(self) -> np.ndarray:
        """End of input: the remaining outputs (total = ceil(received * up / down))."""
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        if self.up == self.down:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._received * self.up // self.down)
        out = self._compute(self._next_out, total)
        self._next_out = total
        self._buf = np.zeros(0, dtype=np.float64)
        return out
