"""The from-scratch encoder and the vocabulary builder: shapes, counts, padding, learning, round trips."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from transformers import AutoTokenizer

from mtl_model.modules import Pooling
from mtl_model.modules.scratch import (
    ScratchEncoder,
    ScratchEncoderConfig,
    is_scratch_encoder_dir,
    scratch_parameter_count,
)
from mtl_model.vocab import SPECIAL_TOKENS, VocabConfig, build_tokenizer, save_tokenizer

TINY = dict(d_model=32, num_heads=2, num_layers=2, ff_dim=64)

POSITIVE = [
    "i loved this film",
    "a wonderful and moving story",
    "great acting and a great script",
    "what a delightful surprise",
    "the best movie of the year",
    "brilliant, funny and warm",
    "i enjoyed every minute",
    "a joyful, beautiful picture",
]
NEGATIVE = [
    "i hated this film",
    "a boring and tedious story",
    "terrible acting and a weak script",
    "what a dreadful mess",
    "the worst movie of the year",
    "dull, clumsy and cold",
    "i regretted every minute",
    "an ugly, pointless picture",
]


def _batch(tokenizer, texts: list[str], **kwargs) -> dict[str, torch.Tensor]:
    encoded = tokenizer(texts, padding=True, return_tensors="pt", **kwargs)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(POSITIVE + NEGATIVE, VocabConfig(vocab_size=200, min_frequency=1), model_max_length=64)


# --- encoder: sizes and groups ---------------------------------------------------------------------


def test_parameter_count_matches_hand_computed_formula():
    encoder = ScratchEncoder(ScratchEncoderConfig(vocab_size=1000))
    # V=1000, d=128, f=512, 4 layers, sinusoidal (no position parameters), post-norm (no final LayerNorm):
    #   embedding        1000·128                   = 128_000
    #   per layer: in_proj 3·128² + 3·128 = 49_536; out_proj 128² + 128 = 16_512;
    #              linear1 128·512 + 512 = 66_048;  linear2 512·128 + 128 = 65_664; 2 LayerNorms 4·128 = 512
    #              → 198_272 per layer, × 4      = 793_088
    #   total                                        = 921_088
    assert sum(p.numel() for p in encoder.parameters()) == 921_088


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("shape", [dict(), dict(d_model=48, num_heads=3, num_layers=3, ff_dim=100, max_positions=40)])
def test_parameter_count_and_layer_groups(positions, norm, shape):
    config = ScratchEncoderConfig(vocab_size=321, positions=positions, norm=norm, **shape)
    encoder = ScratchEncoder(config)
    assert sum(p.numel() for p in encoder.parameters()) == scratch_parameter_count(config)

    groups = encoder.layer_groups()
    assert len(groups) == config.num_layers + 1
    grouped = [id(p) for group in groups for p in group]
    assert len(grouped) == len(set(grouped))  # nothing twice
    assert set(grouped) == {id(p) for p in encoder.parameters()}  # nothing left out
    assert groups[0][0] is encoder.token_embedding.weight
    if norm == "pre":
        assert id(encoder.final_norm.weight) in {id(p) for p in groups[-1]}


def test_config_checks_name_the_field():
    with pytest.raises(ValidationError, match="num_heads"):
        ScratchEncoderConfig(vocab_size=100, d_model=130, num_heads=8)
    with pytest.raises(ValidationError, match="pad_token_id"):
        ScratchEncoderConfig(vocab_size=10, pad_token_id=10)
    with pytest.raises(ValidationError, match="extra"):
        ScratchEncoderConfig(vocab_size=10, hidden=3)


# --- encoder: forward --------------------------------------------------------------------------------


def test_forward_shapes_and_contract():
    torch.manual_seed(0)
    encoder = ScratchEncoder(ScratchEncoderConfig(vocab_size=50, **TINY))
    features = {"input_ids": torch.randint(5, 50, (3, 7)), "attention_mask": torch.ones(3, 7, dtype=torch.long)}
    out = encoder(features)
    assert out["token_embeddings"].shape == (3, 7, 32)
    assert out["input_ids"] is features["input_ids"]  # keys are added, not replaced
    assert encoder.hidden_size == 32

    with pytest.raises(ValueError, match=r"\(3, 7\).*\(3, 6\)"):
        encoder({"input_ids": features["input_ids"], "attention_mask": torch.ones(3, 6)})


def test_too_long_input_names_both_lengths():
    encoder = ScratchEncoder(ScratchEncoderConfig(vocab_size=50, max_positions=8, **TINY))
    ids = torch.full((1, 9), 5)
    with pytest.raises(ValueError, match=r"9.*max_positions 8"):
        encoder({"input_ids": ids, "attention_mask": torch.ones_like(ids)})


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("grad", [True, False])  # no_grad in eval takes PyTorch's fused fast path
def test_padding_does_not_change_sentence_embedding(norm, grad):
    torch.manual_seed(0)
    encoder = ScratchEncoder(ScratchEncoderConfig(vocab_size=50, norm=norm, positions="learned", **TINY)).eval()
    pool = Pooling("mean")
    ids = torch.tensor([[2, 17, 23, 9, 3]])
    padded_ids = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], dim=1)  # 6 × [PAD]
    with torch.set_grad_enabled(grad):
        short = pool(encoder({"input_ids": ids, "attention_mask": torch.ones_like(ids)}))["sentence_embedding"]
        mask = (padded_ids != 0).long()
        long = pool(encoder({"input_ids": padded_ids, "attention_mask": mask}))["sentence_embedding"]
        # In a batch beside a longer sentence, too.
        other = torch.tensor([[2, 30, 31, 32, 33, 34, 35, 36, 37, 38, 3]])
        batch = {
            "input_ids": torch.cat([padded_ids, other]),
            "attention_mask": torch.cat([mask, torch.ones_like(other)]),
        }
        batched = pool(encoder(batch))["sentence_embedding"][:1]
    assert short.shape == (1, 32)
    torch.testing.assert_close(long, short, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched, short, atol=1e-5, rtol=0)


def test_all_padding_row_stays_finite():
    encoder = ScratchEncoder(ScratchEncoderConfig(vocab_size=50, **TINY)).eval()
    ids = torch.tensor([[2, 7, 3], [0, 0, 0]])
    out = encoder({"input_ids": ids, "attention_mask": (ids != 0).long()})["token_embeddings"]
    assert torch.isfinite(out).all()


def test_sinusoidal_table_values():
    encoder = ScratchEncoder(ScratchEncoderConfig(vocab_size=50, max_positions=16, **TINY))
    table = encoder.position_table  # (P, d)
    assert table.shape == (16, 32)
    assert torch.equal(table[0, 0::2], torch.zeros(16))  # sin(0)
    assert torch.equal(table[0, 1::2], torch.ones(16))  # cos(0)
    # PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same angle); pos 5, i 3, d 32.
    angle = 5 / 10000 ** (6 / 32)
    assert table[5, 6].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[5, 7].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # Fixed: neither a parameter nor saved.
    assert all(p is not table for p in encoder.parameters())
    assert "position_table" not in encoder.state_dict()


# --- learning ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_overfits_one_batch(tokenizer, norm):
    torch.manual_seed(0)
    config = ScratchEncoderConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        dropout=0.0,
        norm=norm,
        max_positions=64,
        **TINY,
    )
    model = nn.Sequential(ScratchEncoder(config), Pooling("mean"))
    head = nn.Linear(config.d_model, 2)
    batch = _batch(tokenizer, POSITIVE + NEGATIVE)
    labels = torch.tensor([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    for _ in range(300):
        logits = head(model(batch)["sentence_embedding"])  # (B, 2)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.05
    assert (logits.argmax(dim=-1) == labels).float().mean().item() == 1.0


# --- round trips -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_encoder_save_load_round_trip(tmp_path, tokenizer, positions):
    torch.manual_seed(0)
    config = ScratchEncoderConfig(vocab_size=len(tokenizer), positions=positions, norm="pre", **TINY)
    encoder = ScratchEncoder(config).eval()
    encoder.save_pretrained(tmp_path / "enc")
    assert is_scratch_encoder_dir(tmp_path / "enc")
    saved = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert saved["model_type"] == "mtl_scratch" and saved["positions"] == positions

    loaded = ScratchEncoder.from_pretrained(tmp_path / "enc")
    assert loaded.config == config and not loaded.training
    batch = _batch(tokenizer, ["i loved this film", "a dull mess"])
    with torch.no_grad():
        assert torch.equal(loaded(batch)["token_embeddings"], encoder(batch)["token_embeddings"])


def test_from_pretrained_errors_name_the_file(tmp_path):
    assert not is_scratch_encoder_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        ScratchEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    assert not is_scratch_encoder_dir(tmp_path)
    with pytest.raises(ValueError, match="config.json.*'bert'"):
        ScratchEncoder.from_pretrained(tmp_path)
    ScratchEncoder(ScratchEncoderConfig(vocab_size=10, **TINY)).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        ScratchEncoder.from_pretrained(tmp_path)


@pytest.mark.parametrize("kind", ["wordpiece", "word_level"])
def test_tokenizer_save_load_round_trip(tmp_path, kind):
    tokenizer = build_tokenizer(
        POSITIVE + NEGATIVE, VocabConfig(kind=kind, vocab_size=200, min_frequency=1), model_max_length=64
    )
    save_tokenizer(tokenizer, tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.is_fast and loaded.model_max_length == 64 and loaded.pad_token_id == 0

    texts = ["I loved this film!", "a tedious, ugly story", "unseen words here"]
    assert loaded(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    words = [["Brilliant,", "funny"], ["the", "worst", "movie"]]
    ours, theirs = tokenizer(words, is_split_into_words=True), loaded(words, is_split_into_words=True)
    assert theirs["input_ids"] == ours["input_ids"]
    assert theirs.word_ids(0) == ours.word_ids(0) == [None, 0, 0, 1, None]  # "brilliant" "," "funny"
    assert theirs.word_ids(1) == [None, 0, 1, 2, None]


# --- vocabulary ---------------------------------------------------------------------------------------------


def test_word_level_vocab_respects_min_frequency():
    texts = ["the cat sat", "the cat ran", "a zebra"]  # zebra, sat, ran, a: once each
    tokenizer = build_tokenizer(texts, VocabConfig(kind="word_level", min_frequency=2), model_max_length=32)
    vocab = tokenizer.get_vocab()
    assert set(vocab) == set(SPECIAL_TOKENS) | {"the", "cat"}
    assert tokenizer("the zebra")["input_ids"] == [vocab["[CLS]"], vocab["the"], vocab["[UNK]"], vocab["[SEP]"]]


def test_special_tokens_come_first():
    tokenizer = build_tokenizer(POSITIVE, VocabConfig(), model_max_length=32)
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token == "[UNK]" and tokenizer.mask_token == "[MASK]"
    ids = tokenizer("a great script")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


@pytest.mark.parametrize("lowercase", [True, False])
def test_lowercase_switch(lowercase):
    texts = ["Apple apple", "Apple apple"]
    tokenizer = build_tokenizer(
        texts, VocabConfig(kind="word_level", lowercase=lowercase, min_frequency=1), model_max_length=32
    )
    vocab = tokenizer.get_vocab()
    assert "apple" in vocab
    assert ("Apple" in vocab) is not lowercase
    upper, lower = tokenizer("Apple")["input_ids"], tokenizer("apple")["input_ids"]
    assert (upper == lower) is lowercase


@pytest.mark.parametrize("kind", ["wordpiece", "word_level"])
def test_vocab_size_is_an_upper_bound(kind):
    texts = [" ".join(f"w{i}x{j}" for j in range(20)) for i in range(20)] * 2  # 400 distinct words, twice each
    config = VocabConfig(kind=kind, vocab_size=120)
    tokenizer = build_tokenizer(texts, config, model_max_length=32)
    assert len(tokenizer) <= config.vocab_size
    assert len(tokenizer) == 120  # plenty of candidates: the bound is reached


def test_wordpiece_alphabet_larger_than_vocab_size_is_an_error():
    texts = ["the quick brown fox jumps over the lazy dog"] * 2  # 26 letters + their ## forms > 16
    with pytest.raises(ValueError, match="vocab_size 16"):
        build_tokenizer(texts, VocabConfig(vocab_size=16), model_max_length=32)
