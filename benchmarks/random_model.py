"""A checkpoint of any preset with random weights, for speed measurements at sizes the built-in
model does not have (e.g. `conformer-s`, ~10M parameters). Its outputs mean nothing."""

from __future__ import annotations

from pathlib import Path


def random_checkpoint(preset: str, overrides: list[str], folder: Path) -> Path:
    """Write folder/random-<preset>.pt (a 40-piece tokenizer, weights from seed 0); returns its path."""
    import torch

    from dualasr.checkpoint import save_checkpoint
    from dualasr.config import load_config
    from dualasr.model import Transducer
    from dualasr.tokenizer import Tokenizer

    texts = ["please enter your account number followed by the pound key", "thank you for calling"] * 10
    tok = Tokenizer.train(texts, folder / "tok.model", vocab_size=40)
    cfg = load_config(preset, overrides)
    cfg.model.vocab_size = tok.vocab_size
    torch.manual_seed(0)
    path = folder / f"random-{preset}.pt"
    save_checkpoint(path, Transducer(cfg.model).eval(), cfg, tok.model_path)
    return path
