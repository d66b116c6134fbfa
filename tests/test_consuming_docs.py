"""Every Python snippet in docs/CONSUMING.md runs, in order, against a real embeddings folder."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT, SAMPLE_DIR


def test_consuming_snippets_run_against_real_output(tiny_backbone, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from mtl_model.config import EmbedConfig
    from mtl_model.model import HeadSpec, build_model
    from mtl_model.steps import embed as embed_step

    torch.manual_seed(0)
    heads = [
        HeadSpec(name="topic", kind="sentence", labels=["1", "2"], label_names={"1": "World", "2": "Sports"}),
        HeadSpec(name="ner", kind="token", labels=["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]),
    ]
    model = build_model(
        backbone=str(tiny_backbone), heads=heads, pooling="mean", projection_dim=16, normalize=True,
        head_dropout=0.0, max_seq_length=24, token_decoding="bio_viterbi",
    )  # fmt: skip
    with torch.no_grad():  # an untrained NER head leaning towards entities, so the snippets see some
        model.heads["ner"].classifier.bias.copy_(torch.tensor([0.0, 1.0, 1.5, 1.0, 1.5]))
    run = tmp_path / "run"
    model.save(run / "model", AutoTokenizer.from_pretrained(tiny_backbone))  # as a pipeline run lays it out
    config = EmbedConfig(rows_per_shard=64, outputs=["embedding", "topic", "ner"])
    embed_step(str(run / "model"), str(SAMPLE_DIR / "corpus.csv"), config, device="cpu", out_dir=str(run))
    snippets = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "CONSUMING.md").read_text(), flags=re.S)
    assert len(snippets) == 11
    namespace: dict = {}
    for snippet in snippets:
        exec(snippet.replace('Path("runs/default/embeddings")', f'Path(r"{run / "embeddings"}")'), namespace)  # noqa: S102
    assert namespace["count"] == 200 and len(namespace["neighbours"]) == 5
    assert len(namespace["entities"]) > 50  # the prediction snippets saw entities
