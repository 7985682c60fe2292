"""sherpa-onnx writer: the streaming model as a `model_type=conformer` transducer that an unmodified
sherpa-onnx (C++, Android, iOS, Python ...) loads with OnlineRecognizer.from_transducer.

Layout (below export_dir):
  sherpa-onnx/tokens.txt                     "symbol id" per line (shared by every precision)
  sherpa-onnx/<fp32|int8>/encoder.onnx       one streaming chunk, weights inline
  sherpa-onnx/<fp32|int8>/decoder.onnx       stateless predictor (+ joiner's predictor projection)
  sherpa-onnx/<fp32|int8>/joiner.onnx        tanh + output layer

sherpa-onnx's conformer contract (online-conformer-transducer-model.cc, read by position, not name):
  encoder  x [N, T, 80] f32, cached_attn [L, left_context, N, D], cached_conv [L, cnn_module_kernel-1, N, D],
           processed_lens [N] i64  ->  encoder_out [N, T/4, J], new_cached_attn, new_cached_conv
  decoder  y [N, context_size] i64  ->  decoder_out [N, J]
  joiner   encoder_out [N, J], decoder_out [N, J]  ->  logit [N, V]
  metadata (onnx metadata_props, all strings): encoder model_type, num_encoder_layers, T,
           decode_chunk_len, left_context, encoder_dim, pad_length, cnn_module_kernel;
           decoder vocab_size, context_size.
How we fill it:
  * T = decode_chunk_len = the chunk in feature frames, pad_length = 0: our streaming mode is strictly
    causal, so a chunk needs no look-ahead frames (sherpa steps by decode_chunk_len, feeds T frames).
  * sherpa passes processed_lens in FEATURE frames consumed before the chunk (0, T, 2T, ...: its
    OnlineStream counts frames before subsampling); our state counts ENCODER frames, so the graph
    divides by the subsampling (exact integer division: the chunk is a multiple of it). After an
    endpoint Reset() sherpa restarts that count at 0 while keeping the caches; see SherpaEncoder.
  * our streaming depthwise conv only keeps its left (k+1)/2 taps and caches (k-1)/2 frames, so the
    metadata says cnn_module_kernel = (k+1)/2 and sherpa allocates (k-1)/2 cache frames.
  * the joiner's two input projections move out of the joiner: enc_proj into the encoder graph,
    pred_proj into the decoder graph (sherpa's joiner takes projected inputs, like icefall's).
  * the decoder maps sherpa's start context to ours (see SherpaDecoder).
  * tokens.txt names id 1 "⁇" (sentencepiece's surface form of unknown) instead of "<unk>": sherpa
    treats a token called "<unk>" as blank during search, our decoders do not, and the results must
    be identical (our tokenizer never produces <unk> for normalized text, so a trained model does
    not emit it).

Streaming in sherpa-onnx: a stream is decoded a chunk at a time while processed + T < frames ready,
so the last partial chunk is never decoded: apps append ~0.3 s of silence before input_finished()
(sherpa's own examples do the same). sherpa runs one chunk size: the exporter's first --chunk-ms.

Only conformer encoders with the stateless predictor fit (sherpa's conformer has no LSTM predictor
state and no ContextNet state); others are refused with the preset to use instead.

Features: sherpa's OnlineRecognizer.from_transducer defaults (kaldi-native-fbank, 80 bins, 16 kHz,
snip_edges=False, dither=0, low_freq=20, high_freq=-400, samples in [-1, 1]) equal our FbankConfig;
`sherpa_feature_args()` lists them so callers can pass them explicitly.

int8: the ONNX writer's recipe (onnx_writer.quantize_int8: every Linear weight 8-bit per output
channel, activations quantized at run time; see there and the README for why that recipe); the
depthwise/predictor convs and the embedding stay float.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from dualasr.fileio import atomic_write

from .exporter import ExportError
from .onnx_writer import check_against_torch, fold_static_shapes, int8_description, quantize_int8
from .wrappers import FRAME_SHIFT_MS, StreamingEncoderStep, use_unfolded_depthwise_convs

__all__ = [
    "FORMAT_DIR",
    "MODEL_TYPE",
    "PRECISIONS",
    "SherpaDecoder",
    "SherpaEncoder",
    "SherpaJoiner",
    "check_compatible",
    "sherpa_feature_args",
    "write",
    "write_sherpa",
    "write_tokens_txt",
]

FORMAT_DIR = "sherpa-onnx"
MODEL_TYPE = "conformer"
PRECISIONS = ("fp32", "int8")
OPSET = 17  # sherpa-onnx 2.0.1 bundles onnxruntime 1.28 (opset <= 23)
UNK_ID = 1
UNK_SYMBOL = "\u2047"  # "⁇", what sentencepiece decodes <unk> to; never "<unk>" (see module doc)

_ENCODER_IN = ["x", "cached_attn", "cached_conv", "processed_lens"]
_ENCODER_OUT = ["encoder_out", "new_cached_attn", "new_cached_conv"]
_DECODER_IN, _DECODER_OUT = ["y"], ["decoder_out"]
_JOINER_IN, _JOINER_OUT = ["encoder_out", "decoder_out"], ["logit"]


# ----------------------------------------------------------------------------- compatibility


def check_compatible(cfg: Any) -> None:
    """Raise ExportError unless the model fits sherpa-onnx's conformer transducer contract."""
    problems = []
    if cfg.encoder != "conformer":
        problems.append(f"encoder is {cfg.encoder!r} (sherpa-onnx's conformer contract holds a conformer's "
                        "attention and conv caches only)")
    if cfg.predictor != "stateless":
        problems.append(f"predictor is {cfg.predictor!r} (sherpa-onnx's conformer decoder is stateless: "
                        "it gets only the last context_size tokens, no LSTM state)")
    if cfg.num_mel_bins != 80:
        problems.append(f"num_mel_bins is {cfg.num_mel_bins} (use 80, what sherpa-onnx apps configure)")
    if problems:
        raise ExportError(
            "this checkpoint cannot run in sherpa-onnx: " + "; ".join(problems) + ". Train a conformer "
            "with the stateless predictor (preset 'tiny', or any conformer preset with "
            "--set model.predictor=\"stateless\") and export that, or export --formats onnx and use "
            "the dualasr runtime"
        )


