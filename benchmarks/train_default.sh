#!/usr/bin/env bash
# The recorded commands of the built-in model's CPU training (its step 13992, the built-in model of
# stop 29), which benchmarks/train_gpu.sh continued on a GPU into the built-in model since stop 30
# (dualasr/assets/default/model.pt, the same file as the committed resume point
# benchmarks/resume/whisper-tiny.pt): the `whisper-tiny` preset, a dual-mode Transformer started from
# Whisper tiny.en's encoder, trained jointly in both modes with in-place distillation (see README,
# "The built-in model").
#
# Data, all offline: the multi-voice TTS corpus (natural WordNet/fortunes sentences and templates,
# 7 engines, 16+ voices, full augmentation), the Asterisk prompts' training split and the extra real
# clips of dualasr.realspeech (other speakers). Never trained on: the Asterisk real_test split and
# the real_eval set (8 speakers), which `benchmarks/eval_default.sh` scores.
#
#   bash benchmarks/train_default.sh                 # corpus (resumable), then init, warm-up, joint run
#   RESUME=1 bash benchmarks/train_default.sh        # continue the joint run after an interruption
#       (give it the same INIT and extra arguments as the interrupted run)
#   PROCS=2 ...                                      # step 3 as 2 DDP processes (see PROCS below)
#   INIT=benchmarks/resume/whisper-tiny.pt bash benchmarks/train_default.sh   # step 3 from the committed
#       weights (the lr schedule goes on from 13992)
#
# The built-in model since stop 35: the stop-30 model (the CPU runs' step 13992 continued on a GPU,
# `git show 03f20ce:benchmarks/resume/whisper-tiny.pt > stop30.pt`) trained 2000 more steps with the
# Whisper-labelled speech of dualasr.pseudolabel listed twice, then averaged with stop30.pt:
#   python -m dualasr.pseudolabel data/pseudo --games fotaq --labels-from benchmarks/results/pseudolabel_fotaq.json
#       (the recorded labels: minutes of MP3 decoding; without --labels-from Whisper labels it again, about an hour)
#   OUT=runs/fotaq INIT=stop30.pt THREADS=1 bash benchmarks/train_default.sh --set train.max_steps=2000 \
#     --set data.train=data/mv/train.jsonl,data/mv/real_train.jsonl,data/real/real_train_extra.jsonl,data/pseudo/fotaq.jsonl,data/pseudo/fotaq.jsonl
#   python benchmarks/average_checkpoints.py --float16 --out model.pt stop30.pt runs/fotaq/joint/checkpoint-latest.pt
# (benchmarks/results/whisper_tiny_fotaq_vs_control.json; README, "More real speakers".)
# The built-in model since stop 39: that stop-35 model (`git show bee3faf:benchmarks/resume/whisper-tiny.pt
# > stop35.pt`) trained 1500 more steps with Beneath a Steel Sky's cast added (both games listed
# twice), then averaged with stop35.pt, chosen on the held-out Drascula actors:
#   python -m dualasr.pseudolabel data/pseudo --games bass --labels-from benchmarks/results/pseudolabel_bass.json
#   OUT=runs/fb INIT=stop35.pt THREADS=1 bash benchmarks/train_default.sh --set train.max_steps=1500 \
#     --set data.train=data/mv/train.jsonl,data/mv/real_train.jsonl,data/real/real_train_extra.jsonl,data/pseudo/fotaq.jsonl,data/pseudo/fotaq.jsonl,data/pseudo/bass.jsonl,data/pseudo/bass.jsonl
#   python benchmarks/average_checkpoints.py --float16 --out model.pt stop35.pt runs/fb/joint/checkpoint-latest.pt
# (The recorded run went on to step 2000 and step 1500 was its copy of checkpoint-latest.pt; the lr
# schedule depends on the current step only, so max_steps=1500 stops at the same weights.
# benchmarks/results/games_drascula_heldout_selection.json; README, "Drascula held out".)
set -euo pipefail
OUT=${OUT:-runs/default}
python -m dualasr.corpus data/mv --recipe multivoice --num-train "${NUM_TRAIN:-12000}" --num-valid 300 \
  --num-test 300 --asterisk --jobs "${JOBS:-2}"
