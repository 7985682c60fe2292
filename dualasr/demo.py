"""`dualasr demo` (what `make demo` runs): the built-in model on real recorded speech, both modes.

Uses the ONNX export shipped beside the built-in checkpoint (another checkpoint, or the ExecuTorch
backend, is exported once into the user's cache folder, with progress), then streams
the held-out real-speech test set (the Asterisk prompts' fixed 20% split, never trained on)
through the torch-free runtime in streaming and in full-context mode, then the same for real_eval
(dualasr.realspeech: 8 speakers nothing is trained on, built once into the cache), and prints
sample transcripts with WER, RTF and the paper's emission latency (Latency@50/@90) for each mode,
greedy; then the WER and RTF of beam search with a token n-gram LM fused (`dualasr lm`, built once
into the cache from the offline text sources, without any sentence overlapping either test set).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from dualasr import MODES
from dualasr.fileio import atomic_write, user_cache_dir

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default" / "model.pt"
# The built-in model until stop 29: the 0.96M `tiny` conformer (34 character pieces, stateless
# predictor), which sherpa-onnx runs as is (the built-in Transformer does not fit its contract).
TINY_MODEL = Path(__file__).parent / "assets" / "tiny" / "model.pt"


def default_checkpoint() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise FileNotFoundError(
            f"the built-in model {DEFAULT_MODEL} is missing from this installation; "
            f"train one with benchmarks/train_default.sh or pass a checkpoint"
        )
    return DEFAULT_MODEL


BACKEND_FORMATS = {"onnxruntime": "onnx", "executorch": "executorch"}


def cached_export(checkpoint: Path, backend: str = "onnxruntime", precision: str = "fp32", chunk_ms: int = 320) -> Path:
    """Export `checkpoint` for `backend` at `precision` into the user's cache folder once; later
    calls reuse it. A progress line on stderr (an ExecuTorch export takes minutes); the
    converters' own output goes to the export's export.log."""
    from dualasr.export.cli import export_quietly
    from dualasr.export.exporter import ExportError

    fmt = BACKEND_FORMATS[backend]
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    out = user_cache_dir() / f"export-{digest}-{chunk_ms}ms-{fmt}-{precision}"
    if not (out / "manifest.json").is_file():
        print(f"exporting {checkpoint.name} to {fmt} {precision} in {out} (first run only)", flush=True)
        quantize = "int8" if precision == "int8" else "none"
        manifest, log = export_quietly(checkpoint, out, [fmt], [quantize], [chunk_ms])
        if manifest["errors"]:
            raise ExportError(f"the {fmt} export failed: {manifest['errors']}; see {log}")
    return out


LM_ORDER = 5  # the built-in model's 256 word pieces: 5 span a word or two (benchmarks/results/lm_oov_penalty.json)
LM_BEAM = 8  # the beam the runtime's fusion defaults were chosen with (benchmarks/results/lm_fusion.json)


def cached_lm(export_dir: Path, exclude_texts: list[str]) -> Path:
    """`dualasr lm` for this export's tokenizer into the user's cache folder once (its text sources
    are Debian packages: a FileNotFoundError names the one missing)."""
    from dualasr.lm import DEFAULT_SOURCES, build_lm, tokenizer_of
    from dualasr.runtime.lm import FORMAT_VERSION

    tokenizer = tokenizer_of(export_dir)
    key = hashlib.sha256("\n".join([tokenizer.sha256, str(LM_ORDER), str(FORMAT_VERSION), *DEFAULT_SOURCES,
                                   *exclude_texts]).encode())
    out = user_cache_dir() / f"lm-{key.hexdigest()[:12]}.npz"
    if not out.is_file():
        print(f"building the token n-gram LM in {out} (first run only)", flush=True)
        lm, _ = build_lm(tokenizer, DEFAULT_SOURCES, exclude_texts=exclude_texts, order=LM_ORDER)
        atomic_write(out, lm.save_to)
    return out


def real_test_set(limit: int = 0):
    """The real recorded prompts held out from training (fixed split by name)."""
    from dualasr.corpus import read_asterisk_prompts, split_asterisk

    _, test = split_asterisk(read_asterisk_prompts())
    return test[:limit] if limit > 0 else test


def real_eval_set():
    """real_eval (dualasr.realspeech: 8 speakers nothing is trained on), built once into the user's
    cache folder from the packages `scripts/setup.sh` fetched (seconds; later runs reuse the audio).

    Raises:
        OSError, ValueError: a package is missing or unreadable (the message names it).
    """
    from dualasr.data import read_manifest
    from dualasr.realspeech import build_real_sets

    return read_manifest(build_real_sets(user_cache_dir() / "realspeech")["real_eval"])


def _score_set(name: str, utts: list, export_dir: Path, backend: str, precision: str, lm, show: int) -> dict[str, dict]:
    """Both modes over one test set: greedy (sample transcripts, WER, RTF, Latency@50/@90), then
    beam search with the LM fused when there is one. Returns {mode: summary}."""
    from dualasr.audio import load_audio
    from dualasr.metrics import wer
    from dualasr.runtime.recognizer import Recognizer
    from dualasr.runtime.simulate import simulate_set
    from dualasr.tokenizer import normalize_text

    items = [{"samples": load_audio(u.audio), "sample_rate": 16000, "name": u.id} for u in utts]
    refs = [normalize_text(u.text) for u in utts]
    audio_min = sum(len(it["samples"]) for it in items) / 16000 / 60
    print(f"\n##### {name}: {len(items)} utterances, {audio_min:.1f} min, {backend} {precision}")
    summaries: dict[str, dict] = {}
    for mode in MODES:
        rec = Recognizer(export_dir, backend=backend, precision=precision, mode=mode, threads=1)
        sim = simulate_set(rec, items)
        hyps = [r.text for r in sim.results]
        s = sim.summary()
        s["wer"] = 100.0 * wer(refs, hyps)
        summaries[mode] = s
        print(f"\n== {mode} mode" + (f" ({rec.chunk_ms} ms chunks)" if mode == "streaming" else ""))
        for ref, hyp, u in list(zip(refs, hyps, utts))[:show]:
            print(f"  {u.id:28s} ref: {ref}\n  {'':28s} hyp: {hyp}")
        lat = (f"Latency@50 {s['latency_at_50_s'] * 1000:.0f} ms  @90 {s['latency_at_90_s'] * 1000:.0f} ms"
               if mode == "streaming" else "")
        print(f"  WER {s['wer']:.1f}%  RTF {s['rtf']:.3f}  {lat}")
        if lm is not None:
            rec = Recognizer(export_dir, backend=backend, precision=precision, mode=mode, threads=1,
                             decoding="beam", beam=LM_BEAM, lm=lm)
            fused = simulate_set(rec, items)
            s["beam_lm"] = {"beam": LM_BEAM, "lm_order": LM_ORDER, "lm_weight": rec.lm_weight,
                            "lm_token_bonus": rec.lm_token_bonus, "lm_oov_penalty": rec.lm_oov_penalty,
                            "rtf": fused.summary()["rtf"],
                            "wer": 100.0 * wer(refs, [r.text for r in fused.results])}
            print(f"  beam {LM_BEAM} + LM: WER {s['beam_lm']['wer']:.1f}%  RTF {s['beam_lm']['rtf']:.3f}")
    return summaries


def run_demo(checkpoint: Path | None = None, limit: int = 0, backend: str = "onnxruntime",
             precision: str = "fp32", show: int = 5) -> dict[str, dict]:
    """Both test sets (real_eval skipped, with the reason, when its packages are missing).
    Returns {set name: {"utterances": n, "modes": {mode: summary}}}."""
    from dualasr.runtime.cli import default_export_dir
    from dualasr.runtime.lm import TokenNgramLM

    checkpoint = checkpoint or default_checkpoint()
    shipped = default_export_dir()  # the built-in model's ONNX export ships beside it
    use_shipped = checkpoint == DEFAULT_MODEL and backend == "onnxruntime" and (shipped / "manifest.json").is_file()
    export_dir = shipped if use_shipped else cached_export(checkpoint, backend, precision)
    test_set = real_test_set()
    sets = {"asterisk_test": ("held-out Asterisk prompts (one speaker, real recordings)", test_set)}
    try:
        eval_set = real_eval_set()
        sets["real_eval"] = ("real_eval (8 speakers it never heard, real recordings)", eval_set)
    except (OSError, ValueError) as e:  # setup fetches its packages; a bare install may lack them
        eval_set = []
        print(f"(the 8-speaker set is skipped: {e})")
    try:  # every test sentence (whatever --limit) is kept out of the LM's text
        lm = TokenNgramLM.load(cached_lm(export_dir, [u.text for u in [*test_set, *eval_set]]))
    except FileNotFoundError as e:  # a text source's Debian package is not installed
        lm = None
        print(f"(beam search + LM skipped: {e})")
    results: dict[str, dict] = {}
    for key, (name, utts) in sets.items():
        shown = utts[:limit] if limit > 0 else utts
        results[key] = {"utterances": len(shown),
                        "modes": _score_set(name, shown, export_dir, backend, precision, lm, show)}
    return results


def main(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0 (0: all test prompts), got {args.limit}")
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    sets = run_demo(checkpoint, args.limit, args.backend, args.precision)
    if getattr(args, "json", None):
        import json
        import sys

        record = {"command": "dualasr " + " ".join(sys.argv[1:]), "checkpoint": str(checkpoint or DEFAULT_MODEL),
                  "backend": args.backend, "precision": args.precision, "limit": args.limit, "sets": sets}
        atomic_write(Path(args.json), (json.dumps(record, indent=1, default=float) + "\n").encode())
        print(f"\nsummary written to {args.json}")
    return 0