def _chunk_frames(chunk_ms: int, subsampling: int) -> int:
    frames = chunk_ms // FRAME_SHIFT_MS
    if chunk_ms % FRAME_SHIFT_MS or frames % subsampling or frames <= 0:
        raise ExportError(
            f"sherpa-onnx chunk {chunk_ms} ms must be a positive multiple of {FRAME_SHIFT_MS * subsampling} ms "
            f"({subsampling} feature frames of {FRAME_SHIFT_MS} ms per encoder frame)"
        )
    return frames


def sherpa_feature_args(features: dict | None = None) -> dict[str, Any]:
    """OnlineRecognizer.from_transducer feature arguments for our FbankConfig (raises ExportError on
    an option sherpa-onnx cannot reproduce: it always uses a povey window, 25/10 ms, no energy ...)."""
    from dualasr.features import FbankConfig

    cfg = FbankConfig.from_dict(features) if features is not None else FbankConfig()
    fixed = dict(frame_length_ms=25.0, frame_shift_ms=10.0, preemph_coeff=0.97, remove_dc_offset=True,
                 window_type="povey", use_energy=False, energy_floor=0.0, use_log_fbank=True, use_power=True)
    bad = {k: getattr(cfg, k) for k, v in fixed.items() if getattr(cfg, k) != v}
    if bad:
        raise ExportError(f"sherpa-onnx's feature extractor fixes {sorted(bad)} to {[fixed[k] for k in sorted(bad)]}; "
                          f"this model was trained with {bad}")
    return dict(sample_rate=cfg.sample_rate, feature_dim=cfg.num_mel_bins, low_freq=cfg.low_freq,
                high_freq=cfg.high_freq, dither=cfg.dither, snip_edges=cfg.snip_edges, normalize_samples=True)


# ----------------------------------------------------------------------------- graphs


