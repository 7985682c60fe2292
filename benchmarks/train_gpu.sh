#!/usr/bin/env bash
# The built-in model's GPU continuation: from INIT (default: the committed resume point,
# benchmarks/resume/whisper-tiny.pt; see below for the built-in model's own start), several recipes at
# once on one GPU (an 8M model leaves a GPU mostly idle, so they share it), each for MINUTES, both
# modes every step with in-place distillation. Writes per recipe RUNS/<name>/ (metrics.jsonl,
# checkpoints) and, into DEST, <name>.pt: the best checkpoint by the validation WER (held-out
# Asterisk prompts + TTS voices; never real_eval) as float16 weights, plus <name>.log; then
# DEST/soup.pt, the mean of those and the starting weights: the built-in model since stop 30.
#
# Data: DATA holds the corpora as packed by benchmarks/pack_opus.py (the GPU machine here takes
# at most 64 MiB with the repo, so the TTS part is a seeded subset at 17 kbit/s Opus, see its
# pack.json). The real speakers we may train on (Asterisk training split, the extra real clips)
# get Kaldi-style 0.9 / 1.1 speed-perturbed copies (benchmarks/speed_perturb.py).
#
#   DEST=runs/gpu-out bash benchmarks/train_gpu.sh
#
# The built-in model since stop 30 is DEST/soup.pt of that command (MINUTES=6.5) from the step-13992
# weights, which the resume point held until then:
#   git show 2669a2b:benchmarks/resume/whisper-tiny.pt > runs/step13992.pt
#   INIT=runs/step13992.pt DEST=runs/gpu-out MINUTES=6.5 bash benchmarks/train_gpu.sh
set -euo pipefail
DATA=${DATA:-data/gpu}
RUNS=${RUNS:-runs/gpu}
DEST=${DEST:-$RUNS}
MINUTES=${MINUTES:-7}
DEVICE=${DEVICE:-cuda}
INIT=${INIT:-benchmarks/resume/whisper-tiny.pt}
PY=${PY:-python3}
NAMES=${NAMES:-reg reg-half-lr plain}  # recipes to run (see `recipes` below)
mkdir -p "$RUNS" "$DEST"
"$PY" benchmarks/speed_perturb.py "$DATA/real_train.jsonl" "$DATA/real_extra.jsonl" "$RUNS/perturbed" --factors 0.9,1.1
real="$DATA/real_train.jsonl,$RUNS/perturbed/real_train-sp.jsonl"
extra="$DATA/real_extra.jsonl,$RUNS/perturbed/real_extra-sp.jsonl"
common=(--config whisper-tiny --device "$DEVICE" --no-progress
  --set data.train="$DATA/train.jsonl,$real,$extra,$extra" --set data.valid="$DATA/real_test.jsonl,$DATA/valid.jsonl"
  --set train.valid_max_utts=215 --set train.init_from="$INIT"
  --set train.schedule_start=13992 --set train.warmup_steps=100 --set train.max_minutes="$MINUTES"
  --set train.max_frames_per_batch="${FRAMES:-48000}" --set train.feature_jobs="${FEATURE_JOBS:-5}"
  --set train.valid_every="${VALID_EVERY:-200}" --set train.checkpoint_every=100000 --set train.log_every=20)
# name: overrides. The batch is 16x the CPU runs' (3000 frames), so the learning rate is scaled
# by 4 (square-root rule) in `reg`/`plain` and by 2 in `reg-half-lr`; `reg` trains with the
# preset's dropout and SpecAugment, which the CPU runs turned off to fit faster in few steps.
declare -A recipes=(
  [reg]="--set train.lr=6e-3"
  [reg-half-lr]="--set train.lr=3e-3"
  [plain]="--set train.lr=6e-3 --set model.dropout=0.0 --set train.spec_augment=false"
)
export OMP_NUM_THREADS=2
pids=()
for name in $NAMES; do
  # shellcheck disable=SC2086  # the overrides are words
  "$PY" -m dualasr.cli train "${common[@]}" ${recipes[$name]} "$@" --out "$RUNS/$name" >"$DEST/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
bests=()
for name in $NAMES; do
  [ -f "$RUNS/$name/checkpoint-best.pt" ] || continue
  "$PY" benchmarks/average_checkpoints.py --float16 --out "$DEST/$name.pt" "$RUNS/$name/checkpoint-best.pt"
  bests+=("$DEST/$name.pt")
done
# The model: the mean of the recipes' best weights and the weights they started from (a "soup" of
# fine-tunings of one model). Chosen over each recipe and over the mean without the start on the
# held-out Asterisk prompts + TTS test (benchmarks/results/gpu_continuation*.json).
[ "$status" = 0 ] && "$PY" benchmarks/average_checkpoints.py --float16 --out "$DEST/soup.pt" "${bests[@]}" "$INIT"
exit $status
