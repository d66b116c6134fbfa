"""A vocabulary for a from-scratch encoder, trained on the task texts with Hugging Face `tokenizers`.

The result is an ordinary fast tokenizer (BERT-style: `[CLS] … [SEP]`, `[PAD]` = 0), so tokenisation,
word alignment and saving work exactly as for a pretrained backbone's tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from mtl_model.base import StrictModel

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # in id order: [PAD] is 0


class VocabConfig(StrictModel):
    """How the vocabulary is learnt from the training texts."""

    kind: Literal["wordpiece", "word_level"] = "wordpiece"
    """`wordpiece`: subwords (`##` continuations), so unseen words are spelt out, not `[UNK]`.
    `word_level`: one id per whole word; rarer words map to `[UNK]`."""
    vocab_size: int = Field(8000, ge=16)
    """Upper bound on the vocabulary, special tokens included."""
    min_frequency: int = Field(2, ge=1)
    """A word (word_level) or merge (wordpiece) seen fewer times than this is not added."""
    lowercase: bool = True
    """Lowercase (and strip accents from) every text before splitting it."""


def build_tokenizer(texts: Iterable[str], config: VocabConfig, *, model_max_length: int) -> PreTrainedTokenizerFast:
    """Train a vocabulary on `texts` (streamed: any iterable, read once) and wrap it as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = list(SPECIAL_TOKENS)
    unk = "[UNK]"
    if config.kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
        trainer = trainers.WordPieceTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=special,
            show_progress=False,
        )
        tokenizer.decoder = decoders.WordPiece()
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token=unk))
        trainer = trainers.WordLevelTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=special,
            show_progress=False,
        )
    # Accents are stripped only when lowercasing (BERT uncased/cased behaviour).
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
    # Splits on whitespace and punctuation, so pre-split words (is_split_into_words) keep their word ids.
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(iter(texts), trainer)

    size = tokenizer.get_vocab_size()
    if size > config.vocab_size:
        # WordPiece always keeps every character seen (and its `##` form), even past vocab_size.
        raise ValueError(
            f"vocab_size {config.vocab_size} is too small: the characters of the texts alone need {size} entries"
        )
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise ValueError(f"special tokens {SPECIAL_TOKENS} got ids {ids}, expected 0..{len(SPECIAL_TOKENS) - 1}")
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=unk,
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    """Write the standard `tokenizer.json` + `tokenizer_config.json`; `AutoTokenizer.from_pretrained` reads it back.

    transformers 5 records `tokenizer_class: TokenizersBackend`, a name 4.x does not know; the alias
    `PreTrainedTokenizerFast` loads as the same fast tokenizer in both.
    """
    target = Path(directory)
    tokenizer.save_pretrained(target)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
