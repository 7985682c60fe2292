"""The results as a Markdown report: headline ratios, targets, the matrix, compute, skips."""

from __future__ import annotations

import os
from pathlib import Path

from .fmt import megabytes, num, signed, times
from .ratios import ok_cells
from .run import INT8_CPU_FEATURES

__all__ = ["markdown", "write_markdown"]

_LATENCY_NOTE = (
    "Latency: Lat@50/@90 = emission latency (last token's encoder frame end − end of speech), the paper's, "
    "which does not depend on the chunk size (the streaming encoder is strictly causal); final @50 = when the "
    "final text is out on the simulated clock − end of speech (adds the chunking delay and compute); "
    "first partial = when the first non-empty partial is out, from the start of the audio, on the simulated "
    "real-time clock (arrival + queueing + compute). Size = the files the cell loads. Overhead = runtime "
    "compute outside the graphs / time in the graphs."
)


def _table(columns: list[str], rows: list[list[str]], caption: str | None = None, left: int = 1) -> list[str]:
    """A Markdown table (the first `left` columns left-aligned, the others right), with an optional
    caption line before it and a blank line after."""
    lines = [caption, ""] if caption else []
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * left + "---:|" * (len(columns) - left)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _mode(x: dict) -> str:
    return f"streaming {x['chunk_ms']} ms" if x["mode"] == "streaming" else "full"


def _headline(h: dict) -> list[str]:
    out = ["## Headline (ratios)", ""]
    if h["int8_vs_fp32"]:
        out += _table(
            ["backend", "mode", "threads", "RTF fp32", "RTF int8", "RTF speedup", "model-time speedup", "WER fp32",
             "WER int8", "Δ WER (points)", "size fp32/int8"],
            [[x["backend"], _mode(x), str(x["threads"]), num(x["rtf_fp32"], 4), num(x["rtf_int8"], 4),
              times(x["rtf_speedup"]), times(x.get("model_time_speedup")), num(x["wer_fp32_pct"], 2),
              num(x["wer_int8_pct"], 2), signed(x["wer_delta_points"]), times(x.get("size_ratio"))]
             for x in h["int8_vs_fp32"]],
            "int8 vs fp32 (speedup = fp32 RTF / int8 RTF):", left=2)
    if h["streaming_vs_full"]:
        out += _table(
            ["backend", "precision", "chunk", "threads", "counted FLOPs", "model time", "RTF", "WER streaming", "WER full"],
            [[x["backend"], x["precision"], f"{x['chunk_ms']} ms", str(x["threads"]), times(x["counted_flops_ratio"]),
              times(x["model_time_ratio"]), times(x["rtf_ratio"]), num(x["wer_streaming_pct"], 2),
              num(x["wer_full_pct"], 2)] for x in h["streaming_vs_full"]],
            "Streaming vs full-context compute (ratio > 1: streaming costs more per second of audio):", left=2)
    if h["ours_vs_peers"]:
        out += _table(
            ["ours", "peer", "peer RTF / our RTF", "RTF ours", "RTF peer", "WER ours", "WER peer", "size ours MB",
             "size peer MB", "RSS ours MiB", "RSS peer MiB"],
            [[x["ours"], x["peer"], times(x["peer_rtf_over_ours"]), num(x["rtf_ours"], 4), num(x["rtf_peer"], 4),
              num(x["wer_ours_pct"], 2), num(x["wer_peer_pct"], 2), megabytes(x["size_ours_bytes"]),
              megabytes(x["size_peer_bytes"]), num(x["peak_rss_ours_mb"], 0), num(x["peak_rss_peer_mb"], 0)]
             for x in h["ours_vs_peers"]],
            "Ours vs peers, same audio (peer RTF / our RTF > 1: ours is faster):", left=2)
    if h["harness_overhead"]:
        out += _table(
            ["cell", "total", "features", "results", "search", "bookkeeping"],
            [[x["cell"]] + [f"{num(x.get(k), 1)}%" for k in ("overhead_pct", "features_pct", "result_pct", "search_pct",
                                                             "bookkeeping_pct")] for x in h["harness_overhead"]],
            "Harness overhead (runtime time outside the model graphs, % of model time):")
    return out


def _matrix(r: dict) -> list[str]:
    rows = []
    for c in ok_cells(r):
        m = c["metrics"]
        frac = m.get("encoder_peak_fraction")
        rows.append([c["id"], num(m.get("wer_pct"), 2), num(m.get("rtf"), 4), num(m.get("chunk_compute_ms_p50"), 2),
                     num(m.get("chunk_compute_ms_p90"), 2), num(m.get("latency_at_50_s"), 3),
                     num(m.get("latency_at_90_s"), 3), num(m.get("final_latency_at_50_s"), 3),
                     num(m.get("first_partial_at_50_s"), 3), num(m.get("load_s"), 3), num(m.get("peak_rss_mb"), 0),
                     megabytes(m.get("size_bytes")), num(m.get("harness_overhead_pct"), 1),
                     num(m.get("encoder_gflops_achieved"), 2), num(None if frac is None else 100 * frac, 1)])
    return ["## Matrix", ""] + _table(
        ["cell", "WER %", "RTF", "chunk p50 ms", "chunk p90 ms", "Lat@50 s", "Lat@90 s", "final @50 s",
         "first partial @50 s", "load s", "peak RSS MiB", "size MB", "overhead %", "enc GFLOP/s", "% of peak"], rows
    ) + [_LATENCY_NOTE, ""]