class SherpaEncoder(nn.Module):
    """One chunk of the streaming encoder, in sherpa-onnx's conformer signature.

    x: [N, T, F] fbank; cached_attn: [L, W, N, D]; cached_conv: [L, (k-1)/2, N, D];
    processed_lens: [N] int64 FEATURE frames consumed before this chunk (what sherpa passes)
    -> (encoder_out [N, T/s, J] already through the joiner's enc_proj, new_cached_attn, new_cached_conv)
    """

    def __init__(self, encoder: nn.Module, enc_proj: nn.Module, subsampling: int):
        super().__init__()
        self.encoder = encoder
        self.enc_proj = enc_proj
        self.subsampling = subsampling

    def forward(
        self, x: Tensor, cached_attn: Tensor, cached_conv: Tensor, processed_lens: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        # Integer division keeps the frame counter exact (sherpa's counter is a multiple of the chunk).
        processed = torch.div(processed_lens, self.subsampling, rounding_mode="floor")
        # The counter only masks attention-cache slots that hold no frame yet (the zero-initialized
        # ones). sherpa's endpoint Reset() restarts processed_lens at 0 but keeps the caches, which
        # would hide real context for the next left_context frames; counting layer 0's non-zero
        # cache rows (= min(processed, W) in normal operation) keeps the stream continuous, as our
        # runtime's reset does, and still masks a cache zeroed by reset_encoder=True.
        held = (cached_attn[0] != 0).any(dim=-1).to(torch.int64).sum(dim=0)  # [N]
        processed = torch.maximum(processed, held)
        out, (attn, conv, _) = self.encoder.forward_chunk_input_cache(x, [cached_attn, cached_conv, processed])
        return self.enc_proj(out), attn, conv


class SherpaDecoder(nn.Module):
    """Stateless predictor + the joiner's pred_proj. y: [N, K] int64 -> decoder_out [N, J].

    Our predictor starts from [-1]*(K-1) + [blank] (-1 = "no token", a zero embedding). sherpa-onnx
    starts from the same in its current decoders, but older ones (and some of its search variants)
    start from K blanks. Emitted tokens are never blank, so a blank followed by another blank can only
    be start padding: mapping it to -1 makes both conventions give our start state and leaves every
    later context ([0, a], [a, b], ...) untouched.
    """

    def __init__(self, predictor: nn.Module, pred_proj: nn.Module):
        super().__init__()
        self.predictor = predictor
        self.pred_proj = pred_proj

    def forward(self, y: Tensor) -> Tensor:
        if y.shape[1] > 1:
            lead, nxt = y[:, :-1], y[:, 1:]
            start_pad = torch.logical_and(lead == 0, nxt == 0)
            lead = torch.where(start_pad, torch.full_like(lead, -1), lead)
            y = torch.cat([lead, y[:, -1:]], dim=1)
        out, _ = self.predictor.step(y, [])
        return self.pred_proj(out)


class SherpaJoiner(nn.Module):
    """encoder_out [N, J], decoder_out [N, J] (both projected) -> logit [N, V]."""

    def __init__(self, joiner: nn.Module):
        super().__init__()
        self.joiner = joiner

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        return self.joiner.joint(encoder_out, decoder_out)


def _example_inputs(cfg: Any, chunk_frames: int, batch: int = 2) -> dict[str, tuple[Tensor, ...]]:
    """Deterministic, non-trivial inputs (partly filled caches, rows at different positions)."""
    g = torch.Generator().manual_seed(0)
    conv_cache = (cfg.conv_kernel - 1) // 2
    processed = torch.tensor([chunk_frames * (i + 1) for i in range(batch)], dtype=torch.int64)
    attn = torch.randn(cfg.num_layers, cfg.left_context, batch, cfg.d_model, generator=g)
    for i, p in enumerate(processed.tolist()):  # slots not yet filled are zero, as in a real stream
        attn[:, : max(0, cfg.left_context - p // cfg.subsampling), i] = 0.0
    return {
        "encoder": (
            torch.randn(batch, chunk_frames, cfg.num_mel_bins, generator=g) * 2.0 - 8.0,
            attn,
            torch.randn(cfg.num_layers, conv_cache, batch, cfg.d_model, generator=g),
            processed,
        ),
        # Row 0: sherpa's start context, row 1 the old all-blank one, then real tokens.
        "decoder": (torch.tensor([[-1] * (cfg.context_size - 1) + [0], [0] * cfg.context_size]
                                 + [[1 + (i + j) % (cfg.vocab_size - 1) for j in range(cfg.context_size)]
                                    for i in range(batch)], dtype=torch.int64),),
        "joiner": (torch.randn(batch, cfg.joiner_dim, generator=g), torch.randn(batch, cfg.joiner_dim, generator=g)),
    }


# ----------------------------------------------------------------------------- onnx


def _to_onnx(module: nn.Module, example: tuple[Tensor, ...], inputs: list[str], outputs: list[str],
             batch_axes: dict[str, int]) -> onnx.ModelProto:
    """TorchScript exporter, inline weights (sherpa-onnx loads models from a buffer, so external data
    files would not be found), dynamic batch axis "N"."""
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                module, example, buf, input_names=inputs, output_names=outputs,
                dynamic_axes={name: {axis: "N"} for name, axis in batch_axes.items()},
                opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
    except Exception as e:
        raise ExportError(
            f"torch.onnx.export of the sherpa-onnx {type(module).__name__} failed: {type(e).__name__}: {e}"
        ) from e
    model = onnx.load_from_string(buf.getvalue())
    fold_static_shapes(model)  # only the batch axis is free in these graphs
    return model


def _declare_io(model: onnx.ModelProto, inputs: list[str], outputs: list[str], shapes: dict[str, list]) -> None:
    """Check the graph kept every input (the exporter silently drops unused ones, and sherpa-onnx
    binds inputs by position) and write the fixed output shapes the exporter leaves unnamed."""
    got_in, got_out = [v.name for v in model.graph.input], [v.name for v in model.graph.output]
    if got_in != inputs or got_out != outputs:
        raise ExportError(f"sherpa-onnx graph has inputs {got_in} / outputs {got_out}, expected {inputs} / {outputs}")
    for v in model.graph.output:
        for d, want in zip(v.type.tensor_type.shape.dim, shapes.get(v.name, [])):
            if isinstance(want, str):
                d.dim_param = want
            else:
                d.dim_value = int(want)


def _set_metadata(model: onnx.ModelProto, meta: dict[str, Any]) -> None:
    """Replace metadata_props with meta (values as strings: sherpa parses ints with atoi)."""
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)


def _quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The ONNX writer's dynamic int8 recipe (onnx_writer.quantize_int8), keeping sherpa's metadata."""
    quantized = quantize_int8(model)
    _set_metadata(quantized, {p.key: p.value for p in model.metadata_props})
    return quantized


# ----------------------------------------------------------------------------- tokens


def _load_tokenizer(tokenizer: Any):
    """Tokenizer | path | sentencepiece model bytes -> Tokenizer."""
    from dualasr.tokenizer import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (bytes, bytearray)):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "tokenizer.model"
            p.write_bytes(bytes(tokenizer))
            return Tokenizer(p)  # reads the bytes eagerly; the temp file may go
    return Tokenizer(Path(tokenizer))


def write_tokens_txt(tokenizer: Any, path: Path) -> None:
    """sherpa-onnx tokens.txt ("symbol id" per line, id order) with <unk> renamed (module doc)."""
    lines = []
    for i in range(tokenizer.vocab_size):
        piece = UNK_SYMBOL if i == UNK_ID else tokenizer.id_to_piece(i)
        if not piece or any(c.isspace() for c in piece):
            raise ExportError(f"token {i} ({piece!r}) is empty or holds whitespace; tokens.txt cannot represent it")
        lines.append(f"{piece} {i}\n")
    atomic_write(Path(path), "".join(lines).encode("utf-8"))


# ----------------------------------------------------------------------------- entry points


def write_sherpa(
    model: nn.Module, tokenizer_bytes_or_path: Any, export_dir: Path, precision: str, chunk_ms: int
) -> dict:
    """Write sherpa-onnx/tokens.txt and sherpa-onnx/<precision>/{encoder,decoder,joiner}.onnx.

    Args:
        model: a dualasr Transducer (conformer + stateless predictor).
        tokenizer_bytes_or_path: sentencepiece model bytes, its path, or a Tokenizer.
        export_dir: the export folder (paths in the result are relative to it).
        precision: "fp32" or "int8".
        chunk_ms: the streaming chunk (a multiple of 40 ms); sherpa-onnx runs exactly this chunk.

    Returns:
        The manifest artifacts entry: {"encoder", "decoder", "joiner", "tokens" (paths), "model_type",
        "chunk_ms", "graphs" (the three paths again, what the exporter checks), "metadata",
        "feature_args" (from_transducer keyword arguments), "quantization", "example_max_abs_diff"}.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"sherpa-onnx precision must be one of {PRECISIONS}, got {precision!r}")
    cfg = model.cfg
    check_compatible(cfg)
    chunk_frames = _chunk_frames(int(chunk_ms), cfg.subsampling)
    tokenizer = _load_tokenizer(tokenizer_bytes_or_path)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise ExportError(f"tokenizer has {tokenizer.vocab_size} pieces but the model outputs {cfg.vocab_size}; "
                          "the checkpoint is inconsistent")
    export_dir = Path(export_dir)
    rel = f"{FORMAT_DIR}/{precision}"

    conv_cache = (cfg.conv_kernel - 1) // 2
    meta = {
        "encoder": {
            "model_type": MODEL_TYPE, "num_encoder_layers": cfg.num_layers, "T": chunk_frames,
            "decode_chunk_len": chunk_frames, "left_context": cfg.left_context, "encoder_dim": cfg.d_model,
            "pad_length": 0, "cnn_module_kernel": conv_cache + 1,
            # Informative only (sherpa ignores unknown keys):
            "subsampling_factor": cfg.subsampling, "chunk_ms": int(chunk_ms), "joiner_dim": cfg.joiner_dim,
            "processed_lens_unit": "feature frames", "producer": "dualasr",
        },
        "decoder": {"vocab_size": cfg.vocab_size, "context_size": cfg.context_size, "producer": "dualasr"},
        "joiner": {"joiner_dim": cfg.joiner_dim, "vocab_size": cfg.vocab_size, "producer": "dualasr"},
    }
    was_training = model.training
    model.eval()
    try:
        # Copies whose depthwise convs are window products, as onnx_writer's.
        encoder, predictor = copy.deepcopy(model.encoder), copy.deepcopy(model.predictor)
        use_unfolded_depthwise_convs(encoder)
        use_unfolded_depthwise_convs(predictor)
        modules = {
            "encoder": SherpaEncoder(encoder, model.joiner.enc_proj, cfg.subsampling).eval(),
            "decoder": SherpaDecoder(predictor, model.joiner.pred_proj).eval(),
            "joiner": SherpaJoiner(model.joiner).eval(),
        }
        io_names = {"encoder": (_ENCODER_IN, _ENCODER_OUT, {"x": 0, "cached_attn": 2, "cached_conv": 2,
                                                             "processed_lens": 0, "encoder_out": 0,
                                                             "new_cached_attn": 2, "new_cached_conv": 2}),
                    "decoder": (_DECODER_IN, _DECODER_OUT, {"y": 0, "decoder_out": 0}),
                    "joiner": (_JOINER_IN, _JOINER_OUT, {"encoder_out": 0, "decoder_out": 0, "logit": 0})}
        examples = _example_inputs(cfg, chunk_frames)
        out_shapes = {"encoder_out": ["N", chunk_frames // cfg.subsampling, cfg.joiner_dim],
                      "new_cached_attn": [cfg.num_layers, cfg.left_context, "N", cfg.d_model],
                      "new_cached_conv": [cfg.num_layers, conv_cache, "N", cfg.d_model],
                      "decoder_out": ["N", cfg.joiner_dim], "logit": ["N", cfg.vocab_size]}
        diffs: dict[str, float] = {}
        with torch.no_grad():
            for name, module in modules.items():
                ins, outs, axes = io_names[name]
                proto = _to_onnx(module, examples[name], ins, outs, axes)
                _declare_io(proto, ins, outs, out_shapes)
                _set_metadata(proto, meta[name])
                if precision == "int8":
                    proto = _quantize_int8(proto)
                path = export_dir / rel / f"{name}.onnx"
                atomic_write(path, proto.SerializeToString())
                diffs[name] = check_against_torch(path, module, examples[name], ins, None, precision)
    finally:
        model.train(was_training)
    write_tokens_txt(tokenizer, export_dir / FORMAT_DIR / "tokens.txt")

    paths = {name: f"{rel}/{name}.onnx" for name in ("encoder", "decoder", "joiner")}
    return {
        **paths,
        "tokens": f"{FORMAT_DIR}/tokens.txt",
        "model_type": MODEL_TYPE,
        "chunk_ms": int(chunk_ms),
        "graphs": dict(paths),
        "metadata": meta,
        "feature_args": sherpa_feature_args(),
        "quantization": None if precision == "fp32"
        else int8_description(),
        "example_max_abs_diff": diffs,
    }


def write(
    graphs: dict[str, nn.Module],
    example_inputs: dict[str, tuple[Tensor, ...]],
    export_dir: Path,
    precision: str,
    calibration: list[dict] | None = None,
    model: nn.Module | None = None,
) -> dict:
    """Exporter plug-in entry (see exporter.py): `model` is the Transducer the graphs wrap (sherpa-onnx
    needs its own encoder/decoder/joiner split of it), the tokenizer comes from
    export_dir/tokenizer.model, the chunk from the first streaming graph (sherpa-onnx runs one chunk
    size). calibration is not used (dynamic int8)."""
    steps = [g for g in graphs.values() if isinstance(g, StreamingEncoderStep)]
    if model is None:
        raise ExportError("the sherpa-onnx writer needs the model the graphs wrap (exporter passes model=)")
    if not steps:
        raise ExportError("sherpa-onnx needs a streaming encoder graph (--chunk-ms)")
    tokenizer = Path(export_dir) / "tokenizer.model"
    if not tokenizer.is_file():
        raise ExportError(f"{tokenizer} is missing: the exporter writes it before the format writers run")
    return write_sherpa(model, tokenizer, Path(export_dir), precision, steps[0].chunk_ms)
