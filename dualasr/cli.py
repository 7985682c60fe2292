"""The `dualasr` command. Each subcommand imports its own module lazily, so `transcribe` on an
onnxruntime/ExecuTorch export never imports torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualasr import MODES

# The extra that installs what each command needs beyond a plain install (the runtime only: numpy,
# onnxruntime, sentencepiece, soundfile). transcribe needs more only for the
# torch, executorch and coreml backends; demo reads the test set with the corpus code (train) and
# exports checkpoints other than the built-in one (export).
_EXTRA_FOR_COMMAND = {"train": "train", "corpus": "train", "export": "export", "verify": "export",
                      "demo": "all", "transcribe": "export", "bench": "bench", "lm": "train"}


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    """The search options `transcribe` and `bench` share (read by dualasr.runtime.cli.decoding_options)."""
    p.add_argument("--decoding", choices=["greedy", "beam"],
                   help="greedy (default) or modified beam search (the default with --lm)")
    p.add_argument("--beam", type=int, default=4, help="beam size for --decoding beam (default 4)")
    p.add_argument("--lm", help="token n-gram LM file (`dualasr lm`) fused into beam search")
    p.add_argument("--lm-weight", type=float, help="the LM's weight (default: the runtime's, see README)")
    p.add_argument("--lm-token-bonus", type=float, help="score added per token with --lm (default: the runtime's)")
    p.add_argument("--lm-oov-penalty", type=float,
                   help="score added per word the LM's text never had, with --lm (default: the runtime's; 0: off)")


def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import train

    cfg = load_config(args.config, args.set)
    out = Path(args.out or f"runs/{cfg.name}")
    metrics = train(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress)
    if "wer_streaming" in metrics:
        print(f"final valid WER: streaming {metrics['wer_streaming']:.1f}%  full {metrics['wer_full']:.1f}%")
    print(f"checkpoints in {out}")
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from .corpus import main as corpus_main

    return corpus_main(args.rest, prog="dualasr corpus")


def _export(args: argparse.Namespace) -> int:
    from .export.cli import main as export_main
    from .fileio import signals_raise

    with signals_raise():  # the temp export folder is removed on SIGTERM/SIGHUP too
        return export_main(args)


def _verify(args: argparse.Namespace) -> int:
    from .export.verify import main as verify_main

    return verify_main(args)


def _transcribe(args: argparse.Namespace) -> int:
    from .runtime.cli import transcribe_main

    return transcribe_main(args)


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main
    from .fileio import signals_raise

    with signals_raise():  # the temp work folder is removed on SIGTERM/SIGHUP too
        return bench_main(args)


def _lm(args: argparse.Namespace) -> int:
    from .lm import main as lm_main

    return lm_main(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dualasr", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the built-in model on held-out real recorded speech, both modes")
    d.add_argument("checkpoint", nargs="?", help="checkpoint (default: the built-in model)")
    d.add_argument("--limit", type=int, default=0, help="only the first N test prompts")
    d.add_argument("--backend", choices=["onnxruntime", "executorch"], default="onnxruntime")
    d.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    d.add_argument("--json", help="also write the per-mode summary (WER, RTF, latency) to this JSON file")
    d.set_defaults(func=_demo)

    t = sub.add_parser("train", help="train a dual-mode RNN-T")
    t.add_argument("--config", default="tiny", help="preset name (tiny, tiny-lstm, tiny-contextnet, "
                   "conformer-s, conformer-m, contextnet-s) or a YAML/JSON file")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=500 (repeatable)")
    t.add_argument("--out", help="output folder (default runs/<config name>)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-latest.pt")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs still printed)")
    t.set_defaults(func=_train)

    c = sub.add_parser("corpus", help="synthesize an English speech corpus offline (see --help)",
                       add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(func=_corpus)

    e = sub.add_parser("export", help="export a checkpoint to ONNX / ExecuTorch / Core ML / sherpa-onnx")
    e.add_argument("checkpoint", nargs="?", help="checkpoint file (default: the built-in model)")
    e.add_argument("--out", required=True, help="export folder")
    e.add_argument("--formats", default="onnx,executorch,coreml",
                   help="comma list of onnx, executorch, coreml, sherpa-onnx")
    e.add_argument("--quantize", default="none,int8", help="comma list of none, int8")
    e.add_argument("--chunk-ms", default="320", help="comma list of streaming chunk sizes in ms (e.g. 160,320,640)")
    e.add_argument("--calibration", help="manifest for static int8 calibration (optional)")
    e.add_argument("--config", help="export a preset (or config file) with random weights instead of a checkpoint, "
                   "to size and time a model before training it (transcripts mean nothing; the manifest says random_init)")
    e.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="with --config: override a config value (repeatable), e.g. model.num_layers=12")
    e.add_argument("--replace", action="store_true",
                   help="replace an existing export at --out even if it holds formats this run does not rebuild")
    e.add_argument("--jobs", type=int, default=0,
                   help="writers run at once in worker processes (default 0: one per core, at most 4; 1: in this process)")
    e.set_defaults(func=_export)

    v = sub.add_parser("verify", help="check an export against its checkpoint")
    v.add_argument("export_dir")
    v.add_argument("--audio", nargs="*", help="audio files to verify on (default: 4 held-out real prompts "
                   "when the Asterisk prompts are installed, else pseudo-speech)")
    v.add_argument("--json", help="write the report here")
    v.set_defaults(func=_verify)

    r = sub.add_parser("transcribe", help="transcribe audio with an export (torch-free runtime)")
    r.add_argument("export_dir", nargs="?", help="export folder (default: the built-in model's export)")
    r.add_argument("audio", nargs="*")
    r.add_argument("--mode", choices=MODES, default="streaming")
    r.add_argument("--backend", choices=["onnxruntime", "executorch", "coreml", "torch"], default="onnxruntime")
    r.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    r.add_argument("--chunk-ms", type=int, help="which exported chunk size (default: the first)")
    add_decoding_arguments(r)
    r.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = runtime default)")
    r.add_argument("--realtime", action="store_true", help="pace input at wall-clock speed")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=_transcribe)

    lm = sub.add_parser("lm", help="build a token n-gram LM for beam search (from offline English text)")
    from .lm import add_arguments as add_lm_arguments

    add_lm_arguments(lm)
    lm.set_defaults(func=_lm)

    b = sub.add_parser("bench", help="benchmark matrix over an export (+ peers, regression gate)")
    from .bench import add_arguments as add_bench_arguments  # stdlib-only import: cheap

    add_bench_arguments(b)
    add_decoding_arguments(b)
    b.set_defaults(func=_bench)
    return p


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """A subcommand's arguments parsed intermixed, so options may come between positionals:
    `dualasr transcribe EXPORT --mode full a.wav` (plain parsing gives the export folder and an
    empty audio list to the first positional run, then refuses a.wav)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and argv[0] in sub.choices:
        args = sub.choices[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from .fileio import Terminated

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["corpus"]:
        # Everything after `corpus` is the corpus builder's own command line: argparse's REMAINDER
        # would refuse a leading option such as --help or --num-train.
        args = argparse.Namespace(command="corpus", rest=argv[1:], func=_corpus)
    else:
        args = _parse(build_parser(), argv)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as e:
        if not e.name or e.name.partition(".")[0] == "dualasr":
            raise  # our own module missing: a broken install, not an optional package
        extra = _EXTRA_FOR_COMMAND.get(args.command, "all")
        print(f"dualasr {args.command}: error: this needs the Python package '{e.name.partition('.')[0]}', "
              f"which a plain install (the runtime only) lacks; install dualasr[{extra}]: "
              f"pip install 'dualasr[{extra}]'", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, OSError) as e:
        # Bad input: say what is wrong and what to do, no traceback from deep inside.
        print(f"dualasr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dualasr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"dualasr {args.command}: {e}; its temporary files were removed", file=sys.stderr)
        return 128 + e.signum


if __name__ == "__main__":
    sys.exit(main())
