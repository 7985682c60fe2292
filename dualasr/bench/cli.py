"""`dualasr bench` options and entry point (dualasr/cli.py calls add_arguments and main)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cells import FEED_MS, MODES, OUR_BACKENDS, PEERS, PRECISIONS, missing_modules, parse_threads, split_list
from .gate import compare_results, parse_regression
from .plots import write_plots
from .ratios import ok_cells
from .report import markdown, write_markdown
from .run import run_bench
from .schema import load_results, write_json

__all__ = ["add_arguments", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `dualasr bench` options (dualasr/cli.py calls this)."""
    p.add_argument("export_dir", nargs="?", help="export folder (from `dualasr export`); not needed with --results")
    p.add_argument("--data", help="JSONL manifest of test audio ({audio, text[, speech_end]} per line)")
    p.add_argument("--json", help="write the results JSON here (schema in benchmarks/README.md)")
    p.add_argument("--markdown", help="write the Markdown report here (default: beside --json, .md)")
    p.add_argument("--plots", help="folder for the PNG plots (default: beside --json)")
    p.add_argument("--backends", default=",".join(OUR_BACKENDS), help="comma list of " + ", ".join(OUR_BACKENDS))
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma list of {', '.join(PEERS)} (sherpa-onnx here means --backends sherpa-onnx); 'none' for none")
    p.add_argument("--threads", default="1,all", help="comma list of thread counts; 'all' = every core (default 1,all)")
    p.add_argument("--precisions", default="fp32,int8", help="comma list of fp32, int8")
    p.add_argument("--modes", default="streaming,full", help="comma list of streaming, full")
    p.add_argument("--chunk-ms", help="streaming chunk sizes to run (default: every exported one)")
    p.add_argument("--max-utts", type=int, help="evenly spaced subset of N utterances")
    p.add_argument("--feed-ms", type=float, default=FEED_MS, help="audio piece size fed to the streams (default 100)")
    p.add_argument("--repeat", type=int, default=1, help="timed passes per cell; timings from the fastest (default 1)")
    p.add_argument("--rounds", type=int, default=1,
                   help="turns over all cells, each a fresh subprocess of --repeat passes; every cell keeps its "
                        "fastest round, so load that comes and goes hits all cells alike (default 1)")
    p.add_argument("--cell-timeout", type=float, default=1800.0, help="seconds before a cell is abandoned")
    p.add_argument("--no-compute", action="store_true", help="skip FLOP counting and the matmul microbenchmark")
    p.add_argument("--results", help="gate/report an existing results JSON instead of running the matrix")
    p.add_argument("--compare", help="baseline results JSON: exit 1 on a regression beyond the limits")
    p.add_argument("--max-regression", default="10%", help="RTF and size: largest allowed relative increase (default 10%%)")
    p.add_argument("--max-wer-regression", type=float, default=1.0,
                   help="WER: largest allowed increase in absolute percentage points (default 1.0)")
    p.add_argument("--rtf-floor", type=float, default=0.0,
                   help="do not gate RTF when baseline and new are both below this (timer noise)")
    p.add_argument("--allow-missing", action="store_true", help="a baseline cell that did not run now is not a failure")


def main(args: argparse.Namespace) -> int:
    """CLI entry. Exit 0: done (and the gate passed); 1: a cell errored or the gate failed;
    bad input raises ValueError/FileNotFoundError (dualasr.cli prints it, exit 2)."""
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    max_rel = parse_regression(args.max_regression)
    can_plot = not missing_modules(("matplotlib",))  # a plain install (the runtime) has no matplotlib
    if args.plots and not can_plot:
        raise ValueError("--plots needs matplotlib, which this installation lacks: pip install 'dualasr[bench]'")
    if args.results:
        results = load_results(args.results)
    else:
        if not args.export_dir or not args.data:
            raise ValueError("give an export folder and --data MANIFEST (or --results FILE to gate saved results)")
        backends = split_list(args.backends, OUR_BACKENDS + PEERS, "backends")
        peers = split_list(args.peers, PEERS + ("sherpa-onnx",), "peers")
        if "sherpa-onnx" in peers:  # our model in sherpa-onnx's engine: a backend column of ours
            peers.remove("sherpa-onnx")
            backends = list(dict.fromkeys([*backends, "sherpa-onnx"]))
        peers += [b for b in backends if b in PEERS and b not in peers]
        backends = [b for b in backends if b in OUR_BACKENDS]
        chunks = [int(v) for v in args.chunk_ms.split(",")] if args.chunk_ms else None
        if (not 0 < args.feed_ms <= 10_000 or args.repeat < 1 or args.rounds < 1
                or (args.max_utts is not None and args.max_utts < 1)):
            raise ValueError(f"--feed-ms must be in (0, 10000] ms, --repeat >= 1, --rounds >= 1 and --max-utts >= 1; "
                             f"got {args.feed_ms:g}, {args.repeat}, {args.rounds}, {args.max_utts}")
        from dualasr.runtime.cli import decoding_options

        results = run_bench(
            args.export_dir, args.data, backends=backends, peers=peers, threads=parse_threads(args.threads),
            precisions=split_list(args.precisions, PRECISIONS, "precisions"),
            modes=split_list(args.modes, MODES, "modes"), chunk_ms=chunks, max_utts=args.max_utts,
            feed_ms=args.feed_ms, repeat=args.repeat, rounds=args.rounds, cell_timeout_s=args.cell_timeout,
            compute_figures=not args.no_compute, decoding=decoding_options(args), log=say,
        )
        out_json = Path(args.json) if args.json else None
        plots_dir = Path(args.plots) if args.plots else (out_json.parent if out_json else None)
        if plots_dir is not None and not can_plot:
            say("no plots: matplotlib is not installed (pip install 'dualasr[bench]')")
        elif plots_dir is not None:
            results["plots"] = {k: os.path.relpath(plots_dir / v, (out_json or plots_dir / "x").parent)
                                for k, v in write_plots(results, plots_dir).items()}
        if out_json is not None:
            write_json(out_json, results)
            say(f"results: {out_json}")
        md = Path(args.markdown) if args.markdown else (out_json.with_suffix(".md") if out_json else None)
        if md is not None:
            write_markdown(results, md)
            say(f"report: {md}")
        elif out_json is None:
            print(markdown(results))  # nowhere to write: the report goes to stdout
    print(_summary(results))
    status = 0
    errored = [c for c in results["cells"] if c.get("status") == "error"]
    if errored:
        print(f"{len(errored)} cell(s) failed: " + ", ".join(c["id"] for c in errored), file=sys.stderr)
        status = 1
    if args.compare:
        base = load_results(args.compare)
        passed, lines = compare_results(results, base, max_rel, args.max_wer_regression, args.allow_missing, args.rtf_floor)
        print("\n".join(lines), file=sys.stdout if passed else sys.stderr)
        if not passed:
            status = 1
    return status


def _summary(results: dict) -> str:
    ok = ok_cells(results)
    lines = [f"{len(ok)} of {len(results['cells'])} cells ran"]
    for t in results.get("targets", []):
        lines.append(f"  [{t['status']}] {t['name']}: {t['measured']} (goal {t['goal']})")
    return "\n".join(lines)
