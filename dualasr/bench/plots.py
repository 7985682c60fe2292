"""PNG plots of the results (matplotlib, the [bench] extra)."""

from __future__ import annotations

import os
from pathlib import Path

from .ratios import ok_cells

__all__ = ["write_plots"]


def _save_fig(fig, path: Path) -> None:
    from dualasr.fileio import atomic_write

    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))


def _mode_key(c: dict) -> str:
    return f"streaming {c['chunk_ms']} ms" if c["mode"] == "streaming" and c.get("chunk_ms") else c["mode"]


def write_plots(results: dict, out_dir: str | os.PathLike) -> dict[str, str]:
    """latency_cdf.png (emission latency CDF per mode, one curve per cell), rtf_vs_wer.png (every
    cell) and lattice.png (token emission times of one utterance per mode, our onnxruntime fp32 at
    1 thread, sherpa-onnx too). Returns {name: file name}."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import numpy as np

    out = Path(out_dir)
    cells = ok_cells(results)
    written: dict[str, str] = {}
    modes = list(dict.fromkeys(_mode_key(c) for c in cells))
    if modes:
        ncols = min(3, len(modes))
        nrows = -(-len(modes) // ncols)
        fig = Figure(figsize=(6 * ncols, 4.2 * nrows))
        FigureCanvasAgg(fig)
        for i, mode in enumerate(modes):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            for c in cells:
                if _mode_key(c) != mode:
                    continue
                lat = np.sort([u["emission_latency_s"] for u in c["utterances"] if u.get("emission_latency_s") is not None])
                if lat.size:
                    ax.step(lat, np.arange(1, lat.size + 1) / lat.size, where="post",
                            label=c["id"].replace(f"/{c['mode']}", "").replace("streaming-", ""), lw=1.2)
            ax.set_title(f"emission latency CDF: {mode}")
            ax.set_xlabel("last token emission − end of speech (s)")
            ax.set_ylabel("fraction of utterances")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, loc="lower right")
        fig.tight_layout()
        _save_fig(fig, out / "latency_cdf.png")
        written["latency_cdf"] = "latency_cdf.png"

    fig = Figure(figsize=(9, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    markers = {"onnxruntime": "o", "executorch": "s", "torch": "^", "sherpa-onnx": "D", "pocketsphinx": "x", "ctranslate2": "*"}
    for c in cells:
        m = c["metrics"]
        if m.get("rtf") is None or m.get("wer_pct") is None:
            continue
        color = "tab:blue" if c["mode"] == "streaming" else "tab:orange"
        if c["system"] != "dualasr":
            color = "tab:gray"
        ax.scatter([m["rtf"]], [m["wer_pct"]], marker=markers.get(c["backend"], "o"), color=color,
                   alpha=0.9 if c["threads"] == 1 else 0.45, s=40)
        ax.annotate(c["id"].removeprefix("dualasr/"), (m["rtf"], m["wer_pct"]), fontsize=5, xytext=(3, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("RTF (compute / audio, log scale)")
    ax.set_ylabel("WER (%)")
    ax.set_title("RTF vs WER per cell (blue: streaming, orange: full, gray: peers; faded: all threads)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    _save_fig(fig, out / "rtf_vs_wer.png")
    written["rtf_vs_wer"] = "rtf_vs_wer.png"

    lattice = _lattice_rows(results)
    if lattice:
        from dualasr.metrics import plot_emission_lattice

        rows, tokens, frame_s, uid = lattice
        plot_emission_lattice(str(out / "lattice.png"), rows, tokens, frame_s,
                              f"token emissions, utterance {uid} (our onnxruntime fp32, 1 thread)")
        written["lattice"] = "lattice.png"
    return written


def _lattice_rows(results: dict):
    """Rows for plot_emission_lattice: one per mode of our onnxruntime fp32 1-thread cells (any backend
    if onnxruntime did not run), the utterance with the most tokens in full mode."""
    cells = [c for c in ok_cells(results) if c["system"] == "dualasr" and c["threads"] == 1 and c["precision"] == "fp32"
             and c["backend"] != "sherpa-onnx"]
    preferred = [c for c in cells if c["backend"] == "onnxruntime"] or cells
    if not preferred:
        return None
    by_mode = {}
    for c in preferred:
        by_mode.setdefault(_mode_key(c), c)
    frame_s = next((c.get("encoder_frame_s") for c in by_mode.values() if c.get("encoder_frame_s")), 0.04)
    first = next(iter(by_mode.values()))
    pick = max(range(len(first["utterances"])), key=lambda i: (len(by_mode.get("full", first)["utterances"][i]["tokens"]), -i))
    uid = first["utterances"][pick]["id"]
    rows, toks = {}, []
    for mode, c in by_mode.items():
        u = next((x for x in c["utterances"] if x["id"] == uid), None)
        if u is None:
            continue
        rows[mode] = [round(t / frame_s) for t in u["timestamps"]]
        toks.append(u["tokens"])
    # Labels only when every row emitted the same tokens (the plot labels all rows with one list).
    tokens = toks[0] if toks and all(t == toks[0] for t in toks) else None
    return rows, tokens, frame_s, uid
