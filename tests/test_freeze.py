"""Freeze policies on a tiny in-code BERT: exact trainable counts, frozen weights bitwise unchanged,
no optimizer state for frozen parameters, eval mode for frozen modules, layer-wise learning rates,
gradual unfreezing schedule, and LoRA merged on save."""

from __future__ import annotations

import pytest
import torch

import mtl_model.train as train_module
from mtl_model.config import LoraSettings, TrainConfig
from mtl_model.freeze import apply_freeze_policy, parse_freeze_policy, policy_slug, set_train_mode
from mtl_model.lora import add_lora_adapters, has_lora_adapters
from mtl_model.model import MultiTaskModel
from mtl_model.train import build_optimizer, train_multitask
from tests.helpers import bert_encoder_params, build_tiny_tokenizer, one_batch_split, tiny_model

HIDDEN, FF, POSITIONS, TYPES = 32, 64, 128, 2
LAYER = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN + (HIDDEN * FF + FF) + (FF * HIDDEN + HIDDEN) + 2 * HIDDEN  # 8,544
DENSE = HIDDEN * 16 + 16  # projection 32 → 16
HEADS = {"topic": 16 * 4 + 4, "sentiment": 16 * 2 + 2, "ner": HIDDEN * 9 + 9}
TOP = DENSE + sum(HEADS.values())  # what trains when the encoder is frozen: 927
LORA_RANK = 4
LORA = 2 * 2 * (LORA_RANK * HIDDEN + HIDDEN * LORA_RANK)  # 2 layers × {query, value} × (A + B) = 1,024


def counts(backbone) -> tuple[MultiTaskModel, int]:
    model = tiny_model(backbone)
    vocab = model.encoder.auto_model.config.vocab_size
    total = bert_encoder_params(vocab, HIDDEN, 2, FF, POSITIONS, TYPES) + TOP
    return model, total


def test_trainable_counts_are_exact_for_every_policy(tiny_backbone):
    model, total = counts(tiny_backbone)
    assert LAYER == 8544 and TOP == 927 and LORA == 1024
    expected = {
        "none": total,
        "all": 0,
        "backbone": TOP,
        "head:ner": total - HEADS["ner"],
        "head:topic,head:sentiment": total - HEADS["topic"] - HEADS["sentiment"],
        "top:0": TOP,
        "top:1": TOP + LAYER,
        "top:2": TOP + 2 * LAYER,
        "gradual": TOP,  # stage 0: heads and projection only
    }
    for policy, trainable in expected.items():
        assert apply_freeze_policy(model, parse_freeze_policy(policy)) == (trainable, total), policy
    gradual = parse_freeze_policy("gradual")
    embeddings = total - TOP - 2 * LAYER
    stages = [apply_freeze_policy(model, gradual, stage=s)[0] for s in range(4)]
    assert stages == [TOP, TOP + LAYER, TOP + 2 * LAYER, TOP + 2 * LAYER + embeddings]

    add_lora_adapters(model.encoder, rank=LORA_RANK, alpha=8, dropout=0.0, target_modules=["query", "value"])
    assert apply_freeze_policy(model, parse_freeze_policy("lora")) == (TOP + LORA, total + LORA)


