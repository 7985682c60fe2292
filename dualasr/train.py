"""Dual-mode training: joint (both modes every step), random (one mode per step) or a single mode,
with optional in-place distillation from the full-context mode into the streaming mode.

Runs on CPU, one GPU (bf16 autocast), or several processes under `torchrun` (DDP; gloo on CPU).
Resuming continues exactly: the data order, SpecAugment masks and mode choices are functions of
(seed, step), and the dropout RNG is saved in the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import MODES
from .checkpoint import read_checkpoint, save_checkpoint
from .config import Config
from .batching import FRAME_SHIFT_S, DurationBucketSampler, FeatureDataset, collate, length_sorted_batches
from .decoding import greedy_search
from .features import spec_augment
from .loss import ctc_loss, distillation_loss, rnnt_loss
from .metrics import wer
from .model import Transducer, count_parameters
from .tokenizer import Tokenizer, normalize_text

LATEST = "checkpoint-latest.pt"
BEST = "checkpoint-best.pt"


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    d = _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
    return d


def _cpu_has_bf16() -> bool:
    """True where oneDNN runs bfloat16 matmuls natively (AVX512-BF16 or AMX); elsewhere bf16 would be emulated, slower."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _lr_factor(step: int, warmup: int, start: int = 0) -> float:
    """Linear warmup then inverse-square-root decay (Noam), 1.0 at the end of warmup. With start > 0
    (weights from a run that many steps in) it warms up to that run's decayed rate and decays on from
    there: restarting the schedule would hit the trained weights with the peak rate again."""
    step, warmup = max(step, 1), max(warmup, 1)
    decay = min(1.0, math.sqrt(warmup / (start + step)))
    return min(step / warmup, decay) if start == 0 else min(step / warmup, 1.0) * decay


def _modes_for_step(mode: str, seed: int, step: int) -> list[str]:
    if mode == "joint":
        return list(MODES)
    if mode == "random":  # the paper's randomly-sampled training; a function of (seed, step)
        return [random.Random(seed * 1_000_003 + step).choice(MODES)]
    return [mode]


def compute_losses(model: Transducer, batch: dict[str, Tensor], cfg: Config, step: int) -> dict[str, Tensor]:
    """The training objective of one step; returns {"loss", "rnnt_streaming", "rnnt_full", "distill"}."""
    tc = cfg.train
    feats, feat_lens = batch["feats"], batch["feat_lens"]
    tokens, token_lens = batch["tokens"], batch["token_lens"]
    short = (feat_lens < model.cfg.subsampling).nonzero().flatten().tolist()
    if short:  # no encoder frame: the RNN-T loss is undefined; name the culprits, not the lattice
        ids = [batch["ids"][i] for i in short] if "ids" in batch else short
        raise ValueError(
            f"utterance(s) {ids} have audio shorter than one encoder frame ({model.cfg.subsampling} "
            f"feature frames, {model.cfg.subsampling * 10} ms); remove them from the training manifest"
        )
    if tc.spec_augment and model.training:
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + step)
        feats = spec_augment(feats, feat_lens, generator=gen)
    modes = _modes_for_step(tc.mode, tc.seed, step)
    pred = model.predictor(tokens)  # shared by both modes: computed once
    logits: dict[str, Tensor] = {}
    out: dict[str, Tensor] = {}
    for mode in modes:
        enc, enc_lens = model.encode(feats, feat_lens, mode, **_encoder_options(model, tc, mode, feats.shape[0], step))
        logits[mode] = model.lattice_logits(enc, pred)
        out[f"rnnt_{mode}"] = rnnt_loss(logits[mode], tokens, enc_lens, token_lens)
        if model.ctc_head is not None and tc.ctc_weight > 0:
            out[f"ctc_{mode}"] = ctc_loss(model.ctc_head(enc), tokens, enc_lens, token_lens)
    if len(modes) == 2:
        w = tc.streaming_weight
        loss = 2.0 * (w * out["rnnt_streaming"] + (1.0 - w) * out["rnnt_full"])  # w=0.5: plain sum
    else:
        loss = out[f"rnnt_{modes[0]}"]
    loss = loss + tc.ctc_weight * sum((v for k, v in out.items() if k.startswith("ctc_")), torch.zeros(()))
    if tc.distill_weight > 0 and len(modes) == 2:
        out["distill"] = distillation_loss(
            logits["streaming"], logits["full"].detach(), tokens, enc_lens, token_lens, shift=tc.distill_shift
        )
        loss = loss + tc.distill_weight * out["distill"]
    out["loss"] = loss
    return out


