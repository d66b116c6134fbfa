"""Step 5 as Prefect tasks: plan the shards (cached by corpus and model content), check the output folder,
embed one shard (mapped by `flows/embed.py`, so a Dask task runner spreads shards over workers), then
write the manifest and `_SUCCESS`."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from mtl_model import steps
from mtl_model.config import EmbedConfig
from mtl_model.embed import EmbedPlan, finish_embedding, prepare_output, summary_of
from tasks.policies import IO_TASK, content_key


@task(
    name="embed-plan",
    cache_key_fn=lambda ctx, p: content_key(
        # contents and paths: the plan names the files it will read, so a moved corpus must be planned again
        "embed-plan", inputs=[p["model_dir"], p["corpus_path"]],
        config=[p["config"], p["device"], p["out_dir"], p["model_dir"], p["corpus_path"]],
    ),
    **IO_TASK,
)
def plan_embed_task(model_dir: str, corpus_path: str, config: EmbedConfig, device: str, out_dir: str) -> dict:
    """Validate the corpus (every problem at once), fix the shard slices, decide the precision."""
    plan = steps.embed_plan_step(model_dir, corpus_path, config, device=device, out_dir=out_dir)
    get_run_logger().info(
        "%d rows in %d file(s) → %d shard(s); precision %s (min cosine vs fp32 on a sample: %s)",
        sum(f["rows"] for f in plan["inputs"]), len(plan["inputs"]), len(plan["shards"]), plan["precision"],
        plan["precision_check_cosine"],
    )
    return plan


@task(name="embed-check-output", retries=0)
def check_output_task(plan: dict) -> dict | None:
    """Nothing to do when the folder already holds this plan's result; else clear `_SUCCESS` and check the folder."""
    manifest = prepare_output(EmbedPlan.from_dict(plan))
    return None if manifest is None else summary_of(EmbedPlan.from_dict(plan), manifest, 0)


@task(name="embed-shard", task_run_name="embed-shard-{index:05d}", **{k: v for k, v in IO_TASK.items() if k != "persist_result"})
def embed_shard_task(plan: dict, index: int, device: str) -> dict:
    """One shard; a finished copy already on disk is kept (so a resumed run recomputes only what is missing)."""
    return steps.embed_shard_step(plan, index, device=device)


@task(name="embed-finish", **IO_TASK)
def finish_task(plan: dict, records: list[dict]) -> dict:
    """`_manifest.json`, then `_SUCCESS`."""
    embed_plan = EmbedPlan.from_dict(plan)
    manifest = finish_embedding(embed_plan, records)
    summary = summary_of(embed_plan, manifest, sum(r["computed"] for r in records))
    create_markdown_artifact(
        f"Embedded **{summary['rows']}** rows into `{summary['path']}`: {summary['shards']} shard(s) "
        f"({summary['computed_shards']} computed now), dim {summary['dimension']}, {summary['precision']}, "
        f"{summary['truncated']} truncated.",
        key="embeddings",
    )
    get_run_logger().info("embedded %d rows → %s", summary["rows"], summary["path"])
    return summary
