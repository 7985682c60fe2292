"""The four exported graphs as typed numpy calls, with batching handled for every backend.

`ModelGraphs` wraps a Backend and the manifest:
  encoder_full(features [1, T, F])                       -> encoder_out [1, T // s, D]
  encoder_step(features [B, C, F], states)               -> (encoder_out [B, C // s, D], new states)
  predictor(context [B, K] int64, states)                -> (predictor_out [B, P], new states)
  joiner(encoder_out [B, D], predictor_out [B, P])       -> logits [B, V]
States are lists in manifest order; each tensor carries the batch on its manifest "batch_dim".
Backends without a batch axis (ExecuTorch, Core ML) get one call per row, transparently.
Every call's time inside the backend goes to the Recognizer's StageTimers, under the graph's name.
"""

from __future__ import annotations

import time

import numpy as np

from .backends import Backend
from .timers import StageTimers

__all__ = ["StateSpec", "ModelGraphs", "stack_states", "split_states"]

_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32}


class StateSpec:
    """One recurrent tensor: name, batch-1 shape, dtype and batch axis (from the manifest)."""

    def __init__(self, d: dict):
        self.name = d["name"]
        self.shape = [int(x) for x in d["shape"]]
        if d["dtype"] not in _DTYPES:
            raise ValueError(f"manifest state {self.name}: unsupported dtype {d['dtype']!r}")
        self.dtype = _DTYPES[d["dtype"]]
        self.batch_dim = int(d.get("batch_dim", 0))
        init = d.get("init", "zeros")
        if init != "zeros":
            raise ValueError(f"manifest state {self.name}: unsupported init {init!r} (only 'zeros')")

    def initial(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)


def stack_states(states: list[list[np.ndarray]], specs: list[StateSpec]) -> list[np.ndarray]:
    """B batch-1 (or batch-k) states -> one state, concatenated on each tensor's batch axis."""
    if len(states) == 1:
        return list(states[0])
    return [np.concatenate([s[i] for s in states], axis=sp.batch_dim) for i, sp in enumerate(specs)]


def split_states(state: list[np.ndarray], specs: list[StateSpec], batch: int) -> list[list[np.ndarray]]:
    """One batched state -> `batch` per-row batch-1 states (copies, so rows never alias each other;
    a batch of 1 is the graph's fresh output itself)."""
    if batch == 1:
        return [list(state)]
    return [
        [np.take(t, [b], axis=sp.batch_dim) for t, sp in zip(state, specs)]
        for b in range(batch)
    ]


def _state_dims(specs: list[StateSpec]) -> dict[str, int]:
    """State input and output name -> batch axis."""
    return {name: sp.batch_dim for sp in specs for name in (sp.name, "new_" + sp.name)}


