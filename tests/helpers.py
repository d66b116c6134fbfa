"""Test helpers: models built in code (no downloaded weights) and small file writers."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_BERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
    type_vocab_size=2,
)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _sample_texts(sample_dir: Path) -> list[str]:
    texts = []
    for path in sorted(sample_dir.rglob("*")):
        if path.suffix in (".csv", ".tsv", ".txt") and path.is_file():
            texts.extend(path.read_text(encoding="utf-8").splitlines())
    return texts or ["the quick brown fox jumps over the lazy dog"]


def build_tiny_tokenizer(texts: list[str], vocab_size: int = 600):
    """A BERT-style fast WordPiece tokenizer trained in code (uncased, [CLS] … [SEP])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=TINY_BERT["max_position_embeddings"],
    )


def build_tiny_backbone(directory: Path, sample_dir: Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny BERT and its tokenizer as a Hugging Face folder."""
    from transformers import BertConfig, BertModel

    tokenizer = build_tiny_tokenizer(_sample_texts(sample_dir))
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), **TINY_BERT), add_pooling_layer=False)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def bert_encoder_params(vocab: int, hidden: int, layers: int, intermediate: int, positions: int, types: int) -> int:
    """Parameter count of a BertModel without pooler, from its config (the formula the freeze tests check)."""
    embeddings = (vocab + positions + types) * hidden + 2 * hidden  # word, position, type + LayerNorm
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden  # Q, K, V, output + LayerNorm
    feed_forward = (hidden * intermediate + intermediate) + (intermediate * hidden + hidden) + 2 * hidden
    return embeddings + layers * (attention + feed_forward)
