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
                    training_state: dict[str, Any] | None = None) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizer": torch.frombuffer(bytearray(Path(tokenizer_path).read_bytes()), dtype=torch.uint8),
        "training_state": training_state or {},
    }
    atomic_write(path, lambda f: torch.save(payload, f))


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


def load_model(path: str | Path) -> tuple[Transducer, Config, bytes]:
    """-> (model in eval mode, config, sentencepiece model bytes)"""
    payload = read_checkpoint(path)
    config = Config.from_dict(payload["config"])
    model = Transducer(config.model)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match its model config: {e}") from None
    return model.eval(), config, payload["tokenizer"].numpy().tobytes()


def model_config_of(path: str | Path) -> ModelConfig:
    return Config.from_dict(read_checkpoint(path)["config"]).model
