"""The results JSON (schema_version 1, documented in benchmarks/README.md): checking it, reading it,
writing it readably."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "clean", "dumps", "load_results", "validate_results", "write_json"]

SCHEMA_VERSION = 1


_CELL_KEYS = {"id": str, "system": str, "backend": str, "precision": str, "mode": str, "threads": int, "status": str}
_METRIC_KEYS = ("wer_pct", "rtf", "chunk_compute_ms_p50", "chunk_compute_ms_p90", "latency_at_50_s", "latency_at_90_s",
                "first_partial_at_50_s", "load_s", "peak_rss_mb", "size_bytes", "audio_s", "compute_s")


def validate_results(d: Any) -> list[str]:
    """Problems with a results dict against schema_version 1 (empty list: valid)."""
    if not isinstance(d, dict):
        return [f"results must be a JSON object, got {type(d).__name__}"]
    errs = []
    if d.get("schema_version") != SCHEMA_VERSION:
        errs.append(f"schema_version is {d.get('schema_version')!r}, this dualasr reads {SCHEMA_VERSION}")
    for key, typ in (("created", str), ("machine", dict), ("export", dict), ("data", dict), ("settings", dict),
                     ("peak", dict), ("flops", dict), ("cells", list), ("headline", dict), ("targets", list)):
        if not isinstance(d.get(key), typ):
            errs.append(f"{key!r} missing or not a {typ.__name__}")
    for i, c in enumerate(d.get("cells") or []):
        where = f"cells[{i}]"
        if not isinstance(c, dict):
            errs.append(f"{where} is not an object")
            continue
        for k, typ in _CELL_KEYS.items():
            if not isinstance(c.get(k), typ):
                errs.append(f"{where}.{k} missing or not a {typ.__name__}")
        if c.get("status") not in ("ok", "skipped", "error"):
            errs.append(f"{where}.status must be ok|skipped|error, got {c.get('status')!r}")
        if c.get("status") == "ok":
            m = c.get("metrics")
            if not isinstance(m, dict):
                errs.append(f"{where}.metrics missing")
                continue
            for k in _METRIC_KEYS:
                if k not in m:
                    errs.append(f"{where}.metrics.{k} missing")
                elif m[k] is not None and not isinstance(m[k], (int, float)):
                    errs.append(f"{where}.metrics.{k} must be a number or null")
            if not isinstance(c.get("utterances"), list):
                errs.append(f"{where}.utterances missing")
        elif not isinstance(c.get("reason"), str):
            errs.append(f"{where}.reason must say why the cell did not run")
    for i, t in enumerate(d.get("targets") or []):
        if not isinstance(t, dict) or t.get("status") not in ("pass", "fail", "n/a"):
            errs.append(f"targets[{i}] needs name/goal/measured and status pass|fail|n/a")
    return errs


def load_results(path: str | os.PathLike) -> dict:
    """Read and validate a results JSON (ValueError naming the problems)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"results file {p} does not exist (write one with `dualasr bench ... --json {p}`)")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON ({e.msg} at line {e.lineno})") from None
    errs = validate_results(d)
    if errs:
        raise ValueError(f"{p} is not a dualasr bench results file (schema {SCHEMA_VERSION}): " + "; ".join(errs[:8]))
    return d


def clean(o):
    """NaN/inf -> None (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def dumps(obj: Any) -> str:
    """JSON, indented, except that each per-utterance record takes one line (a 40-utterance matrix
    would otherwise run to 160k lines)."""
    blocks: dict[str, str] = {}

    def fold(o):
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                if k == "utterances" and isinstance(v, list) and v:
                    key = f"@@utterances-{len(blocks)}@@"
                    blocks[key] = "[\n" + ",\n".join(json.dumps(u, separators=(",", ":"), allow_nan=False) for u in v) + "\n]"
                    out[k] = key
                else:
                    out[k] = fold(v)
            return out
        return [fold(v) for v in o] if isinstance(o, list) else o

    text = json.dumps(fold(clean(obj)), indent=1, allow_nan=False)
    for key, block in blocks.items():
        text = text.replace(json.dumps(key), block, 1)
    return text + "\n"


def write_json(path: Path, obj: Any) -> None:
    from dualasr.fileio import atomic_write

    atomic_write(Path(path), dumps(obj))
