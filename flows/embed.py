"""The embed flow alone: a trained model + a corpus → Parquet shards, fanned out as mapped Prefect tasks.

    python flows/embed.py --model runs/default/model --corpus data/sample/corpus.csv --out runs/embed
    python flows/embed.py … --task-runner dask --dask-address tcp://scheduler:8786   # shards on a Dask cluster

Output: `<out>/embeddings/part-NNNNN.parquet`, `_manifest.json`, `_SUCCESS` (see docs/CONSUMING.md).
"""

from __future__ import annotations

import sys

from prefect import flow

from mtl_model.cli import embed_config, parse_embed_args
from mtl_model.config import DeviceChoice, EmbedConfig
from mtl_model.device import resolve_device
from mtl_model.embed import EmbeddingResult
from mtl_model.errors import ConfigError, DataValidationError
from mtl_model.lock import output_lock
from mtl_model.runtime import quiet_third_party
from tasks.embed import embed as embed_step
from tasks.server import tie_temporary_server_to_this_process


@flow(name="mtl-embed")
def embed(
    model_dir: str,
    corpus: str,
    out: str,
    config: EmbedConfig = EmbedConfig(),
    device: DeviceChoice = "auto",
) -> EmbeddingResult:
    """Embed a corpus with a trained model into resumable Parquet shards.

    Args:
        model_dir: A model folder written by the pipeline (`<run>/model`).
        corpus: CSV, JSONL or Parquet file, a folder of them, or `hf:<name>[/<config>][:<split>]`.
        out: Output folder; the embeddings go to `<out>/embeddings/`.
        config: Columns, batch size, sort window, rows per shard, precision (`embed:` section of a pipeline config).
        device: `auto` picks CUDA when available, else CPU.
    """
    quiet_third_party()
    with output_lock(out):
        return embed_step(model_dir, corpus, config, resolve_device(device), out)


def main(argv: list[str] | None = None) -> int:
    tie_temporary_server_to_this_process()
    args = parse_embed_args(argv, "python flows/embed.py", task_runner=True)
    try:
        config = embed_config(args.overrides)
        runner = task_runner(args.task_runner, args.dask_address)
        result = (embed.with_options(task_runner=runner) if runner else embed)(
            args.model, args.corpus, args.out, config, args.device
        )
    except (DataValidationError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.model_dump_json(indent=2))
    return 0


def task_runner(kind: str, address: str | None):
    """None (the flow's default thread runner) or a DaskTaskRunner on the given cluster."""
    if kind == "thread":
        if address:
            raise ConfigError("--dask-address needs --task-runner dask")
        return None
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise ConfigError("--task-runner dask needs prefect-dask (pip install prefect-dask)") from exc
    return DaskTaskRunner(address=address) if address else DaskTaskRunner()


if __name__ == "__main__":
    sys.exit(main())
