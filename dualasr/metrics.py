"""Evaluation metrics: WER, emission latency, end-of-speech detection, lattice plot.

Deliberately torch-free (numpy; matplotlib only for the plot, imported when drawing) so the
on-device harness and report scripts can use it without torch.
"""

from __future__ import annotations


import numpy as np

from dualasr.fileio import atomic_write

__all__ = [
    "wer",
    "emission_latency",
    "latency_percentiles",
    "EndOfSpeech",
    "energy_end_of_speech",
    "plot_emission_lattice",
]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate: (S + D + I) / reference words, S + D + I being each pair's word
    edit distance (word_errors).

    Empty references are allowed (their hypothesis words count as insertions).
    If the whole corpus has no reference words, returns 0.0 when the hypotheses
    are empty too and 1.0 otherwise (why: avoid a division by zero / inf).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    errors = sum(word_errors(r.split(), h.split()) for r, h in zip(refs, hyps))
    n_ref = sum(len(r.split()) for r in refs)
    if n_ref == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / n_ref


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists: the fewest substitutions, deletions and
    insertions that turn ref into hyp. One numpy row per reference word, O(len(hyp)) memory."""
    ids: dict[str, int] = {}
    r = np.array([ids.setdefault(w, len(ids)) for w in ref], dtype=np.int64)
    h = np.array([ids.setdefault(w, len(ids)) for w in hyp], dtype=np.int64)
    j = np.arange(h.size + 1)
    row = j.copy()  # distances from ref[:0] to hyp[:j]
    for i, word in enumerate(r, 1):
        cur = np.empty_like(row)
        cur[0] = i
        cur[1:] = np.minimum(row[1:] + 1, row[:-1] + (h != word))  # delete ref word / substitute or match
        # Insertions: cur[j] = min(cur[j], cur[j-1] + 1), i.e. j + running min of cur[k] - k.
        row = np.minimum.accumulate(cur - j) + j
    return int(row[-1])


def emission_latency(emission_times_s: list[float], speech_end_s: float) -> float | None:
    """Time of the last emitted token of the final hypothesis minus end of speech.

    Negative when the last token comes out before the (energy-based) end of speech.
    Returns None when nothing was emitted.
    """
    if len(emission_times_s) == 0:
        return None
    return float(emission_times_s[-1]) - float(speech_end_s)


def latency_percentiles(latencies: list[float | None]) -> dict[str, float]:
    """{"p50", "p90"} of the latencies, ignoring None (NaN for both when none remain)."""
    vals = np.asarray([x for x in latencies if x is not None], dtype=np.float64)
    if vals.size == 0:
        return {"p50": float("nan"), "p90": float("nan")}
    return {"p50": float(np.percentile(vals, 50)), "p90": float(np.percentile(vals, 90))}


class EndOfSpeech:
    """energy_end_of_speech of audio that arrives in pieces, in constant memory.

    The last frame within threshold_db of the loudest frame so far stays the answer once the
    loudest frame of all has been seen: frames before it cannot be the last anyway, and frames
    after it are compared with the final maximum. So one pass with a running maximum gives the
    same end as two passes over the whole signal.
    """

    def __init__(self, sample_rate: int, frame_ms: float = 10, threshold_db: float = -40):
        self.sample_rate = sample_rate
        self.frame_len = max(1, int(round(sample_rate * frame_ms / 1000.0)))
        self.ratio = 10.0 ** (threshold_db / 10.0)
        self.peak = 0.0
        self.last = -1  # index of the last frame above the threshold
        self.frames = 0  # complete frames seen
        self.samples = 0
        self._partial = np.zeros(0)

    def _frames(self, energy: np.ndarray) -> None:
        running = np.maximum.accumulate(np.concatenate([[self.peak], energy]))[1:]
        above = np.nonzero(np.maximum(energy, 1e-300) > running * self.ratio)[0]
        if above.size:
            self.last = self.frames + int(above[-1])
        self.peak = float(running[-1]) if running.size else self.peak
        self.frames += energy.size

    def accept(self, samples: np.ndarray) -> None:
        """samples: [N] or [N, C] (int or float; channels are averaged)."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim == 2:
            x = x.mean(axis=1)
        if x.ndim != 1:
            raise ValueError(f"samples must be [N] or [N, C], got shape {x.shape}")
        self.samples += x.size
        x = np.concatenate([self._partial, x])
        n = x.size // self.frame_len
        self._frames((x[: n * self.frame_len].reshape(n, self.frame_len) ** 2).mean(axis=1))
        self._partial = x[n * self.frame_len:]

    @property
    def seconds(self) -> float:
        """End of speech so far (the last partial frame counts as zero-padded); 0.0 for silence."""
        peak, last = self.peak, self.last
        if self._partial.size:
            e = float((self._partial ** 2).sum()) / self.frame_len
            peak = max(peak, e)
            if max(e, 1e-300) > peak * self.ratio:
                last = self.frames
        if peak <= 0.0:
            return 0.0
        # Clip to the true length: the last frame may be partial.
        return min((last + 1) * self.frame_len, self.samples) / float(self.sample_rate)


def energy_end_of_speech(
    samples: np.ndarray, sample_rate: int, frame_ms: float = 10, threshold_db: float = -40
) -> float:
    """End time (s) of the last frame whose energy is within `threshold_db` of the loudest.

    Args:
        samples: [N] or [N, C] audio (int or float; channels are averaged).
        sample_rate: Hz.
        frame_ms: non-overlapping analysis frame length.
        threshold_db: threshold relative to the maximum frame energy (negative).

    Returns:
        Seconds; 0.0 for empty or all-zero audio.
    """
    end = EndOfSpeech(sample_rate, frame_ms, threshold_db)
    end.accept(samples)
    return end.seconds


def plot_emission_lattice(
    path: str,
    frames_by_mode: dict[str, list[int]],
    tokens: list[str] | None,
    frame_shift_s: float,
    title: str,
) -> None:
    """Save a PNG of token emission times per mode (like Figure 4 of the paper).

    x axis: time (s); one row per mode; a marker (labelled with the token when
    `tokens` is given) at every emission. Written atomically (temp file + rename).
    """
    # why: the object-oriented Agg API leaves pyplot's global backend untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    modes = list(frames_by_mode)
    fig = Figure(figsize=(10, 1.0 + 0.8 * max(1, len(modes))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for row, mode in enumerate(modes):
        times = [f * frame_shift_s for f in frames_by_mode[mode]]
        ax.scatter(times, [row] * len(times), marker="|", s=200)
        if tokens is not None:
            for tm, tok in zip(times, tokens):
                ax.annotate(
                    tok, (tm, row), xytext=(0, 8), textcoords="offset points",
                    rotation=45, fontsize=8, ha="left",
                )
    ax.set_yticks(range(len(modes)))
    ax.set_yticklabels(modes)
    ax.set_ylim(-0.5, len(modes) - 0.3)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()

    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
