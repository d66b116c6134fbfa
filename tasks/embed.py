"""Step 5 as Prefect tasks: plan the shards (cached by corpus and model content), check the output folder, embed
one shard (mapped, so a Dask task runner spreads shards over workers), then write the manifest and `_SUCCESS`.

`embed` is the pipeline's embed step built from them; `flows/embed.py` runs the same step on its own.
"""

from __future__ import annotations

from prefect import get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from mtl_model import steps
from mtl_model.config import EmbedConfig
from mtl_model.embed import EmbeddingResult, EmbedPlan, ShardRecord, finish_embedding, prepare_output, summary_of
from mtl_model.embed.progress import EmbedProgress
from tasks.policies import CacheKey, io_task


@io_task(
    "embed-plan",
    # contents and paths: the plan names the files it will read, so a moved corpus must be planned again
    key=lambda model_dir, corpus, config, device, out_dir: CacheKey(
        inputs=[model_dir, corpus], config=[config, device, out_dir, model_dir, corpus]
    ),
)
def plan_embedding(model_dir: str, corpus: str, config: EmbedConfig, device: str, out_dir: str) -> EmbedPlan:
    """Validate the corpus (every problem at once), fix the shard slices, decide the precision."""
    plan = steps.plan_embedding(model_dir, corpus, config, device=device, out_dir=out_dir)
    get_run_logger().info(
        "%d rows in %d file(s) → %d shard(s); precision %s (min cosine vs fp32 on a sample: %s)",
        sum(f.rows for f in plan.inputs),
        len(plan.inputs),
        len(plan.shards),
        plan.precision,
        plan.precision_check_cosine,
    )
    return plan


@io_task("embed-check-output", retries=0, persist_result=False)
def check_output(plan: EmbedPlan) -> EmbeddingResult | None:
    """Nothing to do when the folder already holds this plan's result; else clear `_SUCCESS` and check the folder."""
    manifest = prepare_output(plan)
    return None if manifest is None else summary_of(plan, manifest, 0)


@io_task("embed-shard", run_name="embed-shard-{index:05d}", persist_result=False)
def embed_shard(plan: EmbedPlan, index: int, device: str) -> ShardRecord:
    """One shard; a finished copy already on disk is kept (so a resumed run recomputes only what is missing)."""
    return steps.embed_shard(plan, index, device=device)


@io_task("embed-finish")
def finish(plan: EmbedPlan, records: list[ShardRecord]) -> EmbeddingResult:
    """`_manifest.json`, then `_SUCCESS`."""
    manifest = finish_embedding(plan, records)
    result = summary_of(plan, manifest, sum(r.computed for r in records))
    create_markdown_artifact(
        f"Embedded **{result.rows}** rows into `{result.path}`: {result.shards} shard(s) "
        f"({result.computed_shards} computed now), dim {result.dimension}, {result.precision}, "
        f"{result.truncated} truncated.",
        key="embeddings",
    )
    get_run_logger().info("embedded %d rows → %s", result.rows, result.path)
    return result


def embed(model_dir: str, corpus: str, config: EmbedConfig, device: str, out_dir: str) -> EmbeddingResult:
    """The embed step: plan → (up to date: done, or) one mapped task per shard → manifest and `_SUCCESS`.

    Shards run on the calling flow's task runner (threads, or Dask workers)."""
    plan = plan_embedding(model_dir, corpus, config, device, out_dir)
    done = check_output(plan)
    if done is not None:
        get_run_logger().info("embeddings in %s are up to date: nothing to do", done.path)
        return done
    futures = embed_shard.map(unmapped(plan), list(range(len(plan.shards))), unmapped(device))
    progress = EmbedProgress(total_rows=sum(shard.rows for shard in plan.shards))
    artifact = create_progress_artifact(0.0, key="embedding-progress", description="Rows embedded (%)")
    for future in as_completed(futures):  # progress as shards finish, in whatever order they finish
        record = future.result()
        progress.add(record.rows, computed=record.computed)
        update_progress_artifact(artifact, progress.percent, description=progress.line())
        get_run_logger().info("embeddings: %s (%s)", progress.line(), record.file)
    return finish(plan, [future.result() for future in futures])
