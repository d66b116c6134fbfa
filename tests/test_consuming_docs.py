"""Every Python snippet in docs/CONSUMING.md runs, in order, against a real embeddings folder."""

from __future__ import annotations

import re
import shutil

from tests.conftest import REPO_ROOT, SAMPLE_DIR


def test_consuming_snippets_run_against_real_output(model_dir, tmp_path):
    from mtl_model.config import EmbedConfig
    from mtl_model.steps import embed as embed_step

    run = tmp_path / "run"
    embed_step(
        str(model_dir), str(SAMPLE_DIR / "corpus.csv"), EmbedConfig(rows_per_shard=64), device="cpu", out_dir=str(run)
    )
    shutil.copytree(model_dir, run / "model")  # as a pipeline run lays it out: <run>/model next to <run>/embeddings
    snippets = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "CONSUMING.md").read_text(), flags=re.S)
    assert len(snippets) == 8
    namespace: dict = {}
    for snippet in snippets:
        exec(snippet.replace('Path("runs/default/embeddings")', f'Path(r"{run / "embeddings"}")'), namespace)  # noqa: S102
    assert namespace["count"] == 200 and len(namespace["neighbours"]) == 5
