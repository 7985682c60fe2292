"""The results as a Markdown report: headline ratios, targets, the matrix, compute, skips."""

from __future__ import annotations

import os
from pathlib import Path

from .fmt import megabytes, num, signed, times
from .ratios import ok_cells

__all__ = ["markdown", "write_markdown"]


def markdown(results: dict) -> str:
    """The results as a Markdown report: headline ratios, targets, the matrix, compute, skips."""
    r = results
    mach, ex, data = r["machine"], r["export"], r["data"]
    L = [f"# dualasr bench ({r['created']})", "",
         f"Machine: {mach.get('cpu_model') or '?'} ({mach['arch']}, {mach['cpu_count']} cores), {mach['platform']}, "
         f"Python {mach['python']}; load average at start {mach.get('load_avg_at_start')}.  ",
         f"Export: `{ex['dir']}` (chunks {ex.get('chunk_ms')} ms, formats {', '.join(f'{k} {v}' for k, v in ex['formats'].items())}; "
         f"source checkpoint sha256 {str(ex.get('source_checkpoint_sha256'))[:16]}…).  ",
         f"Data: `{data['manifest']}`, {data['utterances']} utterances ({data['selection']}).  ",
         f"Each cell in a fresh subprocess; audio fed in {r['settings']['feed_ms']:.0f} ms pieces with a simulated "
         f"real-time clock; 1 warm-up utterance; timings best of {r['settings']['repeat']}.", ""]
    h = r["headline"]
    L += ["## Headline (ratios)", ""]
    if h["int8_vs_fp32"]:
        L += ["int8 vs fp32 (speedup = fp32 RTF / int8 RTF):", "",
              "| backend | mode | threads | RTF fp32 | RTF int8 | RTF speedup | model-time speedup | WER fp32 | WER int8 | Δ WER (points) | size fp32/int8 |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in h["int8_vs_fp32"]:
            mode = f"streaming {x['chunk_ms']} ms" if x["mode"] == "streaming" else "full"
            L.append(f"| {x['backend']} | {mode} | {x['threads']} | {num(x['rtf_fp32'], 4)} | {num(x['rtf_int8'], 4)} | "
                     f"{times(x['rtf_speedup'])} | {times(x.get('model_time_speedup'))} | {num(x['wer_fp32_pct'], 2)} | "
                     f"{num(x['wer_int8_pct'], 2)} | {signed(x['wer_delta_points'])} | {times(x.get('size_ratio'))} |")
        L.append("")
    if h["streaming_vs_full"]:
        L += ["Streaming vs full-context compute (ratio > 1: streaming costs more per second of audio):", "",
              "| backend | precision | chunk | threads | counted FLOPs | model time | RTF | WER streaming | WER full |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for x in h["streaming_vs_full"]:
            L.append(f"| {x['backend']} | {x['precision']} | {x['chunk_ms']} ms | {x['threads']} | {times(x['counted_flops_ratio'])} | "
                     f"{times(x['model_time_ratio'])} | {times(x['rtf_ratio'])} | {num(x['wer_streaming_pct'], 2)} | {num(x['wer_full_pct'], 2)} |")
        L.append("")
    if h["ours_vs_peers"]:
        L += ["Ours vs peers, same audio (peer RTF / our RTF > 1: ours is faster):", "",
              "| ours | peer | peer RTF / our RTF | RTF ours | RTF peer | WER ours | WER peer | size ours MB | size peer MB | RSS ours MiB | RSS peer MiB |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in h["ours_vs_peers"]:
            L.append(f"| {x['ours']} | {x['peer']} | {times(x['peer_rtf_over_ours'])} | {num(x['rtf_ours'], 4)} | {num(x['rtf_peer'], 4)} | "
                     f"{num(x['wer_ours_pct'], 2)} | {num(x['wer_peer_pct'], 2)} | {megabytes(x['size_ours_bytes'])} | {megabytes(x['size_peer_bytes'])} | "
                     f"{num(x['peak_rss_ours_mb'], 0)} | {num(x['peak_rss_peer_mb'], 0)} |")
        L.append("")
    if h["harness_overhead"]:
        L += ["Harness overhead (runtime time outside the model graphs, % of model time):", "",
              "| cell | total | features | results | search | bookkeeping |", "|---|---:|---:|---:|---:|---:|"]
        for x in h["harness_overhead"]:
            L.append(f"| {x['cell']} | {num(x['overhead_pct'], 1)}% | {num(x.get('features_pct'), 1)}% | "
                     f"{num(x.get('result_pct'), 1)}% | {num(x.get('search_pct'), 1)}% | {num(x.get('bookkeeping_pct'), 1)}% |")
        L.append("")
    L += ["## Targets", "", "| target | goal | measured | status |", "|---|---|---|---|"]
    for t in r["targets"]:
        L.append(f"| {t['name']} | {t['goal']} | {t['measured']} | **{t['status']}** |")
    L += ["", "## Matrix", "",
          "| cell | WER % | RTF | chunk p50 ms | chunk p90 ms | Lat@50 s | Lat@90 s | final @50 s | first partial @50 s | load s | peak RSS MiB | size MB | overhead % | enc GFLOP/s | % of peak |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in ok_cells(r):
        m = c["metrics"]
        frac = m.get("encoder_peak_fraction")
        L.append(f"| {c['id']} | {num(m.get('wer_pct'), 2)} | {num(m.get('rtf'), 4)} | {num(m.get('chunk_compute_ms_p50'), 2)} | "
                 f"{num(m.get('chunk_compute_ms_p90'), 2)} | {num(m.get('latency_at_50_s'), 3)} | {num(m.get('latency_at_90_s'), 3)} | "
                 f"{num(m.get('final_latency_at_50_s'), 3)} | {num(m.get('first_partial_at_50_s'), 3)} | {num(m.get('load_s'), 3)} | {num(m.get('peak_rss_mb'), 0)} | "
                 f"{megabytes(m.get('size_bytes'))} | {num(m.get('harness_overhead_pct'), 1)} | {num(m.get('encoder_gflops_achieved'), 2)} | "
                 f"{num(None if frac is None else 100 * frac, 1)} |")
    L.append("")
    L += ["Latency: Lat@50/@90 = emission latency (last token's encoder frame end − end of speech), the paper's, "
          "which does not depend on the chunk size (the streaming encoder is strictly causal); final @50 = when the "
          "final text is out on the simulated clock − end of speech (adds the chunking delay and compute); "
          "first partial = when the first non-empty partial is out, from the start of the audio, on the simulated "
          "real-time clock (arrival + queueing + compute). Size = the files the cell loads. Overhead = runtime "
          "compute outside the graphs / time in the graphs.", ""]
    fl = r.get("flops") or {}
    L += ["## Compute", ""]
    if fl.get("status") == "ok":
        L += [f"Counted with {fl['counter']}. Encoder params {fl['params']['encoder']:,}, total {fl['params']['total']:,}.", "",
              "| graph | GFLOP per second of audio | per call |", "|---|---:|---:|",
              f"| encoder_full (over this data's lengths) | {num(fl['encoder_full_per_audio_s'] / 1e9, 4)} | – |"]
        for c, v in fl["encoder_streaming_per_audio_s"].items():
            L.append(f"| encoder_streaming_{c}ms | {num(v / 1e9, 4)} | {num(fl['encoder_streaming_step'][c] / 1e6, 2)} MFLOP/step |")
        L += [f"| predictor | – | {num(fl['predictor_per_call'] / 1e6, 3)} MFLOP |",
              f"| joiner | – | {num(fl['joiner_per_call'] / 1e6, 3)} MFLOP |", ""]
    else:
        L += [f"FLOPs not counted: {fl.get('reason')}", ""]
    if r.get("peak"):
        L += ["Matmul throughput of this machine (the hardware limit the cells are measured against):", "",
              "| threads | numpy fp32 GFLOP/s | onnxruntime fp32 GFLOP/s | onnxruntime int8 Gop/s | onnxruntime fp32, chunk-sized GEMM |",
              "|---:|---:|---:|---:|---:|"]
        for n, p in r["peak"].items():
            if p.get("status") == "error":
                L.append(f"| {n} | error: {p.get('reason')} | | | |")
                continue
            L.append(f"| {n} | {num(p.get('numpy_fp32_gflops'), 1)} | {num(p.get('onnxruntime_fp32_gflops'), 1)} | "
                     f"{num(p.get('onnxruntime_int8_gops'), 1)} | {num(p.get('onnxruntime_fp32_small_gflops'), 1)} ({p.get('small_shape')}) |")
        L.append("")
    skipped = [c for c in r["cells"] if c.get("status") != "ok"]
    if skipped:
        L += ["## Not run", "", "| cell | status | reason |", "|---|---|---|"]
        for c in skipped:
            L.append(f"| {c['id']} | {c['status']} | {str(c.get('reason')).replace('|', '/')[:300]} |")
        L.append("")
    if r.get("plots"):
        L += ["## Plots", ""] + [f"![{k}]({v})" for k, v in r["plots"].items()] + [""]
    return "\n".join(L)


def write_markdown(results: dict, path: str | os.PathLike) -> None:
    from dualasr.fileio import atomic_write

    atomic_write(Path(path), markdown(results))
