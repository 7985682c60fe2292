#!/usr/bin/env bash
# The ARM bench: the shipped export's onnxruntime cells (fp32 and int8, streaming and full, 1 thread)
# on 40 of the held-out real Asterisk prompts. One command for the CI job
# (.github/workflows/arm-bench.yml) and for its stored baseline (scripts/test_arm.py --record-baseline).
#   usage: scripts/arm_bench.sh EXPORT_DIR MANIFEST OUT.json [more `dualasr bench` options]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 EXPORT_DIR MANIFEST OUT.json [dualasr bench options]" >&2; exit 2; }
export_dir=$1 manifest=$2 out=$3
shift 3
exec dualasr bench "$export_dir" --data "$manifest" --max-utts 40 --backends onnxruntime --peers none \
  --threads 1 --repeat 3 --json "$out" "$@"
