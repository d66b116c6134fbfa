"""The typed plan of an embedding run: decided once (corpus validated, shard slices fixed, precision chosen),
then handed as plain JSON data to every shard worker (`plan.model_dump(mode="json")` / `EmbedPlan.model_validate`).

Shard k holds a fixed slice of input rows, so shards are independent: they can run on many workers, and a
killed run recomputes only the shards that are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from mtl_model.base import StrictModel
from mtl_model.embed.corpus import CorpusFile, rows_in_range, scan_corpus
from mtl_model.embed.inference import (
    Precision,
    RequestedPrecision,
    decide_precision,
    default_batch_tokens,
    load_model_once,
)
from mtl_model.embed.tiers import TierCheck
from mtl_model.errors import ConfigError
from mtl_model.io import code_version, json_sha256
from mtl_model.model import MultiTaskModel

PRECISION_SAMPLE_ROWS = 256  # rows of the corpus's start on which that is checked (embedded twice: a fixed cost)


class ShardSpec(StrictModel):
    """Shard `index`: rows [offset, offset + rows) of `source`."""

    index: int
    """Position of the shard in the plan; names its file `part-NNNNN.parquet`."""
    source: str
    """The input file the rows come from (shards never span files)."""
    source_fingerprint: str
    """Content hash of `source`: a finished shard is recognised by content, so a moved corpus is the same corpus."""
    offset: int
    """First data row of `source` in this shard (0-based)."""
    rows: int
    """Rows in this shard."""

    @property
    def file(self) -> str:
        """The shard's file name in the output folder."""
        return f"part-{self.index:05d}.parquet"


class HeadOutput(StrictModel):
    """What a head writes into the corpus output."""

    kind: Literal["sentence", "token"]
    """Sentence heads write a label and its probability per row; token heads write entity spans."""
    labels: list[str]
    """Class names in class-id order (a sentence head's `label_names` applied; a token head's BIO tags)."""
    decoding: str
    """How a token head's word scores become tags (`token_decoding` of the model)."""


class EmbedPlan(StrictModel):
    """Everything a shard worker needs, as plain data (so it travels to Prefect tasks and Dask workers)."""

    out_dir: str
    """The output folder: shards, `_manifest.json` and `_SUCCESS` go here."""
    model_dir: str
    """The saved model (and its tokenizer) that embeds."""
    model_name: str
    """The model's backbone name, recorded in the manifest and each shard's metadata."""
    model_fingerprint: str
    """Content hash of `model_dir`: a retrained model is another model (its shards are recomputed)."""
    id_column: str
    """Input column with the row id, copied unchanged to the output."""
    text_column: str
    """Input column with the text to embed."""
    include_text: bool
    """Whether the text is written next to the embedding."""
    batch_size: int
    """Texts per forward pass at most."""
    batch_tokens: int | None = None
    """Padded tokens per forward pass at most (decided for the device; None: no cap)."""
    sort_window: int
    """Rows read, tokenized and length-sorted together; bounds memory."""
    precision: Precision
    """The precision chosen for this run (never `auto`: decided once, so every shard uses the same)."""
    precision_check: TierCheck | None = None
    """The reduced-precision tier measured against fp32 on the corpus's first rows, with its gates
    (`mtl_model.embed.tiers`); None: nothing was compared."""
    dimension: int
    """Width D of each embedding."""
    pooling: str
    """The model's pooling, recorded for consumers."""
    normalized: bool
    """Whether embeddings are L2-normalised (then cosine similarity is a dot product)."""
    max_seq_length: int
    """Tokens per text at most; longer texts are truncated (and counted)."""
    vocab_size: int
    """The tokenizer's vocabulary size: pre-tokenized `input_ids` outside it are rejected."""
    outputs: tuple[str, ...] = ("embedding",)
    """`embedding` and/or head names: the output columns (`EmbedConfig.outputs`)."""
    include_probs: bool = False
    """Whether sentence heads also write every class's probability."""
    heads: dict[str, HeadOutput] = {}
    """The heads in `outputs`, as the model defines them (kind, class names, decoding)."""
    shards: tuple[ShardSpec, ...]
    """The fixed row slices, in output order."""
    inputs: tuple[CorpusFile, ...]
    """The corpus files as scanned (path, rows, fingerprint), in reading order."""

    @property
    def precision_check_cosine(self) -> float | None:
        """Smallest cosine between fp32 and reduced-precision embeddings on the sample (None: not measured)."""
        return None if self.precision_check is None else self.precision_check.min_cosine

    def model_facts(self) -> dict[str, Any]:
        """What a consumer needs to know about the vectors (the manifest and each shard record it)."""
        return {
            "model": self.model_name,
            "model_fingerprint": self.model_fingerprint,
            "dimension": self.dimension,
            "pooling": self.pooling,
            "normalized": self.normalized,
            "max_seq_length": self.max_seq_length,
            "precision": self.precision,
            **({"outputs": list(self.outputs)} if self.outputs != ("embedding",) else {}),
            **({"heads": {name: head.labels for name, head in self.heads.items()}} if self.heads else {}),
        }

    @property
    def settings_key(self) -> str:
        """What decides a shard's content besides its rows: model, columns, precision."""
        return json_sha256(
            {
                "model": self.model_fingerprint,
                "id": self.id_column,
                "text": self.text_column,
                "include_text": self.include_text,
                "precision": self.precision,
                **({"outputs": list(self.outputs), "probs": self.include_probs} if self.heads else {}),
                "code": code_version(),
            }
        )[:16]