def _encoder_options(model: Transducer, tc, mode: str, batch: int, step: int) -> dict[str, Any]:
    """Training-only options of the transformer encoder.

    offset: a stream's absolute positions cycle through the table, so streaming training starts
    each utterance at a random place in the cycle; full context always starts at 0, as Whisper did.
    frozen_body: for the first train.freeze_pretrained_steps steps a pretrained encoder's body
    stays fixed while the new layers leave the all-blank plateau (cheaper, and no noisy updates
    reach the pretrained weights meanwhile)."""
    if model.cfg.encoder != "transformer" or not model.training:
        return {}
    options: dict[str, Any] = {"frozen_body": bool(model.cfg.pretrained) and step < tc.freeze_pretrained_steps}
    if mode == "streaming":
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + step + 7)
        options["offset"] = torch.randint(0, model.cfg.max_abs_pos, (batch,), generator=gen)
    return options


class DualModeObjective(nn.Module):
    """`compute_losses` as a module, so DDP can wrap it and all-reduce the gradients."""

    def __init__(self, model: Transducer, cfg: Config):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        return compute_losses(self.model, batch, self.cfg, step)


@torch.no_grad()
def evaluate(model: Transducer, dataset: FeatureDataset, tokenizer: Tokenizer, device: torch.device,
             max_utts: int = 0, batch_frames: int = 20000) -> dict[str, float]:
    """Greedy-decode the set in both modes -> {"wer_streaming", "wer_full"} (percent)."""
    was_training = model.training
    model.eval()
    n = len(dataset) if max_utts <= 0 else min(max_utts, len(dataset))
    refs: list[str] = []
    hyps: dict[str, list[str]] = {"streaming": [], "full": []}
    for idx in length_sorted_batches([dataset.features(i).shape[0] for i in range(n)], batch_frames):
        b = collate([dataset[i] for i in idx])
        refs.extend(normalize_text(t) for t in b["texts"])
        for mode in hyps:
            enc, enc_lens = model.encode(b["feats"].to(device), b["feat_lens"].to(device), mode)
            for h in greedy_search(model, enc, enc_lens):
                hyps[mode].append(tokenizer.decode(h.tokens))
    model.train(was_training)
    return {f"wer_{mode}": 100.0 * wer(refs, h) for mode, h in hyps.items()}


