"""Does our front end, or the missing 30 s padding, cost Whisper's encoder its accuracy?
Whisper tiny.en (CTranslate2, greedy) decodes the same real utterances from four encoder outputs:

  log-mel, 30 s      Whisper's own log-mel, padded to 30 s (what faster-whisper feeds it);
  log-mel, exact     the utterance's frames alone through the encoder (what our encoder sees: no
                     padding), placed over the padded run's output so that the decoder still sees
                     30 s (given the short output alone, Whisper's decoder repeats itself forever);
  fbank->mel, 30 s   our kaldi fbank through the checkpoint's fitted input projection, padded;
  fbank->mel, exact  the projection, utterance frames alone, as above.

The decoder is Whisper's own in every row, so the rows differ by the encoder's input alone.

    python benchmarks/whisper_frontend_check.py --checkpoint runs/default/warm.pt \
        --data data/real/real_eval.jsonl --json benchmarks/results/whisper_frontend_check.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dualasr.audio import load_audio
from dualasr.checkpoint import load_model
from dualasr.data import load_utterances
from dualasr.features import compute_fbank
from dualasr.fileio import atomic_write
from dualasr.metrics import wer
from dualasr.pretrained import whisper_log_mel, whisper_tiny_en_path
from dualasr.pseudolabel import WhisperLabeler
from dualasr.tokenizer import normalize_text

FRAMES_30S = 3000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a whisper-tiny checkpoint (its stem's input projection)")
    p.add_argument("--data", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--limit", type=int, default=0, help="first N utterances (0: all)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model, _, _ = load_model(args.checkpoint)
    stem = model.encoder.subsampling
    whisper = WhisperLabeler(whisper_tiny_en_path().parent, english_only=True, threads=1)
    utts = load_utterances(args.data)[: args.limit or None]
    rows = {"log-mel, 30 s": [], "log-mel, exact": [], "fbank->mel, 30 s": [], "fbank->mel, exact": []}
    refs = []
    t0 = time.time()
    for u in utts:
        samples = torch.from_numpy(load_audio(u.audio))
        padded = torch.cat([samples, torch.zeros(FRAMES_30S * 160 - len(samples))]) if len(samples) < FRAMES_30S * 160 else samples
        mel_30s = whisper_log_mel(padded)[:FRAMES_30S].T.numpy()  # [80, 3000]
        n = len(samples) // 160
        fbank = compute_fbank(samples)
        with torch.no_grad():
            mapped = stem.input_proj(stem.normalize(fbank)).T.numpy()  # [80, T]; kaldi frame i ~ whisper frame i + 1
        m = min(n - 1, mapped.shape[1])
        mapped_30s = mel_30s.copy()
        mapped_30s[:, 1:m + 1] = mapped[:, :m]
        exact = whisper_log_mel(samples).T.numpy()[:, :n]
        mapped_exact = exact.copy()
        mapped_exact[:, 1:m + 1] = mapped[:, :m]
        n_even = n - n % 2
        padded_out = {"log-mel": whisper.encode(mel_30s), "fbank->mel": whisper.encode(mapped_30s)}
        exact_out = {"log-mel": whisper.encode(exact[:, :n_even]), "fbank->mel": whisper.encode(mapped_exact[:, :n_even])}
        for feats in ("log-mel", "fbank->mel"):
            # "exact": the utterance's frames encoded alone, then placed over the padded run's
            # output, so the decoder still sees 30 s (alone it never stops: it repeats itself).
            spliced = padded_out[feats].copy()
            spliced[: exact_out[feats].shape[0]] = exact_out[feats]
            rows[f"{feats}, 30 s"].append(normalize_text(whisper.decode(padded_out[feats][None])[0]))
            rows[f"{feats}, exact"].append(normalize_text(whisper.decode(spliced[None])[0]))
        refs.append(normalize_text(u.text))
    result = {
        "command": "python benchmarks/whisper_frontend_check.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items()),
        "data": args.data, "utterances": len(utts), "checkpoint": args.checkpoint, "decoder": "Whisper tiny.en greedy (CTranslate2)",
        "wer": {name: round(100 * wer(refs, hyps), 1) for name, hyps in rows.items()},
        "seconds": round(time.time() - t0, 1),
        "examples": [{"ref": r, **{k: v[i] for k, v in rows.items()}} for i, r in enumerate(refs[:5])],
    }
    atomic_write(Path(args.json), (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps(result["wer"], indent=1))


if __name__ == "__main__":
    main()
