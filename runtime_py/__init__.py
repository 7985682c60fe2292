"""dualasr.runtime: the torch-free streaming harness (what a mobile app ports).

Imports numpy, onnxruntime / executorch / coremltools (lazily, per backend), sentencepiece and the
torch-free dualasr modules (fbank, tokenizer, audio, metrics, export.manifest); never torch. Two
backends are the exception, each importing torch lazily when chosen: executorch (its Python
bindings need it) and torch (the export's checkpoint in PyTorch eager).
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