def feature_stats(dataset: FeatureDataset, max_utts: int = 1000) -> tuple[Tensor, Tensor]:
    """Per-bin mean and std of the fbank over (an evenly spaced subset of) the training set."""
    n = len(dataset)
    picks = range(0, n, max(1, n // max_utts))
    total, total_sq, frames = 0.0, 0.0, 0
    for i in picks:
        f = dataset.features(i).double()
        total, total_sq, frames = total + f.sum(0), total_sq + (f * f).sum(0), frames + f.shape[0]
    mean = total / frames
    std = (total_sq / frames - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


def in_lower_body(name: str, blocks: int) -> bool:
    """Whether parameter or buffer `name` belongs to the transformer encoder's stem or its lowest
    `blocks` blocks, streaming-mode norms excepted: what train.frozen_blocks keeps as it starts."""
    lower = ("encoder.subsampling.",) + tuple(f"encoder.layers.{i}." for i in range(blocks))
    return name.startswith(lower) and ".streaming." not in name


def freeze_lower_body(model: Transducer, blocks: int) -> None:
    """train.frozen_blocks: the transformer encoder's stem and its lowest `blocks` blocks keep the
    weights the run starts with; only those blocks' streaming-mode norms train (the streaming path
    has no pretrained counterpart). Kept frozen, Whisper's lower layers carried further to
    unseen speakers per training step in full context than the whole body fine-tuned on TTS
    voices; cut to left context they need that adaptation (benchmarks/results/frozen_body_probe_*)."""
    if blocks <= 0:
        return
    if model.cfg.encoder != "transformer" or blocks > model.cfg.num_layers:
        raise ValueError(f"train.frozen_blocks={blocks} needs the transformer encoder with at least that many "
                         f"layers (model.encoder={model.cfg.encoder!r}, model.num_layers={model.cfg.num_layers})")
    for name, p in model.named_parameters():
        if in_lower_body(name, blocks):
            p.requires_grad_(False)


def _param_groups(model: Transducer, tc) -> list[dict[str, Any]]:
    """The trainable parameters as one group, or two when the encoder starts from pretrained
    weights: those get lr * pretrained_lr_scale (the stem's input projection and the output
    stacking are new)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not model.cfg.pretrained or tc.pretrained_lr_scale == 1.0:
        return [{"params": [p for _, p in named]}]
    new = {"encoder.subsampling.input_proj", "encoder.reduce"}
    pretrained, fresh = [], []
    for name, p in named:
        is_pretrained = name.startswith("encoder.") and not any(name.startswith(n + ".") for n in new)
        (pretrained if is_pretrained else fresh).append(p)
    return [{"params": fresh}, {"params": pretrained, "lr": tc.lr * tc.pretrained_lr_scale}]


def _start_from_checkpoint(model: Transducer, path: str) -> None:
    """Weights of a checkpoint (any precision: a committed resume point keeps float16) into model."""
    payload = read_checkpoint(path)
    saved = Config.from_dict(payload["config"]).model
    # Dropout shapes no weight: a run may start from weights trained with another rate.
    if replace(saved, dropout=model.cfg.dropout) != model.cfg:
        raise ValueError(f"train.init_from {path}: its model config differs from this run's; use the same "
                         f"preset and model.* overrides (model.dropout may differ)")
    model.load_state_dict(payload["model"])


def _start_from_pretrained(model: Transducer, train_set: FeatureDataset, dd: _Dist, max_utts: int = 200) -> None:
    """Load the pretrained encoder and fit its input projection on (evenly spaced) training audio."""
    from .audio import load_audio
    from .pretrained import fit_input_projection, load_whisper_encoder

    load_whisper_encoder(model)
    n = len(train_set)
    picks = range(0, n, max(1, n // max_utts))
    pairs = [(train_set.features(i), torch.from_numpy(load_audio(train_set.utts[i].audio))) for i in picks]
    residual = fit_input_projection(model, pairs)
    if dd.main:
        print(f"encoder from {model.cfg.pretrained}; input projection fitted on {len(pairs)} utterances "
              f"(relative residual {residual:.3f})", flush=True)


def _sources(spec: str) -> list[Path]:
    """`data.train` / `data.valid`: one manifest or LibriSpeech folder, or several joined by commas."""
    return [Path(p.strip()) for p in spec.split(",") if p.strip()]


def _prepare_data(cfg: Config, out_dir: Path, dd: _Dist) -> tuple[list[Path], list[Path]]:
    """Make sure the manifests exist (building the TTS corpus if asked) -> (train, valid) sources."""
    train_paths, valid_paths = _sources(cfg.data.train), _sources(cfg.data.valid)
    missing = [p for p in train_paths if not p.exists()]
    if len(train_paths) == 1 and missing:
        train_path = train_paths[0]
        if not cfg.data.build_corpus:
            raise FileNotFoundError(
                f"training manifest {train_path} not found; point data.train at a JSONL manifest or a "
                f"LibriSpeech folder, or set data.build_corpus=true to synthesize one"
            )
        if dd.main:
            from .corpus import build_corpus

            print(f"building the synthetic corpus in {train_path.parent} (first run only)", flush=True)
            build_corpus(train_path.parent, num_train=cfg.data.corpus_num_train,
                         num_valid=cfg.data.corpus_num_valid, num_test=cfg.data.corpus_num_test,
                         seed=cfg.train.seed)
        if dd.world > 1:
            dist.barrier()
    elif missing:
        raise FileNotFoundError(f"training data {', '.join(map(str, missing))} not found")
    return train_paths, [p for p in valid_paths if p.exists()]


def _load_utterances(paths: list[Path]):
    from .data import load_utterances

    return [u for p in paths for u in load_utterances(p)]


def _prepare_tokenizer(cfg: Config, out_dir: Path, train_utts, dd: _Dist) -> Tokenizer:
    target = out_dir / "tokenizer.model"
    if not target.is_file():
        if dd.main:
            if cfg.train.init_from:  # the weights' own tokenizer: output ids must keep their meaning
                target.write_bytes(read_checkpoint(cfg.train.init_from)["tokenizer"].numpy().tobytes())
            elif cfg.data.tokenizer:
                shutil.copyfile(cfg.data.tokenizer, target)
            else:
                Tokenizer.train((u.text for u in train_utts), target, vocab_size=cfg.model.vocab_size)
        if dd.world > 1:
            dist.barrier()
    return Tokenizer(target)


def _device(name: str) -> torch.device:
    """--device -> torch.device, refusing names torch does not know or this machine lacks."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device name torch knows; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA GPU (or torch was built without CUDA); use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: training runs on cpu, cuda or mps, not {dev.type}")
    return dev


@dataclass
class _Run:
    """One training run: what it trains on and with, and where it stands (the resumable part)."""

    cfg: Config
    out_dir: Path
    dd: _Dist
    dev: torch.device
    tokenizer: Tokenizer
    train_set: FeatureDataset
    valid_set: FeatureDataset | None
    model: Transducer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float = float("inf")

    def checkpoint(self, path: Path, metrics: dict[str, Any]) -> None:
        state = {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "step": self.step,
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "best": self.best,
            "rng": torch.get_rng_state(), "metrics": metrics,
        }
        save_checkpoint(path, self.model, self.cfg, self.out_dir / "tokenizer.model", state)

    def log(self, record: dict[str, Any]) -> None:
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def say(self, msg: str) -> None:
        if self.dd.main:
            print(msg, flush=True)


def _build_run(cfg: Config, out_dir: Path, dd: _Dist, dev: torch.device) -> _Run:
    """Data, tokenizer, model (seeded), optimizer and schedule of a fresh run."""
    tc = cfg.train
    train_paths, valid_paths = _prepare_data(cfg, out_dir, dd)
    train_utts = _load_utterances(train_paths)
    valid_utts = _load_utterances(valid_paths)
    tokenizer = _prepare_tokenizer(cfg, out_dir, train_utts, dd)
    cfg.model.vocab_size = tokenizer.vocab_size  # a small corpus may give fewer pieces than asked
    train_set = FeatureDataset(train_utts, tokenizer)
    if tc.feature_jobs > 0:  # before the model touches a GPU: the workers fork
        train_set.precompute(tc.feature_jobs)
    torch.manual_seed(tc.seed)
    model = Transducer(cfg.model).to(dev)
    freeze_lower_body(model, tc.frozen_blocks)
    optimizer = torch.optim.AdamW(_param_groups(model, tc), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, tc.warmup_steps, tc.schedule_start))
    valid_set = FeatureDataset(valid_utts, tokenizer) if valid_utts else None
    return _Run(cfg, out_dir, dd, dev, tokenizer, train_set, valid_set, model, optimizer, scheduler)


def _resume_or_start(run: _Run, resume: bool) -> None:
    """Continue from checkpoint-latest.pt (weights, optimizer, schedule, position, RNG), or start:
    from train.init_from's weights, else the input statistics and the pretrained encoder."""
    latest = run.out_dir / LATEST
    tc = run.cfg.train
    if resume and latest.is_file():
        ckpt = read_checkpoint(latest)
        run.model.load_state_dict(ckpt["model"])
        st = ckpt["training_state"]
        run.optimizer.load_state_dict(st["optimizer"])
        run.scheduler.load_state_dict(st["scheduler"])
        run.step, run.epoch, run.batch_in_epoch, run.best = st["step"], st["epoch"], st["batch_in_epoch"], st["best"]
        torch.set_rng_state(st["rng"])
        run.say(f"resumed from {latest} at step {run.step}")
        return
    if resume:
        run.say(f"--resume: no {latest} yet, starting fresh")
    if tc.init_from:
        _start_from_checkpoint(run.model, tc.init_from)
        run.say(f"weights from {tc.init_from} (fresh optimizer)")
        return
    if run.cfg.model.input_norm == "global":
        run.model.encoder.subsampling.set_input_stats(*feature_stats(run.train_set))
    if run.cfg.model.pretrained:
        _start_from_pretrained(run.model, run.train_set, run.dd)


def _objective(run: _Run) -> nn.Module:
    """The loss as a module; under DDP wrapped so gradients are all-reduced."""
    objective: nn.Module = DualModeObjective(run.model, run.cfg)
    if run.dd.world > 1:
        # Single-mode and random training leave one norm set unused in a step.
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[run.dev.index] if run.dev.type == "cuda" else None,
            find_unused_parameters=run.cfg.train.mode != "joint",
        )
    return objective