class ModelGraphs:
    def __init__(self, backend: Backend, manifest: dict, streaming_graph: str | None, streaming_states: list[dict],
                 timers: StageTimers | None = None):
        self.backend = backend
        self.timers = timers or StageTimers()
        self.manifest = manifest
        self.step_graph = streaming_graph
        self.encoder_states = [StateSpec(d) for d in streaming_states]
        self.predictor_states = [StateSpec(d) for d in manifest["predictor"].get("states", [])]
        self.context_size = int(manifest["predictor"]["context_size"])
        self.initial_context = np.asarray(manifest["predictor"]["initial_context"], dtype=np.int64)
        if self.initial_context.shape != (self.context_size,):
            raise ValueError(
                f"manifest predictor.initial_context {self.initial_context.tolist()} does not have "
                f"context_size={self.context_size} entries; the export is inconsistent"
            )
        # Batch axis of each batched graph's inputs and outputs, for backends without a batch axis.
        self._batch_dims = {
            "predictor": {"context": 0, "predictor_out": 0, **_state_dims(self.predictor_states)},
            "joiner": {"encoder_out": 0, "predictor_out": 0, "logits": 0},
        }
        if streaming_graph is not None:
            self._batch_dims[streaming_graph] = {"features": 0, "encoder_out": 0, **_state_dims(self.encoder_states)}

    # --------------------------------------------------------------------- batching

    def _timed(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = self.backend.run(graph, inputs)
        self.timers.add_graph(graph, time.perf_counter() - t0)
        return out

    def _run(self, graph: str, inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        """Run with batch > 1 directly if the backend can, else row by row and concatenate."""
        if batch == 1 or self.backend.supports_batch:
            return self._timed(graph, inputs)
        dims = self._batch_dims[graph]
        rows = [self._timed(graph, {k: np.take(v, [b], axis=dims[k]) for k, v in inputs.items()}) for b in range(batch)]
        return {k: np.concatenate([r[k] for r in rows], axis=dims[k]) for k in rows[0]}

    def check_finite(self, graph: str, x: np.ndarray) -> np.ndarray:
        """Refuse NaN/Inf output of a graph: searching garbage would silently emit random tokens.
        The encoders' outputs are checked here; the search checks the joiner's through its
        log-normalizers (NaN/Inf anywhere in a row, or in the predictor output, reaches them)."""
        if not np.isfinite(x).all():
            raise FloatingPointError(
                f"{getattr(self.backend, 'name', 'backend')} {getattr(self.backend, 'precision', '')} graph "
                f"{graph} returned NaN/Inf; the exported graph is numerically broken for this input "
                "(e.g. constant feature frames from digital silence); try another backend/precision or re-export"
            )
        return x

    def check_probes(self, graphs: list[str], where: str) -> None:
        """Run each graph on its manifest probe input and compare with what the exporter recorded
        (dualasr.export.manifest, "probes"): a graph file replaced by another with the same I/O (an
        int8 graph in the fp32 folder, NaN weights, another model) is refused before any audio.
        Version 1 manifests have no probes; nothing is checked then."""
        from dualasr.export.manifest import ManifestError, probe_error, probe_inputs, probe_tolerance

        probes = self.manifest.get("probes")
        if not probes:
            return
        precision = getattr(self.backend, "precision", "fp32")
        limit = probe_tolerance(precision)
        for g in graphs:
            probe = probes[g]
            try:
                out = self.backend.run(g, probe_inputs(self.manifest, g))[probe["output"]]
            except Exception as e:  # the runtime's own error types
                raise ManifestError(f"{where}: graph {g} fails on its probe input ({type(e).__name__}: {e}); "
                                    "the file was replaced or is broken, re-export") from None
            error = probe_error(probe, out)
            if not error <= limit:
                raise ManifestError(
                    f"{where}: graph {g} ({getattr(self.backend, 'name', 'backend')} {precision}) does not compute "
                    f"what was exported: relative error {error:.3g} on its probe input, allowed {limit:g} "
                    "(a graph from another precision or model, or broken weights, e.g. NaN); re-export"
                )

    # --------------------------------------------------------------------- graphs

    def encoder_full(self, features: np.ndarray) -> np.ndarray:
        """features [1, T, F] float32 -> encoder_out [1, T // s, D]"""
        return self.check_finite("encoder_full", self._timed("encoder_full", {"features": features})["encoder_out"])

    def encoder_initial_state(self) -> list[np.ndarray]:
        return [s.initial() for s in self.encoder_states]

    def encoder_step(self, features: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """features [B, C, F], state (batch B) -> (encoder_out [B, C // s, D], new state)"""
        if self.step_graph is None:
            raise RuntimeError("this recognizer was created in full mode; it has no streaming graph")
        inputs = {"features": features, **{spec.name: t for spec, t in zip(self.encoder_states, state)}}
        out = self._run(self.step_graph, inputs, features.shape[0])
        enc = self.check_finite(self.step_graph, out["encoder_out"])
        return enc, [out["new_" + s.name] for s in self.encoder_states]

    def predictor_initial_state(self) -> list[np.ndarray]:
        return [s.initial() for s in self.predictor_states]

    def predictor(self, context: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """context [B, K] int64, state (batch B) -> (predictor_out [B, P], new state)"""
        inputs = {"context": context, **{spec.name: t for spec, t in zip(self.predictor_states, state)}}
        out = self._run("predictor", inputs, context.shape[0])
        return out["predictor_out"], [out["new_" + s.name] for s in self.predictor_states]

    def joiner(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        """encoder_out [B, D], predictor_out [B, P] -> logits [B, V] (not checked for NaN: see check_finite)"""
        inputs = {"encoder_out": np.ascontiguousarray(encoder_out), "predictor_out": np.ascontiguousarray(predictor_out)}
        return self._run("joiner", inputs, encoder_out.shape[0])["logits"]
