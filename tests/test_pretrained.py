"""Starting the dual-mode Transformer from Whisper tiny.en: weights, features and the full mode's output."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dualasr.audio import load_audio
from dualasr.config import ModelConfig, load_config
from dualasr.features import FbankConfig, compute_fbank
from dualasr.model import Transducer
from dualasr.pretrained import (
    fit_input_projection,
    load_whisper_encoder,
    read_ctranslate2,
    whisper_encoder_values,
    whisper_log_mel,
    whisper_tiny_en_path,
)

PROMPTS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")


@pytest.fixture(scope="module")
def audio() -> list[np.ndarray]:
    """41 real prompts: the first is held out of the projection fit."""
    return [load_audio(p) for p in sorted(PROMPTS.glob("vm-*.g722"))[:41]]


def test_ctranslate2_reader_gives_the_encoder_weights():
    w = read_ctranslate2(whisper_tiny_en_path())
    assert w["encoder/conv1/weight"].shape == (384, 80, 3)
    assert w["encoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert w["encoder/position_encodings/encodings"].shape == (1500, 384)


def test_whisper_log_mel_matches_faster_whisper(audio):
    from faster_whisper.feature_extractor import FeatureExtractor

    ref = FeatureExtractor(80)(audio[1])[:, :-1].T
    ours = whisper_log_mel(torch.from_numpy(audio[1])).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).mean() < 2e-3 and np.abs(ours - ref).max() < 0.1


def test_full_mode_starts_as_whisper(audio):
    """After loading and fitting the input projection on kaldi fbank, the full mode's encoder output
    (before the output stacking) points the same way as CTranslate2's Whisper encoder on Whisper's
    own features, frame by frame."""
    import ctranslate2

    model = Transducer(load_config("whisper-tiny").model).eval()
    load_whisper_encoder(model)
    pairs = [(compute_fbank(torch.from_numpy(a), FbankConfig()), torch.from_numpy(a)) for a in audio]
    feats = torch.cat([p[0] for p in pairs[1:]])
    model.encoder.subsampling.set_input_stats(feats.mean(0), feats.std(0))
    assert fit_input_projection(model, pairs[1:]) < 0.3

    clip, fbank = audio[0], pairs[0][0]
    mel = whisper_log_mel(torch.from_numpy(clip)).numpy().T
    mel = np.ascontiguousarray(mel[:, : mel.shape[1] // 2 * 2])  # unpadded, as our full mode runs
    whisper = ctranslate2.models.Whisper(str(whisper_tiny_en_path().parent), device="cpu", compute_type="float32")
    ref = np.array(whisper.encode(ctranslate2.StorageView.from_array(mel[None])))[0]
    enc = model.encoder
    with torch.no_grad():
        x, _ = enc.subsampling(fbank[None, : fbank.shape[0] // 4 * 4], None, "full")
        for layer in enc.layers:
            x = layer(x, None, "full")
        ours = enc.norm_out(x, "full")[0].numpy()
    n = min(len(ours), len(ref))
    cos = (ours[:n] * ref[:n]).sum(-1) / np.linalg.norm(ours[:n], axis=-1) / np.linalg.norm(ref[:n], axis=-1)
    assert cos[2:].mean() > 0.95, cos.mean()


def test_pretrained_refuses_a_model_of_another_shape():
    model = Transducer(ModelConfig(encoder="transformer", d_model=96, num_heads=4, num_layers=2, vocab_size=16))
    with pytest.raises(ValueError, match=r"model.d_model=96 \(needs 384\)"):
        load_whisper_encoder(model)


def test_whisper_encoder_values_leaves_the_model_and_names_only_what_loading_sets():
    model = Transducer(load_config("whisper-tiny").model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    values = whisper_encoder_values(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    load_whisper_encoder(model)
    loaded = model.state_dict()
    assert values and all(torch.equal(v, loaded[k]) for k, v in values.items())
    assert {k for k, v in loaded.items() if not torch.equal(v, before[k])} == set(values)
    assert not any(k.startswith(("predictor", "joiner")) or "input_proj" in k for k in values)
