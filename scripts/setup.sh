#!/usr/bin/env bash
# Installs everything dualasr needs on a fresh Debian machine: the Debian speech tools the corpus
# builder and tests use, then the Python package. Safe to re-run.
set -euo pipefail
need_apt=()
for tool in espeak-ng flite sox ffmpeg; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
[ -e /usr/share/asterisk/sounds/en_US_f_Allison ] || need_apt+=(asterisk-core-sounds-en-g722)
[ -e /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz ] || need_apt+=(asterisk-core-sounds-en)
[ -e /usr/lib/x86_64-linux-gnu/libsndfile.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libsndfile.so.1 ] || need_apt+=(libsndfile1)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "setup: need Debian packages ${need_apt[*]} (run as root or install them)" >&2; exit 1
  fi
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" libsox-fmt-all >/dev/null
fi
PY=${PYTHON:-python3}
# The CPU wheel first: an unpinned resolver would otherwise pull a multi-GB CUDA build.
$PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[test]"
$PY -c "import dualasr, dualasr.export, dualasr.runtime, torch, onnxruntime, executorch, coremltools, sherpa_onnx; print('setup ok: torch', torch.__version__)"
