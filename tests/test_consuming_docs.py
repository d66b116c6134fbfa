"""Every Python snippet in docs/CONSUMING.md runs, in order, against a real embeddings folder."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT, SAMPLE_DIR


def test_consuming_snippets_run_against_real_output(tiny_backbone, tmp_path):
    from mtl_model.config import EmbedConfig
    from mtl_model.steps import embed as embed_step
    from tests.helpers import save_prediction_model

    run = tmp_path / "run"  # as a pipeline run lays it out: <run>/model next to <run>/embeddings
    save_prediction_model(tiny_backbone, run / "model", ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"], 24)
    config = EmbedConfig(rows_per_shard=64, outputs=["embedding", "topic", "ner"])
    embed_step(str(run / "model"), str(SAMPLE_DIR / "corpus.csv"), config, device="cpu", out_dir=str(run))
    snippets = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "CONSUMING.md").read_text(), flags=re.S)
    assert len(snippets) == 11
    namespace: dict = {}
    for snippet in snippets:
        exec(snippet.replace('Path("runs/default/embeddings")', f'Path(r"{run / "embeddings"}")'), namespace)  # noqa: S102
    assert namespace["count"] == 200 and len(namespace["neighbours"]) == 5
    assert len(namespace["entities"]) > 50  # the prediction snippets saw entities
