"""The embed flow: shards as mapped Prefect tasks, in threads and on a local two-worker Dask cluster."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from mtl_model.config import EmbedConfig
from tests.test_embed import make_corpus

pytestmark = pytest.mark.usefixtures("prefect_harness")

SETTINGS = EmbedConfig(
    id_column="doc_id", text_column="body", rows_per_shard=40, sort_window=16, batch_size=8, precision="fp32"
)


def test_mapped_shards_on_a_dask_cluster_equal_the_single_process_run(model_dir, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream
    from prefect_dask import DaskTaskRunner

    from flows.embed import embed
    from mtl_model.steps import embed as embed_step

    make_corpus(tmp_path / "corpus.parquet", 200)
    single = embed_step(
        str(model_dir), str(tmp_path / "corpus.parquet"), SETTINGS, device="cpu", out_dir=str(tmp_path / "single")
    )
    threads = embed(str(model_dir), str(tmp_path / "corpus.parquet"), str(tmp_path / "threads"), SETTINGS, "cpu")
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        flow = embed.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
        with Client(cluster) as client, get_task_stream(client) as stream:
            state = flow(
                str(model_dir),
                str(tmp_path / "corpus.parquet"),
                str(tmp_path / "dask"),
                SETTINGS,
                "cpu",
                return_state=True,
            )
        workers = {record["worker"] for record in stream.data}
        keys = [str(record["key"]) for record in stream.data]
    dask = state.result()
    assert single.shards == threads.shards == dask.shards == 5 and dask.computed_shards == 5
    assert len(workers) == 2, keys  # the shards really ran on both Dask workers
    reference = pq.read_table(tmp_path / "single" / "embeddings")
    for name in ("threads", "dask"):
        assert pq.read_table(tmp_path / name / "embeddings").equals(reference), name
        manifest = json.loads((tmp_path / name / "embeddings" / "_manifest.json").read_text())
        assert [s["sha256"] for s in manifest["shards"]] == [
            s["sha256"]
            for s in json.loads((tmp_path / "single" / "embeddings" / "_manifest.json").read_text())["shards"]
        ]
