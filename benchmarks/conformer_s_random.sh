#!/usr/bin/env bash
# Issue 15's recorded run: a random-weight conformer-s (stateless predictor, so sherpa-onnx can run
# the same model) exported at 160 and 320 ms, then benched on 10 real utterances by our runtime
# (onnxruntime and ExecuTorch) and sherpa-onnx side by side, 1 thread (real clips of
# dualasr.realspeech's training share: speed needs real audio, not held-out audio). Writes benchmarks/results/conformer-s-random.{json,md}.
# Its WER means nothing (random weights); the ratios are what it is for. Timings: the fastest of 5
# passes per cell (one pass varied by more than the changes measured). The ExecuTorch export takes
# about 10 minutes on 2 cores; FORMATS=onnx,sherpa-onnx leaves it out.
set -euo pipefail
OUT=${OUT:-runs/conformer-s-random}
FORMATS=${FORMATS:-onnx,executorch,sherpa-onnx}
[ -f "$OUT/manifest.json" ] || dualasr export --config conformer-s --set model.predictor=stateless \
  --out "$OUT" --formats "$FORMATS" --quantize none,int8 --chunk-ms 320,160
python -m dualasr.realspeech data/real
backends=onnxruntime,sherpa-onnx
case "$FORMATS" in *executorch*) backends+=,executorch;; esac
dualasr bench "$OUT" --data data/real/real_train_extra.jsonl --max-utts 10 --threads 1 --backends "$backends" \
  --repeat 5 --peers none --json benchmarks/results/conformer-s-random.json --plots benchmarks/results/conformer-s-random-plots "$@"
