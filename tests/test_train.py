"""Training engine pieces: batch streams, schedule, precision resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_model.config import TrainConfig
from mtl_model.device import autocast_dtype, resolve_precision
from mtl_model.errors import ConfigError
from mtl_model.train import GROUP_WINDOW, BatchStream, linear_schedule, total_steps, train_multitask


def test_plain_stream_covers_every_row_once_per_epoch():
    stream = BatchStream(10, 4, np.random.default_rng(0))
    epoch = [stream.next() for _ in range(3)]
    assert [len(b) for b in epoch] == [4, 4, 2]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(10))
    assert sorted(np.concatenate([stream.next() for _ in range(3)]).tolist()) == list(range(10))


def test_length_grouped_batches_are_uniform_and_cover_every_row():
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 120, size=1000)
    stream = BatchStream(1000, 8, np.random.default_rng(2), lengths)
    batches = [stream.next() for _ in range(stream.batches_per_epoch)]
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    random_spread = np.mean([lengths[b].max() - lengths[b].min() for b in np.array_split(rng.permutation(1000), 125)])
    assert spread < random_spread / 5
    # padded tokens per batch fall (each batch pads to its own longest row)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 0.6 * sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), 125))
    assert GROUP_WINDOW == 50


def test_stream_is_seeded():
    a = BatchStream(100, 7, np.random.default_rng(5), np.arange(100))
    b = BatchStream(100, 7, np.random.default_rng(5), np.arange(100))
    assert all(np.array_equal(a.next(), b.next()) for _ in range(30))


def test_linear_warmup_then_decay():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = linear_schedule(optimizer, warmup_steps=2, total_steps=6)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])


def test_total_steps_from_epochs_or_max_steps():
    assert total_steps(TrainConfig(epochs=2, batch_size=10), {"a": 95, "b": 30}) == 20
    assert total_steps(TrainConfig(max_steps=7), {"a": 95}) == 7
    # one task per batch: the largest task gets half the micro-steps (round robin), 3/4 (proportional 90:30)
    assert total_steps(TrainConfig(epochs=2, batch_size=10, task_sampling="round_robin"), {"a": 95, "b": 30}) == 40
    assert total_steps(TrainConfig(epochs=3, batch_size=10, task_sampling="proportional"), {"a": 90, "b": 30}) == 36
    assert total_steps(TrainConfig(epochs=2, batch_size=10, gradient_accumulation_steps=4), {"a": 95}) == 5


def test_precision_resolution():
    assert resolve_precision("cpu", "fp32") == "fp32" and resolve_precision("cpu", "bf16") == "bf16"
    assert resolve_precision("cpu", "auto") in ("fp32", "bf16")
    assert (
        autocast_dtype("bf16") is torch.bfloat16
        and autocast_dtype("fp16") is torch.float16
        and autocast_dtype("fp32") is None
    )
    with pytest.raises(ConfigError, match="precision must be auto, fp32, bf16 or fp16"):
        resolve_precision("cpu", "fp8")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains(tiny_backbone, precision):
    """fp16 goes through the gradient scaler (on CPU here; the same code path serves GPUs without bf16)."""
    from tests.helpers import one_batch_split, tiny_model

    model = tiny_model(tiny_backbone)
    config = TrainConfig(
        max_steps=40, batch_size=8, learning_rate=3e-3, head_learning_rate=3e-3, warmup_ratio=0.0, precision=precision
    )
    result = train_multitask(model, {"topic": one_batch_split(seed=2)}, config, device="cpu", precision=precision)
    assert result.precision == precision
    assert result.losses[-1] < 0.5 * result.losses[0], (result.losses[0], result.losses[-1])
    assert all(torch.isfinite(p).all() for p in model.parameters())