def _compute(r: dict) -> list[str]:
    fl = r.get("flops") or {}
    out = ["## Compute", ""]
    if fl.get("status") == "ok":
        rows = [["encoder_full (over this data's lengths)", num(fl["encoder_full_per_audio_s"] / 1e9, 4), "–"]]
        rows += [[f"encoder_streaming_{c}ms", num(v / 1e9, 4), f"{num(fl['encoder_streaming_step'][c] / 1e6, 2)} MFLOP/step"]
                 for c, v in fl["encoder_streaming_per_audio_s"].items()]
        rows += [["predictor", "–", f"{num(fl['predictor_per_call'] / 1e6, 3)} MFLOP"],
                 ["joiner", "–", f"{num(fl['joiner_per_call'] / 1e6, 3)} MFLOP"]]
        out += _table(["graph", "GFLOP per second of audio", "per call"], rows,
                      f"Counted with {fl['counter']}. Encoder params {fl['params']['encoder']:,}, "
                      f"total {fl['params']['total']:,}.")
    else:
        out += [f"FLOPs not counted: {fl.get('reason')}", ""]
    if r.get("peak"):
        rows = []
        for n, p in r["peak"].items():
            if p.get("status") == "error":
                rows.append([n, f"error: {p.get('reason')}", "", "", ""])
                continue
            rows.append([n, num(p.get("numpy_fp32_gflops"), 1), num(p.get("onnxruntime_fp32_gflops"), 1),
                         num(p.get("onnxruntime_int8_gops"), 1),
                         f"{num(p.get('onnxruntime_fp32_small_gflops'), 1)} ({p.get('small_shape')})"])
        out += _table(["threads", "numpy fp32 GFLOP/s", "onnxruntime fp32 GFLOP/s", "onnxruntime int8 Gop/s",
                       "onnxruntime fp32, chunk-sized GEMM"], rows,
                      "Matmul throughput of this machine (the hardware limit the cells are measured against):", left=0)
    return out


def search_description(decoding: dict | None) -> str:
    """settings.decoding in words, e.g. "beam 8 + LM lm.npz (weight 0.4, token bonus 1.5)"."""
    decoding = decoding or {"decoding": "greedy"}
    if decoding.get("decoding", "greedy") == "greedy":
        return "greedy"
    text = f"beam {decoding.get('beam', 4)}"
    if decoding.get("lm"):
        fusion = ", ".join(f"{k.removeprefix('lm_').replace('_', ' ')} {decoding[k]:g}"
                           for k in ("lm_weight", "lm_token_bonus", "lm_oov_penalty") if k in decoding)
        text += f" + LM `{Path(decoding['lm']).name}`" + (f" ({fusion})" if fusion else " (the runtime's weights)")
    return text


def _features(found: list[str] | None) -> str:
    """Older results and machines without /proc/cpuinfo say nothing of their CPU features."""
    if found is None:
        return "not recorded"
    return ", ".join(found) or "none of " + "/".join(INT8_CPU_FEATURES)


def _timings(settings: dict) -> str:
    """How the timings were taken (results before --rounds have one round)."""
    repeat, rounds = settings["repeat"], settings.get("rounds", 1)
    if rounds == 1:
        return f"best of {repeat}"
    passes = "one pass" if repeat == 1 else f"best of {repeat} passes"
    return f"the fastest of {rounds} rounds ({passes} each), the cells taking turns"


def markdown(results: dict) -> str:
    """The results as a Markdown report: headline ratios, targets, the matrix, compute, skips."""
    r = results
    mach, ex, data = r["machine"], r["export"], r["data"]
    out = [f"# dualasr bench ({r['created']})", "",
           f"Machine: {mach.get('cpu_model') or '?'} ({mach['arch']}, {mach['cpu_count']} cores; int8 CPU features: "
           f"{_features(mach.get('int8_cpu_features'))}), {mach['platform']}, "
           f"Python {mach['python']}; load average at start {mach.get('load_avg_at_start')}.  ",
           f"Export: `{ex['dir']}` (chunks {ex.get('chunk_ms')} ms, formats {', '.join(f'{k} {v}' for k, v in ex['formats'].items())}; "
           f"source checkpoint sha256 {str(ex.get('source_checkpoint_sha256'))[:16]}…).  ",
           f"Data: `{data['manifest']}`, {data['utterances']} utterances ({data['selection']}).  ",
           f"Each cell in a fresh subprocess; audio fed in {r['settings']['feed_ms']:.0f} ms pieces with a simulated "
           f"real-time clock; 1 warm-up utterance; timings {_timings(r['settings'])}.  ",
           f"Our search: {search_description(r['settings'].get('decoding'))}; sherpa-onnx and the peers: their own "
           "greedy search.", ""]
    out += _headline(r["headline"])
    out += ["## Targets", ""] + _table(["target", "goal", "measured", "status"],
                                       [[t["name"], t["goal"], t["measured"], f"**{t['status']}**"] for t in r["targets"]],
                                       left=4)
    out += _matrix(r) + _compute(r)
    skipped = [c for c in r["cells"] if c.get("status") != "ok"]
    if skipped:
        out += ["## Not run", ""] + _table(["cell", "status", "reason"],
                                           [[c["id"], c["status"], str(c.get("reason")).replace("|", "/")[:300]]
                                            for c in skipped], left=3)
    if r.get("plots"):
        out += ["## Plots", ""] + [f"![{k}]({v})" for k, v in r["plots"].items()] + [""]
    return "\n".join(out)


def write_markdown(results: dict, path: str | os.PathLike) -> None:
    from dualasr.fileio import atomic_write

    atomic_write(Path(path), markdown(results))
