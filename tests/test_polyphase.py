"""dualasr.polyphase (numpy) against scipy.signal, its definition: firwin, upfirdn, resample_poly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from dualasr.polyphase import firwin, resample_poly, upfirdn

# (up, down) of the rates audio comes in: 8/11.025/22.05/44.1/48 kHz -> 16 kHz, 16 -> 8 kHz, odd ones.
RATIOS = [(2, 1), (160, 441), (320, 441), (1, 3), (1, 2), (3, 2), (5, 7), (1, 1)]


@pytest.mark.parametrize("numtaps, cutoff, beta",
                         [(41, 0.5, 5.0), (201, 0.1, 5.0), (8821, 1 / 441, 5.0), (8, 0.3, 8.6)])
def test_firwin_is_scipys(numtaps, cutoff, beta):
    ours = firwin(numtaps, cutoff, window=("kaiser", beta))
    np.testing.assert_allclose(ours, scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("up, down", RATIOS)
@pytest.mark.parametrize("length", [1, 7, 1000, 16001])
def test_resample_poly_is_scipys(up, down, length):
    x = np.random.default_rng(length + 31 * up + down).standard_normal(length)
    ours, theirs = resample_poly(x, up, down), scipy.signal.resample_poly(x, up, down)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_resample_poly_of_float32_audio_matches_to_float32_precision():
    """What prepare_samples does: float32 in, float32 out (scipy filters float32 in float32)."""
    x = np.random.default_rng(0).uniform(-1, 1, 44100).astype(np.float32)
    ours = resample_poly(x, 160, 441).astype(np.float32)
    np.testing.assert_allclose(ours, scipy.signal.resample_poly(x, 160, 441), rtol=0, atol=2e-6)


@pytest.mark.parametrize("up, down", RATIOS)
@pytest.mark.parametrize("length, taps", [(1, 1), (5, 17), (999, 64), (3000, 8821)])
def test_upfirdn_is_scipys(up, down, length, taps):
    rng = np.random.default_rng(length + taps)
    h, x = rng.standard_normal(taps), rng.standard_normal(length)
    ours, theirs = upfirdn(h, x, up, down), scipy.signal.upfirdn(h, x, up, down)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_long_input_is_processed_in_bounded_blocks(monkeypatch):
    """Blocks smaller than one class of outputs give the same samples (the block loop is exercised)."""
    import dualasr.polyphase

    x = np.random.default_rng(1).standard_normal(48000)
    whole = resample_poly(x, 1, 3)
    monkeypatch.setattr(dualasr.polyphase, "_BLOCK_ELEMENTS", 1000)
    np.testing.assert_array_equal(resample_poly(x, 1, 3), whole)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="kaiser"):
        firwin(11, 0.5, window=("hann",))
    with pytest.raises(ValueError, match="cutoff"):
        firwin(11, 1.5)
    with pytest.raises(ValueError, match="positive"):
        resample_poly(np.zeros(4), 0, 1)
