#!/usr/bin/env bash
# The recorded command that scores the built-in model's shipped export on real speech by speakers
# it never heard (data/real/real_eval.jsonl, built by dualasr.realspeech: 8 speakers, 40
# utterances), beside the bench peers Whisper tiny.en and pocketsphinx on the same audio.
# Writes benchmarks/results/real_eval.{json,md}.
set -euo pipefail
python -m dualasr.realspeech data/real
dualasr bench "${EXPORT:-dualasr/assets/default/export}" --data data/real/real_eval.jsonl \
  --json "${JSON:-benchmarks/results/real_eval.json}" --plots benchmarks/results/real_eval-plots --backends onnxruntime \
  --peers pocketsphinx,whisper-tiny.en --threads 1 --precisions fp32,int8 --modes streaming,full \
  --no-compute "$@"
