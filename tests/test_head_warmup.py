"""Head warm-up on cached encoder-body outputs (dualasr/head_warmup.py), on a small random
transformer: the cache is the encoder's own computation, the losses are the training objective's,
and the new layers learn on it while the body stays untouched."""

from __future__ import annotations

import torch

from dualasr import head_warmup as hw
from dualasr.config import load_config
from dualasr.decoding import ctc_best_path
from dualasr.model import Transducer

SMALL = ["model.d_model=64", "model.num_heads=2", "model.num_layers=1", "model.vocab_size=16",
         "model.predictor_dim=32", "model.joiner_dim=32", "model.pretrained=", "model.dropout=0.0"]


class _Set:
    """FeatureDataset's interface over fixed random features and token ids."""

    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = [{"id": f"u{i}", "feats": torch.randn(int(torch.randint(40, 120, (1,), generator=g)), 80, generator=g),
                       "tokens": torch.randint(1, 16, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g),
                       "text": "a b"} for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def features(self, i: int) -> torch.Tensor:
        return self.items[i]["feats"]

    def frame_lengths(self) -> list[int]:
        return [it["feats"].shape[0] for it in self.items]

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _model() -> Transducer:
    torch.manual_seed(0)
    return Transducer(load_config("whisper-tiny", SMALL).model).eval()


def test_cache_is_the_encoder_before_its_output_stacking():
    model, data = _model(), _Set(6)
    cached = hw.cache_body_outputs(model, data)
    for item, c in zip(data.items, cached):
        for mode in hw.MODES:
            with torch.no_grad():
                want, _ = model.encoder(item["feats"][None], torch.tensor([item["feats"].shape[0]]), mode)
                got = model.encoder._stack(c[mode].float()[None])
            torch.testing.assert_close(got, want, atol=2e-2, rtol=0)  # the cache is float16
        assert torch.equal(c["tokens"], item["tokens"])


def test_a_body_split_at_a_block_is_the_body():
    """`upper(lower(blocks=k), k)` is `body` for every split, in both modes, and the cache of a
    frozen lower part is `lower`'s output (the frozen-body probe trains the rest on it)."""
    model = Transducer(load_config("whisper-tiny", [*SMALL, "model.num_layers=3"]).model).eval()
    data = _Set(5)
    feats, lens = data.items[0]["feats"][None], torch.tensor([data.items[0]["feats"].shape[0]])
    with torch.no_grad():
        for mode in hw.MODES:
            want, want_lens = model.encoder.body(feats, lens, mode)
            for k in range(4):
                x, out_lens = model.encoder.lower(feats, lens, mode, blocks=k)
                torch.testing.assert_close(model.encoder.upper(x, out_lens, mode, k), want)
                assert torch.equal(out_lens, want_lens)
    cached = hw.cache_body_outputs(model, data, modes=("streaming",), blocks=2)
    for item, c in zip(data.items, cached):
        with torch.no_grad():
            want, _ = model.encoder.lower(item["feats"][None], torch.tensor([item["feats"].shape[0]]), "streaming", blocks=2)
        torch.testing.assert_close(c["streaming"].float(), want[0, : c["streaming"].shape[0]], atol=2e-2, rtol=0)
        assert "full" not in c


def test_new_layers_learn_and_the_body_stays():
    model, data = _model(), _Set(16)
    cached = hw.cache_body_outputs(model, data)
    body = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("encoder.") and "reduce" not in k}
    with torch.no_grad():
        first = float(hw.head_losses(model, cached, ctc_weight=1.0)["loss"])
    records = hw.train_heads(model, cached, [], None, steps=100, lr=3e-3, batch_utts=8, log=lambda _: None)
    records += hw.train_heads(model, cached, [], None, steps=50, lr=3e-3, batch_utts=8, rnnt=False, log=lambda _: None)
    with torch.no_grad():
        last = float(hw.head_losses(model.eval(), cached, ctc_weight=1.0)["loss"])
    assert last < 0.7 * first, (first, last)
    assert [r["phase"] for r in records] == ["rnnt+ctc"] * 2 + ["ctc"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in body.items())


def test_validation_scores_both_heads_in_both_modes():
    """cached_wer is 0 against references made of each head's own greedy output, and not 0 against
    other references."""
    from dualasr.decoding import greedy_search

    class Letters:  # token id k -> the word "a", "b", ... (survives text normalization)
        def decode(self, ids):
            return " ".join(chr(97 + k % 26) for k in ids)

    model, data = _model(), _Set(6)
    cached = hw.cache_body_outputs(model, data)
    tok = Letters()
    for head in ("rnnt", "ctc"):
        for mode in hw.MODES:
            for it in cached:
                enc = model.encoder._stack(it[mode].float()[None])
                with torch.no_grad():
                    ids = (ctc_best_path(model.ctc_head(enc)[0], enc.shape[1]) if head == "ctc"
                           else greedy_search(model, enc, torch.tensor([enc.shape[1]]))[0].tokens)
                assert ids  # this seed's random heads emit tokens for every utterance
                it["text"] = tok.decode(ids)
            key = f"{'ctc_' if head == 'ctc' else ''}wer_{mode}"
            assert hw.cached_wer(model, cached, tok, ctc=head == "ctc")[key] == 0.0
            for it in cached:
                it["text"] = "zz " + it["text"]
            assert hw.cached_wer(model, cached, tok, ctc=head == "ctc")[key] > 0
