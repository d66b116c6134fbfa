"""Test helpers: models built in code (no downloaded weights) and small file writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from mtl_model.model import HeadSpec, MultiTaskModel, build_model
from mtl_model.tokenization import TokenizedSplit

REPO_ROOT = Path(__file__).resolve().parents[1]

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


# --- tiny in-code models and splits (model checks, engine, freeze, checkpoints)

HEADS = [
    HeadSpec(name="topic", kind="sentence", labels=["1", "2", "3", "4"]),
    HeadSpec(name="sentiment", kind="sentence", labels=["0", "1"]),
    HeadSpec(
        name="ner",
        kind="token",
        labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"],
    ),
]


def tiny_model(backbone, projection_dim: int | None = 16, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    return build_model(
        backbone=str(backbone),
        heads=HEADS,
        pooling="mean",
        projection_dim=projection_dim,
        normalize=True,
        head_dropout=0.1,
        max_seq_length=32,
    )


def one_batch_split(seed: int = 0, rows: int = 8, length: int = 12) -> TokenizedSplit:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, length + 1, size=rows)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(5, 300, size=(rows, length)), 0)
    return TokenizedSplit(ids, mask, rng.integers(0, 4, size=rows), {"kind": "sentence"})


def splits(rows: int = 16) -> dict[str, TokenizedSplit]:
    topic = one_batch_split(seed=4, rows=rows)
    sentiment = one_batch_split(seed=5, rows=rows)
    sentiment.labels = sentiment.labels % 2
    return {"topic": topic, "sentiment": sentiment}


# --- the pipeline flow on the sample data


def write_config(tmp_path: Path, backbone: Path, data_dir: Path, **train) -> Path:
    config = yaml.safe_load((REPO_ROOT / "data/configs/default.yaml").read_text())
    config["name"] = "tiny"
    config["data_dir"] = str(data_dir)
    config["model"]["backbone"] = str(backbone)
    config["model"]["projection_dim"] = 16
    config["train"].update({"max_steps": 12, "batch_size": 8, **train})
    config["embed"]["precision"] = "fp32"  # exact comparisons with sentence-transformers below
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# validate, 3 × tokenize, 3 × pad, train, evaluate, embed-plan, embed-check-output, embed-shard-00000, embed-finish
PIPELINE_TASKS = 13


def task_run_states(flow_state, expected: int = PIPELINE_TASKS, timeout: float = 60.0) -> dict[str, str]:
    """Task run name → final state name, read back from the Prefect API.

    Prefect records task run states asynchronously, so poll until all `expected` runs have a final state.
    """
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id]))
            )
            states = {run.name: run.state.name for run in runs if run.state is not None and run.state.is_final()}
            if len(states) >= expected or time.monotonic() > deadline:
                return states
            time.sleep(0.5)


def save_prediction_model(
    backbone: Path, target: Path, ner_labels: list[str], max_seq_length: int, casing_dim: int = 0
) -> Path:
    """A saved tiny model with a named topic head and an NER head leaning towards entities (untrained heads would
    rarely emit any), so prediction tests and docs always have entities to check; `casing_dim`: its NER head
    reads word casing too (`mtl_model.casing`)."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    heads = [
        HeadSpec(name="topic", kind="sentence", labels=["1", "2"], label_names={"1": "World", "2": "Sports"}),
        HeadSpec(name="ner", kind="token", labels=ner_labels),
    ]
    model = build_model(
        backbone=str(backbone), heads=heads, pooling="mean", projection_dim=16, normalize=True, head_dropout=0.0,
        max_seq_length=max_seq_length, token_decoding="bio_viterbi", casing_dim=casing_dim,
    )  # fmt: skip
    bias = [0.0] + [1.0 if label.startswith("B-") else 1.5 for label in ner_labels[1:]]
    with torch.no_grad():
        model.heads["ner"].classifier.bias.copy_(torch.tensor(bias))
    model.save(target, AutoTokenizer.from_pretrained(backbone))
    return target
