"""Checkpoints: one self-contained file (config, weights, tokenizer bytes, training state).

Written atomically (temp file + fsync + rename) so a crash or a full disk never leaves a corrupt
latest checkpoint, and read with `weights_only=True` so loading never unpickles arbitrary code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import Config, ModelConfig
from .fileio import atomic_write
from .model import Transducer

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    pass


def save_checkpoint(path: str | Path, model: Transducer, config: Config, tokenizer_path: str | Path,
                    training_state: dict[str, Any] | None = None, random_init: bool = False) -> None:
    """random_init: the weights were never trained (`random_checkpoint`); exports say so."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizer": torch.frombuffer(bytearray(Path(tokenizer_path).read_bytes()), dtype=torch.uint8),
        "training_state": training_state or {},
    }
    if random_init:
        payload["random_init"] = True
    atomic_write(path, lambda f: torch.save(payload, f))


def random_checkpoint(config: Config, path: str | Path, seed: int = 0) -> Path:
    """A checkpoint of `config` with random weights (seed `seed`) and a placeholder tokenizer of its
    vocabulary size, to size and time a model before training it. Its transcripts mean nothing."""
    from dualasr.tokenizer import Tokenizer

    path = Path(path)
    tok_path = path.with_name(path.stem + ".tokenizer.model")
    Tokenizer.placeholder(config.model.vocab_size, tok_path)
    torch.manual_seed(seed)
    save_checkpoint(path, Transducer(config.model).eval(), config, tok_path, random_init=True)
    tok_path.unlink()
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (train one with `dualasr train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, not a checkpoint at all
        raise CheckpointError(f"checkpoint {path} cannot be read safely: {type(e).__name__}: {e}") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not a dualasr checkpoint (no model/config entries)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['format_version']}, newer than this dualasr "
            f"supports ({FORMAT_VERSION}); upgrade dualasr"
        )
    # Checkpoints written before model.input_norm existed used the per-frame LayerNorm.
    payload["config"].setdefault("model", {}).setdefault("input_norm", "frame")
    return payload


def _config_of(path: str | Path, payload: dict[str, Any]) -> Config:
    try:
        return Config.from_dict(payload["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its config is invalid ({e}); the file is damaged or was edited") from None


def check_weights_fit(path: str | Path, config: ModelConfig, weights: Any) -> None:
    """The config must describe exactly the stored weights (names and shapes), checked on a model
    built on the meta device (no memory): a 4 MB file whose config claims d_model 65536 must be
    refused here, before building the model would allocate gigabytes.

    Raises:
        CheckpointError: naming the first mismatches.
    """
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: its 'model' entry is not a table of weight tensors; the file is damaged")
    with torch.device("meta"):
        skeleton = Transducer(config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in weights.items()}
    problems = [f"{k} is missing" for k in expected if k not in stored]
    problems += [f"{k} is not part of this model" for k in stored if k not in expected]
    problems += [f"{k} is {list(stored[k])}, the config needs {list(expected[k])}"
                 for k in expected if k in stored and stored[k] != expected[k]]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{path}: its config (d_model {config.d_model}, {config.num_layers} layers, vocab {config.vocab_size}) "
            f"does not match its stored weights: {'; '.join(problems[:3])}{more}; the config was edited or the "
            "file mixes two models, use the checkpoint as training wrote it"
        )


def load_model(path: str | Path) -> tuple[Transducer, Config, bytes]:
    """-> (model in eval mode, config, sentencepiece model bytes)"""
    payload = read_checkpoint(path)
    config = _config_of(path, payload)
    check_weights_fit(path, config.model, payload["model"])
    model = Transducer(config.model)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match its model config: {e}") from None
    return model.eval(), config, payload["tokenizer"].numpy().tobytes()


def model_config_of(path: str | Path) -> ModelConfig:
    return _config_of(path, read_checkpoint(path)).model
