"""`dualasr bench`: the on-device comparison matrix, peers in the same run, and a regression gate.

    dualasr bench EXPORT_DIR --data test.jsonl [--json out.json] [--markdown out.md] [--plots DIR]
                  [--backends onnxruntime,executorch,torch,sherpa-onnx] [--peers pocketsphinx,whisper-tiny.en]
                  [--threads 1,all] [--max-utts N] [--compare baseline.json --max-regression 10%]
    dualasr bench --results new.json --compare baseline.json      (gate saved results, no run)

Matrix: mode {streaming at each exported chunk size, full} x precision {fp32, int8} x backend
{onnxruntime, executorch, torch eager, sherpa-onnx where the export has it} x threads {1, all},
plus peer recognizers (pocketsphinx, Whisper tiny.en) on the same audio. One module per job:

  cells.py    the matrix: cells, what the export and machine can run, utterance selection
  worker.py   the worker protocol: each cell, the FLOP count and the microbenchmark in a fresh process
  cell.py     one cell: load, warm up, simulate every utterance, metrics (from Recognizer.timers)
  peers.py    sherpa-onnx, pocketsphinx and Whisper tiny.en behind the Recognizer API
  peak.py     matmul microbenchmark of this machine
  flops.py    counted FLOPs of the exported graphs (torch's FlopCounterMode)
  ratios.py   compute against the peak, headline ratios, targets
  schema.py   the results JSON: schema_version 1 (benchmarks/README.md), validation, writing
  gate.py     the --compare regression gate
  report.py   the Markdown report; plots.py the PNG plots
  run.py      the parent process; cli.py the command's options and entry point

Only the torch-eager cells, the FLOPs counter and (through its Python bindings) the ExecuTorch
cells import torch. Importing this package imports only the standard library.
"""

from .cells import Cell, parse_threads, plan_cells, select_utterances
from .cli import add_arguments, main
from .gate import compare_results, parse_regression
from .plots import write_plots
from .report import markdown, write_markdown
from .run import run_bench
from .schema import SCHEMA_VERSION, load_results, validate_results

__all__ = [
    "SCHEMA_VERSION",
    "Cell",
    "add_arguments",
    "compare_results",
    "load_results",
    "main",
    "markdown",
    "parse_regression",
    "parse_threads",
    "plan_cells",
    "run_bench",
    "select_utterances",
    "validate_results",
    "write_markdown",
    "write_plots",
]
