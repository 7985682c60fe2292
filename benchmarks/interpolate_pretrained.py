"""Weight-space interpolation toward the pretrained body (WiSE-FT, Wortsman et al. 2022): every
encoder tensor Whisper tiny.en has becomes alpha * trained + (1 - alpha) * Whisper's; the new
layers (input projection, output stacking, predictor, joiner) keep their trained values. Fine-tuning
on few voices moves the body away from what it learned from many real speakers; interpolating part
of the way back is a training-free way to ask whether that drift costs accuracy on unseen speakers.

    python benchmarks/interpolate_pretrained.py CHECKPOINT --alpha 0.9,0.75,0.5 --out-dir runs/wise
        # -> runs/wise/alpha0.9.pt ... (score them with benchmarks/score_checkpoints.py)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dualasr.checkpoint import load_model, read_checkpoint
from dualasr.fileio import atomic_write
from dualasr.pretrained import whisper_encoder_values


def interpolate(checkpoint: Path, alpha: float, pretrained: dict[str, torch.Tensor]) -> dict:
    """The checkpoint with each pretrained tensor at alpha of the way from Whisper's to its own."""
    payload = read_checkpoint(checkpoint)
    for name, w0 in pretrained.items():
        w = payload["model"][name]
        payload["model"][name] = (alpha * w.float() + (1.0 - alpha) * w0.float()).to(w.dtype)
    payload.setdefault("training_state", {})["interpolated_toward_pretrained"] = alpha
    return payload


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--alpha", required=True, help="comma-separated weights of the trained body (1 = unchanged)")
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args()
    alphas = [float(a) for a in args.alpha.split(",")]
    pretrained = whisper_encoder_values(load_model(args.checkpoint)[0])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for alpha in alphas:
        out = args.out_dir / f"alpha{alpha:g}.pt"
        result = interpolate(args.checkpoint, alpha, pretrained)
        atomic_write(out, lambda f: torch.save(result, f))
        print(f"{out}: {len(pretrained)} pretrained tensors at alpha {alpha:g}")


if __name__ == "__main__":
    main()
