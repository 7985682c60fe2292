"""`dualasr transcribe DIR AUDIO...`: transcribe files through the runtime, as a live stream.

Prints one line of text per file and a one-line RTF / latency summary (or, with --json, one JSON
object {"files": [...], "summary": {...}}). A file name that would break the one-line-per-file
output (a newline in it, bytes that are not UTF-8) is printed with backslash escapes; "-" reads
standard input. Files are read block by block, so memory does not grow with their length.
--backend torch runs the export's checkpoint in PyTorch eager (dualasr.runtime.torch_backend,
imported only then); every other backend runs without torch (ExecuTorch's Python bindings
excepted, see dualasr.runtime.backends).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

__all__ = ["transcribe_main", "default_export_dir", "build_recognizer", "decoding_options"]


def default_export_dir() -> Path:
    import dualasr

    return Path(dualasr.__file__).parent / "assets" / "default" / "export"


def _resolve_dirs(args: argparse.Namespace) -> tuple[Path, list[str]]:
    from dualasr.audio import STDIN

    export_dir, audio = args.export_dir, list(args.audio or [])
    # `dualasr transcribe a.wav` (or `-`, or a pipe) parses a.wav as DIR: treat audio there as input.
    if export_dir == STDIN or (export_dir is not None and Path(export_dir).exists() and not Path(export_dir).is_dir()):
        audio.insert(0, export_dir)
        export_dir = None
    if export_dir is None:
        d = default_export_dir()
        if not (d / "manifest.json").is_file():
            raise FileNotFoundError(
                f"no export folder given and the built-in model's export ({d}) is not installed; "
                "pass an export folder: dualasr transcribe DIR AUDIO... (make one with `dualasr export`)"
            )
        export_dir = d
    if not audio:
        raise ValueError("no audio files given: dualasr transcribe DIR AUDIO...")
    return Path(export_dir), audio


def decoding_options(args: argparse.Namespace) -> dict:
    """Recognizer keyword arguments from the search options (dualasr.cli.add_decoding_arguments):
    --lm implies beam search; the fusion settings need --lm.

    Raises:
        ValueError: --lm-weight, --lm-token-bonus or --lm-oov-penalty without --lm.
    """
    fusion = {k: v for k, v in (("lm_weight", args.lm_weight), ("lm_token_bonus", args.lm_token_bonus),
                                ("lm_oov_penalty", args.lm_oov_penalty)) if v is not None}
    if fusion and not args.lm:
        raise ValueError("--lm-weight, --lm-token-bonus and --lm-oov-penalty need --lm FILE")
    decoding = args.decoding or ("beam" if args.lm else "greedy")
    options = {"decoding": decoding, "beam": args.beam, **fusion}
    if args.lm:
        options["lm"] = str(Path(args.lm).resolve())
    return options


def build_recognizer(export_dir: Path, args: argparse.Namespace):
    """A Recognizer from the transcribe options."""
    from .backends import cap_threads

    args.threads, too_many = cap_threads(args.threads, "--threads")
    if too_many:
        print(f"dualasr transcribe: warning: {too_many}", file=sys.stderr, flush=True)
    from .recognizer import Recognizer

    return Recognizer(export_dir, backend=args.backend, precision=args.precision, mode=args.mode,
                      chunk_ms=args.chunk_ms, threads=args.threads, **decoding_options(args))


def _fmt(x: float | None, unit: str = "s") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}{unit}"


def transcribe_main(args: argparse.Namespace) -> int:
    from dualasr.audio import display_name

    from .simulate import SetSimulation, simulate_file

    export_dir, audio = _resolve_dirs(args)
    rec = build_recognizer(export_dir, args)
    sims = SetSimulation()
    failed: dict[str, str] = {}
    for path in audio:
        shown = display_name(path)
        try:
            r = simulate_file(rec, path, realtime=args.realtime, name=shown)
        except (ValueError, FloatingPointError) as e:  # AudioError, too short for full mode, NaN
            # One unreadable file (or a backend that fails on it) must not lose the others.
            failed[shown] = str(e)
            print(f"dualasr transcribe: {shown}: error: {e}", file=sys.stderr, flush=True)
            continue
        sims.results.append(r)
        if not args.json:
            print(f"{shown}: {r.text}", flush=True)
    if not sims.results:
        raise ValueError(f"no file could be transcribed ({len(failed)} failed, see above)")
    summary = sims.summary()
    summary.update(backend=rec.backend_name, mode=args.mode, precision=rec.backend.precision,
                   chunk_ms=rec.chunk_ms, decoding=args.decoding)
    if args.json:
        out = {
            "export_dir": str(export_dir),
            "files": [
                {"file": r.name, "text": r.text, "tokens": r.token_ids, "timestamps": r.timestamps,
                 "audio_s": r.audio_s, "rtf": r.rtf, "first_partial_latency_s": r.first_partial_latency_s,
                 "emission_latency_s": r.emission_latency_s, "final_latency_s": r.final_latency_s,
                 "chunk_compute_ms": r.chunk_compute_ms}
                for r in sims.results
            ],
            "summary": summary,
            "errors": failed,
        }
        print(json.dumps(_nan_to_none(out), indent=1, allow_nan=False))
    else:
        s = summary
        print(
            f"[{s['backend']} {s['mode']} {s['precision']}"
            + (f" {s['chunk_ms']}ms" if s["chunk_ms"] else "")
            + f"] RTF {s['rtf']:.3f} | chunk p50 {_fmt(s['chunk_compute_ms_p50'], 'ms')}"
            f" | first partial {_fmt(s['first_partial_at_50_s'])}"
            f" | emission latency @50 {_fmt(s['latency_at_50_s'])} @90 {_fmt(s['latency_at_90_s'])}"
            f" | load {_fmt(s['load_s'])} | peak RSS {s['peak_rss_mb']:.0f} MiB"
        )
    return 1 if failed else 0


def _nan_to_none(o):
    """JSON has no NaN: write null instead."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    return o
