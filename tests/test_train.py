"""Training: objective variants, exact resume, crash-safe checkpoints, DDP with 2 gloo processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dualasr.checkpoint import CheckpointError, load_model, read_checkpoint
from dualasr.config import load_config
from dualasr.train import LATEST, train

MICRO = ["model.d_model=32", "model.num_layers=1", "model.num_heads=2", "model.predictor_dim=32",
         "model.joiner_dim=32", "model.vocab_size=40", "model.dropout=0.1", "train.log_every=1",
         "train.valid_every=1000", "train.checkpoint_every=2", "train.max_minutes=0",
         "train.max_frames_per_batch=1500", "train.warmup_steps=5"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from dualasr.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, num_train=12, num_valid=3, num_test=0, seed=3)
    return out


def micro_config(corpus: Path, *extra: str):
    return load_config("tiny", MICRO + [f"data.train={corpus / 'train.jsonl'}",
                                        f"data.valid={corpus / 'valid.jsonl'}", *extra])


def final_weights(out: Path) -> dict:
    return read_checkpoint(out / LATEST)["model"]


@pytest.mark.parametrize("variant", [
    ["train.mode=joint", "train.distill_weight=0.5", "train.distill_shift=-1"],
    ["train.mode=random"],
    ["train.mode=streaming"],
    ["train.mode=full"],
])
def test_variants_train_and_lower_the_loss(corpus, tmp_path, variant):
    cfg = micro_config(corpus, "train.max_steps=12", "train.lr=3e-3", *variant)
    train(cfg, tmp_path, progress=False)
    import json

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 12
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    if "train.distill_weight=0.5" in variant:
        assert all(r["distill"] >= 0 for r in records if "distill" in r)
    model, cfg2, tok = load_model(tmp_path / LATEST)
    assert cfg2.train.mode == cfg.train.mode and len(tok) > 0


def test_global_cmvn_statistics_are_computed_and_saved(corpus, tmp_path):
    from dualasr.batching import FeatureDataset
    from dualasr.data import load_utterances
    from dualasr.tokenizer import Tokenizer
    from dualasr.train import feature_stats

    train(micro_config(corpus, "train.max_steps=1"), tmp_path, progress=False)
    model, _, _ = load_model(tmp_path / LATEST)
    ds = FeatureDataset(load_utterances(corpus / "train.jsonl"), Tokenizer(tmp_path / "tokenizer.model"))
    mean, std = feature_stats(ds)
    stacking = model.encoder.subsampling
    torch.testing.assert_close(stacking.feat_mean, mean)
    torch.testing.assert_close(stacking.feat_inv_std, 1.0 / std)
    # What the encoder sees: the training fbank normalized to zero mean, unit variance per bin.
    feats = torch.cat([ds.features(i) for i in range(len(ds))])
    normalized = (feats - stacking.feat_mean) * stacking.feat_inv_std
    torch.testing.assert_close(normalized.mean(0), torch.zeros(80), atol=1e-3, rtol=0)
    torch.testing.assert_close(normalized.std(0), torch.ones(80), atol=1e-2, rtol=0)


def test_resume_continues_exactly(corpus, tmp_path):
    steps = ["train.max_steps=6", "train.mode=random", "train.distill_weight=0.0"]
    train(micro_config(corpus, *steps), tmp_path / "straight", progress=False)
    # "Killed" after 3 steps (its last checkpoint is at step 2... then 3 at the end), then resumed.
    train(micro_config(corpus, "train.max_steps=3", "train.mode=random"), tmp_path / "split", progress=False)
    train(micro_config(corpus, *steps), tmp_path / "split", resume=True, progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert read_checkpoint(tmp_path / "split" / LATEST)["training_state"]["step"] == 6


def test_interrupted_checkpoint_write_keeps_previous(corpus, tmp_path, monkeypatch):
    train(micro_config(corpus, "train.max_steps=2"), tmp_path, progress=False)
    before = (tmp_path / LATEST).read_bytes()

    def disk_full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        train(micro_config(corpus, "train.max_steps=4"), tmp_path, resume=True, progress=False)
    assert (tmp_path / LATEST).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_untrusted_checkpoint_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"model": Evil(), "config": {}}))
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        read_checkpoint(bad)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(b"PK\x03\x04broken")
    with pytest.raises(CheckpointError):
        read_checkpoint(trunc)


def test_cli_reports_bad_config_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dualasr.cli", "train", "--config", "nope",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "neither a preset" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_the_global_batch(corpus, tmp_path):
    """torchrun with 2 CPU processes trains, checkpoints once, and ends at the same step on both ranks."""
    out = tmp_path / "ddp"
    args = ["--config", "tiny", "--out", str(out), "--no-progress"]
    for item in MICRO + [f"data.train={corpus / 'train.jsonl'}", f"data.valid={corpus / 'valid.jsonl'}",
                         "train.max_steps=3"]:
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                        "-m", "dualasr.cli", "train", *args], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "world=2" in r.stdout
    assert read_checkpoint(out / LATEST)["training_state"]["step"] == 3


def test_init_from_a_float16_resume_point(corpus, tmp_path):
    """A committed resume point keeps only the weights, in float16: a fresh run starts from them
    (and their tokenizer) with a fresh optimizer."""
    from dualasr.checkpoint import save_checkpoint

    train(micro_config(corpus, "train.max_steps=2"), tmp_path / "first", progress=False)
    model, cfg, _ = load_model(tmp_path / "first" / LATEST)
    model.half()
    save_checkpoint(tmp_path / "weights.pt", model, cfg, tmp_path / "first" / "tokenizer.model")
    second = micro_config(corpus, "train.max_steps=1", "train.lr=0", f"train.init_from={tmp_path / 'weights.pt'}")
    train(second, tmp_path / "second", progress=False)
    assert (tmp_path / "second" / "tokenizer.model").read_bytes() == (tmp_path / "first" / "tokenizer.model").read_bytes()
    started = final_weights(tmp_path / "second")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(started[k], v.float(), rtol=0, atol=0, msg=k)
    other = micro_config(corpus, "model.d_model=64", f"train.init_from={tmp_path / 'weights.pt'}")
    with pytest.raises(ValueError, match="model config differs"):
        train(other, tmp_path / "third", progress=False)
    # Dropout shapes no weight: fine-tuning with another rate starts from the same weights.
    other_dropout = micro_config(corpus, "train.max_steps=1", "train.lr=0", "model.dropout=0.2",
                                 f"train.init_from={tmp_path / 'weights.pt'}")
    train(other_dropout, tmp_path / "fourth", progress=False)
    for k, v in final_weights(tmp_path / "fourth").items():
        torch.testing.assert_close(v, started[k], rtol=0, atol=0, msg=k)


def test_lr_schedule_continues_the_decay_of_a_resume_point():
    """From weights trained `start` steps, the rate warms up to where that run's decay had got
    (not to its peak) and decays on from there; start=0 is the plain Noam schedule."""
    from dualasr.train import _lr_factor

    assert _lr_factor(250, 500) == 0.5 and _lr_factor(500, 500) == 1.0 and _lr_factor(2000, 500) == 0.5
    assert _lr_factor(250, 500, start=5800) == pytest.approx(0.5 * (500 / 6050) ** 0.5)
    assert _lr_factor(500, 500, start=5800) == pytest.approx((500 / 6300) ** 0.5)
    assert max(_lr_factor(s, 500, start=5800) for s in range(1, 5000)) < 0.29


def test_frozen_blocks_keep_their_weights_but_their_streaming_norms(corpus, tmp_path):
    """train.frozen_blocks: the transformer stem and lowest blocks stay as they start; their
    streaming norms, the blocks above and the decoder train."""
    transformer = ["model.encoder=transformer", "model.num_layers=2", "model.subsampling=4"]
    train(micro_config(corpus, "train.max_steps=1", *transformer), tmp_path / "start", progress=False)
    start = final_weights(tmp_path / "start")
    cfg = micro_config(corpus, "train.max_steps=3", "train.lr=3e-3", "train.frozen_blocks=1", *transformer,
                       f"train.init_from={tmp_path / 'start' / LATEST}")
    train(cfg, tmp_path / "frozen", progress=False)
    after = final_weights(tmp_path / "frozen")
    moved = {k for k in start if not torch.equal(start[k], after[k])}
    frozen = {k for k in start if k.startswith(("encoder.subsampling.", "encoder.layers.0.")) and ".streaming." not in k}
    assert frozen and not moved & frozen, sorted(moved & frozen)
    assert any(k.startswith("encoder.layers.0.") and ".streaming." in k for k in moved)
    assert any(k.startswith("encoder.layers.1.") for k in moved) and any(k.startswith("joiner.") for k in moved)
    with pytest.raises(ValueError, match="frozen_blocks=3 needs the transformer encoder"):
        train(micro_config(corpus, "train.frozen_blocks=3", *transformer), tmp_path / "bad", progress=False)
