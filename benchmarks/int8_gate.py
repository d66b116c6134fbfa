"""Would an int8 tier pass its gate? Simulated int8 variants of our model against fp32, and torch's int8 GEMM speed.

    python benchmarks/int8_gate.py [--data-dir ../shared/data] [--sentences 2000] [--smoke]

Issue 17 allows an `int8` tier if its embeddings keep top-10 neighbour overlap ≥ 0.98 with fp32 (and the model's task
metrics within 0.3 points). Before building kernels, this measures whether any standard int8 scheme can keep that
overlap on the bundled all-MiniLM-L6-v2: each variant replaces the encoder's 36 linear layers' forward with
quantize → dequantize in fp32 ("fake quant": the rounding an int8 kernel would make, none of its speed), embeds the
`embed_peers.py` sentence mix and compares with fp32 using the tier gates' own functions:

- `weights int8`: weights rounded per output channel (symmetric), activations left in fp32: the best case of
  any int8 scheme, since it keeps the activations exact.
- `w8a8 per-token`: also each token's activation row rounded to int8 with its own scale (dynamic): what a
  `torch._int_mm` kernel with per-row scales computes.
- `w8a8 per-tensor`: one activation scale per batch (ONNX Runtime's dynamic int8).
- `w8a8 smoothed`: SmoothQuant (α = 0.5; per-channel activation maxima from calibration sentences away from the
  mix moved into the weights) with the 16 largest input channels left unrounded (mixed-precision outliers).

The speed side: `torch._int_mm` (int8 × int8 → int32) against bf16 and fp32 `linear` at the model's feed-forward
shape, and the cost of per-token quantizing the input and dequantizing the output around it. Prints one line per
variant and per kernel, then one JSON line (last).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GATE_OVERLAP = 0.98  # issue 17's int8 gate
OUTLIER_CHANNELS = 16
SMOOTH_ALPHA = 0.5


def quantize_rows(x: Any, bits: int = 8) -> Any:
    """Symmetric round-to-nearest of each row of `x` (..., K) to `bits`, returned dequantized (same shape)."""
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-12) / qmax  # (..., 1)
    return (x / scale).round().clamp(-qmax, qmax) * scale


def quantize_tensor(x: Any, bits: int = 8) -> Any:
    """Symmetric round-to-nearest of the whole tensor with one scale, returned dequantized."""
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax().clamp_min(1e-12) / qmax
    return (x / scale).round().clamp(-qmax, qmax) * scale


def fake_quant_forward(linear: Any, scheme: str, input_max: Any | None = None) -> Callable[[Any], Any]:
    """A forward for `linear` that rounds as `scheme` would (see the module docstring); `input_max` (K,): the
    calibrated per-channel activation maxima, needed by `smoothed`."""
    import torch

    weight = linear.weight.detach()  # (N, K)
    keep = None
    smooth = torch.ones(weight.shape[1])  # (K,)
    if scheme == "smoothed":
        if input_max is None:
            raise ValueError("the smoothed scheme needs calibrated input maxima")
        w_max = weight.abs().amax(0).clamp_min(1e-5)  # (K,)
        smooth = (input_max.clamp_min(1e-5) ** SMOOTH_ALPHA / w_max ** (1 - SMOOTH_ALPHA)).clamp_min(1e-5)
        keep = torch.topk(input_max / smooth, min(OUTLIER_CHANNELS, len(smooth))).indices  # channels left unrounded
    rounded_weight = quantize_rows(weight * smooth[None, :])  # per output channel, (N, K)

    def forward(x: Any) -> Any:  # (..., K) → (..., N)
        x = x / smooth
        if scheme in ("w8a8 per-token", "smoothed"):
            if keep is not None:
                outliers = x[..., keep]
                x = x.index_fill(-1, keep, 0.0)
                x = quantize_rows(x).index_copy(-1, keep, outliers)
            else:
                x = quantize_rows(x)
        elif scheme == "w8a8 per-tensor":
            x = quantize_tensor(x)
        return torch.nn.functional.linear(x, rounded_weight, linear.bias)

    return forward


@contextlib.contextmanager
def rounded_as(linears: dict[str, Any], scheme: str, input_max: dict[str, Any]) -> Iterator[None]:
    """Every linear in `linears` runs `scheme` inside the block; their own forward is restored after."""
    try:
        for name, linear in linears.items():
            linear.forward = fake_quant_forward(linear, scheme, input_max.get(name))
        yield
    finally:
        for linear in linears.values():
            linear.__dict__.pop("forward", None)  # back to the class's forward


def calibrate(model: Any, linears: dict[str, Any], embed: Callable[[list[str]], Any], texts: list[str]) -> dict:
    """Per-channel max |activation| at every linear's input (K,), over `texts`."""
    import torch

    maxima: dict[str, Any] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_module: Any, inputs: tuple[Any, ...]) -> None:
            seen = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)  # (K,)
            maxima[name] = seen if name not in maxima else torch.maximum(maxima[name], seen)

        return record

    handles = [linear.register_forward_pre_hook(hook(name)) for name, linear in linears.items()]
    try:
        embed(texts)
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def gemm_speeds(rows: int, hidden: int, inter: int, seconds: float) -> dict[str, float]:
    """ms per call at (rows, hidden) × (hidden, inter): fp32/bf16 `linear`, `torch._int_mm`, and int8 with the
    per-token quantize and dequantize around it."""
    import torch

    x, w = torch.randn(rows, hidden), torch.randn(inter, hidden)  # (M, K), (N, K)
    w_scale = w.abs().amax(1) / 127  # (N,)
    w_int8 = (w / w_scale[:, None]).round().to(torch.int8).t().contiguous()  # (K, N)

    def int8_linear() -> Any:
        scale = x.abs().amax(1, keepdim=True) / 127  # (M, 1)
        product = torch._int_mm((x / scale).round().to(torch.int8), w_int8)  # (M, N) int32
        return product.to(torch.float32).mul_(scale).mul_(w_scale)

    x_int8 = (x / (x.abs().amax(1, keepdim=True) / 127)).round().to(torch.int8)  # (M, K)
    x16, w16 = x.bfloat16(), w.bfloat16()
    kernels = {
        "fp32 linear": lambda: torch.nn.functional.linear(x, w),
        "bf16 linear": lambda: torch.nn.functional.linear(x16, w16),
        "int8 _int_mm": lambda: torch._int_mm(x_int8, w_int8),
        "int8 with per-token quant/dequant": int8_linear,
    }
    speeds = {}
    for name, kernel in kernels.items():
        kernel()
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            kernel()
            calls += 1
        speeds[name] = round(1e3 * elapsed / calls, 3)
    return speeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help="64 sentences, short kernel timings")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import tempfile

    import torch

    from benchmarks.embed_peers import cpu_info, interleave, source_sentences
    from benchmarks.embed_throughput import build_model_dir
    from mtl_model.embed import embed_texts, load_model_once
    from mtl_model.embed.tiers import min_cosine, neighbour_overlap
    from mtl_model.runtime import quiet_third_party

    quiet_third_party()
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}; " + ", ".join(f"{f}={'yes' if v else 'no'}" for f, v in cpu["flags"].items()))
    sources, where = source_sentences(args.data_dir)
    count = 64 if args.smoke else args.sentences
    texts, calibration = interleave(sources, count), interleave(sources, min(count, 300), from_end=True)
    with tempfile.TemporaryDirectory() as work:
        model, tokenizer = load_model_once(str(build_model_dir(Path(work) / "model")), "int8-gate", "cpu")

    def embed(batch: list[str]) -> Any:
        return embed_texts(model, tokenizer, batch, batch_size=64, device="cpu", precision="fp32")[0]

    linears = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".encoder.layer." in f".{name}"
    }
    reference = embed(texts)  # (N, D)
    input_max = calibrate(model, linears, embed, calibration)
    variants: dict[str, dict[str, float | None]] = {}
    for scheme in ("weights int8", "w8a8 per-token", "w8a8 per-tensor", "smoothed"):
        with rounded_as(linears, scheme, input_max):
            rounded = embed(texts)
        overlap = neighbour_overlap(reference, rounded)
        overlap = None if overlap is None else round(overlap, 4)
        variants[scheme] = {"min_cosine": round(min_cosine(reference, rounded), 5), "neighbour_overlap": overlap}
        verdict = "pass" if overlap is not None and overlap >= GATE_OVERLAP else "fail"
        print(f"{scheme:>16}: min cosine {variants[scheme]['min_cosine']:.5f}, top-10 overlap {overlap} ({verdict})")
    shape = (1792, 384, 1536)  # 64 rows × 28 tokens, hidden, intermediate: the embed_peers mix's FFN shape
    speeds = gemm_speeds(*shape, 0.2 if args.smoke else 2.0)
    for name, ms in speeds.items():
        print(f"{name:>34}: {ms:.3f} ms per ({shape[0]}×{shape[1]})·({shape[1]}×{shape[2]})")
    report = {
        "cpu": cpu,
        "sentences": len(texts),
        "source": where,
        "linears": len(linears),
        "gate_overlap": GATE_OVERLAP,
        "variants": variants,
        "gemm_shape": shape,
        "gemm_ms": speeds,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