def _validate(run: _Run, elapsed_min: float, last: dict[str, Any], write) -> None:
    """Valid WER in both modes, logged; a new best (streaming + full) is checkpointed."""
    scores = evaluate(run.model, run.valid_set, run.tokenizer, run.dev, run.cfg.train.valid_max_utts)
    record = {"step": run.step, "minutes": elapsed_min, **scores}
    run.log(record)
    last.update(record)
    write(f"step {run.step}: valid WER streaming {scores['wer_streaming']:.1f}% full {scores['wer_full']:.1f}%")
    current = scores["wer_streaming"] + scores["wer_full"]
    if current < run.best:
        run.best = current
        run.checkpoint(run.out_dir / BEST, record)


def _stop_now(run: _Run, start: float) -> tuple[bool, float]:
    """(max_steps reached or out of time, minutes elapsed); every rank stops at the same step:
    rank 0's clock decides."""
    tc = run.cfg.train
    elapsed_min = (time.time() - start) / 60
    done = run.step >= tc.max_steps or (tc.max_minutes > 0 and elapsed_min >= tc.max_minutes)
    if run.dd.world > 1:
        flag = torch.tensor([int(done)], device=run.dev)
        dist.broadcast(flag, src=0)
        done = bool(flag.item())
    return done, elapsed_min


