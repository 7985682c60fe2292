"""sherpa-onnx compatibility export: an unmodified sherpa_onnx.OnlineRecognizer decodes our streaming
model to exactly the tokens of our own streaming decode.

How sherpa-onnx streams (online-recognizer-transducer-impl.h, checked by experiment with debug graphs):
a stream is ready while processed + T < frames_ready (strictly less: the last partial chunk and a
final chunk ending exactly at the last frame are never decoded, apps append tail silence); each step
feeds T feature frames and processed_lens = feature frames consumed before the chunk (0, 32, 64, ...).
So the reference below runs forward_chunk over the same (N - 1) // T chunks of the same fbank.

Greedy: sherpa emits at most one token per frame -> greedy_search(max_symbols_per_frame=1).
Modified beam search: sherpa's per-frame step is ours (log-softmax, + hypothesis score, top-k over
hyps x vocab, log-add merge of equal token sequences), but its final answer is
Hypotheses::GetMostProbable(length_norm=true): the largest log_prob / len(ys), where ys also holds
the context_size start symbols, while dualasr.decoding.beam_search returns the largest raw score.
So the exact, always-true property is: sherpa's tokens are those of our final beam set's
(dualasr.decoding.beam_search_hypotheses) hypothesis with the best score / (len(tokens) + context_size). (Scores are also accumulated in
float32 by sherpa and float64 by us, which can only matter for top-k near-ties below ~1e-6.)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import sherpa_onnx

from dualasr import decoding  # noqa: E402
from dualasr.audio import load_audio  # noqa: E402
from dualasr.checkpoint import load_model  # noqa: E402
from dualasr.export.exporter import ExportError, export_checkpoint  # noqa: E402
from dualasr.export.sherpa_writer import UNK_SYMBOL, check_compatible, write_sherpa  # noqa: E402
from dualasr.features import FbankConfig, compute_fbank  # noqa: E402
from dualasr.runtime.recognizer import Recognizer  # noqa: E402
from oracle import streaming_encoder_out  # noqa: E402

CHUNK_MS = 320
CHUNK = CHUNK_MS // 10  # feature frames per chunk
SR = 16000
BEAM = 4


# ----------------------------------------------------------------------------- fixtures / helpers


pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture(scope="module")
def exported(random_checkpoint, tmp_path_factory) -> SimpleNamespace:
    """One export through the exporter (onnx + sherpa-onnx fp32) and a direct int8 write_sherpa."""
    root = tmp_path_factory.mktemp("sherpa")
    out = root / "export"
    manifest = export_checkpoint(random_checkpoint, out, ["onnx", "sherpa-onnx"], ["none"], [CHUNK_MS])
    model, _config, tokenizer_bytes = load_model(random_checkpoint)
    int8_entry = write_sherpa(model, tokenizer_bytes, root / "int8", "int8", CHUNK_MS)
    return SimpleNamespace(dir=out, manifest=manifest, model=model, int8_dir=root / "int8", int8=int8_entry)


@pytest.fixture(scope="module")
def waves(speech_wav) -> dict[str, np.ndarray]:
    """Three different utterances (lengths, offsets), each with 0.3 s of tail silence as apps add."""
    wav = load_audio(speech_wav).astype(np.float32)
    tail = np.zeros(int(0.3 * SR), np.float32)
    return {
        "speech": np.concatenate([wav, tail]),
        "late": np.concatenate([np.zeros(SR // 2, np.float32), wav[: 2 * SR], tail]),
        "cut": np.concatenate([wav[SR:], tail]),
    }


def _recognizer(export_dir: Path, entry: dict, method: str):
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(export_dir / entry["tokens"]), encoder=str(export_dir / entry["encoder"]),
        decoder=str(export_dir / entry["decoder"]), joiner=str(export_dir / entry["joiner"]),
        num_threads=1, sample_rate=SR, feature_dim=80, decoding_method=method, max_active_paths=BEAM,
    )


def _piece_ids(export_dir: Path, entry: dict) -> dict[str, int]:
    """Result symbol -> id. sherpa's symbol table shows sentencepiece's "▁" as a space."""
    ids = {}
    for line in (export_dir / entry["tokens"]).read_text(encoding="utf-8").splitlines():
        sym, i = line.rsplit(" ", 1)
        ids[sym.replace("\u2581", " ")] = int(i)
    return ids


def sherpa_decode(rec, ids: dict[str, int], wavs: list[np.ndarray]) -> list[list[int]]:
    """Decode several streams together with decode_streams; stream i joins at step i, so one batch
    holds streams at different positions (different processed_lens, cache fill, contexts)."""
    streams = [rec.create_stream() for _ in wavs]
    for s, w in zip(streams, wavs):
        s.accept_waveform(SR, w)
        s.input_finished()
    step = 0
    while True:
        ready = [s for i, s in enumerate(streams) if i <= step and rec.is_ready(s)]
        if not ready and step >= len(streams):
            break
        if ready:
            rec.decode_streams(ready)
        step += 1
    return [[ids[t] for t in rec.get_result_all(s).tokens] for s in streams]


def reference_encoder(model, wav: np.ndarray) -> torch.Tensor:
    """Our streaming encoder over the chunks sherpa decodes: [1, n_chunks * CHUNK / 4, D]."""
    feats = compute_fbank(torch.from_numpy(wav), FbankConfig())
    # sherpa: ready while processed + T < frames ready, so (N - 1) // T whole chunks
    return streaming_encoder_out(model, feats, CHUNK, chunks=(feats.shape[0] - 1) // CHUNK)


def reference_greedy(model, wav: np.ndarray) -> list[int]:
    enc = reference_encoder(model, wav)
    hyp = decoding.greedy_search(model, enc, torch.tensor([enc.shape[1]]), max_symbols_per_frame=1)[0]
    return hyp.tokens


def reference_beam(model, wav: np.ndarray) -> tuple[list[int], list[decoding.Hypothesis]]:
    """(our best tokens, our final beam set)."""
    enc = reference_encoder(model, wav)
    return decoding.beam_search(model, enc, beam=BEAM).tokens, decoding.beam_search_hypotheses(model, enc, beam=BEAM)


def _nontrivial(tokens: list[int]) -> None:
    assert tokens, "empty result: the test would prove nothing"
    assert len(set(tokens)) > 1, f"degenerate result {tokens}"


# ----------------------------------------------------------------------------- export / contract


def test_export_entry_metadata_and_io(exported):
    import onnx

    assert not exported.manifest["errors"], exported.manifest["errors"]
    entry = exported.manifest["artifacts"]["sherpa-onnx"]["fp32"]
    assert entry["encoder"] == "sherpa-onnx/fp32/encoder.onnx"
    assert entry["tokens"] == "sherpa-onnx/tokens.txt" and "sherpa-onnx/tokens.txt" in exported.manifest["files"]
    assert entry["model_type"] == "conformer" and entry["chunk_ms"] == CHUNK_MS
    cfg = exported.model.cfg

    enc = onnx.load(str(exported.dir / entry["encoder"]))
    meta = {p.key: p.value for p in enc.metadata_props}
    assert meta["model_type"] == "conformer"
    assert int(meta["T"]) == int(meta["decode_chunk_len"]) == CHUNK and int(meta["pad_length"]) == 0
    assert int(meta["num_encoder_layers"]) == cfg.num_layers and int(meta["left_context"]) == cfg.left_context
    assert int(meta["encoder_dim"]) == cfg.d_model
    # sherpa allocates cnn_module_kernel - 1 conv cache frames = our (k - 1) / 2.
    assert int(meta["cnn_module_kernel"]) - 1 == (cfg.conv_kernel - 1) // 2
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in enc.graph.input}
    assert list(dims) == ["x", "cached_attn", "cached_conv", "processed_lens"]
    assert dims["cached_conv"] == [cfg.num_layers, (cfg.conv_kernel - 1) // 2, "N", cfg.d_model]

    dec = onnx.load(str(exported.dir / entry["decoder"]))
    dmeta = {p.key: p.value for p in dec.metadata_props}
    assert int(dmeta["vocab_size"]) == cfg.vocab_size and int(dmeta["context_size"]) == cfg.context_size

    lines = (exported.dir / entry["tokens"]).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "<blk> 0" and lines[1] == f"{UNK_SYMBOL} 1" and len(lines) == cfg.vocab_size


def test_sherpa_feature_defaults_match_training_fbank(exported, waves):
    """from_transducer's feature defaults are our FbankConfig, and sherpa's frames equal compute_fbank."""
    import inspect

    cfg = FbankConfig()
    params = inspect.signature(sherpa_onnx.OnlineRecognizer.from_transducer).parameters
    defaults = {k: params[k].default for k in ("sample_rate", "feature_dim", "low_freq", "high_freq", "dither",
                                                "snip_edges", "normalize_samples")}
    assert defaults == dict(sample_rate=cfg.sample_rate, feature_dim=cfg.num_mel_bins, low_freq=cfg.low_freq,
                            high_freq=cfg.high_freq, dither=cfg.dither, snip_edges=cfg.snip_edges,
                            normalize_samples=True)
    assert exported.manifest["artifacts"]["sherpa-onnx"]["fp32"]["feature_args"] == defaults

    rec = _recognizer(exported.dir, exported.manifest["artifacts"]["sherpa-onnx"]["fp32"], "greedy_search")
    wav = waves["speech"]
    ours = compute_fbank(torch.from_numpy(wav), cfg).numpy()
    s = rec.create_stream()
    s.accept_waveform(SR, wav)
    s.input_finished()
    theirs = np.asarray(s.get_frames(0, ours.shape[0]), dtype=np.float32).reshape(ours.shape)
    assert np.abs(theirs - ours).max() <= 1e-3


@torch.no_grad()
def test_decoder_accepts_both_sherpa_start_contexts(exported):
    """sherpa-onnx 2.0.1 starts from [-1, blank] (checked with a debug graph); older releases start
    from [blank, blank]. Both must give our start state; later contexts pass through unchanged."""
    from dualasr.export.sherpa_writer import SherpaDecoder

    model = exported.model
    dec = SherpaDecoder(model.predictor, model.joiner.pred_proj).eval()
    given = torch.tensor([[0, 0], [-1, 0], [0, 5], [5, 7], [7, 5]])
    meant = torch.tensor([[-1, 0], [-1, 0], [0, 5], [5, 7], [7, 5]])
    want = model.joiner.pred_proj(model.predictor.step(meant, [])[0])
    torch.testing.assert_close(dec(given), want, rtol=0, atol=0)


def test_encoder_survives_sherpa_reset_of_processed_lens(exported, waves):
    """sherpa's endpoint Reset() passes processed_lens = 0 again with the caches kept: the graph must
    then behave as if the stream had continued (what our runtime's reset does), while a zeroed
    cache (reset_encoder=True) still starts fresh."""
    import onnxruntime as ort

    entry = exported.manifest["artifacts"]["sherpa-onnx"]["fp32"]
    sess = ort.InferenceSession(str(exported.dir / entry["encoder"]), providers=["CPUExecutionProvider"])
    feats = compute_fbank(torch.from_numpy(waves["speech"])).numpy()[None]
    cfg = exported.model.cfg
    attn = np.zeros((cfg.num_layers, cfg.left_context, 1, cfg.d_model), np.float32)
    conv = np.zeros((cfg.num_layers, (cfg.conv_kernel - 1) // 2, 1, cfg.d_model), np.float32)
    for i in range(2):
        out, attn, conv = sess.run(None, {"x": feats[:, i * CHUNK:(i + 1) * CHUNK], "cached_attn": attn,
                                          "cached_conv": conv, "processed_lens": np.array([i * CHUNK])})
    x = feats[:, 2 * CHUNK:3 * CHUNK]
    cont = sess.run(None, {"x": x, "cached_attn": attn, "cached_conv": conv, "processed_lens": np.array([2 * CHUNK])})
    reset = sess.run(None, {"x": x, "cached_attn": attn, "cached_conv": conv, "processed_lens": np.array([0])})
    for a, b in zip(cont, reset):
        np.testing.assert_array_equal(a, b)
    zero = [np.zeros_like(attn), np.zeros_like(conv)]
    fresh = sess.run(None, {"x": x, "cached_attn": zero[0], "cached_conv": zero[1], "processed_lens": np.array([0])})
    ref, _ = exported.model.encoder.forward_chunk(torch.from_numpy(x), exported.model.encoder.init_state(1))
    ref = exported.model.joiner.enc_proj(ref)
    np.testing.assert_allclose(fresh[0], ref.detach().numpy(), atol=1e-4)


# ----------------------------------------------------------------------------- token equality


def test_greedy_equals_our_streaming_decode(exported, waves):
    entry = exported.manifest["artifacts"]["sherpa-onnx"]["fp32"]
    rec = _recognizer(exported.dir, entry, "greedy_search")
    ids = _piece_ids(exported.dir, entry)
    refs = {k: reference_greedy(exported.model, w) for k, w in waves.items()}
    for tokens in refs.values():
        _nontrivial(tokens)

    (one,) = sherpa_decode(rec, ids, [waves["speech"]])
    assert one == refs["speech"]
    many = sherpa_decode(rec, ids, list(waves.values()))
    assert many == list(refs.values())


def test_endpoint_reset_continues_the_stream(exported, waves):
    """With endpointing, sherpa's Reset() restarts processed_lens at 0 but keeps the encoder caches
    and the last context_size tokens: the segments joined must equal one continuous decode."""
    entry = exported.manifest["artifacts"]["sherpa-onnx"]["fp32"]
    rec = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(exported.dir / entry["tokens"]), encoder=str(exported.dir / entry["encoder"]),
        decoder=str(exported.dir / entry["decoder"]), joiner=str(exported.dir / entry["joiner"]),
        num_threads=1, decoding_method="greedy_search", enable_endpoint_detection=True,
        rule1_min_trailing_silence=100.0, rule2_min_trailing_silence=100.0, rule3_min_utterance_length=1.0,
    )
    ids = _piece_ids(exported.dir, entry)
    wav = waves["speech"]
    s = rec.create_stream()
    s.accept_waveform(SR, wav)
    s.input_finished()
    segments = []
    while rec.is_ready(s):
        rec.decode_stream(s)
        if rec.is_endpoint(s):
            segments.append([ids[t] for t in rec.get_result_all(s).tokens])
            rec.reset(s)
    segments.append([ids[t] for t in rec.get_result_all(s).tokens])
    assert len(segments) >= 3  # 1 s segments of a ~3.5 s stream
    assert sum(segments, []) == reference_greedy(exported.model, wav)


def test_modified_beam_search_picks_our_length_normalized_best(exported, waves):
    entry = exported.manifest["artifacts"]["sherpa-onnx"]["fp32"]
    rec = _recognizer(exported.dir, entry, "modified_beam_search")
    ids = _piece_ids(exported.dir, entry)
    context = exported.model.cfg.context_size
    got = sherpa_decode(rec, ids, list(waves.values()))
    (single,) = sherpa_decode(rec, ids, [waves["speech"]])
    assert single == got[0]
    for (name, wav), tokens in zip(waves.items(), got):
        best, final = reference_beam(exported.model, wav)
        _nontrivial(best)
        normalized = max(final, key=lambda h: h.score / (len(h.tokens) + context))
        assert tokens == normalized.tokens, name
        if normalized.tokens == best:  # the usual case: both selection rules agree
            assert tokens == best, name


def test_runtime_recognizer_agrees_with_sherpa(exported, waves):
    """Our torch-free runtime on the same export: greedy is causal, so its tokens emitted in the
    frames sherpa decoded (it also decodes the zero-padded last chunk) equal sherpa's."""
    assert "onnx" in exported.manifest["artifacts"], exported.manifest["errors"]
    entry = exported.manifest["artifacts"]["sherpa-onnx"]["fp32"]
    srec = _recognizer(exported.dir, entry, "greedy_search")
    ids = _piece_ids(exported.dir, entry)
    ours = Recognizer(exported.dir, backend="onnxruntime", mode="streaming", chunk_ms=CHUNK_MS,
                                 decoding="greedy", max_symbols_per_frame=1, threads=1)
    step_s = ours.encoder_frame_s
    for wav in waves.values():
        # A little noise: our runtime does not search leading digital silence, sherpa-onnx does
        # (README, "Digital silence"), and random weights emit tokens there.
        wav = wav + (np.random.default_rng(4).standard_normal(wav.size) * 1e-4).astype(np.float32)
        (theirs,) = sherpa_decode(srec, ids, [wav])
        s = ours.create_stream()
        s.accept_waveform(SR, wav)
        s.input_finished()
        while ours.is_ready(s):
            ours.decode(s)
        ours.decode(s)
        frames_decoded = reference_encoder(exported.model, wav).shape[1]
        # Runtime timestamps are (frame + 1) * 40 ms.
        kept = [t for t, ts in zip(s.result.token_ids, s.result.timestamps) if round(ts / step_s) - 1 < frames_decoded]
        assert kept == theirs


def test_int8_loads_and_decodes(exported, waves):
    entry = exported.int8
    assert entry["encoder"] == "sherpa-onnx/int8/encoder.onnx" and entry["quantization"]
    fp32_size = (exported.dir / "sherpa-onnx/fp32/encoder.onnx").stat().st_size
    assert (exported.int8_dir / entry["encoder"]).stat().st_size < 0.5 * fp32_size
    ids = _piece_ids(exported.int8_dir, entry)
    for method in ("greedy_search", "modified_beam_search"):
        rec = _recognizer(exported.int8_dir, entry, method)
        for tokens in sherpa_decode(rec, ids, list(waves.values())):
            _nontrivial(tokens)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("preset", ["tiny-lstm", "tiny-contextnet"])
def test_incompatible_models_are_refused(preset, tmp_path):
    from dualasr.config import load_config
    from dualasr.model import Transducer

    cfg = load_config(preset).model
    with pytest.raises(ExportError, match="preset 'tiny'"):
        check_compatible(cfg)
    model = Transducer(cfg)
    with pytest.raises(ExportError, match="cannot run in sherpa-onnx"):
        write_sherpa(model, b"", tmp_path, "fp32", CHUNK_MS)
    assert not any(tmp_path.iterdir())


def test_bad_chunk_and_precision_are_refused(exported, tmp_path):
    tok = exported.dir / "tokenizer.model"
    with pytest.raises(ExportError, match="multiple of 40 ms"):
        write_sherpa(exported.model, tok, tmp_path, "fp32", 300)
    with pytest.raises(ExportError, match="precision"):
        write_sherpa(exported.model, tok, tmp_path, "fp16", CHUNK_MS)