def test_policy_strings_are_validated_with_the_valid_list():
    for bad, message in [
        (
            "encoder",
            "unknown freeze policy 'encoder'; valid policies: "
            "none, all, backbone, head:<task>, top:<k>, gradual, lora",
        ),
        ("top:two", "top:<k> needs a whole number of layers"),
        ("head:", "unknown freeze policy 'head:'"),
        ("", "empty freeze policy"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_freeze_policy(bad)
    with pytest.raises(ValueError, match="valid policies"):
        TrainConfig(freeze_policy="lora2")
    assert policy_slug("head:topic,head:ner") == "head-topic-head-ner" and policy_slug("top:2") == "top-2"


def test_top_k_beyond_the_encoder_depth_is_refused(tiny_backbone):
    with pytest.raises(ValueError, match=r"top:3 asks for more layers than the encoder's 2"):
        apply_freeze_policy(tiny_model(tiny_backbone), parse_freeze_policy("top:3"))


def test_layer_groups_cover_every_encoder_parameter_once(tiny_backbone):
    model = tiny_model(tiny_backbone)
    groups = model.encoder.layer_groups()
    ids = [id(p) for group in groups for p in group]
    assert len(groups) == 3 and len(ids) == len(set(ids)) == len(list(model.encoder.parameters()))
    assert sum(p.numel() for p in groups[1]) == LAYER


def _train(model: MultiTaskModel, policy: str, steps: int = 4, **settings) -> dict[str, torch.Tensor]:
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    config = TrainConfig(
        max_steps=steps, batch_size=8, freeze_policy=policy, warmup_ratio=0.0, learning_rate=1e-3, **settings
    )
    sentiment = one_batch_split(seed=2)
    sentiment.labels[:] = sentiment.labels % 2  # two classes
    train_multitask(model, {"topic": one_batch_split(seed=1), "sentiment": sentiment}, config, device="cpu")
    return before


def _changed(before: dict[str, torch.Tensor], model: MultiTaskModel) -> set[str]:
    after = model.state_dict()
    return {name for name in before if not torch.equal(before[name], after[name])}


@pytest.mark.parametrize(
    ("policy", "settings", "frozen_prefixes", "trained_prefixes"),
    [
        ("backbone", {}, ["encoder."], ["dense.", "heads.topic."]),
        ("head:topic", {}, ["heads.topic."], ["encoder.auto_model.encoder.layer.0.", "heads.sentiment."]),
        (
            "top:1",
            {},
            ["encoder.auto_model.embeddings.", "encoder.auto_model.encoder.layer.0."],
            ["encoder.auto_model.encoder.layer.1."],
        ),
        # unfreeze one group every 2 steps over 4 steps: the top layer trains from step 2, the rest never
        (
            "gradual",
            {"unfreeze_every": 2},
            ["encoder.auto_model.embeddings.", "encoder.auto_model.encoder.layer.0."],
            ["encoder.auto_model.encoder.layer.1.", "heads.topic."],
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:gradual unfreezing")  # the gradual case stops early on purpose
def test_frozen_weights_are_bitwise_unchanged_after_training(
    tiny_backbone, policy, settings, frozen_prefixes, trained_prefixes
):
    model = tiny_model(tiny_backbone)
    before = _train(model, policy, **settings)
    changed = _changed(before, model)
    for prefix in frozen_prefixes:
        assert not {n for n in changed if n.startswith(prefix)}, (policy, prefix)
    for prefix in trained_prefixes:
        assert {n for n in changed if n.startswith(prefix)}, (policy, prefix)


def test_lora_trains_adapters_only_and_saves_merged_plain_weights(tiny_backbone, tmp_path):
    model = tiny_model(tiny_backbone)
    lora = LoraSettings(rank=LORA_RANK, alpha=8, dropout=0.0, target_modules=["query", "value"])
    before = _train(model, "lora", lora=lora)
    changed = _changed(before, model)
    assert not has_lora_adapters(model)  # merged into the weights after training
    encoder_changed = {n for n in changed if n.startswith("encoder.")}
    assert encoder_changed and all(n.endswith(("query.weight", "value.weight")) for n in encoder_changed), (
        encoder_changed
    )
    assert {"dense.linear.weight", "heads.topic.classifier.weight"} <= changed
    model.eval()
    model.save(tmp_path / "model", build_tiny_tokenizer(["lora save"]))
    loaded, _ = MultiTaskModel.load(tmp_path / "model")  # a plain model: no peft wrapper, no lora keys
    assert not any("lora" in name for name in loaded.state_dict())
    ids, mask = torch.randint(5, 100, (3, 9)), torch.ones(3, 9, dtype=torch.long)
    torch.testing.assert_close(loaded(ids, mask)["sentence_embedding"], model(ids, mask)["sentence_embedding"])


def test_lora_with_unknown_targets_names_the_layers(tiny_backbone):
    from mtl_model.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"train.lora.target_modules \['q_proj'\].*linear layers are named \['dense', 'key', 'query', 'value'\]",
    ):
        _train(tiny_model(tiny_backbone), "lora", lora=LoraSettings(target_modules=["q_proj"]))


def test_frozen_parameters_get_no_optimizer_state(tiny_backbone):
    model = tiny_model(tiny_backbone)
    config = TrainConfig(freeze_policy="gradual")
    policy = parse_freeze_policy("gradual")
    apply_freeze_policy(model, policy, stage=3)
    every = {id(p) for p in model.parameters() if p.requires_grad}
    apply_freeze_policy(model, policy, stage=1)  # top layer + heads train now
    optimizer = build_optimizer(model, config, include=every)
    batch = one_batch_split(seed=1)
    out = model(torch.as_tensor(batch.input_ids), torch.as_tensor(batch.attention_mask), task="topic")
    torch.nn.functional.cross_entropy(out["logits"], torch.as_tensor(batch.labels)).backward()
    optimizer.step()
    with_state = {id(p) for p in optimizer.state}
    top_layer = {id(p) for p in model.encoder.layer_groups()[-1]}
    lower = {id(p) for group in model.encoder.layer_groups()[:-1] for p in group}
    assert top_layer <= with_state and not (lower & with_state)
    static = (
        build_optimizer(model, TrainConfig(freeze_policy="backbone"))
        if apply_freeze_policy(model, parse_freeze_policy("backbone"))
        else None
    )
    in_static = {id(p) for group in static.param_groups for p in group["params"]}
    assert not in_static & {id(p) for p in model.encoder.parameters()}


def test_frozen_modules_run_in_eval_mode(tiny_backbone):
    model = tiny_model(tiny_backbone)
    apply_freeze_policy(model, parse_freeze_policy("top:1"))
    set_train_mode(model)
    layers = model.encoder.auto_model.encoder.layer
    assert not model.encoder.auto_model.embeddings.training and not layers[0].training
    assert layers[1].training and model.heads["topic"].training and model.training
    apply_freeze_policy(model, parse_freeze_policy("backbone"))
    set_train_mode(model)
    assert not any(m.training for m in model.encoder.modules()) and model.heads["ner"].training


def test_layerwise_learning_rates_decay_from_the_top(tiny_backbone):
    model = tiny_model(tiny_backbone)
    apply_freeze_policy(model, parse_freeze_policy("none"))
    optimizer = build_optimizer(
        model, TrainConfig(learning_rate=1e-3, head_learning_rate=5e-3, layerwise_lr_decay=0.5)
    )
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    groups = model.encoder.layer_groups()
    assert {rate[id(p)] for p in groups[0]} == {0.25e-3}  # embeddings: decay²
    assert {rate[id(p)] for p in groups[1]} == {0.5e-3}
    assert {rate[id(p)] for p in groups[2]} == {1e-3}
    assert {rate[id(p)] for p in model.heads.parameters()} == {5e-3}


def test_gradual_unfreezing_schedule_is_logged(tiny_backbone):
    model, total = counts(tiny_backbone)
    config = TrainConfig(max_steps=7, batch_size=8, freeze_policy="gradual", unfreeze_every=2)
    result = train_multitask(model, {"topic": one_batch_split(seed=1)}, config, device="cpu")
    schedule = [(r["step"], int(r["value"])) for r in result.log if r["name"] == "trainable_params"]
    assert schedule == [(0, TOP), (2, TOP + LAYER), (4, TOP + 2 * LAYER), (6, total)]
    assert result.trainable_params == total


def test_gradual_that_cannot_reach_every_group_warns(tiny_backbone):
    config = TrainConfig(max_steps=4, batch_size=8, freeze_policy="gradual", unfreeze_every=2)
    with pytest.warns(UserWarning, match=r"unfreeze 1 of 3 encoder groups; set train.unfreeze_every to at most 1"):
        train_multitask(tiny_model(tiny_backbone), {"topic": one_batch_split(seed=1)}, config, device="cpu")


def test_policy_all_trains_nothing_and_creates_no_optimizer(tiny_backbone, monkeypatch):
    def no_optimizer(*args, **kwargs):
        raise AssertionError("an optimizer was created")

    monkeypatch.setattr(train_module, "build_optimizer", no_optimizer)
    model, total = counts(tiny_backbone)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_multitask(model, {"topic": one_batch_split()}, TrainConfig(freeze_policy="all"), device="cpu")
    assert (result.trained, result.steps, result.trainable_params, result.total_params) == (False, 0, 0, total)
    assert not _changed(before, model) and not model.training


def _scratch_model(norm: str) -> MultiTaskModel:
    from mtl_model.model import HeadSpec, build_model
    from mtl_model.modules.scratch import ScratchArchitecture
    from mtl_model.vocab import VocabConfig, build_tokenizer

    vocab = VocabConfig(kind="word_level", min_frequency=1)
    tokenizer = build_tokenizer(["a tiny corpus for the weight decay test"], vocab, model_max_length=64)
    return build_model(
        backbone="scratch",
        heads=[HeadSpec(name="topic", kind="sentence", labels=list("abcd"))],
        pooling="mean",
        projection_dim=16,
        normalize=True,
        head_dropout=0.0,
        max_seq_length=64,
        scratch=ScratchArchitecture(d_model=32, num_heads=2, num_layers=2, ff_dim=64, norm=norm),
        tokenizer=tokenizer,
    )


@pytest.mark.parametrize("encoder", ["bert", "scratch-pre", "scratch-post"])
def test_weight_decay_spares_every_vector_and_only_vectors(tiny_backbone, encoder):
    """nanoGPT's rule: biases and LayerNorm weights (dim < 2) get no decay; matrices and embeddings do.
    Name patterns missed the pre-norm scratch encoder's `encoder.final_norm.weight`."""
    model = tiny_model(tiny_backbone) if encoder == "bert" else _scratch_model(encoder.split("-")[1])
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.01, layerwise_lr_decay=0.5))
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert len(decay) == len(named)  # freeze policy none: every parameter is in exactly one group
    vectors = {name for name, p in named.items() if p.dim() < 2}
    assert vectors and {name for name in vectors if decay[id(named[name])] != 0.0} == set()
    assert {name for name, p in named.items() if p.dim() >= 2 and decay[id(p)] != 0.01} == set()
    if encoder == "scratch-pre":
        assert decay[id(named["encoder.final_norm.weight"])] == 0.0
        assert decay[id(named["encoder.final_norm.bias"])] == 0.0
    else:
        assert "encoder.final_norm.weight" not in named
