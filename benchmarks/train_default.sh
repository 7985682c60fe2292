#!/usr/bin/env bash
# The recorded command that trains the built-in model (dualasr/assets/default): the `whisper-tiny`
# preset, a dual-mode Transformer started from Whisper tiny.en's encoder, trained jointly in both
# modes with in-place distillation (see README, "The built-in model").
#
# Data, all offline: the multi-voice TTS corpus (natural WordNet/fortunes sentences and templates,
# 7 engines, 16+ voices, full augmentation), the Asterisk prompts' training split and the extra real
# clips of dualasr.realspeech (other speakers). Never trained on: the Asterisk real_test split and
# the real_eval set (8 speakers), which `benchmarks/eval_default.sh` scores.
#
#   bash benchmarks/train_default.sh                 # corpus (resumable), then a fresh run
#   RESUME=1 bash benchmarks/train_default.sh        # continue runs/default after an interruption
#   INIT=benchmarks/resume/whisper-tiny.pt bash benchmarks/train_default.sh   # from the committed weights
set -euo pipefail
OUT=${OUT:-runs/default}
python -m dualasr.corpus data/mv --recipe multivoice --num-train "${NUM_TRAIN:-12000}" --num-valid 300 \
  --num-test 300 --asterisk --jobs "${JOBS:-2}"
python -m dualasr.realspeech data/real
args=(--config whisper-tiny --out "$OUT" --no-progress
  --set data.train=data/mv/train.jsonl,data/mv/real_train.jsonl,data/real/real_train_extra.jsonl
  --set data.valid=data/mv/real_test.jsonl,data/mv/valid.jsonl
  --set train.valid_max_utts=215 --set train.max_minutes="${MINUTES:-0}")
[ -n "${INIT:-}" ] && args+=(--set train.init_from="$INIT")
[ -n "${RESUME:-}" ] && args+=(--resume)
OMP_NUM_THREADS=${THREADS:-2} dualasr train "${args[@]}" "$@"
