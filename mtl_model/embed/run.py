"""The whole embedding run in one process: plan → every shard → manifest → `_SUCCESS`.

Prefect's embed flow runs the same parts as separate tasks (shards mapped over workers); this is the
plain-Python path (`python -m mtl_model embed`, `steps.embed`).
"""

from __future__ import annotations

import logging

from mtl_model.embed.output import EmbeddingResult, finish_embedding, prepare_output, summary_of
from mtl_model.embed.plan import EmbedPlan
from mtl_model.embed.progress import EmbedProgress
from mtl_model.embed.shards import embed_shard

log = logging.getLogger(__name__)


def run_embedding(plan: EmbedPlan, *, device: str) -> EmbeddingResult:
    """Check the folder, compute the missing shards one after another, write manifest and `_SUCCESS`; or, when
    the folder already holds this plan's result, return it without writing anything."""
    done = prepare_output(plan)
    if done is not None:
        return summary_of(plan, done, 0)
    progress = EmbedProgress(total_rows=sum(shard.rows for shard in plan.shards))
    records = []
    for shard in plan.shards:
        records.append(record := embed_shard(plan, shard.index, device=device))
        progress.add(record.rows, computed=record.computed)
        log.info("embeddings: %s (%s)", progress.line(), record.file)
    manifest = finish_embedding(plan, records)
    return summary_of(plan, manifest, sum(r.computed for r in records))
