"""`dualasr export`: one checkpoint -> one self-contained export folder.

The model is traced once per mode (full, streaming step per chunk size, predictor, joiner; see
wrappers.py) and handed to one writer module per format. Writers are plug-ins with one function:

    write(graphs: dict[str, nn.Module], example_inputs: dict[str, tuple[Tensor, ...]],
          export_dir: Path, precision: str, calibration: list[dict] | None, model: nn.Module | None) -> dict

which writes below export_dir/<format>/<precision>/ and returns that precision's "artifacts" entry
(paths relative to export_dir; an optional "weight_sharing": {"shared_bytes", "separate_bytes"} is
moved into the manifest's weight_sharing table). Modules: onnx_writer (fp32, int8), executorch_writer
(fp32, int8), coreml_writer (fp16, int8), sherpa_writer (fp32, int8). `calibration` is None or a list
(one per utterance of --calibration) of {"id": str, "features": Tensor [1, T, F] float32 (kaldi fbank
of real audio), and per graph name an input tuple for that graph: "encoder_full": (features,),
"encoder_streaming_<C>ms": (a chunk, *its accumulated state)} for static int8 calibration.
`model` is the Transducer the graphs wrap (the sherpa-onnx writer splits it its own way; the others
convert the graphs). Writers must not modify example_inputs in place; each call gets its own copy
of the graphs and the model.

The export is built in a temp folder beside --out and renamed into place at the end, so a crash
never leaves a half-written folder over a good export. A writer that is missing or fails does not
stop the others: the export holds what worked, manifest["errors"] says what did not, and the
command exits non-zero.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import os
import platform
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor, nn

from dualasr.fileio import TERMINATION_SIGNALS

from .manifest import (
    DEFAULT_MAX_FULL_SECONDS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ManifestError,
    check_relative_path,
    load_manifest,
    probe_fingerprint,
    probe_inputs,
    sha256_file,
    write_manifest,
)
from .wrappers import FRAME_SHIFT_MS, FullEncoder, JoinerStep, PredictorStep, StreamingEncoderStep, graphs_for
from .console import LOG_NAME

__all__ = [
    "DEFAULT_CHECKPOINT",
    "ExportError",
    "default_jobs",
    "FORMATS",
    "calibration_graph_inputs",
    "example_inputs_for",
    "export_checkpoint",
    "graph_io",
    "graph_probes",
    "io_names",
]

# format -> (writer module under dualasr.export, precision for --quantize none, for int8)
FORMATS: dict[str, tuple[str, dict[str, str]]] = {
    "onnx": ("onnx_writer", {"none": "fp32", "int8": "int8"}),
    "executorch": ("executorch_writer", {"none": "fp32", "int8": "int8"}),
    "coreml": ("coreml_writer", {"none": "fp16", "int8": "int8"}),
    "sherpa-onnx": ("sherpa_writer", {"none": "fp32", "int8": "int8"}),
}
QUANTIZE = ("none", "int8")
# Via the dualasr package, not this file: in an editable install export/ sits beside dualasr/.
DEFAULT_CHECKPOINT = Path(importlib.import_module("dualasr").__file__).resolve().parent / "assets" / "default" / "model.pt"
# Example length for tracing the full encoder: a multiple of the subsampling, well inside the
# dynamic range the writers declare (ExecuTorch: 12 .. 3000 frames).
EXAMPLE_FULL_FRAMES = 400
CHECKPOINT_NAME = "checkpoint.pt"


class ExportError(ValueError):
    """Nothing could be exported, or the request is invalid; the message says what to do."""


# ----------------------------------------------------------------------------- graph I/O


def _dtype_name(t: Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def io_names(module: nn.Module) -> tuple[list[str], list[str], list[int | None], list[int | None]]:
    """(input names, output names, input batch dims, output batch dims) of one traced graph.

    The names are the manifest contract (runtime and sherpa-onnx rely on them); a batch dim of
    None means the tensor has no batch axis (the full encoder is batch 1 everywhere).
    """
    if isinstance(module, FullEncoder):
        return ["features"], ["encoder_out"], [None], [None]
    if isinstance(module, StreamingEncoderStep):
        states = list(module.state_names)
        dims = [0, *module.encoder.state_batch_dims]
        return ["features", *states], ["encoder_out", *[f"new_{s}" for s in states]], dims, dims
    if isinstance(module, PredictorStep):
        states = module.state_names()
        dims = [0, *module.predictor.state_batch_dims()]
        return ["context", *states], ["predictor_out", *[f"new_{s}" for s in states]], dims, dims
    if isinstance(module, JoinerStep):
        return ["encoder_out", "predictor_out"], ["logits"], [0, 0], [0]
    raise TypeError(f"no I/O contract for graph module {type(module).__name__}")


@torch.no_grad()
def graph_io(graphs: dict[str, nn.Module], example_inputs: dict[str, tuple[Tensor, ...]]) -> dict[str, dict]:
    """Manifest "graphs" table: name -> {"inputs": [spec], "outputs": [spec]}.

    A spec is {"name", "shape", "dtype"[, "batch_dim"]}: shapes are for batch 1 (what every backend
    accepts); batch_dim marks the axis the ONNX graphs take dynamically. encoder_full's time axes
    are the strings "T" / "T_out" (dynamic everywhere).
    """
    table: dict[str, dict] = {}
    for name, module in graphs.items():
        ins, outs, in_dims, out_dims = io_names(module)
        example = example_inputs[name]
        result = module(*example)
        result = result if isinstance(result, tuple) else (result,)
        if len(example) != len(ins) or len(result) != len(outs):
            raise ExportError(f"graph {name}: {len(example)} inputs / {len(result)} outputs, expected {ins} -> {outs}")

        def spec(n: str, t: Tensor, bdim: int | None, time_axis: str | None) -> dict:
            shape: list[int | str] = list(t.shape)
            d: dict[str, Any] = {"name": n, "shape": shape, "dtype": _dtype_name(t)}
            if bdim is not None:
                shape[bdim] = 1
                d["batch_dim"] = bdim
            if time_axis:
                shape[1] = time_axis
            return d

        full = isinstance(module, FullEncoder)
        table[name] = {
            "inputs": [spec(n, t, b, "T" if full else None) for n, t, b in zip(ins, example, in_dims)],
            "outputs": [spec(n, t, b, "T_out" if full else None) for n, t, b in zip(outs, result, out_dims)],
        }
    return table


@torch.no_grad()
def graph_probes(graphs: dict[str, nn.Module], manifest: dict[str, Any]) -> dict[str, dict]:
    """Manifest "probes": each graph's main output on its fixed probe input (manifest.probe_inputs),
    so a runtime can tell that the graph it loaded computes what was exported."""
    out = {}
    for name, module in graphs.items():
        spec = manifest["graphs"][name]
        feeds = probe_inputs(manifest, name)
        result = module(*[torch.from_numpy(feeds[t["name"]]) for t in spec["inputs"]])
        first = result[0] if isinstance(result, tuple) else result
        out[name] = probe_fingerprint(spec["outputs"][0]["name"], first.numpy())
    return out


def example_inputs_for(graphs: dict[str, nn.Module], model: nn.Module) -> dict[str, tuple[Tensor, ...]]:
    """Batch-1 example inputs per graph (deterministic, speech-like scale for the features)."""
    g = torch.Generator().manual_seed(0)
    cfg = model.cfg
    out: dict[str, tuple[Tensor, ...]] = {}
    for name, m in graphs.items():
        if isinstance(m, FullEncoder):
            out[name] = (torch.randn(1, EXAMPLE_FULL_FRAMES, cfg.num_mel_bins, generator=g) * 2.0 - 8.0,)
        elif isinstance(m, (StreamingEncoderStep, PredictorStep)):
            out[name] = m.example_inputs(1)
        elif isinstance(m, JoinerStep):
            out[name] = (torch.randn(1, cfg.d_model, generator=g), torch.randn(1, cfg.predictor_dim, generator=g))
        else:
            raise TypeError(f"unknown graph {name}")
    return out


@torch.no_grad()
def calibration_graph_inputs(graphs: dict[str, nn.Module], calibration: list[dict], max_chunks: int = 8) -> list[dict]:
    """Add per-graph input tuples to each calibration entry, so a writer can either chunk
    entry["features"] itself or feed entry[graph_name] directly: encoder_full gets the whole
    utterance (capped at 30 s), each streaming graph a chunk with the state accumulated over the
    chunks before it (a realistic non-zero cache)."""
    out = []
    for c in calibration:
        feats = c["features"]
        d = dict(c)
        if feats.shape[1] >= 12:
            d["encoder_full"] = (feats[:, :3000],)
        for name, m in graphs.items():
            if not isinstance(m, StreamingEncoderStep):
                continue
            n = min(max_chunks, feats.shape[1] // m.chunk_frames)
            if n == 0:
                continue
            state = list(m.encoder.init_state(1))
            for i in range(n - 1):
                state = list(m(feats[:, i * m.chunk_frames:(i + 1) * m.chunk_frames], *state)[1:])
            d[name] = (feats[:, (n - 1) * m.chunk_frames:n * m.chunk_frames].contiguous(), *state)
        out.append(d)
    return out


# ----------------------------------------------------------------------------- manifest parts


def _tool_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxscript", "executorch", "coremltools", "sherpa-onnx"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _model_entries(model: nn.Module, graphs: dict[str, nn.Module], tokenizer_vocab: int) -> dict[str, Any]:
    import dataclasses

    from dualasr.features import FbankConfig

    cfg = model.cfg
    pred = PredictorStep(model)
    pred_states = [
        {"name": n, "shape": list(t.shape), "dtype": _dtype_name(t), "batch_dim": d, "init": "zeros"}
        for n, t, d in zip(pred.state_names(), model.predictor.init_state(1), model.predictor.state_batch_dims())
    ]
    streaming = []
    for name, m in graphs.items():
        if isinstance(m, StreamingEncoderStep):
            streaming.append({
                "chunk_ms": m.chunk_ms, "chunk_frames": m.chunk_frames,
                "encoder_frames": m.chunk_frames // cfg.subsampling, "graph": name,
                "states": [{**s.to_dict(), "init": "zeros"} for s in m.state_specs(1)],
            })
    if tokenizer_vocab != cfg.vocab_size:
        raise ExportError(f"tokenizer has {tokenizer_vocab} pieces but the model outputs {cfg.vocab_size}; the checkpoint is inconsistent")
    return {
        "model": dataclasses.asdict(cfg),
        "features": FbankConfig(num_mel_bins=cfg.num_mel_bins).to_dict(),
        "frame_shift_ms": FRAME_SHIFT_MS,
        "subsampling": cfg.subsampling,
        "blank_id": 0,
        "vocab_size": cfg.vocab_size,
        "encoder_dim": cfg.d_model,
        "tokenizer": {"file": "tokenizer.model", "tokens_txt": "tokens.txt"},
        "predictor": {
            "type": cfg.predictor, "context_size": model.predictor.context_size,
            "initial_context": model.predictor.initial_context(), "states": pred_states,
        },
        "streaming": streaming,
    }


def _folder_bytes(root: Path, rels: list[str]) -> int:
    total = 0
    for rel in rels:
        p = root / rel
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def _entry_paths(entry: dict) -> list[str]:
    paths = [v for v in (entry.get("graphs") or {}).values() if isinstance(v, str)]
    paths += [entry[k] for k in ("weights", "package") if isinstance(entry.get(k), str)]
    return paths


def _check_entry(root: Path, fmt: str, precision: str, entry: Any) -> None:
    """A writer's return value must name files that exist inside the export."""
    if not isinstance(entry, dict):
        raise ExportError(f"{fmt} writer returned {type(entry).__name__} for {precision}, expected a dict")
    paths = _entry_paths(entry)
    if not paths:
        raise ExportError(f"{fmt} writer returned no graphs/weights/package paths for {precision}: {entry}")
    for rel in paths:
        if not check_relative_path(root, rel).exists():
            raise ExportError(f"{fmt} writer listed {rel} for {precision} but did not write it")


