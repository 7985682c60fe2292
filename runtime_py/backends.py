"""Inference backends behind one tiny protocol: run(graph_name, {input: array}) -> {output: array}.

Every backend reads the same export (manifest.json + artifacts) and exposes the graphs named in
manifest["graphs"] with exactly the I/O names listed there, so the recognizer never knows which
runtime it talks to. What differs:

* OnnxRuntimeBackend  - onnx/<precision>/*.onnx (+ shared external weights). Dynamic batch on the
  streaming, predictor and joiner graphs (`supports_batch`). CPU execution provider by default;
  CoreML / NNAPI / QNN / XNNPACK / CUDA ... by name where this onnxruntime build has them.
* ExecuTorchBackend   - executorch/<precision>/*.pte (XNNPACK-delegated) + one shared .ptd weights
  file; batch 1. NOTE: the executorch pip package's Python bindings `import torch` (they need
  libtorch's shared libraries), so this backend imports torch, lazily, only when it is chosen. The
  on-device C++/Kotlin/Swift ExecuTorch runtime has no such dependency.
* CoreMLBackend       - coreml/<precision>/model.mlpackage (one function per graph); macOS only.
* TorchBackend        - the export's checkpoint in PyTorch eager through the exporter's own graph
  modules (torch_backend.py, imported only when chosen: it imports torch); fp32, any batch.

Load time of all requested graphs is measured in `load_seconds`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Backend",
    "BackendError",
    "available_cores",
    "cap_threads",
    "OnnxRuntimeBackend",
    "ExecuTorchBackend",
    "CoreMLBackend",
    "create_backend",
    "BACKENDS",
]

BACKENDS = ("onnxruntime", "executorch", "coreml", "torch")


class BackendError(ValueError):
    """A backend cannot be used with this export/machine; the message says why and what to do."""


@runtime_checkable
class Backend(Protocol):
    name: str
    precision: str
    supports_batch: bool  # True: batch > 1 in one call for graphs with a batch axis
    load_seconds: float

    def run(self, graph_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph. inputs/outputs keyed by the manifest's tensor names."""
        ...


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cap_threads(threads: int, what: str = "threads") -> tuple[int, str | None]:
    """-> (threads to use, a warning or None). More threads than cores only adds contention, and
    runtimes allocate per thread (100000 threads grew memory without end), so they are capped.

    Raises:
        ValueError: not an integer >= 0 (0 means the runtime's default).
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ValueError(f"{what} must be an integer >= 0 (0: the runtime's default), got {threads!r}")
    cores = available_cores()
    if threads > cores:
        return cores, f"{what} {threads} is more than the {cores} cores this process may use; using {cores}"
    return threads, None


def _artifacts(manifest: dict, fmt: str, precision: str) -> dict:
    fmts = manifest.get("artifacts", {})
    if fmt not in fmts or not fmts[fmt]:
        have = sorted(k for k, v in fmts.items() if v)
        raise BackendError(
            f"this export has no {fmt} artifacts (it has: {', '.join(have) or 'none'}); "
            f"re-export with `dualasr export CHECKPOINT --formats {fmt}` or pick another --backend"
        )
    by_precision = fmts[fmt]
    if precision not in by_precision:
        raise BackendError(
            f"this export has no {fmt} {precision} artifacts (precisions: {', '.join(sorted(by_precision))}); "
            "pick one of those with --precision"
        )
    return by_precision[precision]


def _resolve(export_dir: Path, manifest: dict, rel: str) -> Path:
    """Manifest-relative path -> real path inside export_dir (never outside it)."""
    from dualasr.export.manifest import artifact_path

    return Path(artifact_path(manifest, export_dir, rel))


def _graph_specs(manifest: dict, graph: str) -> tuple[list[str], list[str]]:
    spec = manifest["graphs"][graph]
    return [t["name"] for t in spec["inputs"]], [t["name"] for t in spec["outputs"]]


def _wanted_graphs(manifest: dict, fmt: str, precision: str, available: list[str], graphs: list[str] | None) -> list[str]:
    """The graphs to load: each must be in the manifest's graphs table and in the artifact."""
    wanted = graphs or list(available)
    missing = [g for g in wanted if g not in available or g not in manifest["graphs"]]
    if missing:
        raise BackendError(f"{fmt} {precision} export lacks graphs {missing} (has {sorted(available)}); re-export")
    return wanted


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64", "tensor(int32)": "int32"}
_ET_DTYPES = {6: "float32", 5: "float16", 4: "int64", 3: "int32"}  # executorch ScalarType codes


def _ort_io(args) -> list[tuple]:
    return [(a.name, _ORT_DTYPES.get(a.type, a.type), list(a.shape)) for a in args]


def _et_io(count: int, meta, names: list[str]) -> list[tuple]:
    """An ExecuTorch method's inputs or outputs (`meta(i)` -> TensorInfo) as check_graph_io wants
    them. Programs carry no tensor names: positions take the manifest's, a different count shows
    as placeholder names. Dynamic axes report their upper bound, which named axes ignore."""
    if count != len(names):
        return [(f"<tensor {i}>", None, []) for i in range(count)]
    return [(n, _ET_DTYPES.get(meta(i).dtype(), str(meta(i).dtype())), list(meta(i).sizes())) for i, n in enumerate(names)]


