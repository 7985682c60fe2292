"""dualasr.runtime: the torch-free streaming harness (what a mobile app ports).

Imports numpy, onnxruntime / executorch / coremltools (lazily, per backend), kaldi_native_fbank,
sentencepiece and the torch-free dualasr modules (tokenizer, audio, metrics, export.manifest); never
torch. The ExecuTorch backend is the one exception: executorch's Python bindings import torch, so
that backend imports it, lazily, when chosen.
"""

from .backends import Backend, BackendError, CoreMLBackend, ExecuTorchBackend, OnnxRuntimeBackend
from .features import AudioFrontend, StreamingFbank
from .recognizer import EndpointConfig, EndpointRule, Recognizer, Result, Stream, load_export_manifest
from .simulate import SetSimulation, SimulationResult, simulate, simulate_set

__all__ = [
    "AudioFrontend",
    "Backend",
    "BackendError",
    "CoreMLBackend",
    "EndpointConfig",
    "EndpointRule",
    "ExecuTorchBackend",
    "OnnxRuntimeBackend",
    "Recognizer",
    "Result",
    "SetSimulation",
    "SimulationResult",
    "Stream",
    "StreamingFbank",
    "load_export_manifest",
    "simulate",
    "simulate_set",
]