def _loop(run: _Run, objective: nn.Module, progress: bool) -> dict[str, Any]:
    """Train until max_steps or max_minutes; log, validate and checkpoint as configured."""
    tc, dd, dev = run.cfg.train, run.dd, run.dev
    sampler = DurationBucketSampler(run.train_set.frame_lengths(), tc.max_frames_per_batch, seed=tc.seed,
                                    num_replicas=dd.world, rank=dd.rank)
    # A private generator: each DataLoader iterator draws a seed, which must not move the global
    # RNG (dropout) or a resumed run would diverge from an uninterrupted one.
    loader_kw = dict(batch_sampler=sampler, collate_fn=collate, num_workers=tc.num_workers,
                     generator=torch.Generator().manual_seed(tc.seed), persistent_workers=False)
    use_amp = (tc.amp and dev.type == "cuda") or (tc.cpu_bf16 and dev.type == "cpu" and _cpu_has_bf16())
    run.say(f"config {run.cfg.name}: {run.cfg.model.encoder} encoder, {count_parameters(run.model) / 1e6:.2f}M params, "
            f"{len(run.train_set)} train utts, mode={tc.mode}, distill={tc.distill_weight}@{tc.distill_shift}, "
            f"device={dev}, world={dd.world}, bf16 autocast={use_amp}")
    if dd.main:
        (run.out_dir / "config.json").write_text(json.dumps(run.cfg.to_dict(), indent=2))

    start = time.time()
    last: dict[str, Any] = {}
    bar = None
    if progress and dd.main:
        from tqdm import tqdm

        # A wall-clock budget ends the run long before max_steps: no step total (and no bogus ETA) then.
        bar = tqdm(total=None if tc.max_minutes > 0 else tc.max_steps, initial=run.step, unit="step",
                   dynamic_ncols=True)
    write = bar.write if bar is not None else print
    audio_s = 0.0
    t_window = time.time()
    done = run.step >= tc.max_steps
    run.model.train()
    while not done:
        sampler.set_epoch(run.epoch)
        sampler.skip_batches(run.batch_in_epoch)
        for batch in torch.utils.data.DataLoader(run.train_set, **loader_kw):
            batch = {k: v.to(dev) if isinstance(v, Tensor) else v for k, v in batch.items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                losses = objective(batch, run.step)
            run.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
            run.optimizer.step()
            run.scheduler.step()
            run.step += 1
            run.batch_in_epoch += 1
            audio_s += float(batch["feat_lens"].sum()) * FRAME_SHIFT_S
            done, elapsed_min = _stop_now(run, start)
            if dd.main and (run.step % tc.log_every == 0 or done):
                rate = audio_s / max(time.time() - t_window, 1e-6)
                last = {"step": run.step, "epoch": run.epoch, "lr": run.scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm), "audio_s_per_s": rate,
                        **{k: float(v.detach()) for k, v in losses.items()}}
                run.log(last)
                audio_s, t_window = 0.0, time.time()
                if bar is not None:
                    bar.set_postfix(loss=f"{last['loss']:.3f}", x_realtime=f"{rate:.1f}")
            if bar is not None:
                bar.update(1)
            if dd.main and run.valid_set is not None and (run.step % tc.valid_every == 0 or done):
                _validate(run, elapsed_min, last, write)
            if dd.main and (run.step % tc.checkpoint_every == 0 or done):
                run.checkpoint(run.out_dir / LATEST, last)
            if done:
                break
        else:
            run.epoch += 1
            run.batch_in_epoch = 0
    if bar is not None:
        bar.close()
    return last


def train(cfg: Config, out_dir: str | Path, resume: bool = False, device: str | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train per `cfg`, writing checkpoints and `metrics.jsonl` into out_dir. Returns final metrics."""
    out_dir = Path(out_dir)
    dd = _init_distributed()
    dev = _device(device or (f"cuda:{dd.local_rank}" if torch.cuda.is_available() else "cpu"))
    if dd.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    run = _build_run(cfg, out_dir, dd, dev)
    _resume_or_start(run, resume)
    last = _loop(run, _objective(run), progress)
    if dd.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return last
