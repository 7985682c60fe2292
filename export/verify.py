"""`dualasr verify EXPORT_DIR`: check an export against the checkpoint it carries.

The export is self-contained (manifest.json, checkpoint.pt, artifacts), so verification needs no
other input. Steps:
  1. load_manifest with checksums: refuses missing files, size/sha256 mismatches, unsafe paths;
  2. the manifest's graph I/O table must equal what the checkpoint's model produces, and every
     ONNX graph must declare exactly those inputs/outputs (names, ranks, fixed sizes);
  3. per runtime found (onnxruntime; ExecuTorch when its artifacts exist) and precision, each run
     through the runtime's own backend (dualasr.runtime.backends; the PyTorch reference through
     its TorchBackend), so verify loads and runs the graphs exactly as `dualasr transcribe` does:
     a. streaming: every step graph run chunk by chunk with its state, vs the PyTorch step module
        it was traced from, run the same way (max abs diff);
     b. full: encoder_full vs PyTorch full mode, both over the windows the runtime uses
        (dualasr.runtime.windows: one window, the whole utterance, up to max_full_seconds);
     c. greedy decoding with the runtime's predictor/joiner graphs (a numpy loop) vs
        dualasr.decoding.greedy_search on the PyTorch fp32 encoder output: token agreement;
     fp32 must stay within 1e-4 and agree on the tokens; int8 must keep its encoder output within
     INT8_MAX_RELATIVE_ERROR of PyTorch fp32 and INT8_MIN_AGREEMENT token agreement with it;
  4. Core ML: on macOS nothing is predicted either (yet); everywhere the package spec is loaded and
     its functions and I/O names checked against the manifest, and the report says plainly that
     predict was not run.
Audio: the files given; else the first DEFAULT_REAL_PROMPTS held-out real recordings (the Asterisk
prompts' test split, never trained on) when they are installed; else a deterministic 3 s
pseudo-speech signal (harmonic source with moving formants and syllable envelope), which the
report names, so the check needs no data. Both references run in chunks or windows, so memory
stays bounded for audio of any length (a whole-utterance PyTorch pass grows with the square of
the length).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import ManifestError, artifact_path, load_manifest

__all__ = ["FP32_TOLERANCE", "INT8_MAX_RELATIVE_ERROR", "INT8_MIN_AGREEMENT", "VerifyError", "main", "pseudo_speech",
           "relative_error", "verify_export"]

FP32_TOLERANCE = 1e-4
FP32_MIN_AGREEMENT = 0.98  # not 1.0: a near-tie on long real audio may flip one token legitimately
INT8_MIN_AGREEMENT = 0.80
# ||int8 - fp32|| / ||fp32|| of the encoder output over all audio. Measured on real speech
# (benchmarks/results/onnx_int8_accuracy.json): ~2% for a sound int8 export on any CPU; the old
# u8s8 ONNX recipe reached 10-11% on AVX2 CPUs without VNNI, where its int16 sums saturate.
INT8_MAX_RELATIVE_ERROR = 0.06
DEFAULT_REAL_PROMPTS = 4  # held-out real prompts verify uses when none are given and they are installed
MAX_SYMBOLS_PER_FRAME = 3  # as dualasr.decoding.greedy_search's default


class VerifyError(ValueError):
    """The export cannot be verified at all (unreadable checkpoint, no runtime); see the message."""


@dataclass
class Check:
    runtime: str
    precision: str
    check: str
    metric: str
    value: float | None
    limit: float | None
    ok: bool
    detail: str = ""


@dataclass
class Report:
    export_dir: str
    audio: list[dict] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict:
        return {"export_dir": self.export_dir, "ok": self.ok, "audio": self.audio,
                "checks": [asdict(c) for c in self.checks], "notes": self.notes}


# ----------------------------------------------------------------------------- audio


def pseudo_speech(seconds: float = 3.0, sample_rate: int = 16000) -> np.ndarray:
    """A deterministic speech-like waveform [N] float32 in [-0.5, 0.5]: a gliding 95-165 Hz
    harmonic source shaped by two formants that jump every syllable (4 per second), a syllable
    envelope, short silences at both ends and a little noise."""
    rng = np.random.default_rng(1234)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 130 + 35 * np.sin(2 * np.pi * 0.6 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    syllable = np.floor(t * 4).astype(int)
    formants = rng.uniform([300, 900], [850, 2400], size=(syllable.max() + 1, 2))[syllable]  # [n, 2]
    x = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0
        amp = sum(np.exp(-0.5 * ((fk - formants[:, j]) / 120.0) ** 2) for j in range(2)) + 0.02
        x += amp / k**0.5 * np.sin(k * phase)
    env = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) ** 1.5
    env[(t < 0.25) | (t > seconds - 0.25)] = 0.0
    x = x * env + 0.002 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _real_prompts() -> list[Path]:
    """The first held-out real recordings, or [] where the Asterisk prompts are not installed."""
    from dualasr.demo import real_test_set

    try:
        return [Path(u.audio) for u in real_test_set(DEFAULT_REAL_PROMPTS)]
    except FileNotFoundError:
        return []


def _features(manifest: dict, audio: list[Path] | None) -> list[tuple[str, Any]]:
    """-> [(name, feats [1, T, F] torch float32)]"""
    import torch

    from dualasr.audio import load_audio
    from dualasr.features import FbankConfig, compute_fbank

    cfg = FbankConfig.from_dict(manifest["features"])
    audio = audio or _real_prompts()
    if audio:
        waves = [(Path(p).name, load_audio(p, cfg.sample_rate)) for p in audio]
    else:
        waves = [("pseudo-speech-3s", pseudo_speech(3.0, cfg.sample_rate))]
    out = []
    for name, w in waves:
        feats = compute_fbank(torch.from_numpy(w), cfg)[None]
        if feats.shape[1] < 4 * manifest["subsampling"]:
            raise VerifyError(f"audio {name} is too short to verify ({feats.shape[1]} frames); use >= 0.2 s")
        out.append((name, feats))
    return out


# ----------------------------------------------------------------------------- runtimes


def _backend(report: Report, name: str, export_dir: Path, manifest: dict, precision: str):
    """The runtime's own backend for one format and precision (what `dualasr transcribe` runs),
    or None after reporting why it could not load."""
    from dualasr.runtime.backends import create_backend

    if name == "executorch" and importlib.util.find_spec("executorch") is None:
        report.notes.append(f"executorch {precision}: not run, the executorch runtime is not installed")
        return None
    try:
        return create_backend(name, export_dir, manifest, precision, threads=1 if name == "onnxruntime" else 0)
    except Exception as e:  # a load failure is this artifact's failed check, not the end of verify
        report.checks.append(Check(name, precision, "load graphs", "loads", 0, None, False, f"{type(e).__name__}: {e}"))
        return None


# ----------------------------------------------------------------------------- decoding


def _zeros(spec: dict) -> np.ndarray:
    return np.zeros([int(d) for d in spec["shape"]], dtype=np.dtype(spec["dtype"]))


def greedy_decode(runner, manifest: dict, enc: np.ndarray, max_symbols: int = MAX_SYMBOLS_PER_FRAME) -> list[int]:
    """Greedy RNN-T tokens of enc [T, D] through the runner's predictor/joiner graphs: the runtime's
    own search (dualasr.runtime.search.greedy_search, the rule dualasr.decoding.greedy_search
    defines) over this runner, so what verify checks is what the runtime runs."""
    from dualasr.runtime.graphs import ModelGraphs
    from dualasr.runtime.search import greedy_search, initial_hyp

    graphs = ModelGraphs(runner, manifest, None, [])
    hyp = initial_hyp(graphs)
    greedy_search(graphs, [hyp], np.ascontiguousarray(enc[None], dtype=np.float32), [enc.shape[0]], [0],
                  max_symbols_per_frame=max_symbols, blank_id=manifest["blank_id"])
    return hyp.token_ids


def _edit_distance(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def token_agreement(hyps: list[list[int]], refs: list[list[int]]) -> float:
    """1 - (total token edit distance / total reference tokens), floored at 0 (1.0 if both empty)."""
    errors = sum(_edit_distance(h, r) for h, r in zip(hyps, refs))
    total = sum(len(r) for r in refs)
    if total == 0:
        return 1.0 if errors == 0 else 0.0
    return max(0.0, 1.0 - errors / total)


# ----------------------------------------------------------------------------- checks


def run_streaming(runner, manifest: dict, entry: dict, feats: np.ndarray) -> tuple[np.ndarray, int]:
    """Chunked streaming through one step graph. feats [1, T, F] -> (enc [T // s, D], final processed_lens)."""
    c = entry["chunk_frames"]
    state = {s["name"]: _zeros(s) for s in entry["states"]}
    inputs = [t["name"] for t in manifest["graphs"][entry["graph"]]["inputs"]]
    T = feats.shape[1]
    outs = []
    for start in range(0, T, c):
        chunk = feats[:, start:start + c]
        if chunk.shape[1] < c:  # the last partial chunk is zero-padded, as a runtime does at end of input
            chunk = np.concatenate([chunk, np.zeros((1, c - chunk.shape[1], feats.shape[2]), np.float32)], axis=1)
        res = runner.run(entry["graph"], {"features": np.ascontiguousarray(chunk, np.float32), **state})
        outs.append(res["encoder_out"][0])
        state = {n: res[f"new_{n}"] for n in inputs[1:]}
    processed = int(np.asarray(state.get("processed_lens", [-1])).reshape(-1)[0])
    return np.concatenate(outs, axis=0)[: T // manifest["subsampling"]], processed


def run_full(runner, manifest: dict, feats: np.ndarray, graph_max_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Full context over the runtime's windows. feats [1, T, F] -> (enc [T // s, D], windows)."""
    from dualasr.runtime.windows import plan_windows, window_frames

    from .manifest import max_full_seconds

    sub = manifest["subsampling"]
    size, context = window_frames(max_full_seconds(manifest), manifest["frame_shift_ms"] / 1000.0, sub, graph_max_frames)
    outs = []
    windows = plan_windows(feats.shape[1], size, context, sub)
    for w in windows:
        x = np.ascontiguousarray(feats[:, w.start:w.stop], np.float32)
        enc = runner.run("encoder_full", {"features": x})["encoder_out"][0]
        outs.append(enc[(w.keep_from - w.start) // sub:(w.keep_to - w.start) // sub])
    return np.concatenate(outs, axis=0), len(windows)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0.0))


def relative_error(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """||got - want|| / ||want|| over all arrays together (Frobenius); inf on a shape mismatch."""
    if any(g.shape != w.shape for g, w in zip(got, want)):
        return math.inf
    num = sum(float(np.sum((g.astype(np.float64) - w) ** 2)) for g, w in zip(got, want))
    den = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in want)
    return math.sqrt(num / den) if den else math.sqrt(num)


def _check_graph_table(report: Report, manifest: dict, model) -> None:
    """The manifest's I/O table must be what this checkpoint's model produces."""
    from .exporter import example_inputs_for, graph_io
    from .wrappers import graphs_for

    chunks = [e["chunk_ms"] for e in manifest["streaming"]]
    graphs = graphs_for(model, chunks)
    expected = graph_io(graphs, example_inputs_for(graphs, model))
    problems = []
    for g in sorted(set(expected) | set(manifest["graphs"])):
        if g not in manifest["graphs"] or g not in expected:
            problems.append(f"graph {g} only in {'checkpoint' if g in expected else 'manifest'}")
        elif manifest["graphs"][g] != expected[g]:
            for kind in ("inputs", "outputs"):
                have, want = manifest["graphs"][g].get(kind, []), expected[g][kind]
                if [t.get("name") for t in have] != [t["name"] for t in want]:
                    problems.append(f"{g} {kind}: manifest {[t.get('name') for t in have]}, checkpoint {[t['name'] for t in want]}")
                    continue
                problems += [f"{g} {w['name']}: manifest {h}, checkpoint {w}" for h, w in zip(have, want) if h != w]
    report.checks.append(Check("manifest", "-", "graph I/O vs checkpoint", "mismatches", len(problems), 0,
                               not problems, "; ".join(problems)))


def _check_onnx_io(report: Report, export_dir: Path, manifest: dict, precision: str) -> None:
    """Each ONNX graph's declared inputs/outputs vs the manifest: names, order, rank, fixed sizes."""
    import onnx

    problems = []
    for g, rel in manifest["artifacts"]["onnx"][precision]["graphs"].items():
        model = onnx.load(str(artifact_path(manifest, export_dir, rel)), load_external_data=False)
        for kind, declared in (("inputs", model.graph.input), ("outputs", model.graph.output)):
            specs = manifest["graphs"][g][kind]
            names = [v.name for v in declared]
            if names != [s["name"] for s in specs]:
                problems.append(f"{g} {kind} {names} != manifest {[s['name'] for s in specs]}")
                continue
            for v, s in zip(declared, specs):
                dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                if len(dims) != len(s["shape"]):
                    problems.append(f"{g} {v.name} has rank {len(dims)}, manifest shape {s['shape']}")
                    continue
                for i, (d, want) in enumerate(zip(dims, s["shape"])):
                    fixed = isinstance(want, int) and i != s.get("batch_dim")
                    if fixed and d != want:
                        problems.append(f"{g} {v.name} dim {i} is {d if d is not None else 'dynamic'}, manifest says {want}")
    report.checks.append(Check("onnxruntime", precision, "graph I/O vs manifest", "mismatches", len(problems), 0,
                               not problems, "; ".join(problems)))


def _runtime_checks(report: Report, runner, manifest: dict, precision: str, feats_list, refs) -> None:
    is_float = precision in ("fp32", "fp16")
    limit = FP32_TOLERANCE if precision == "fp32" else None
    min_agree = FP32_MIN_AGREEMENT if is_float else INT8_MIN_AGREEMENT
    rt = runner.name
    max_frames = None
    if rt == "executorch":
        dyn = manifest["artifacts"]["executorch"][precision].get("dynamic_axes", {}).get("encoder_full", {}).get("T")
        max_frames = dyn[1] if dyn else None

    def encoder_check(what: str, encs: list[np.ndarray], wants: list[np.ndarray], problems: list[str],
                      notes: list[str] = ()) -> None:
        """fp32: max abs diff within FP32_TOLERANCE; int8: relative error within its limit.
        problems fail the check; notes only go into its detail."""
        d = max(_max_diff(e, w) for e, w in zip(encs, wants))
        rel = relative_error(encs, wants)
        if is_float:
            check = Check(rt, precision, what, "max_abs_diff", d, limit,
                          (d <= limit if limit is not None else math.isfinite(d)) and not problems,
                          "; ".join([f"relative {rel:.2e}", *problems, *notes]))
        else:
            check = Check(rt, precision, what, "relative_error", rel, INT8_MAX_RELATIVE_ERROR,
                          rel <= INT8_MAX_RELATIVE_ERROR and not problems,
                          "; ".join([f"max abs diff {d:.3g}", *problems, *notes]))
        report.checks.append(check)

    for entry in manifest["streaming"]:
        encs, wants, hyps, ref_tokens, wrong_lens = [], [], [], [], []
        for (name, feats), ref in zip(feats_list, refs):
            enc, processed = run_streaming(runner, manifest, entry, feats.numpy())
            want, want_tokens = ref.streaming(entry)
            encs.append(enc)
            wants.append(want)
            emitted = math.ceil(feats.shape[1] / entry["chunk_frames"]) * entry["encoder_frames"]
            if processed != emitted:
                wrong_lens.append(f"{name}: processed_lens {processed}, expected {emitted}")
            hyps.append(greedy_decode(runner, manifest, enc))
            ref_tokens.append(want_tokens)
        encoder_check(f"streaming {entry['chunk_ms']} ms vs torch", encs, wants, wrong_lens)
        agree = token_agreement(hyps, ref_tokens)
        report.checks.append(Check(rt, precision, f"streaming {entry['chunk_ms']} ms greedy tokens vs torch fp32",
                                   "token_agreement", agree, min_agree, agree >= min_agree,
                                   f"{sum(map(len, ref_tokens))} reference tokens"))

    encs, wants, hyps, ref_tokens, notes = [], [], [], [], []
    for (name, feats), ref in zip(feats_list, refs):
        enc, windows = run_full(runner, manifest, feats.numpy(), max_frames)
        want, want_tokens = ref.full(max_frames)
        if windows > 1:
            notes.append(f"{name} in {windows} windows")
        encs.append(enc)
        wants.append(want)
        hyps.append(greedy_decode(runner, manifest, enc))
        ref_tokens.append(want_tokens)
    encoder_check("full vs torch", encs, wants, [], notes)
    agree = token_agreement(hyps, ref_tokens)
    report.checks.append(Check(rt, precision, "full greedy tokens vs torch fp32", "token_agreement", agree, min_agree,
                               agree >= min_agree, f"{sum(map(len, ref_tokens))} reference tokens"))


class _Reference:
    """PyTorch fp32 encoder outputs and greedy tokens of one utterance, computed on first use per
    chunk size / window size (the ExecuTorch artifact may allow shorter windows than the manifest)."""

    def __init__(self, model, torch_runner, manifest: dict, feats):
        self.model, self.runner, self.manifest, self.feats = model, torch_runner, manifest, feats.numpy()
        self._cache: dict = {}

    def _tokens(self, enc: np.ndarray) -> list[int]:
        import torch

        from dualasr.decoding import greedy_search

        with torch.no_grad():
            return greedy_search(self.model, torch.from_numpy(enc)[None], torch.tensor([enc.shape[0]]))[0].tokens

    def streaming(self, entry: dict) -> tuple[np.ndarray, list[int]]:
        key = ("streaming", entry["chunk_ms"])
        if key not in self._cache:
            enc, _ = run_streaming(self.runner, self.manifest, entry, self.feats)
            self._cache[key] = (enc, self._tokens(enc))
        return self._cache[key]

    def full(self, graph_max_frames: int | None) -> tuple[np.ndarray, list[int]]:
        key = ("full", graph_max_frames)
        if key not in self._cache:
            enc, _ = run_full(self.runner, self.manifest, self.feats, graph_max_frames)
            self._cache[key] = (enc, self._tokens(enc))
        return self._cache[key]


def _coreml_checks(report: Report, export_dir: Path, manifest: dict) -> None:
    """Spec-level validation only: Core ML cannot predict off Apple platforms."""
    for precision, art in manifest["artifacts"]["coreml"].items():
        package = artifact_path(manifest, export_dir, art["package"])
        try:
            import coremltools as ct

            spec = ct.utils.load_spec(str(package))
        except Exception as e:
            report.checks.append(Check("coreml", precision, "package spec", "loads", 0, None, False,
                                       f"{package}: {type(e).__name__}: {e}"))
            continue
        desc = spec.description
        if len(desc.functions):
            functions = {f.name: f for f in desc.functions}
        else:  # single-function package: its I/O is the model description itself
            functions = {(art.get("functions") or ["main"])[0]: desc}
        problems = []
        for g in art.get("functions") or list(manifest["graphs"]):
            if g not in functions:
                problems.append(f"function {g} missing (package has {sorted(functions)})")
                continue
            f = functions[g]
            for kind, declared in (("inputs", f.input), ("outputs", f.output)):
                names = sorted(v.name for v in declared)
                want = sorted(t["name"] for t in manifest["graphs"][g][kind])
                if names != want:
                    problems.append(f"{g} {kind} {names} != manifest {want}")
        report.checks.append(Check("coreml", precision, "package functions and I/O names vs manifest", "mismatches",
                                   len(problems), 0, not problems, "; ".join(problems)))
        report.notes.append(
            f"coreml {precision}: spec validated only; predict was NOT run "
            f"({'not attempted by this verifier' if sys.platform == 'darwin' else 'Core ML runs only on macOS/iOS, this is ' + sys.platform})"
        )


# ----------------------------------------------------------------------------- entry points


def verify_export(export_dir: str | os.PathLike[str], audio: list[Path] | None = None) -> dict:
    """Verify an export folder; returns the report dict ({"ok": bool, "checks": [...], "notes": [...]}).

    Raises:
        ManifestError: missing/tampered/too new export.
        VerifyError: the checkpoint inside cannot be loaded or the audio is unusable.
    """
    import torch

    # The reference greedy search runs hundreds of tiny predictor/joiner steps; with several
    # intra-op threads each step pays thread wake-ups (10x slower on a busy 2-core box).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _verify_export(Path(export_dir), audio)
    finally:
        torch.set_num_threads(threads)


def _verify_export(export_dir: Path, audio: list[Path] | None) -> dict:
    from dualasr.checkpoint import CheckpointError, load_model
    from dualasr.runtime.torch_backend import TorchBackend

    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir, verify_checksums=True)
    report = Report(str(export_dir))
    if not isinstance(manifest.get("checkpoint"), str):
        raise VerifyError(f"{export_dir}: the manifest names no checkpoint, so there is no reference to verify against; re-export")
    try:
        model, _, _ = load_model(artifact_path(manifest, export_dir, manifest["checkpoint"]))
    except CheckpointError as e:
        raise VerifyError(f"{export_dir}: {e}") from None
    for key, msg in (manifest.get("errors") or {}).items():
        report.notes.append(f"{key} was not exported: {msg}")
    _check_graph_table(report, manifest, model)

    feats_list = _features(manifest, audio)
    report.audio = [{"name": n, "frames": int(f.shape[1])} for n, f in feats_list]
    torch_runner = TorchBackend(export_dir, manifest, model=model)
    refs = [_Reference(model, torch_runner, manifest, feats) for _, feats in feats_list]

    artifacts = manifest.get("artifacts", {})
    for fmt, backend in (("onnx", "onnxruntime"), ("executorch", "executorch")):
        for precision in artifacts.get(fmt, {}):
            if fmt == "onnx":
                _check_onnx_io(report, export_dir, manifest, precision)
            runner = _backend(report, backend, export_dir, manifest, precision)
            if runner is not None:
                _runtime_checks(report, runner, manifest, precision, feats_list, refs)
    if "coreml" in artifacts:
        _coreml_checks(report, export_dir, manifest)
    for fmt in artifacts:
        if fmt not in ("onnx", "executorch", "coreml"):
            report.notes.append(f"{fmt}: no verifier for this format; its files were checksum-verified only")
    if not any(c.runtime not in ("manifest",) for c in report.checks):
        report.notes.append("no runtime artifacts were verified (the export has none this verifier can run)")
    return report.to_dict()


def format_report(report: dict) -> str:
    rows = [("", "runtime", "precision", "check", "value", "limit", "detail")]
    for c in report["checks"]:
        v = c["value"]
        value = "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
        limit = "-" if c["limit"] is None else f"{c['limit']:g}"
        rows.append(("ok" if c["ok"] else "FAIL", c["runtime"], c["precision"], c["check"], value, limit, c["detail"]))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = [f"verify {report['export_dir']} on " + ", ".join(f"{a['name']} ({a['frames']} frames)" for a in report["audio"])]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + ("  " + r[6] if r[6] else "") for r in rows]
    lines += [f"note: {n}" for n in report["notes"]]
    lines.append("PASSED" if report["ok"] else "FAILED: " + ", ".join(
        f"{c['runtime']} {c['precision']} {c['check']}" for c in report["checks"] if not c["ok"]))
    return "\n".join(lines)


def main(args) -> int:
    """CLI entry (`dualasr verify EXPORT_DIR [--audio ...] [--json FILE]`): 0 passed, 1 failed."""
    try:
        report = verify_export(Path(args.export_dir), [Path(a) for a in args.audio] if args.audio else None)
    except ManifestError as e:
        print(f"dualasr verify: the export is not intact: {e}", file=sys.stderr)
        return 1
    print(format_report(report))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["ok"] else 1
