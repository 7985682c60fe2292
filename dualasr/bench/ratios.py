"""Figures derived from the cells: compute against this machine's peak, the headline ratios (which
transfer between machines better than absolute times) and the project's targets."""

from __future__ import annotations

from dualasr import MODES

from .fmt import num, signed, times
from .schema import clean

__all__ = ["add_compute", "find_cell", "headline", "ok_cells", "targets"]

# Issue 15's goals. Streaming compute: within 1.15x of full context at chunks of 320 ms and more,
# 1.3x below. Harness overhead: 10% of model time at phone-model size (e.g. conformer-s), 25% for
# smaller models, whose graphs are too short for the harness to hide in.
PHONE_SIZE_PARAMS = 5_000_000
_TARGETS = {
    "int8_speedup": 1.8,  # streaming int8 RTF on 1 thread at least 1.8x better than fp32 ...
    "int8_wer_delta_points": 0.5,  # ... with WER change <= 0.5 absolute points (trained weights only)
    "streaming_over_full": {320: 1.15, 0: 1.3},  # chunk_ms at least -> ratio
    "harness_overhead_pct": {PHONE_SIZE_PARAMS: 10.0, 0: 25.0},  # total parameters at least -> % of model time
    "gemm_efficiency": 0.40,  # streaming encoder graph's achieved rate / the machine's matmul peak
    "faster_than_sherpa_onnx": 1.5,  # sherpa-onnx RTF / ours, same model, chunk, precision, threads
}


def _by_floor(table: dict[int, float], value: int) -> float:
    """The entry of the largest key <= value (keys include 0)."""
    return table[max(k for k in table if k <= value)]


def _floor_goals(table: dict[int, float], fmt: str, key: str) -> str:
    """A by-floor table as text, e.g. "<= 1.15x (chunk_ms >= 320), <= 1.3x (below)"."""
    first, *rest = sorted(table, reverse=True)
    return ", ".join([f"<= {fmt.format(table[first])} ({key} >= {first:,})"]
                     + [f"<= {fmt.format(table[k])} (below)" for k in rest])


def ok_cells(results: dict) -> list[dict]:
    return [c for c in results["cells"] if c.get("status") == "ok"]


def find_cell(results: dict, **kw) -> dict | None:
    for c in ok_cells(results):
        if all(c.get(k) == v for k, v in kw.items()):
            return c
    return None


def add_compute(results: dict) -> None:
    """Per runtime cell: counted FLOPs per second of audio, achieved FLOP/s in the graphs and the
    fraction of this machine's measured matmul peak at the same thread count and precision."""
    fl = results.get("flops") or {}
    if fl.get("status") != "ok":
        return
    per_utt = fl["per_utterance"]
    for c in ok_cells(results):
        if c["system"] != "dualasr":
            continue
        m = c["metrics"]
        audio = m.get("audio_s") or 0.0
        if c["mode"] == "full":
            enc = sum(per_utt.get(u["id"], {}).get("encoder_full_flops", 0) for u in c["utterances"])
        else:
            steps = sum(per_utt.get(u["id"], {}).get("streaming_steps", {}).get(str(c["chunk_ms"]), 0) for u in c["utterances"])
            enc = steps * fl["encoder_streaming_step"].get(str(c["chunk_ms"]), 0)
        m["encoder_flops_per_audio_s"] = enc / audio if audio else None
        calls = m.get("graph_calls")
        if not calls:
            continue
        dec = calls.get("predictor", 0) * fl["predictor_per_call"] + calls.get("joiner", 0) * fl["joiner_per_call"]
        m["model_flops_per_audio_s"] = (enc + dec) / audio if audio else None
        gs = m.get("graph_s") or {}
        enc_s = sum(v for k, v in gs.items() if k.startswith("encoder"))
        m["encoder_gflops_achieved"] = enc / enc_s / 1e9 if enc_s else None
        m["model_gflops_achieved"] = (enc + dec) / m["model_s"] / 1e9 if m.get("model_s") else None
        peak = results.get("peak", {}).get(str(c["threads"])) or {}
        ref = peak.get("onnxruntime_int8_gops") if c["precision"] == "int8" else max(
            [v for v in (peak.get("numpy_fp32_gflops"), peak.get("onnxruntime_fp32_gflops")) if v] or [0.0])
        if ref and m.get("encoder_gflops_achieved"):
            m["encoder_peak_fraction"] = m["encoder_gflops_achieved"] / ref


