"""The int8 gate simulation's rounding (benchmarks/int8_gate.py): what it claims an int8 kernel would compute."""

from __future__ import annotations

import pytest
import torch

from benchmarks.int8_gate import calibrate, fake_quant_forward, quantize_rows, quantize_tensor, rounded_as


def test_row_rounding_keeps_each_row_within_half_a_step_of_its_own_scale():
    x = torch.tensor([[0.5, -1.27, 0.01], [100.0, 3.0, -50.0]])
    rounded = quantize_rows(x)
    steps = x.abs().amax(1, keepdim=True) / 127  # (2, 1)
    assert torch.all((rounded - x).abs() <= steps / 2 + 1e-6)
    assert rounded[0, 1].item() == pytest.approx(-1.27)  # the row's largest value is exact
    # one scale for the whole tensor: the small row loses its small value entirely
    assert quantize_tensor(x)[0, 2].item() == 0.0


def test_schemes_round_what_they_say_and_the_forward_is_restored():
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)  # (B, K)
    exact = linear(x)
    weights_only = fake_quant_forward(linear, "weights int8")(x)
    per_token = fake_quant_forward(linear, "w8a8 per-token")(x)
    assert 0 < (weights_only - exact).abs().max() < 0.02
    assert (per_token - exact).abs().max() > 0
    maxima = calibrate(linear, {"l": linear}, lambda texts: linear(x), ["unused"])
    assert torch.equal(maxima["l"], x.abs().amax(0))
    with rounded_as({"l": linear}, "smoothed", maxima):
        assert not torch.equal(linear(x), exact)
    assert torch.equal(linear(x), exact)  # the class's forward again
    with pytest.raises(ValueError, match="calibrated"):
        fake_quant_forward(linear, "smoothed")
