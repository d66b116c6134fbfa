"""The whole embedding run in one process: plan → every shard → manifest → `_SUCCESS`.

Prefect's embed flow runs the same parts as separate tasks (shards mapped over workers); this is the
plain-Python path (`python -m mtl_model embed`, `steps.embed`).
"""

from __future__ import annotations

from mtl_model.embed.output import EmbeddingResult, finish_embedding, prepare_output, summary_of
from mtl_model.embed.plan import EmbedPlan
from mtl_model.embed.shards import embed_shard


def run_embedding(plan: EmbedPlan, *, device: str) -> EmbeddingResult:
    """Check the folder, compute the missing shards one after another, write manifest and `_SUCCESS`; or, when
    the folder already holds this plan's result, return it without writing anything."""
    done = prepare_output(plan)
    if done is not None:
        return summary_of(plan, done, 0)
    records = [embed_shard(plan, shard.index, device=device) for shard in plan.shards]
    manifest = finish_embedding(plan, records)
    return summary_of(plan, manifest, sum(r.computed for r in records))