def headline(results: dict) -> dict:
    """The ratios that matter more than absolute times."""
    cells = ok_cells(results)
    out: dict[str, list] = {"int8_vs_fp32": [], "streaming_vs_full": [], "harness_overhead": [], "ours_vs_peers": []}
    for c in cells:
        if c["system"] != "dualasr" or c["precision"] != "int8":
            continue
        f = find_cell(results, system="dualasr", backend=c["backend"], precision="fp32", mode=c["mode"],
                  chunk_ms=c["chunk_ms"], threads=c["threads"])
        if f is None:
            continue
        mi, mf = c["metrics"], f["metrics"]
        out["int8_vs_fp32"].append(clean({
            "backend": c["backend"], "mode": c["mode"], "chunk_ms": c["chunk_ms"], "threads": c["threads"],
            "rtf_fp32": mf.get("rtf"), "rtf_int8": mi.get("rtf"),
            "rtf_speedup": _ratio(mf.get("rtf"), mi.get("rtf")),
            "model_time_speedup": _ratio(mf.get("model_s"), mi.get("model_s")),
            "wer_fp32_pct": mf.get("wer_pct"), "wer_int8_pct": mi.get("wer_pct"),
            "wer_delta_points": _diff(mi.get("wer_pct"), mf.get("wer_pct")),
            "size_ratio": _ratio(mf.get("size_bytes"), mi.get("size_bytes")),
        }))
    fl = results.get("flops") or {}
    for c in cells:
        if c["system"] != "dualasr" or c["mode"] != "streaming":
            continue
        full = find_cell(results, system="dualasr", backend=c["backend"], precision=c["precision"], mode="full",
                     threads=c["threads"])
        if full is None:
            continue
        ms, mf = c["metrics"], full["metrics"]
        out["streaming_vs_full"].append(clean({
            "backend": c["backend"], "precision": c["precision"], "chunk_ms": c["chunk_ms"], "threads": c["threads"],
            "counted_flops_ratio": (fl.get("streaming_over_full") or {}).get(str(c["chunk_ms"])),
            "model_time_ratio": _ratio(ms.get("model_s"), mf.get("model_s")),
            "rtf_ratio": _ratio(ms.get("rtf"), mf.get("rtf")),
            "wer_streaming_pct": ms.get("wer_pct"), "wer_full_pct": mf.get("wer_pct"),
        }))
    for c in cells:
        m = c["metrics"]
        if m.get("harness_overhead_pct") is None:
            continue
        model = m.get("model_s") or 0.0
        share = {part: 100.0 * (m.get(f"{part}_s") or 0.0) / model if model else None
                 for part in ("features", "result", "search", "bookkeeping", "search_and_bookkeeping")}
        out["harness_overhead"].append(clean({
            "cell": c["id"], "overhead_pct": m["harness_overhead_pct"], **{f"{k}_pct": v for k, v in share.items()},
        }))
    for ours_mode in MODES:
        ours = _reference_cell(results, ours_mode)
        if ours is None:
            continue
        for p in cells:
            is_peer = p["system"] != "dualasr" or (p["backend"] == "sherpa-onnx" and ours["backend"] != "sherpa-onnx")
            if not is_peer or p["mode"] != ours_mode or p["threads"] != ours["threads"]:
                continue
            if p["backend"] == "sherpa-onnx" and p["precision"] != ours["precision"]:
                continue
            if p["system"] == "whisper-tiny.en" and p["precision"] != ours["precision"]:
                continue
            out["ours_vs_peers"].append(clean({
                "ours": ours["id"], "peer": p["id"],
                "peer_rtf_over_ours": _ratio(p["metrics"].get("rtf"), ours["metrics"].get("rtf")),
                "rtf_ours": ours["metrics"].get("rtf"), "rtf_peer": p["metrics"].get("rtf"),
                "wer_ours_pct": ours["metrics"].get("wer_pct"), "wer_peer_pct": p["metrics"].get("wer_pct"),
                "size_ours_bytes": ours["metrics"].get("size_bytes"), "size_peer_bytes": p["metrics"].get("size_bytes"),
                "peak_rss_ours_mb": ours["metrics"].get("peak_rss_mb"), "peak_rss_peer_mb": p["metrics"].get("peak_rss_mb"),
            }))
    return out


def _reference_cell(results: dict, mode: str) -> dict | None:
    """Our headline configuration: onnxruntime, int8 (else fp32), first chunk, 1 thread."""
    chunks = results["export"].get("chunk_ms") or [None]
    for prec in ("int8", "fp32"):
        c = find_cell(results, system="dualasr", backend="onnxruntime", precision=prec, mode=mode,
                  chunk_ms=chunks[0] if mode == "streaming" else None, threads=1)
        if c is not None:
            return c
    return None


def _ratio(a, b) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def _diff(a, b) -> float | None:
    return a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