# ----------------------------------------------------------------------------- onnxruntime

_ORT_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def ort_providers(requested: list[str] | None) -> list[str]:
    """Provider names (short like "coreml" or full like "CoreMLExecutionProvider") -> full names,
    CPU appended as the fallback for operators the accelerator lacks.

    Raises:
        BackendError: a requested provider is not in this onnxruntime build.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    out: list[str] = []
    for name in requested or ["cpu"]:
        full = _ORT_PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            raise BackendError(
                f"onnxruntime execution provider {name!r} is not available in this onnxruntime build "
                f"(available: {', '.join(available)}); install the matching onnxruntime package "
                "(e.g. onnxruntime-gpu, onnxruntime-qnn) or use 'cpu'"
            )
        if full not in out:
            out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


class OnnxRuntimeBackend:
    """onnxruntime InferenceSessions, one per graph.

    Args:
        export_dir: export folder (manifest already loaded and verified by the caller).
        manifest: the parsed manifest.
        precision: "fp32" or "int8" (a key of manifest["artifacts"]["onnx"]).
        threads: intra-op threads per session; 0 lets onnxruntime choose (all cores).
        providers: execution providers by name, default ["cpu"].
        graphs: which graphs to load (default all); loading only what a mode needs saves memory.
    """

    name = "onnxruntime"
    supports_batch = True

    def __init__(
        self,
        export_dir: str | os.PathLike,
        manifest: dict,
        precision: str = "fp32",
        threads: int = 0,
        providers: list[str] | None = None,
        graphs: list[str] | None = None,
    ):
        import onnxruntime as ort

        from dualasr.export.manifest import check_graph_io

        self.precision = precision
        self.export_dir = Path(export_dir)
        arts = _artifacts(manifest, "onnx", precision)
        self.providers = ort_providers(providers)
        wanted = _wanted_graphs(manifest, "onnx", precision, list(arts["graphs"]), graphs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, int(threads))
        opts.inter_op_num_threads = 1  # the graphs are sequential chains; no inter-op parallelism
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        t0 = time.perf_counter()
        self._sessions = {}
        self._outputs: dict[str, list[str]] = {}
        for g in wanted:
            path = _resolve(self.export_dir, manifest, arts["graphs"][g])
            try:
                # A path (not bytes) so onnxruntime finds the external weights file beside it.
                sess = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
            except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
                raise BackendError(f"onnxruntime cannot load {path}: {type(e).__name__}: {e}") from None
            check_graph_io(manifest, g, _ort_io(sess.get_inputs()), _ort_io(sess.get_outputs()), str(path))
            self._sessions[g] = sess
            self._outputs[g] = [o.name for o in sess.get_outputs()]
        self.load_seconds = time.perf_counter() - t0

    def run(self, graph_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._sessions[graph_name].run(None, inputs)
        return dict(zip(self._outputs[graph_name], outs))


# ----------------------------------------------------------------------------- ExecuTorch


def _set_executorch_threads(threads: int) -> None:
    """Size the process-wide XNNPACK threadpool of the executorch Python bindings, before any
    program runs. Resetting it later (or after onnxruntime ran in the process) segfaulted with
    executorch 1.5.1, so it is done once per process and only when the size changes."""
    global _ET_THREADS
    if not threads or threads == _ET_THREADS:
        return
    if _ET_THREADS is not None:
        raise BackendError(
            f"the ExecuTorch threadpool is process-wide and already set to {_ET_THREADS} threads; "
            f"cannot switch to {threads} in the same process (use the same --threads)"
        )
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(int(threads))
    _ET_THREADS = int(threads)


_ET_THREADS: int | None = None


class ExecuTorchBackend:
    """ExecuTorch programs (one .pte per graph, weights in a shared .ptd), batch 1.

    Imports executorch.runtime lazily; that Python binding imports torch (see module docstring).
    Tensors cross the boundary as numpy <-> torch.from_numpy without copies where possible.
    """

    name = "executorch"
    supports_batch = False

    def __init__(
        self,
        export_dir: str | os.PathLike,
        manifest: dict,
        precision: str = "fp32",
        threads: int = 0,
        graphs: list[str] | None = None,
    ):
        from dualasr.export.manifest import check_graph_io

        self.precision = precision
        self.export_dir = Path(export_dir)
        arts = _artifacts(manifest, "executorch", precision)
        try:
            import torch  # noqa: F401  (the pybindings need libtorch loaded first)
            from executorch.runtime import Runtime
        except ImportError as e:
            raise BackendError(f"the executorch backend needs the executorch package: {e}; pip install executorch") from None
        self._torch = sys.modules["torch"]
        wanted = _wanted_graphs(manifest, "executorch", precision, list(arts["graphs"]), graphs)
        weights = arts.get("weights")
        data_path = _resolve(self.export_dir, manifest, weights) if weights else None
        _set_executorch_threads(threads)
        t0 = time.perf_counter()
        runtime = Runtime.get()
        self._methods = {}
        self._io: dict[str, tuple[list[str], list[str]]] = {}
        for g in wanted:
            path = _resolve(self.export_dir, manifest, arts["graphs"][g])
            try:
                program = runtime.load_program(path, data_path=data_path)
                # Keep the Program alive: the Method borrows from it.
                self._methods[g] = (program, program.load_method(arts.get("method", "forward")))
            except Exception as e:
                raise BackendError(f"ExecuTorch cannot load {path}: {type(e).__name__}: {e}") from None
            self._io[g] = _graph_specs(manifest, g)
            meta = self._methods[g][1].metadata
            check_graph_io(manifest, g, _et_io(meta.num_inputs(), meta.input_tensor_meta, self._io[g][0]),
                           _et_io(meta.num_outputs(), meta.output_tensor_meta, self._io[g][1]), str(path))
        # A loaded Method owns its planned activation memory: two threads executing it at once
        # would overwrite each other's intermediates. One lock serializes this backend's calls.
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - t0

    def run(self, graph_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        in_names, out_names = self._io[graph_name]
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in in_names]
        with self._lock:
            outs = self._methods[graph_name][1].execute(args)  # returns fresh tensors (no aliasing)
        return {n: o.detach().numpy() if hasattr(o, "detach") else np.asarray(o) for n, o in zip(out_names, outs)}


# ----------------------------------------------------------------------------- Core ML


class CoreMLBackend:
    """A Core ML .mlpackage with one function per graph (coremltools, macOS only), batch 1."""

    name = "coreml"
    supports_batch = False

    def __init__(
        self,
        export_dir: str | os.PathLike,
        manifest: dict,
        precision: str = "fp16",
        threads: int = 0,
        compute_units: str = "ALL",
        graphs: list[str] | None = None,
    ):
        if sys.platform != "darwin":
            raise BackendError(
                f"the coreml backend runs Core ML models, which only macOS/iOS can execute (this is "
                f"{sys.platform}); use --backend onnxruntime or executorch here"
            )
        import coremltools as ct

        self.precision = precision
        self.export_dir = Path(export_dir)
        arts = _artifacts(manifest, "coreml", precision)
        package = _resolve(self.export_dir, manifest, arts["package"])
        functions = arts.get("functions") or list(manifest["graphs"])
        wanted = _wanted_graphs(manifest, "coreml", precision, functions, graphs)
        units = getattr(ct.ComputeUnit, compute_units, None)
        if units is None:
            raise BackendError(f"unknown Core ML compute units {compute_units!r}; use ALL, CPU_ONLY, CPU_AND_GPU or CPU_AND_NE")
        t0 = time.perf_counter()
        self._models = {}
        for g in wanted:
            try:
                self._models[g] = ct.models.MLModel(str(package), compute_units=units, function_name=g)
            except Exception as e:
                raise BackendError(f"Core ML cannot load function {g} of {package}: {type(e).__name__}: {e}") from None
        self._io = {g: _graph_specs(manifest, g) for g in wanted}
        # Core ML has no int64 tensors: the writer lists those it made int32 ("io_dtype_casts").
        self._casts = {n: np.dtype(t) for n, t in (arts.get("io_dtype_casts") or {}).items()}
        self._out_dtypes = {
            t["name"]: np.dtype(t["dtype"]) for g in wanted for t in manifest["graphs"][g]["outputs"]
        }
        self._lock = threading.Lock()  # MLModel.predict is not documented as thread-safe
        self.load_seconds = time.perf_counter() - t0

    def run(self, graph_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: v.astype(self._casts[k]) if k in self._casts else v for k, v in inputs.items()}
        with self._lock:
            out = self._models[graph_name].predict(feed)
        return {n: np.asarray(out[n]).astype(self._out_dtypes[n], copy=False) for n in self._io[graph_name][1]}


def create_backend(
    name: str,
    export_dir: str | os.PathLike,
    manifest: dict,
    precision: str,
    threads: int = 0,
    providers: list[str] | None = None,
    graphs: list[str] | None = None,
) -> Backend:
    """Backend by name ("onnxruntime", "executorch", "coreml", "torch")."""
    if name == "onnxruntime":
        return OnnxRuntimeBackend(export_dir, manifest, precision, threads, providers, graphs)
    if name == "executorch":
        return ExecuTorchBackend(export_dir, manifest, precision, threads, graphs)
    if name == "coreml":
        # Core ML exports are fp16 (its native float); "fp32" asks for the float model.
        if precision == "fp32" and "fp32" not in manifest.get("artifacts", {}).get("coreml", {}):
            precision = "fp16"
        return CoreMLBackend(export_dir, manifest, precision, threads, graphs=graphs)
    if name == "torch":
        from .torch_backend import TorchBackend  # imports torch: only for this backend

        return TorchBackend(export_dir, manifest, precision, threads, graphs)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