# ----------------------------------------------------------------------------- export


def _resolve_checkpoint(checkpoint: Path | None) -> Path:
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise ExportError(
                f"no checkpoint given and the built-in model {DEFAULT_CHECKPOINT} is not installed; pass a "
                "checkpoint file (e.g. runs/tiny/checkpoint-best.pt from `dualasr train`)"
            )
        return DEFAULT_CHECKPOINT
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ExportError(f"checkpoint {checkpoint} does not exist (train one with `dualasr train`)")
    return checkpoint


def _plan(formats: list[str], precisions: list[str]) -> list[tuple[str, str, str]]:
    """-> [(format, writer module, precision)] after validating the names."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown format(s) {unknown or formats}; choose from {', '.join(FORMATS)}")
    aliases = {"fp32": "none", "fp16": "none", "float": "none"}
    quant = [aliases.get(p, p) for p in precisions]
    bad = [p for p in quant if p not in QUANTIZE]
    if bad or not quant:
        raise ExportError(f"unknown quantization {bad or precisions}; choose from {', '.join(QUANTIZE)}")
    plan = []
    for fmt in dict.fromkeys(formats):
        module, mapping = FORMATS[fmt]
        for q in dict.fromkeys(quant):
            plan.append((fmt, module, mapping[q]))
    return plan


def _load_writer(fmt: str, module: str):
    name = f"dualasr.export.{module}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            raise ExportError(
                f"format {fmt!r} is not available: its writer module {name} (export/{module}.py) does not exist "
                "in this installation; export the other formats or install a dualasr that has it"
            ) from None
        raise ExportError(f"format {fmt!r} needs the package {e.name!r}, which is not installed ({e}); pip install it") from None
    if not callable(getattr(mod, "write", None)):
        raise ExportError(f"{name} has no write(graphs, example_inputs, export_dir, precision, calibration) function")
    return mod


# ----------------------------------------------------------------------------- the --out folder

_MAX_NAMED_FILES = 5  # foreign files named in a refusal; the rest are counted


def _artifact_keys(manifest: dict) -> set[str]:
    """{"format/precision"} of the artifacts an export holds."""
    arts = manifest.get("artifacts") or {}
    return {f"{fmt}/{prec}" for fmt, by_prec in arts.items() if isinstance(by_prec, dict) for prec in by_prec}


def resolve_out_dir(out_dir: Path) -> Path:
    """The real folder --out names (a symlink is followed, so its target is replaced and the link
    stays), refused when replacing it would replace something that is not an export.

    Raises:
        ExportError: --out is the current folder, one of its parents, the home folder or the root,
            or names a file.
    """
    real = Path(os.path.realpath(out_dir))
    cwd = Path(os.path.realpath(os.getcwd()))
    home = Path(os.path.realpath(Path.home()))
    what = ("the root folder" if real == Path(real.anchor) else "your home folder" if real == home
            else "the current folder" if real == cwd else "a parent of the current folder" if real in cwd.parents
            else None)
    if what:
        raise ExportError(
            f"--out {out_dir} is {what}; an export replaces its folder as a whole, so give it a folder of its "
            "own, e.g. --out exports/tiny"
        )
    if real.exists() and not real.is_dir():
        raise ExportError(f"--out {out_dir} exists and is a file; choose a folder path")
    return real


def check_replaceable(out_dir: Path, shown: str | os.PathLike[str], artifacts: set[str] | None = None) -> None:
    """Refuse unless out_dir is absent, empty, or provably an intact dualasr export: a manifest
    that passes load_manifest (schema, sizes, checksums) and no file the manifest does not list.

    Args:
        shown: how to name the folder in messages (what the user typed).
        artifacts: the "format/precision" keys the new export will hold; an existing export with
            others is refused, because replacing it would drop them (None: do not check).

    Raises:
        ExportError: naming the foreign files, the damage, or the formats that would be lost.
    """
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not (out_dir / MANIFEST_NAME).is_file():
        raise ExportError(
            f"--out {shown} is a non-empty folder that is not a dualasr export (no {MANIFEST_NAME}); "
            "refusing to replace it: choose a new folder or empty it first"
        )
    try:
        old = load_manifest(out_dir, verify_checksums=True)
    except ManifestError as e:
        raise ExportError(
            f"--out {shown} holds a {MANIFEST_NAME} but is not an intact dualasr export ({e}); refusing to "
            "replace it: choose a new folder, or move its contents away yourself"
        ) from None
    listed = set(old["files"]) | {MANIFEST_NAME, LOG_NAME}  # the log is the exporter's own (console.py)
    listed_dirs = {str(PurePosixPath(f).parent) for f in listed}
    listed_dirs |= {str(p) for d in listed_dirs for p in PurePosixPath(d).parents}
    foreign = []
    for dirpath, dirnames, filenames in os.walk(out_dir):
        base = Path(dirpath).relative_to(out_dir).as_posix()
        if not dirnames and not filenames and base not in listed_dirs:
            foreign.append(base + "/")  # an empty folder someone made
        dirnames.sort()
        foreign += [rel for rel in (PurePosixPath(base, n).as_posix() for n in sorted(filenames)) if rel not in listed]
    if foreign:
        named = ", ".join(foreign[:_MAX_NAMED_FILES]) + (f" and {len(foreign) - _MAX_NAMED_FILES} more"
                                                       if len(foreign) > _MAX_NAMED_FILES else "")
        raise ExportError(
            f"--out {shown} is a dualasr export but also holds files its manifest does not list ({named}); "
            "refusing to replace it, they would be lost: move them out, or choose another --out"
        )
    dropped = sorted(_artifact_keys(old) - artifacts) if artifacts is not None else []
    if dropped:
        raise ExportError(
            f"--out {shown} holds an export with {', '.join(dropped)}, which the new export would not have; "
            "replacing it would drop them, so it is left as it was: add them to --formats/--quantize, "
            "choose another --out, or pass --replace to drop them"
        )


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temp export over out_dir. POSIX cannot swap two folders atomically, so
    the old export is renamed aside first and restored if the second rename fails. Termination
    signals wait until the swap is done: between the renames they would leave the old export aside."""
    blocked = {signal.SIGINT, *TERMINATION_SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            old.rmdir()
            os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            if old is not None:
                os.rename(old, out_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _write_reference_checkpoint(src: Path, dst: Path) -> None:
    """Copy the checkpoint into the export minus the optimizer/scheduler/RNG state (2-3x the
    weights for Adam): verify only needs config, weights and tokenizer. Step and metrics stay so
    the export still says which training point it came from."""
    from dualasr.checkpoint import read_checkpoint
    from dualasr.fileio import atomic_write

    payload = read_checkpoint(src)
    slim = {k: payload[k] for k in ("format_version", "config", "model", "tokenizer") if k in payload}
    ts = payload.get("training_state") or {}
    slim["training_state"] = {k: ts[k] for k in ("step", "epoch", "metrics", "best") if k in ts}
    atomic_write(dst, lambda f: torch.save(slim, f))


def export_checkpoint(
    checkpoint: Path | None,
    out_dir: Path,
    formats: list[str],
    precisions: list[str],
    chunk_ms: list[int],
    calibration: list[dict] | None = None,
    log: Callable[[str], None] | None = None,
    replace: bool = False,
    jobs: int = 1,
) -> dict:
    """Export `checkpoint` (None: the built-in model) to out_dir.

    out_dir is replaced as a whole at the end, so it must be new, empty or an intact export that
    holds nothing its manifest does not list (see check_replaceable); a symlink is followed.

    Args:
        formats: subset of FORMATS ("onnx", "executorch", "coreml", "sherpa-onnx").
        precisions: quantization choices "none" and/or "int8" ("fp32"/"fp16" mean "none");
            mapped per format (none -> fp32, Core ML: fp16).
        chunk_ms: streaming chunk sizes; each a positive multiple of 40 ms.
        calibration: optional static-int8 calibration features (see module docstring).
        log: progress lines (default: silent).
        replace: replace an existing export at out_dir even if it holds formats/precisions this
            export does not (they are dropped); without it such an export is refused.
        jobs: writers run at once; above 1 they run in that many worker processes (see
            `_run_writers`), 1 runs them one after another in this process.

    Returns:
        The manifest as written. manifest["errors"] maps "format/precision" to an error message
        for every artifact that could not be written (empty when all worked).

    Raises:
        ExportError: bad arguments, an --out that is not safe to replace, unreadable checkpoint,
            or no artifact at all could be written (then out_dir is left untouched).
    """
    from dualasr.checkpoint import CheckpointError, load_model, read_checkpoint
    from dualasr.tokenizer import Tokenizer

    say = log or (lambda _msg: None)
    shown = out_dir
    plan = _plan(list(formats), list(precisions))
    if not chunk_ms or not all(isinstance(c, int) and c > 0 for c in chunk_ms):
        raise ExportError(f"--chunk-ms must be positive chunk sizes in ms (e.g. 160,320), got {list(chunk_ms)}")
    out_dir = resolve_out_dir(Path(out_dir))
    check_replaceable(out_dir, shown, None if replace else {f"{fmt}/{prec}" for fmt, _, prec in plan})
    checkpoint = _resolve_checkpoint(checkpoint)
    try:
        model, config, tokenizer_bytes = load_model(checkpoint)
        random_init = bool(read_checkpoint(checkpoint).get("random_init", False))
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    try:
        graphs = graphs_for(model, list(chunk_ms))
    except ValueError as e:
        raise ExportError(f"--chunk-ms: {e}") from None
    examples = example_inputs_for(graphs, model)
    if calibration:
        calibration = calibration_graph_inputs(graphs, calibration)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        _write_reference_checkpoint(checkpoint, tmp / CHECKPOINT_NAME)
        (tmp / "tokenizer.model").write_bytes(tokenizer_bytes)
        tokenizer = Tokenizer(tmp / "tokenizer.model")
        tokenizer.write_tokens_txt(tmp / "tokens.txt")

        source = f"random weights of preset {config.name}" if random_init else str(checkpoint)
        manifest = _new_manifest(model, graphs, examples, tokenizer.vocab_size, checkpoint, source, random_init)
        for w in _run_writers(plan, checkpoint, model, list(chunk_ms), examples, calibration, tmp, jobs, say):
            _record_written(manifest, w)

        if not manifest["artifacts"]:
            raise ExportError("nothing was exported:\n  " + "\n  ".join(f"{k}: {v}" for k, v in manifest["errors"].items()))
        _summarize_sharing(manifest)
        _make_readable(tmp)
        manifest = write_manifest(tmp, manifest)
        # Again at the end: the folder may have changed meanwhile, and a format that failed now
        # must not replace one that worked before.
        check_replaceable(out_dir, shown, None if replace else _artifact_keys(manifest))
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _new_manifest(model, graphs, examples, vocab_size: int, checkpoint: Path, source: str,
                  random_init: bool) -> dict[str, Any]:
    """The manifest before any writer ran: the model's contract, its graphs and probes; the
    per-artifact sections are filled by `_record_written`."""
    from dualasr import __version__

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "dualasr_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **_model_entries(model, graphs, vocab_size),
        "graphs": graph_io(graphs, examples),
        "max_full_seconds": DEFAULT_MAX_FULL_SECONDS,
        "checkpoint": CHECKPOINT_NAME,
        "source_checkpoint": {"path": source, "sha256": sha256_file(checkpoint)},
        "random_init": random_init,
        "artifacts": {},
        "tools": _tool_versions(),
        "export_seconds": {},
        "export_seconds_by_precision": {},
        "sizes": {},
        "weight_sharing": {},
        "errors": {},
    }
    manifest["probes"] = graph_probes(graphs, manifest)
    return manifest


def _record_written(manifest: dict[str, Any], w: "_Written") -> None:
    """One writer's outcome into the manifest: its artifacts entry, time and size, or its error."""
    key = f"{w.fmt}/{w.precision}"
    if w.error is not None:
        manifest["errors"][key] = w.error
        return
    entry = dict(w.entry)
    sharing = entry.pop("weight_sharing", None)
    if sharing:
        manifest["weight_sharing"][key] = sharing
    manifest["artifacts"].setdefault(w.fmt, {})[w.precision] = entry
    manifest["export_seconds"][w.fmt] = round(manifest["export_seconds"].get(w.fmt, 0.0) + w.seconds, 3)
    manifest["export_seconds_by_precision"].setdefault(w.fmt, {})[w.precision] = round(w.seconds, 3)
    manifest["sizes"].setdefault(w.fmt, {})[w.precision] = w.size


# ----------------------------------------------------------------------------- writer orchestration


@dataclass
class _Written:
    """One format/precision's outcome: its artifacts entry, or the error that stopped it."""

    fmt: str
    precision: str
    entry: dict | None = None
    seconds: float = 0.0
    size: dict | None = None
    error: str | None = None


def _write_artifact(fmt: str, module: str, precision: str, model: nn.Module, chunk_ms: list[int],
                    examples: dict[str, tuple[Tensor, ...]], calibration: list[dict] | None, tmp: Path) -> _Written:
    """Run one writer into tmp; a failure is returned (and its partial files removed), not raised:
    one format failing must not sink the others."""
    t0 = time.perf_counter()
    try:
        writer = _load_writer(fmt, module)
        # A fresh copy per writer: quantizers and converters may modify modules in place.
        fresh = copy.deepcopy(model).eval()
        fresh_examples = {k: tuple(t.clone() for t in v) for k, v in examples.items()}
        entry = writer.write(graphs_for(fresh, chunk_ms), fresh_examples, tmp, precision, calibration, model=fresh)
        _check_entry(tmp, fmt, precision, entry)
    except Exception as e:
        if not isinstance(e, ExportError) and os.environ.get("DUALASR_DEBUG"):
            traceback.print_exc()
        _remove_partial(tmp, fmt, precision)
        return _Written(fmt, precision, error=str(e) if isinstance(e, ExportError) else f"{type(e).__name__}: {e}")
    folder = f"{fmt}/{precision}"
    total = _folder_bytes(tmp, [folder]) if (tmp / folder).is_dir() else _folder_bytes(tmp, _entry_paths(entry))
    size = {"bytes": total}
    if isinstance(entry.get("weights"), str):
        size["weights_bytes"] = (tmp / entry["weights"]).stat().st_size
    return _Written(fmt, precision, entry, time.perf_counter() - t0, size)


def _remove_partial(tmp: Path, fmt: str, precision: str) -> None:
    """A failed writer's files: its precision folder, and the format folder if nothing is left."""
    shutil.rmtree(tmp / fmt / precision, ignore_errors=True)
    if (tmp / fmt).is_dir() and not any((tmp / fmt).iterdir()):
        (tmp / fmt).rmdir()


def _writer_job(checkpoint: Path, chunk_ms: list[int], calibration: list[dict] | None, tmp: Path,
                items: list[tuple[str, str, str]], threads: int) -> list[_Written]:
    """Worker-process body: load the model itself and run `items` (format, module, precision)."""
    from dualasr.checkpoint import load_model

    torch.set_num_threads(threads)
    model = load_model(checkpoint)[0]
    examples = example_inputs_for(graphs_for(model, chunk_ms), model)
    return [_write_artifact(fmt, module, precision, model, chunk_ms, examples, calibration, tmp)
            for fmt, module, precision in items]


def _jobs_of(plan: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    """Split the plan into independent jobs, slowest first (measured: ExecuTorch int8, fp32, Core ML,
    the rest; benchmarks/results/export_profile.json): each ExecuTorch precision on its own
    (lowering is the slowest step), every other format as one job (Core ML's int8 is compressed
    from its fp16 conversion, which that job converts once)."""
    jobs: dict[str, list[tuple[str, str, str]]] = {}
    for item in plan:
        fmt, _, precision = item
        jobs.setdefault(f"{fmt}/{precision}" if fmt == "executorch" else fmt, []).append(item)
    order = {"executorch/int8": 0, "executorch/fp32": 1, "coreml": 2}
    return sorted(jobs.values(), key=lambda job: order.get(f"{job[0][0]}/{job[0][2]}", order.get(job[0][0], 3)))


def _run_writers(plan: list[tuple[str, str, str]], checkpoint: Path, model: nn.Module, chunk_ms: list[int],
                 examples: dict[str, tuple[Tensor, ...]], calibration: list[dict] | None, tmp: Path, jobs: int,
                 say: Callable[[str], None]) -> list[_Written]:
    """Run every writer of the plan into tmp and report one progress line per format/precision.

    jobs == 1: one after another in this process. jobs > 1: the plan's jobs (`_jobs_of`) in up
    to `jobs` spawned worker processes, each with cpu_count // jobs torch threads; ExecuTorch's
    and Core ML's converters are single-threaded Python, so on 2 cores two jobs take about half
    the time. Workers inherit stdout/stderr (the export log, under the CLI). Results come back in
    plan order whatever order they finished in.
    """
    def report(w: _Written) -> None:
        key = f"{w.fmt}/{w.precision}"
        if w.error is not None:
            say(f"export {key} FAILED: {w.error}")
        else:
            say(f"export {key} done in {w.seconds:.1f} s ({w.size['bytes'] / 1e6:.2f} MB)")

    results: list[_Written] = []
    groups = _jobs_of(plan)
    if jobs <= 1 or len(groups) == 1:
        for fmt, module, precision in plan:
            say(f"export {fmt}/{precision} ...")
            results.append(_write_artifact(fmt, module, precision, model, chunk_ms, examples, calibration, tmp))
            report(results[-1])
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        workers = min(jobs, len(groups))
        threads = max(1, (os.cpu_count() or 1) // workers)
        say(f"export {', '.join(f'{f}/{p}' for f, _, p in plan)} in {workers} processes ...")
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_writer_job, checkpoint, chunk_ms, calibration, tmp, group, threads): group
                       for group in groups}
            left = [f"{f}/{p}" for f, _, p in plan]
            for future in as_completed(futures):
                try:
                    written = future.result()
                except Exception as e:  # the worker died (a converter crashed the process) or could not start
                    written = [_Written(f, p, error=f"writer process failed: {type(e).__name__}: {e}")
                               for f, _, p in futures[future]]
                    for f, _, p in futures[future]:
                        _remove_partial(tmp, f, p)
                for w in written:
                    report(w)
                    results.append(w)
                    left.remove(f"{w.fmt}/{w.precision}")
                if left:
                    say(f"export {', '.join(left)} ...")
    rank = {(fmt, precision): i for i, (fmt, _, precision) in enumerate(plan)}
    return sorted(results, key=lambda w: rank[(w.fmt, w.precision)])


def sharing_numbers(stats: dict) -> tuple[int, int] | None:
    """(shared, separate) bytes from a writer's weight_sharing stats: "shared_bytes"/"separate_bytes",
    or a format-specific spelling such as ExecuTorch's shared_ptd_bytes / Core ML's shared_weight_bytes."""

    def pick(prefix: str):
        if f"{prefix}_bytes" in stats:
            return stats[f"{prefix}_bytes"]
        return next((v for k, v in stats.items() if k.startswith(f"{prefix}_") and k.endswith("_bytes")), None)

    shared, separate = pick("shared"), pick("separate")
    return (int(shared), int(separate)) if isinstance(shared, (int, float)) and isinstance(separate, (int, float)) else None


def _summarize_sharing(manifest: dict) -> None:
    """Top-level shared/separate bytes from the reference artifact (onnx fp32 when present)."""
    table = manifest["weight_sharing"]
    usable = [k for k in table if sharing_numbers(table[k])]
    if not usable:
        return
    ref = "onnx/fp32" if "onnx/fp32" in usable else usable[0]
    shared, separate = sharing_numbers(table[ref])
    manifest["weight_sharing"] = {
        "artifact": ref,
        "shared_bytes": shared,
        "separate_bytes": separate,
        "by_artifact": table,
    }


def _make_readable(root: Path) -> None:
    """mkstemp creates 0600 files; give every file of the export the usual umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~umask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~umask)


def default_jobs() -> int:
    """Writer processes when the user does not say: one per core, at most 4 (there are at most
    4 slow jobs: ExecuTorch fp32, ExecuTorch int8, Core ML, and the ONNX writers)."""
    return min(4, os.cpu_count() or 1)