def targets(results: dict) -> list[dict]:
    """Issue 15's goals, measured: status pass / fail / n/a (no cell to judge)."""
    h = results.get("headline") or headline(results)
    out: list[dict] = []

    def add(name: str, goal: str, measured: str, ok: bool | None) -> None:
        out.append({"name": name, "goal": goal, "measured": measured,
                    "status": "n/a" if ok is None else "pass" if ok else "fail"})

    trained = not results["export"].get("random_init", False)
    speedup, max_delta = _TARGETS["int8_speedup"], _TARGETS["int8_wer_delta_points"]
    int8_goal = f"RTF >= {speedup}x better and WER change <= {max_delta} points"
    rows = [r for r in h["int8_vs_fp32"] if r["mode"] == "streaming" and r["threads"] == 1]
    for r in rows:
        sp, dw = r.get("rtf_speedup"), r.get("wer_delta_points")
        wer = f"WER {signed(dw)} points" if trained else "WER not judged (random weights)"
        ok = sp is not None and sp >= speedup and (not trained or (dw is not None and dw <= max_delta))
        add(f"int8 vs fp32, streaming {r['chunk_ms']} ms, 1 thread, {r['backend']}",
            int8_goal, f"RTF {times(sp)} better, {wer}", ok)
    if not rows:
        add("int8 vs fp32, streaming, 1 thread", int8_goal, "no fp32/int8 streaming pair at 1 thread", None)

    fl = results.get("flops") or {}
    for chunk, ratio in (fl.get("streaming_over_full") or {}).items():
        goal = _by_floor(_TARGETS["streaming_over_full"], int(chunk))
        add(f"streaming {chunk} ms vs full compute (counted encoder FLOPs per second of audio)", f"<= {goal}x",
            times(ratio), ratio is not None and ratio <= goal)
    for r in h["streaming_vs_full"]:
        if r["backend"] == "onnxruntime" and r["threads"] == 1:
            goal, ratio = _by_floor(_TARGETS["streaming_over_full"], r["chunk_ms"]), r.get("model_time_ratio")
            add(f"streaming {r['chunk_ms']} ms vs full compute (measured model time, onnxruntime {r['precision']}, 1 thread)",
                f"<= {goal}x", times(ratio), ratio is not None and ratio <= goal)
    if not fl.get("streaming_over_full") and not h["streaming_vs_full"]:
        add("streaming vs full compute", _floor_goals(_TARGETS["streaming_over_full"], "{}x", "chunk_ms"),
            "not measured", None)

    params = (fl.get("params") or {}).get("total")
    hrows = [r for r in h["harness_overhead"] if "/streaming" in r["cell"] and "/onnxruntime/" in r["cell"]]
    for r in hrows:
        v = r["overhead_pct"]
        goal = _by_floor(_TARGETS["harness_overhead_pct"], params) if params else None
        size = (f"{'>=' if params >= PHONE_SIZE_PARAMS else '<'} {PHONE_SIZE_PARAMS / 1e6:g}M parameters" if params
                else "parameters not counted: --no-compute")
        add(f"harness overhead {r['cell']}", f"<= {num(goal, 0)}% of model time ({size})",
            f"{num(v, 1)}% (features {num(r.get('features_pct'), 1)}%, results {num(r.get('result_pct'), 1)}%, "
            f"search {num(r.get('search_pct'), 1)}%, bookkeeping {num(r.get('bookkeeping_pct'), 1)}%)",
            None if v is None or goal is None else v <= goal)
    if not hrows:
        add("harness overhead", _floor_goals(_TARGETS["harness_overhead_pct"], "{:g}% of model time", "parameters"),
            "no onnxruntime streaming cell", None)

    gemm = _TARGETS["gemm_efficiency"]
    streaming_ort = [c for c in ok_cells(results) if c["system"] == "dualasr" and c["backend"] == "onnxruntime"
                     and c["mode"] == "streaming" and c["threads"] == 1]
    for c in streaming_ort:
        frac = c["metrics"].get("encoder_peak_fraction")
        add(f"GEMM efficiency {c['id']} (streaming encoder graph's rate / matmul peak)", f">= {gemm:.0%}",
            "not measured" if frac is None else f"{frac:.1%}", None if frac is None else frac >= gemm)

    faster = _TARGETS["faster_than_sherpa_onnx"]
    vs_sherpa = [r for r in h["ours_vs_peers"] if "/sherpa-onnx/" in r["peer"]]
    for r in vs_sherpa:
        ratio = r.get("peer_rtf_over_ours")
        add(f"{r['ours']} vs {r['peer']} (sherpa-onnx RTF / ours)", f">= {faster}x", times(ratio),
            None if ratio is None else ratio >= faster)
    if not vs_sherpa:
        add("ours vs sherpa-onnx, same model", f">= {faster}x faster", "no sherpa-onnx cell", None)
    return out
