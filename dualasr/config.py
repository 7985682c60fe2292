"""Configuration dataclasses and named presets.

A run is described by one `Config` (model + training + data). `dualasr train --config NAME|FILE`
loads a preset by name or a YAML/JSON file, then applies `--set section.key=value` overrides.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelConfig:
    encoder: str = "conformer"  # "conformer" | "contextnet" | "transformer" (Whisper-shaped)
    num_mel_bins: int = 80
    subsampling: int = 4  # feature frames stacked per encoder frame (causal by construction)
    input_norm: str = "global"  # "global": CMVN from training-set statistics | "frame": per-frame LayerNorm
    d_model: int = 144
    num_layers: int = 4
    num_heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15  # symmetric kernel; streaming keeps the left (k+1)/2 taps
    left_context: int = 64  # attention window (encoder frames) in streaming mode
    max_rel_pos: int = 64  # relative position bias is clipped at this distance
    max_abs_pos: int = 1500  # transformer: absolute positions cycle through this many (Whisper's 30 s)
    norm: str = "layer"  # "layer" | "batch" (ContextNet defaults to batch, as in the paper)
    se_reduction: int = 8  # ContextNet squeeze-excitation bottleneck
    dropout: float = 0.1
    predictor: str = "stateless"  # "lstm" (the paper's) | "stateless" (sherpa-onnx compatible)
    predictor_dim: int = 256
    predictor_layers: int = 1
    context_size: int = 2  # stateless predictor: tokens of left context
    joiner_dim: int = 256
    vocab_size: int = 128
    aux_ctc: bool = False  # a CTC head on the encoder (training only, never exported)
    pretrained: str = ""  # "whisper-tiny.en": a fresh run starts the transformer encoder from it

    def __post_init__(self) -> None:
        if self.conv_kernel % 2 != 1:
            raise ValueError(f"model.conv_kernel must be odd (symmetric kernel), got {self.conv_kernel}")
        if self.encoder not in ("conformer", "contextnet", "transformer"):
            raise ValueError(f"model.encoder must be 'conformer', 'contextnet' or 'transformer', got {self.encoder!r}")
        if self.predictor not in ("lstm", "stateless"):
            raise ValueError(f"model.predictor must be 'lstm' or 'stateless', got {self.predictor!r}")
        if self.d_model % self.num_heads != 0:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")


@dataclass
class TrainConfig:
    mode: str = "joint"  # "joint" | "random" | "streaming" | "full" (the paper's Table 4 variants)
    # In-place distillation full -> streaming (0 disables). It weighs the mean KL per lattice node,
    # the RNN-T and CTC losses are per-utterance sums: 0.5 is ~0.1% of the whisper-tiny loss (README).
    distill_weight: float = 0.0
    distill_shift: int = 0  # teacher frame shift, -2..2 (negative: earlier emission)
    streaming_weight: float = 0.5  # joint loss = w * streaming + (1 - w) * full
    ctc_weight: float = 0.3  # auxiliary CTC loss per mode (needs model.aux_ctc); speeds up alignment
    lr: float = 2e-3
    pretrained_lr_scale: float = 1.0  # lr multiplier for encoder weights that start from model.pretrained
    freeze_pretrained_steps: int = 0  # steps during which a pretrained encoder's body is not trained
    # Transformer encoder: the stem and the lowest N blocks keep the weights the run starts with
    # (only those blocks' streaming norms train). See README, "The next built-in model".
    frozen_blocks: int = 0
    init_from: str = ""  # checkpoint whose weights and tokenizer a fresh run starts from (optimizer state is not kept)
    weight_decay: float = 1e-3
    warmup_steps: int = 200
    schedule_start: int = 0  # steps the init_from weights were trained: the lr decay continues from there
    max_steps: int = 2000
    max_minutes: float = 0.0  # wall-clock budget, 0 = unlimited
    max_frames_per_batch: int = 12000  # feature frames (10 ms) per batch
    grad_clip: float = 5.0
    spec_augment: bool = True
    seed: int = 0
    log_every: int = 20
    valid_every: int = 200
    valid_max_utts: int = 100
    checkpoint_every: int = 200
    amp: bool = True  # mixed precision where a GPU is present
    cpu_bf16: bool = False  # bfloat16 autocast on a CPU with native bf16 matmuls (AVX512-BF16/AMX): ~1.8x faster
    num_workers: int = 0
    feature_jobs: int = 0  # processes computing every training utterance's features before step 1 (0: lazily)


@dataclass
class DataConfig:
    train: str = "data/tts/train.jsonl"
    valid: str = "data/tts/valid.jsonl"
    tokenizer: str = ""  # sentencepiece model; empty -> trained on the training texts
    build_corpus: bool = True  # synthesize the TTS corpus if `train` does not exist yet
    corpus_num_train: int = 1500
    corpus_num_valid: int = 100
    corpus_num_test: int = 100


@dataclass
class Config:
    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        unknown = set(d) - {"name", "model", "train", "data"}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected model, train, data")
        return cls(
            name=d.get("name", "custom"),
            model=_build(ModelConfig, d.get("model", {}), "model"),
            train=_build(TrainConfig, d.get("train", {}), "train"),
            data=_build(DataConfig, d.get("data", {}), "data"),
        )


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _build(cls, values: dict[str, Any], section: str):
    if not isinstance(values, dict):
        raise ValueError(f"config section {section!r} must be a mapping of keys to values, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {section} keys {sorted(unknown)}; valid keys: {sorted(fields)}")
    for key, value in values.items():
        kind = _TYPES[str(fields[key].type)]  # annotations are strings (from __future__ import annotations)
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # 1 means 1.0
        if not ok:
            raise ValueError(f"{section}.{key} must be {kind.__name__}, got {value!r}")
        if section == "model" and kind is int and value < 1:  # every model size is a positive count
            raise ValueError(f"model.{key} must be >= 1, got {value}")
    return cls(**values)


# Named sizes. `tiny` is CI-sized (< 2M params, trains on 2 CPU cores in minutes); the larger
# ones follow the paper's model sizes in spirit (Conformer S/M, ContextNet S).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": dict(d_model=96, num_layers=4, num_heads=4, ff_mult=4, conv_kernel=15, left_context=32,
                      # Character-sized pieces: on an hour of audio, word-sized pieces are seen too
                      # rarely for the encoder to leave the blank-only plateau in minutes.
                      predictor="stateless", predictor_dim=160, joiner_dim=160, vocab_size=34,
                      aux_ctc=True, dropout=0.0),  # minutes of CPU training underfit: dropout only costs time
        "train": dict(max_steps=100000, max_minutes=9.0, lr=2e-3, warmup_steps=300, ctc_weight=1.0,
                      max_frames_per_batch=3000, valid_every=100, checkpoint_every=100),
    },
    "tiny-lstm": {
        "model": dict(d_model=96, num_layers=4, num_heads=4, conv_kernel=15, left_context=32,
                      predictor="lstm", predictor_dim=160, joiner_dim=160, vocab_size=96),
        "train": dict(max_minutes=9.0, lr=3e-3, warmup_steps=150, max_frames_per_batch=10000),
    },
    "tiny-contextnet": {  # the same size and recipe as `tiny`, ContextNet encoder (BatchNorm, as the paper)
        "model": dict(encoder="contextnet", d_model=256, num_layers=4, conv_kernel=5, norm="batch",
                      predictor="stateless", predictor_dim=160, joiner_dim=160, vocab_size=34,
                      aux_ctc=True, dropout=0.0),
        "train": dict(max_steps=100000, max_minutes=9.0, lr=2e-3, warmup_steps=300, ctc_weight=1.0,
                      max_frames_per_batch=3000, valid_every=100, checkpoint_every=100),
    },
    # The built-in model: Whisper tiny.en's encoder made dual-mode (causal convs and a bounded left
    # attention window in streaming, one LayerNorm set per mode), 8.2M parameters in all.
    "whisper-tiny": {
        "model": dict(encoder="transformer", d_model=384, num_layers=4, num_heads=6, ff_mult=4, left_context=128,
                      max_rel_pos=64, pretrained="whisper-tiny.en", predictor="stateless", predictor_dim=256,
                      joiner_dim=256, vocab_size=256, aux_ctc=True, dropout=0.1),
        "train": dict(max_steps=100000, lr=1.5e-3, pretrained_lr_scale=0.3, warmup_steps=500, ctc_weight=1.0,
                      distill_weight=0.5, max_frames_per_batch=3000, valid_every=500, checkpoint_every=250,
                      freeze_pretrained_steps=800, cpu_bf16=True),
    },
    "conformer-s": {  # ~10M, the paper's Conformer-S scale
        "model": dict(d_model=144, num_layers=16, num_heads=4, conv_kernel=31, left_context=64,
                      predictor="lstm", predictor_dim=320, joiner_dim=320, vocab_size=1024),
    },
    "conformer-m": {
        "model": dict(d_model=256, num_layers=16, num_heads=4, conv_kernel=31, left_context=64,
                      predictor="lstm", predictor_dim=640, joiner_dim=640, vocab_size=1024),
    },
    "contextnet-s": {
        "model": dict(encoder="contextnet", d_model=256, num_layers=23, conv_kernel=5, norm="batch",
                      predictor="lstm", predictor_dim=640, joiner_dim=640, vocab_size=1024),
    },
}


def _read_config_file(path: Path) -> dict[str, Any]:
    """A .yaml/.yml or JSON config file -> its mapping (ValueError naming the file otherwise)."""
    import yaml

    kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
    try:
        text = path.read_text(encoding="utf-8")
        d = (yaml.safe_load(text) or {}) if kind == "YAML" else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        where = f" (line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise ValueError(
            f"config {path} is not a {kind} config file{where}; give a preset name ({', '.join(PRESETS)}) "
            "or a .yaml/.json file with model/train/data sections"
        ) from None
    if not isinstance(d, dict):
        raise ValueError(f"config {path} must hold a mapping with model/train/data sections, got {type(d).__name__}")
    return d


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """A preset name or a .yaml/.json file, then `section.key=value` overrides (values parsed as JSON)."""
    if name_or_path in PRESETS:
        d = json.loads(json.dumps(PRESETS[name_or_path]))
        d["name"] = name_or_path
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(
                f"config {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file"
            )
        d = _read_config_file(path)
        d.setdefault("name", path.stem)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        section, dot, field_name = key.partition(".")
        if not sep or not dot or section not in ("model", "train", "data"):
            raise ValueError(f"override {item!r} must look like section.key=value, e.g. train.max_steps=100")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # bare strings such as data.train=foo.jsonl
        d.setdefault(section, {})[field_name] = value
    return Config.from_dict(d)
