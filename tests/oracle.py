"""The batched PyTorch oracle the runtime is held to (tests only).

The checkpoint's encoder over the utterance's fbank, in the runtime's chunking (streaming: the
step over whole chunks, the last partial chunk zero-padded and only its complete encoder frames
kept; full: one call), then dualasr.decoding's greedy or modified beam search over all frames at
once. Leading digital silence is not searched, as in the runtime (README, "Digital silence").
Independent of the runtime's chunk loop, incremental numpy search and graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualasr import decoding
from dualasr.features import FbankConfig
from dualasr.runtime.features import compute_features, silence_frame


@dataclass
class OracleResult:
    token_ids: list[int]
    timestamps: list[float]  # emission times, as the runtime's: (frame + 1) * encoder frame


@torch.no_grad()
def streaming_encoder_out(model, feats: torch.Tensor, chunk_frames: int, chunks: int | None = None) -> torch.Tensor:
    """feats [T, F] -> [1, T' , D]: the streaming step over `chunks` whole chunks (default: every
    chunk, the last partial one zero-padded, keeping only its complete encoder frames)."""
    sub = model.cfg.subsampling
    n = feats.shape[0]
    count = chunks if chunks is not None else -(-n // chunk_frames)
    state, outs = model.encoder.init_state(1), []
    for i in range(count):
        piece = feats[i * chunk_frames:(i + 1) * chunk_frames]
        valid = piece.shape[0] // sub
        if valid == 0:
            break
        padded = torch.zeros(1, chunk_frames, feats.shape[1])
        padded[0, :piece.shape[0]] = piece
        out, state = model.encoder.forward_chunk(padded, state)
        outs.append(out[:, :valid])
    return torch.cat(outs, dim=1) if outs else torch.zeros(1, 0, model.cfg.d_model)


@torch.no_grad()
def oracle_recognize(model, samples: np.ndarray, mode: str, decoding_method: str = "greedy", chunk_ms: int = 320,
                     beam: int = 4) -> OracleResult:
    """samples: [N] float32 at 16 kHz -> the oracle's tokens and emission times."""
    features = FbankConfig(num_mel_bins=model.cfg.num_mel_bins).to_dict()
    sub = model.cfg.subsampling
    feats = compute_features(np.asarray(samples, dtype=np.float32), features)
    sounding = np.flatnonzero(np.abs(feats - silence_frame(features)).max(axis=1, initial=0.0) > 1e-4)
    if sounding.size == 0:
        return OracleResult([], [])
    x = torch.from_numpy(feats)
    if mode == "streaming":
        enc = streaming_encoder_out(model, x, chunk_ms // 10)
    elif feats.shape[0] >= sub:
        enc, _ = model.encoder(x[None], None, "full")
    else:
        return OracleResult([], [])
    skip = int(sounding[0]) // sub
    enc = enc[:, skip:]
    if enc.shape[1] == 0:
        return OracleResult([], [])
    if decoding_method == "greedy":
        hyp = decoding.greedy_search(model, enc, torch.tensor([enc.shape[1]]))[0]
    else:
        hyp = decoding.beam_search(model, enc, beam=beam)
    frame_s = sub * features["frame_shift_ms"] / 1000.0
    return OracleResult(list(hyp.tokens), [round((f + skip + 1) * frame_s, 6) for f in hyp.frames])
