"""Speed-perturbed copies of a manifest's audio (Kaldi's 0.9 / 1.1: tempo, pitch and formants move
together, as a longer or shorter vocal tract would), for the few real speakers we may train on.

    python benchmarks/speed_perturb.py data/gpu/real_train.jsonl runs/perturbed --factors 0.9,1.1

Writes OUT/<manifest stem>-sp.jsonl listing every copy (ids get a `-sp0.9` suffix, audio as 16 kHz
wav under OUT/<stem>-sp/); the original utterances are not repeated in it. `speech_end` and
`duration` are scaled with the audio.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from dualasr.audio import load_audio, save_wav
from dualasr.data import read_manifest, write_manifest
from dualasr.polyphase import resample_poly


def perturb(manifest: Path, out: Path, factors: list[float]) -> Path:
    folder = out / f"{manifest.stem}-sp"
    folder.mkdir(parents=True, exist_ok=True)
    # Played `factor` times faster: resampled by 1/factor at the same sample rate.
    ratios = {factor: Fraction(1 / factor).limit_denominator(100) for factor in factors}

    def scaled(seconds: float | None, ratio: Fraction) -> float | None:
        return None if seconds is None else round(seconds * float(ratio), 3)

    copies = []
    for u in read_manifest(manifest):
        samples = load_audio(u.audio)
        for factor, ratio in ratios.items():
            target = folder / f"{Path(u.audio).stem}-sp{factor:g}.wav"
            if not target.is_file():
                save_wav(target, resample_poly(samples, ratio.numerator, ratio.denominator).astype("float32"))
            copies.append(replace(u, id=f"{u.id}-sp{factor:g}", audio=str(target),
                                  duration=scaled(u.duration, ratio), speech_end=scaled(u.speech_end, ratio)))
    result = out / f"{manifest.stem}-sp.jsonl"
    write_manifest(result, copies)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifests", nargs="+", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--factors", default="0.9,1.1")
    args = p.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    for manifest in args.manifests:
        print(perturb(manifest, args.out, factors))


if __name__ == "__main__":
    main()
