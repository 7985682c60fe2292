"""`dualasr export`: argument parsing, the quiet console run and the summary it prints. The
export itself is export/exporter.py (`export_checkpoint`)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from .exporter import ExportError, default_jobs, export_checkpoint, sharing_numbers


def _split(value: str | list | None, what: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    if not items:
        raise ExportError(f"--{what} is empty")
    return items


def load_calibration(path: str | os.PathLike[str], max_utterances: int = 32) -> list[dict]:
    """A JSONL manifest ({"audio", "text"} per line) -> [{"id", "features": [1, T, F]}]."""
    from dualasr.audio import load_audio
    from dualasr.data import read_manifest
    from dualasr.features import FbankConfig, compute_fbank

    utts = read_manifest(path)[:max_utterances]
    if not utts:
        raise ExportError(f"calibration manifest {path} lists no utterances")
    cfg = FbankConfig()
    return [{"id": u.id, "features": compute_fbank(torch.from_numpy(load_audio(u.audio)), cfg)[None]} for u in utts]


def _summary_table(manifest: dict) -> str:
    rows = [("format", "precision", "size MB", "seconds")]
    for fmt, by_prec in manifest["artifacts"].items():
        for prec in by_prec:
            size = manifest["sizes"][fmt][prec]["bytes"] / 1e6
            secs = manifest["export_seconds_by_precision"][fmt][prec]
            rows.append((fmt, prec, f"{size:.2f}", f"{secs:.1f}"))
    for key in manifest.get("errors", {}):
        fmt, prec = key.split("/", 1)
        rows.append((fmt, prec, "FAILED", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    ws = manifest.get("weight_sharing") or {}
    if ws.get("shared_bytes"):
        lines.append(f"dual-mode weight sharing ({ws['artifact']}): {ws['shared_bytes'] / 1e6:.2f} MB vs "
                     f"{ws['separate_bytes'] / 1e6:.2f} MB for a separate full + streaming model "
                     f"({1 - ws['shared_bytes'] / max(1, ws['separate_bytes']):.0%} saved)")
    for key, stats in (ws.get("by_artifact") or {}).items():
        numbers = sharing_numbers(stats)
        if numbers:
            shared = numbers[0]
            separate = stats.get("all_graphs_separate_bytes", numbers[1])  # same basis for every format
            lines.append(f"  {key}: {shared / 1e6:.2f} MB stored once vs {separate / 1e6:.2f} MB if every graph "
                         f"held its own weights ({1 - shared / max(1, separate):.0%} saved)")
    return "\n".join(lines)


def export_quietly(checkpoint: Path | None, out: Path, formats: list[str], precisions: list[str],
                   chunk_ms: list[int], calibration: list[dict] | None = None,
                   jobs: int | None = None, replace: bool = False) -> tuple[dict, Path]:
    """export_checkpoint with one progress line per artifact on the terminal and everything the
    converters print in OUT/export.log. jobs None: default_jobs(). Returns (manifest, log path)."""
    from .console import ExportConsole

    jobs = jobs or default_jobs()
    console = ExportConsole(out)
    try:
        with console:
            manifest = export_checkpoint(checkpoint, out, formats, precisions, chunk_ms, calibration,
                                         log=console.say, jobs=jobs, replace=replace)
    except ExportError as e:
        # A refusal before any converter ran leaves an empty log: nothing to point at, so no file.
        if console.discard_if_empty():
            raise
        raise ExportError(f"{e}\n(converter output: {console.log_path})") from None
    except BaseException:
        # Interrupted (signal, Ctrl-C): the log is a temporary file like the rest.
        console.discard()
        raise
    return manifest, console.move_into(out)


def _random_checkpoint(config: str, overrides: list[str], work: Path) -> Path:
    """`--config NAME [--set ...]`: a random-weight checkpoint of that config in `work`."""
    from dualasr.checkpoint import random_checkpoint
    from dualasr.config import load_config

    try:
        cfg = load_config(config, overrides)
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise ExportError(f"--config {config}: {e}") from None
    return random_checkpoint(cfg, work / f"random-{cfg.name}.pt")


def main(args) -> int:
    """CLI entry (see dualasr/cli.py `export`). Returns the exit status: 0 ok, 1 some format failed."""
    formats = _split(args.formats, "formats")
    precisions = _split(args.quantize, "quantize")
    try:
        chunk_ms = [int(v) for v in _split(str(args.chunk_ms), "chunk-ms")]
    except ValueError:
        raise ExportError(f"--chunk-ms must be a comma list of integers, got {args.chunk_ms!r}") from None
    calibration = load_calibration(args.calibration) if getattr(args, "calibration", None) else None
    config, overrides = getattr(args, "config", None), getattr(args, "set", None) or []
    if config and args.checkpoint:
        raise ExportError("give a checkpoint or --config (random weights), not both")
    if overrides and not config:
        raise ExportError("--set needs --config (a checkpoint's config is the one it was trained with)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dualasr-random-") as work:
        checkpoint = _random_checkpoint(config, overrides, Path(work)) if config else (
            Path(args.checkpoint) if args.checkpoint else None)
        manifest, log_path = export_quietly(checkpoint, Path(args.out), formats, precisions, chunk_ms, calibration,
                                            getattr(args, "jobs", 1),
                                            replace=bool(getattr(args, "replace", False)))
    print(_summary_table(manifest))
    print(f"export written to {args.out} in {time.perf_counter() - t0:.0f} s (converter output: {log_path})")
    if manifest["errors"]:
        print("some formats failed (the others were exported):", file=sys.stderr)
        for key, msg in manifest["errors"].items():
            print(f"  {key}: {msg}", file=sys.stderr)
        return 1
    return 0