def plan_shards(files: list[CorpusFile], rows_per_shard: int) -> list[ShardSpec]:
    """Fixed slices: each file is cut into shards of `rows_per_shard` rows (shards never span files)."""
    shards: list[ShardSpec] = []
    for corpus_file in files:
        for offset in range(0, corpus_file.rows, rows_per_shard):
            shards.append(
                ShardSpec(
                    index=len(shards),
                    source=corpus_file.path,
                    source_fingerprint=corpus_file.fingerprint,
                    offset=offset,
                    rows=min(rows_per_shard, corpus_file.rows - offset),
                )
            )
    return shards


def head_outputs(model: MultiTaskModel, outputs: Sequence[str]) -> dict[str, HeadOutput]:
    """The heads named in `outputs`; an unknown name is a `ConfigError` listing what the model has."""
    specs = model.head_specs
    unknown = [name for name in outputs if name != "embedding" and name not in specs]
    if unknown:
        choices = ", ".join(["embedding", *specs])
        raise ConfigError(f"embed.outputs: {unknown} name no head of this model; choose from {choices}")
    return {
        name: HeadOutput(kind=specs[name].kind, labels=specs[name].names(), decoding=model.config.token_decoding)
        for name in outputs
        if name != "embedding"
    }


def plan_embedding(
    model_dir: str,
    corpus: str,
    out_dir: str,
    *,
    id_column: str,
    text_column: str,
    rows_per_shard: int,
    batch_size: int,
    sort_window: int,
    include_text: bool,
    precision: RequestedPrecision,
    device: str,
    model_fingerprint: str,
    allow_duplicate_ids: bool = False,
    outputs: Sequence[str] = ("embedding",),
    include_probs: bool = False,
    batch_tokens: int | None = None,
) -> EmbedPlan:
    """Validate the corpus (all problems at once, duplicate ids included unless allowed), fix the shard slices and
    decide the precision and the batch token cap (`batch_tokens` None: the device's default), once."""
    batch_tokens = default_batch_tokens(device, batch_tokens)
    inputs = scan_corpus(corpus, id_column=id_column, text_column=text_column, allow_duplicate_ids=allow_duplicate_ids)
    model, tokenizer = load_model_once(model_dir, model_fingerprint, device)
    heads = head_outputs(model, outputs)
    shards = plan_shards(inputs, rows_per_shard)
    sample: list[str] = []
    if shards:
        for batch in rows_in_range(shards[0].source, [text_column], 0, min(PRECISION_SAMPLE_ROWS, shards[0].rows)):
            sample.extend(str(t) for t in batch.column(text_column).to_pylist())
    chosen, check = decide_precision(
        model,
        tokenizer,
        sample,
        device=device,
        requested=precision,
        batch_size=batch_size,
        batch_tokens=batch_tokens,
    )
    return EmbedPlan(
        out_dir=str(out_dir),
        model_dir=str(model_dir),
        model_name=model.config.backbone,
        model_fingerprint=model_fingerprint,
        id_column=id_column,
        text_column=text_column,
        include_text=include_text,
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        sort_window=sort_window,
        precision=chosen,
        precision_check=check,
        dimension=int(model.embedding_dim),
        pooling=model.config.pooling,
        normalized=model.config.normalize,
        max_seq_length=model.config.max_seq_length,
        vocab_size=len(tokenizer),
        outputs=tuple(outputs),
        include_probs=include_probs,
        heads=heads,
        shards=tuple(shards),
        inputs=tuple(inputs),
    )