python -m dualasr.realspeech data/real
data=(--set data.train=data/mv/train.jsonl,data/mv/real_train.jsonl,data/real/real_train_extra.jsonl
  --set data.valid=data/mv/real_test.jsonl,data/mv/valid.jsonl --set train.valid_max_utts=215)
# PROCS=2: one DDP process per core (torchrun, gloo; each rank takes its own batch, so a step holds
# PROCS batches), one thread each by default: 1.32x the training audio per second of one 2-thread
# process on a 2-core CPU (benchmarks/results/train_throughput.json), but in 20 minutes from the
# resume point it fitted no faster (fewer, larger steps: whisper_tiny_ddp_vs_single_20min.json), so
# the default stays one process.
PROCS=${PROCS:-1}
export OMP_NUM_THREADS=${THREADS:-$([ "$PROCS" -gt 1 ] && echo 1 || echo 2)}
# 1. Initialize: tokenizer, input statistics, the pretrained body and its input projection (one step).
[ -n "${INIT:-}" ] || [ -f "$OUT/init/checkpoint-latest.pt" ] || dualasr train --config whisper-tiny --out "$OUT/init" --no-progress \
  "${data[@]}" --set data.valid= --set train.max_steps=1
# 2. The new layers learn on the body's outputs, computed once per utterance and mode (minutes, not
#    hours on the blank plateau; a body trained meanwhile drifts, see dualasr/head_warmup.py).
[ -n "${INIT:-}" ] || [ -f "$OUT/warm.pt" ] || python -m dualasr.head_warmup "$OUT/init/checkpoint-latest.pt" "$OUT/warm.pt" \
  --from-pretrained --data data/mv/train.jsonl,data/mv/real_train.jsonl,data/real/real_train_extra.jsonl \
  --valid data/mv/real_test.jsonl --utts 3000 --valid-utts 115 --ctc-steps 1500 --steps 300 --batch 24 \
  --log "$OUT/warmup.jsonl"
# 3. Everything, both modes every step, in-place distillation from the full-context mode.
args=(--config whisper-tiny --out "$OUT/joint" --no-progress "${data[@]}"
  --set train.freeze_pretrained_steps=0 --set train.max_minutes="${MINUTES:-0}")
if [ -n "${INIT:-}" ]; then
  # The committed resume point is step 13992 of CPU runs that used warmup_steps=100: the lr warms
  # up over 100 steps to where their decay had got and decays on from there. (Re-warming to the
  # preset's 4.4e-4 instead set the held-out Asterisk WER back from 57.9% / 34.4% to 60.8% / 35.9%
  # in 500 steps; this went on to 57.3% / 33.3%: benchmarks/results/whisper_tiny_rewarm_real_test.json.)
  # Steps 0-5800 ran with the preset's dropout and SpecAugment; from there on without them, which
  # fitted every set faster (README; whisper_tiny_loss_and_regularization_1001steps.json): steps
  # 5800-6801 from the mean of 5200-5800 (INIT_STEP=5800, --set train.max_steps=1001), then
  # 6801-9166 from that run's last checkpoint (INIT_STEP=6801 MINUTES=38), then 9166-13992 as the
  # mean of the weights at 13168, 13835 and 13992 of `MINUTES=70` from there with real_train_extra
  # listed 8 times in data.train (--set data.train=...; whisper_tiny_real_upsampled8.json).
  args+=(--set train.init_from="$INIT" --set train.schedule_start="${INIT_STEP:-13992}" --set train.warmup_steps=100
    --set model.dropout=0.0 --set train.spec_augment=false)
else args+=(--set train.init_from="$OUT/warm.pt"); fi
# RESUME keeps the settings above: the schedule is rebuilt from them, not read from the checkpoint.
[ -z "${RESUME:-}" ] || args+=(--resume)
if [ "$PROCS" -gt 1 ]; then python -m torch.distributed.run --nproc_per_node="$PROCS" -m dualasr.cli train "${args[@]}" "$@"
else dualasr train "${args[@]}" "$@"; fi
