"""Full-context mode on long audio: encoder_full over overlapping windows of bounded length.

One encoder_full call costs memory (and, with attention, time) that grows with the square of its
length, and an encoder may have an absolute-position table of fixed size, so the full mode never
feeds it more than `size` feature frames (manifest "max_full_seconds", at most what the artifact's
dynamic shape allows). Longer audio is cut into windows that overlap by `context` frames on each
side; of each window only the encoder frames in its middle are kept, so every kept frame saw at
least `context` frames (2 s) of real audio on both sides, or the audio's edge. The RNN-T search
runs on the kept frames in order, so its state simply continues from one window to the next: no
text has to be stitched. The cut points depend only on frame counts: the same audio gives the same
windows whether it arrives at once or in pieces (a window is run only once it is known not to be
the last), and audio of at most `size` frames is one window, the whole utterance, as before.

    window k:   [start ........................................ stop)
                        [keep_from ................ keep_to)
    window k+1:                          [start ........................................ stop)
                                                    [keep_from .........
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONTEXT_SECONDS", "Window", "window_frames", "next_window", "plan_windows"]

CONTEXT_SECONDS = 2.0  # real audio every kept frame sees on each side (beyond it, attention adds little)


@dataclass(frozen=True)
class Window:
    """Feature frames [start, stop) go into encoder_full; the output frames of [keep_from, keep_to)
    are kept (all four are absolute feature-frame indices, multiples of the subsampling)."""

    start: int
    stop: int
    keep_from: int
    keep_to: int


def window_frames(max_seconds: float, frame_shift_s: float, subsampling: int,
                  graph_max_frames: int | None = None) -> tuple[int, int]:
    """(size, context) in feature frames, both multiples of the subsampling, context <= size / 4."""
    size = int(round(max_seconds / frame_shift_s))
    if graph_max_frames:
        size = min(size, int(graph_max_frames))
    size -= size % subsampling
    if size < 4 * subsampling:
        raise ValueError(f"an encoder_full window of {size} frames is too short; the export's max_full_seconds "
                         f"({max_seconds}) is too small, re-export")
    context = min(int(round(CONTEXT_SECONDS / frame_shift_s)), size // 4)
    return size, context - context % subsampling


def next_window(done: int, available: int, finished: bool, size: int, context: int, subsampling: int) -> Window | None:
    """The next window once frames [0, done) are decoded and [0, available) have arrived.

    Args:
        finished: no more frames will arrive (then the last window ends at the last multiple of
            the subsampling, as the encoder drops a partial last frame).

    Returns:
        None while the next window cannot run yet, or when nothing is left.
    """
    start = max(0, done - context)
    if not finished:
        # Run only windows that are certainly not the last: the last one is placed differently.
        if available <= start + size:
            return None
        return Window(start, start + size, done, start + size - context)
    end = available - available % subsampling
    if done >= end:
        return None
    if start + size < end:
        return Window(start, start + size, done, start + size - context)
    return Window(start, end, done, end)  # the last window keeps everything to the end


def plan_windows(total: int, size: int, context: int, subsampling: int) -> list[Window]:
    """Every window of an utterance of `total` feature frames (what next_window yields online)."""
    windows: list[Window] = []
    done = 0
    while (w := next_window(done, total, True, size, context, subsampling)) is not None:
        windows.append(w)
        done = w.keep_to
    return windows
