"""Counted FLOPs of the exported graphs (a worker of its own: the parent and the runtime cells never
import torch)."""

from __future__ import annotations

from pathlib import Path

from .schema import clean

__all__ = ["flops_worker"]


def flops_worker(spec: dict) -> dict:
    """Count the exported graphs' FLOPs with torch.utils.flop_counter.FlopCounterMode (matmul, conv,
    attention products as 2 x MACs; elementwise ops not counted) on the checkpoint in the export.

    Full mode: encoder_full on each utterance's real frame count (attention grows with length).
    Streaming: one step of each chunk graph (fixed-size caches: every step costs the same) times
    the steps the runtime runs on each utterance. Predictor/joiner: per call (batch 1).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dualasr.audio import load_audio
    from dualasr.checkpoint import load_model
    from dualasr.export.manifest import artifact_path
    from dualasr.export.wrappers import graphs_for
    from dualasr.runtime.recognizer import load_export_manifest

    torch.set_num_threads(1)
    export_dir = Path(spec["export_dir"])
    manifest = load_export_manifest(export_dir, verify_checksums=False)
    model, _cfg, _tok = load_model(artifact_path(manifest, export_dir, manifest["checkpoint"]))
    chunks = [int(e["chunk_ms"]) for e in manifest["streaming"]]
    graphs = graphs_for(model, chunks)
    cfg = model.cfg
    sub, shift = int(manifest["subsampling"]), int(16000 * manifest["frame_shift_ms"] / 1000)

    def count(module, inputs) -> tuple[int, dict[str, int]]:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            module(*inputs)
        by_op = {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
        return int(fc.get_total_flops()), by_op

    full_cache: dict[int, int] = {}
    per_utt: dict[str, dict] = {}
    total_audio = 0.0
    full_total = 0
    stream_total = {c: 0 for c in chunks}
    step = {c: count(graphs[f"encoder_streaming_{c}ms"], graphs[f"encoder_streaming_{c}ms"].example_inputs(1)) for c in chunks}
    full_by_op: dict[str, int] = {}
    for u in spec["utterances"]:
        n = load_audio(u["audio"], 16000).size
        frames = (n + shift // 2) // shift  # kaldi fbank, snip_edges=False
        t = frames // sub * sub
        if t not in full_cache:
            f, by_op = count(graphs["encoder_full"], (torch.zeros(1, t, cfg.num_mel_bins),)) if t else (0, {})
            full_cache[t] = f
            if not full_by_op:
                full_by_op = by_op
        steps = {}
        for c in chunks:
            cf = c // int(manifest["frame_shift_ms"])
            steps[c] = frames // cf + (1 if (frames % cf) // sub > 0 else 0)
            stream_total[c] += steps[c] * step[c][0]
        full_total += full_cache[t]
        total_audio += n / 16000
        per_utt[u["id"]] = {"frames": frames, "encoder_full_flops": full_cache[t], "streaming_steps": {str(c): s for c, s in steps.items()}}
    pred, pred_by_op = count(graphs["predictor"], graphs["predictor"].example_inputs(1))
    join, _ = count(graphs["joiner"], (torch.zeros(1, cfg.d_model), torch.zeros(1, cfg.predictor_dim)))
    return clean({
        "status": "ok",
        "counter": "torch.utils.flop_counter.FlopCounterMode (2 x MACs of matmul/conv/attention; elementwise ops excluded)",
        "params": {"encoder": sum(p.numel() for p in model.encoder.parameters()),
                   "total": sum(p.numel() for p in model.parameters())},
        "audio_s": total_audio,
        "encoder_full_per_audio_s": full_total / total_audio if total_audio else None,
        "encoder_full_by_op_first_utt": full_by_op,
        "encoder_streaming_step": {str(c): step[c][0] for c in chunks},
        "encoder_streaming_step_by_op": {str(c): step[c][1] for c in chunks},
        "encoder_streaming_per_audio_s": {str(c): stream_total[c] / total_audio if total_audio else None for c in chunks},
        "streaming_over_full": {str(c): (stream_total[c] / full_total if full_total else None) for c in chunks},
        "predictor_per_call": pred,
        "predictor_by_op": pred_by_op,
        "joiner_per_call": join,
        "per_utterance": per_utt,
        "small_shape": [max(1, chunks[0] // int(manifest["frame_shift_ms"]) // sub) if chunks else 8,
                        cfg.d_model, cfg.d_model * getattr(cfg, "ff_mult", 4)],
    })
