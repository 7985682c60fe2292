"""Tokenizer, manifests, LibriSpeech reader, corpus builder, Asterisk prompts, dataset/sampler."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dualasr.audio import load_audio, save_wav
from dualasr.corpus import (
    ASTERISK_SOUNDS,
    ASTERISK_TRANSCRIPTS,
    build_asterisk_set,
    build_corpus,
    generate_sentences,
    number_words,
    read_asterisk_prompts,
    split_asterisk,
)
from dualasr.data import Utterance, load_utterances, read_librispeech, read_manifest, write_manifest
from dualasr.tokenizer import Tokenizer, normalize_text

TEXTS = generate_sentences(200, seed=3) + ["call the office", "please enter your account number"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    return Tokenizer.train(TEXTS, tmp_path_factory.mktemp("tok") / "bpe.model", vocab_size=128)


# --------------------------------------------------------------------------- text / tokenizer


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, World!", "hello world"),
        ("Room 42 & more", "room four two and more"),
        ("[beep] Please hold. [tone]", "please hold"),
        ("Don't say 'that' -- Call-Forward", "don't say that call forward"),
        ("  Café\tH.323  ", "cafe h three two three"),
        ("[only a description]", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_number_words() -> None:
    assert number_words(0) == "zero"
    assert number_words(45) == "forty five"
    assert number_words(105) == "one hundred and five"
    assert number_words(2000) == "two thousand"


def test_tokenizer_roundtrip_and_blank(tokenizer: Tokenizer, tmp_path: Path) -> None:
    assert tokenizer.blank_id == 0
    assert tokenizer.id_to_piece(0) == "<blk>"
    assert 30 <= tokenizer.vocab_size <= 128
    for text in TEXTS[:50] + ["Set a timer for 10 minutes!"]:
        ids = tokenizer.encode(text)
        assert ids and 0 not in ids  # blank is never a label
        assert tokenizer.decode(ids) == normalize_text(text)
    ids = tokenizer.encode("call the office")
    assert tokenizer.decode([0, *ids, 0, 0]) == "call the office"  # blanks ignored

    # A copy for DataLoader workers behaves the same.
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.encode("goodbye") == tokenizer.encode("goodbye")
    assert tokenizer.sha256 == hashlib.sha256(tokenizer.model_path.read_bytes()).hexdigest()

    tokens = tmp_path / "tokens.txt"
    tokenizer.write_tokens_txt(tokens)
    lines = tokens.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "<blk> 0"
    assert len(lines) == tokenizer.vocab_size
    for i, line in enumerate(lines):
        piece, idx = line.rsplit(" ", 1)
        assert int(idx) == i and piece == tokenizer.id_to_piece(i) and " " not in piece


def test_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.model"):
        Tokenizer(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model"):
        Tokenizer(bad)
    with pytest.raises(ValueError, match="no non-empty text"):
        Tokenizer.train(["[beep]", "..."], tmp_path / "empty.model")


# --------------------------------------------------------------------------- manifests


def test_manifest_roundtrip(tmp_path: Path) -> None:
    (tmp_path / "wav").mkdir()
    inside = tmp_path / "wav" / "a.wav"
    outside = tmp_path.parent / "elsewhere.wav"
    utts = [
        Utterance("a", str(inside), "hello there", 1.25, 1.0, speaker="spk1", source="asterisk"),
        Utterance("b", str(outside), "goodbye"),
    ]
    path = tmp_path / "m.jsonl"
    write_manifest(path, utts)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert rows[0]["audio"] == "wav/a.wav"  # relative inside the manifest folder
    assert Path(rows[1]["audio"]).is_absolute()
    assert "duration" not in rows[1]  # None fields are left out
    back = read_manifest(path)
    assert [(u.id, Path(u.audio).resolve(), u.text, u.duration, u.speech_end, u.speaker, u.source) for u in back] == [
        (u.id, Path(u.audio).resolve(), u.text, u.duration, u.speech_end, u.speaker, u.source) for u in utts
    ]
    assert load_utterances(path) == back
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file
    path.write_text('{"audio": "a.wav", "text": "ok", "speaker": 7}\n')
    with pytest.raises(ValueError, match="'speaker' must be a string"):
        read_manifest(path)


def test_manifest_defaults_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "x/utt1.wav", "text": "hi"}\n\n')
    (u,) = read_manifest(path)
    assert u.id == "utt1" and u.audio == str(tmp_path / "x" / "utt1.wav") and u.duration is None

    path.write_text('{"audio": "a.wav", "text": "ok"}\n{"audio": "b.wav", "text": "ok"\n')
    with pytest.raises(ValueError, match=r"m\.jsonl line 2: invalid JSON"):
        read_manifest(path)
    path.write_text('{"audio": "a.wav", "text": "ok"}\n\n{"audio": "b.wav"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl line 3: missing key 'text'"):
        read_manifest(path)
    path.write_text('{"audio": "a.wav", "text": "ok"}\n{"audio": "d/a.wav", "text": "ok"}\n')
    with pytest.raises(ValueError, match="line 2: duplicate id 'a'"):
        read_manifest(path)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- LibriSpeech


def _make_librispeech(root: Path) -> dict[str, str]:
    """root/LibriSpeech/dev-tiny/<spk>/<chapter>/...: 2 speakers x 2 chapters x 2 utterances."""
    subset = root / "LibriSpeech" / "dev-tiny"
    expected = {}
    t = np.arange(3200) / 16000
    for spk in ("19", "84"):
        for chapter in ("198", "121123"):
            d = subset / spk / chapter
            d.mkdir(parents=True)
            lines = []
            for k in range(2):
                uid = f"{spk}-{chapter}-{k:04d}"
                text = f"THE {'FIRST' if k == 0 else 'SECOND'} LINE OF {spk} SAID DON'T"
                sf.write(d / f"{uid}.flac", (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
                lines.append(f"{uid} {text}")
                expected[uid] = normalize_text(text)
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return expected


def test_read_librispeech(tmp_path: Path) -> None:
    expected = _make_librispeech(tmp_path)
    for root in (tmp_path, tmp_path / "LibriSpeech", tmp_path / "LibriSpeech" / "dev-tiny"):
        utts = read_librispeech(root)
        assert {u.id: u.text for u in utts} == expected
        assert all(Path(u.audio).is_file() and u.duration == pytest.approx(0.2) for u in utts)
    assert [u.id for u in load_utterances(tmp_path)] == [u.id for u in utts]

    missing = tmp_path / "LibriSpeech" / "dev-tiny" / "84" / "198" / "84-198-0001.flac"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=r"84-198\.trans\.txt line 2.*84-198-0001"):
        read_librispeech(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no LibriSpeech transcripts"):
        read_librispeech(empty)


# --------------------------------------------------------------------------- synthetic corpus

_HAVE_ENGINES = all(shutil.which(t) for t in ("espeak-ng", "flite", "sox"))


@pytest.mark.skipif(not _HAVE_ENGINES, reason="espeak-ng, flite and sox are needed to synthesize")
def test_build_corpus(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    paths = build_corpus(out, num_train=4, num_valid=1, num_test=2, seed=5,
                         extra_texts=["Press 1 for sales"], jobs=2)
    assert set(paths) == {"train", "valid", "test"}
    splits = {k: read_manifest(p) for k, p in paths.items()}
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [5, 1, 2]
    assert splits["train"][-1].text == "press one for sales"
    texts = {k: {u.text for u in v} for k, v in splits.items()}
    assert not texts["train"] & texts["test"] and not texts["valid"] & texts["test"]

    engines = set()
    for utts in splits.values():
        for u in utts:
            x, sr = sf.read(u.audio)
            assert sr == 16000 and x.ndim == 1
            assert u.duration == pytest.approx(len(x) / sr, abs=1e-3)
            assert 0.3 < u.speech_end < u.duration
            engines.add(json.loads(Path(u.audio).with_suffix(".json").read_text())["plan"]["engine"])
            assert u.text == normalize_text(u.text)
    assert engines == {"espeak-ng", "flite"}

    # Resume: nothing is re-rendered and the manifests are identical.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    before = {k: p.read_text() for k, p in paths.items()}
    build_corpus(out, num_train=4, num_valid=1, num_test=2, seed=5, extra_texts=["Press 1 for sales"])
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == mtimes
    assert {k: p.read_text() for k, p in paths.items()} == before

    # Deterministic per seed: a fresh build gives the same audio; more train leaves test alone.
    other = build_corpus(tmp_path / "again", num_train=6, num_valid=1, num_test=2, seed=5, jobs=1)
    again_test = read_manifest(other["test"])
    assert [(u.text, u.duration) for u in again_test] == [(u.text, u.duration) for u in splits["test"]]
    for a, b in zip(again_test, splits["test"]):
        assert np.array_equal(load_audio(a.audio), load_audio(b.audio))


@pytest.mark.skipif(not _HAVE_ENGINES, reason="espeak-ng, flite and sox are needed to synthesize")
def test_corpus_cli(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "dualasr.corpus", str(tmp_path), "--num-train", "1", "--num-valid", "1",
           "--num-test", "1", "--engines", "espeak-ng", "--no-augment"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert all(len(read_manifest(tmp_path / f"{s}.jsonl")) == 1 for s in ("train", "valid", "test"))
    bad = subprocess.run([*cmd[:4], "--engines", "mbrola"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown engines" in bad.stderr


# --------------------------------------------------------------------------- Asterisk prompts

_HAVE_ASTERISK = Path(ASTERISK_SOUNDS).is_dir() and Path(ASTERISK_TRANSCRIPTS).is_file()


@pytest.mark.skipif(not _HAVE_ASTERISK, reason="asterisk-core-sounds-en(-g722) not installed")
def test_asterisk_prompts_and_fixed_split() -> None:
    utts = read_asterisk_prompts()
    by_id = {u.id: u for u in utts}
    assert len(utts) > 500
    assert "beep" not in by_id and "silence/1" not in by_id  # descriptions only
    assert "demo-instruct" not in by_id  # multi-digit numbers: ambiguous reading
    assert by_id["digits/1"].text == "one"
    assert by_id["dictate/both_help"].text.startswith("press star to toggle pause press pound")
    assert all(Path(u.audio).is_file() and u.text == normalize_text(u.text) for u in utts)

    train, test = split_asterisk(utts)
    assert {u.id for u in train} | {u.id for u in test} == set(by_id)
    assert not {u.id for u in train} & {u.id for u in test}
    assert 0.15 < len(test) / len(utts) < 0.25
    # Pinned: the split is a function of the name alone and must never drift.
    test_ids = {u.id for u in test}
    assert {"activated", "added", "digits/1", "digits/2", "conf-full"} <= test_ids
    assert not {"agent-pass", "agent-user", "digits/0", "digits/3"} & test_ids
    assert {u.id for u in split_asterisk(utts[::-1])[1]} == test_ids


@pytest.mark.skipif(not _HAVE_ASTERISK, reason="asterisk-core-sounds-en(-g722) not installed")
def test_build_asterisk_set(tmp_path: Path) -> None:
    transcripts = tmp_path / "t.txt"
    transcripts.write_text(
        "; header\nbeep: [this is a simple beep tone]\nactivated: Activated.\n"
        "agent-pass: Please enter your password followed by the pound key.\n"
        "digits/3: three\nno-such-prompt: Hello.\n"
    )
    utts = read_asterisk_prompts(transcripts=transcripts)
    assert [u.id for u in utts] == ["activated", "agent-pass", "digits/3"]
    paths = build_asterisk_set(tmp_path / "out", transcripts=transcripts)
    train, test = read_manifest(paths["real_train"]), read_manifest(paths["real_test"])
    assert [u.id for u in test] == ["activated"] and [u.id for u in train] == ["agent-pass", "digits/3"]
    for u in train + test:
        x, sr = sf.read(u.audio)
        assert sr == 16000 and u.duration == pytest.approx(len(x) / sr, abs=1e-3)
        assert 0 < u.speech_end <= u.duration
    assert Path(train[1].audio).name == "digits_3.wav"


# --------------------------------------------------------------------------- dataset / sampler


def test_manifest_reading_does_not_import_torch(tmp_path: Path) -> None:
    """dualasr.data is plain Python (corpus building and `dualasr bench` read manifests without
    torch); the torch pieces live in dualasr.batching."""
    code = ("import sys\nfrom dualasr.data import read_manifest, write_manifest, Utterance\n"
            "assert 'torch' not in sys.modules, 'dualasr.data imported torch'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_feature_dataset_and_collate(tmp_path: Path, tokenizer: Tokenizer) -> None:
    import torch

    from dualasr.batching import FeatureDataset, collate

    rng = np.random.default_rng(0)
    utts = []
    for i, (secs, text) in enumerate([(0.5, "call the office"), (1.0, "goodbye"), (0.3, "set a timer")]):
        path = tmp_path / f"u{i}.wav"
        save_wav(path, (0.1 * rng.standard_normal(int(secs * 16000))).astype(np.float32))
        utts.append(Utterance(f"u{i}", str(path), text, secs))
    ds = FeatureDataset(utts, tokenizer, cache=False)
    assert ds[0]["feats"] is not ds[0]["feats"]
    ds = FeatureDataset(utts, tokenizer)
    ds.precompute()
    assert len(ds) == 3 and len(ds._feats) == 3
    in_processes = FeatureDataset(utts, tokenizer)
    in_processes.precompute(jobs=2)  # train.feature_jobs: the same features, computed by workers
    assert all(torch.equal(in_processes._feats[i], ds._feats[i]) for i in range(3))
    item = ds[0]
    assert item["feats"].ndim == 2 and item["feats"].shape[1] == 80
    assert item["tokens"].dtype == torch.long and tokenizer.decode(item["tokens"].tolist()) == "call the office"
    assert ds[0]["feats"] is item["feats"]  # cached
    lengths = ds.frame_lengths()
    assert all(abs(est - ds[i]["feats"].shape[0]) <= 3 for i, est in enumerate(lengths))

    batch = collate([ds[i] for i in range(3)])
    assert batch["feats"].shape == (3, int(batch["feat_lens"].max()), 80)
    assert batch["feat_lens"].tolist() == [ds[i]["feats"].shape[0] for i in range(3)]
    assert batch["tokens"].shape == (3, int(batch["token_lens"].max()))
    assert batch["ids"] == ["u0", "u1", "u2"] and batch["texts"][1] == "goodbye"
    short = int(batch["feat_lens"][2])
    assert torch.all(batch["feats"][2, short:] == 0)
    assert torch.all(batch["tokens"][1, int(batch["token_lens"][1]) :] == 0)


def test_duration_bucket_sampler() -> None:
    from dualasr.batching import DurationBucketSampler

    rng = np.random.default_rng(1)
    lengths = rng.integers(50, 1000, size=203).tolist()
    sampler = DurationBucketSampler(lengths, max_frames=3000, seed=7)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(203))  # each item exactly once
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 3000
    assert list(DurationBucketSampler(lengths, max_frames=3000, seed=7)) == batches  # deterministic
    assert len(sampler) == len(batches)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != batches
    sampler.set_epoch(0)
    assert list(sampler) == batches

    # Exact resume: skipping n batches yields the tail of the same epoch, once.
    sampler.skip_batches(5)
    assert len(sampler) == len(batches) - 5
    assert list(sampler) == batches[5:]
    assert list(sampler) == batches

    # DDP sharding: equal batch counts per rank, together covering every item.
    shards = [list(DurationBucketSampler(lengths, 3000, seed=7, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert {i for s in shards for b in s for i in b} == set(range(203))
    assert shards[0][0] == batches[0] and shards[1][0] == batches[1]
    dropped = [list(DurationBucketSampler(lengths, 3000, seed=7, num_replicas=3, rank=r, drop_last=True))
               for r in range(3)]
    assert len({len(s) for s in dropped}) == 1 and len(dropped[0]) == len(batches) // 3

    huge = DurationBucketSampler([5000, 10, 10], max_frames=100, num_buckets=1, shuffle=False)
    assert sorted(map(sorted, huge)) == [[0], [1, 2]]  # an over-long item still gets a batch
    with pytest.raises(ValueError):
        DurationBucketSampler(lengths, 3000, num_replicas=2, rank=2)


def test_length_sorted_batches_keep_the_padded_size_bounded():
    from dualasr.batching import length_sorted_batches

    lengths = [5, 1, 3, 10, 2, 4, 4]
    batches = length_sorted_batches(lengths, 10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each index once
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 10 for b in batches)
    assert batches == [[1, 4, 2], [5, 6], [0], [3]]
    assert length_sorted_batches([20], 10) == [[0]] and length_sorted_batches([], 10) == []
