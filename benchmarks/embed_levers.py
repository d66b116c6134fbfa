"""Levers for the bf16 embed tier, measured in one process (issue 17; docs/RESULTS.md §11).

    python benchmarks/embed_levers.py [--data-dir ../shared/data] [--sentences 2000] [--no-compile]

On the `embed_peers.py` sentence mix, steady state (best of 2 passes after a warm-up), against fp32 with the tier
gates' cosine: the matmul ceilings at the feed-forward shapes; the tier as shipped (autocast, 2,048-token cap);
other batch shapes; PyTorch's math attention kernel instead of its CPU flash kernel; Linear weights cast to bf16
once; `torch.compile(dynamic=True)` with inductor freezing (its compile time printed); then a `torch.profiler`
table of the shipped tier. Session 9's numbers came from three probe scripts with these same steps, run separately.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (~40 s on 2 cores)")
    args = parser.parse_args(argv)

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import mtl_model.embed.inference as inference
    from benchmarks.embed_peers import cpu_info, interleave, matmul_gflops, source_sentences
    from benchmarks.embed_throughput import build_model_dir
    from mtl_model.embed import embed_texts, load_model_once
    from mtl_model.runtime import quiet_third_party

    quiet_third_party()
    print(f"CPU: {cpu_info()['model']}; torch threads {torch.get_num_threads()}", flush=True)
    for dtype in ("fp32", "bf16"):
        print(f"{dtype} feed-forward pair, 1,792 rows: {matmul_gflops(dtype, 1792, 384, 1536, 2.0):.1f} GFLOP/s")
    inference.FP32_MAX_TOKENS = 0  # every batch in the tier's precision, so variants compare like for like
    sources, _ = source_sentences(args.data_dir)
    texts = interleave(sources, args.sentences)
    with tempfile.TemporaryDirectory() as work:
        model, tokenizer = load_model_once(str(build_model_dir(Path(work) / "model")), "levers", "cpu")

    def run(module: Any, precision: str = "bf16", batch_tokens: int | None = 2048, batch_size: int = 64) -> Any:
        return embed_texts(
            module, tokenizer, texts, batch_size=batch_size, batch_tokens=batch_tokens, device="cpu",
            precision=precision,
        )[0]  # fmt: skip

    def timed(label: str, call: Callable[[], Any], reference: Any) -> None:
        call()
        best = 0.0
        for _ in range(2):
            started = time.perf_counter()
            out = call()
            best = max(best, len(texts) / (time.perf_counter() - started))
        cosine = float((reference * out).sum(1).min())
        print(f"{label:>48}: {best:6.1f} sentences/s, min cosine vs fp32 {cosine:.6f}", flush=True)

    with torch.inference_mode():
        reference = run(model, "fp32")
        timed("fp32 tier", lambda: run(model, "fp32"), reference)
        timed("bf16 tier as shipped (autocast, 2,048 tokens)", lambda: run(model), reference)
        timed("bf16, 64 rows, no token cap", lambda: run(model, batch_tokens=None), reference)
        timed("bf16, 128 rows, 4,096 tokens", lambda: run(model, batch_tokens=4096, batch_size=128), reference)
        with sdpa_kernel(SDPBackend.MATH):
            timed("bf16, math attention kernel", lambda: run(model), reference)
        profile_table(lambda: run(model))
        for linear in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
            linear.weight.data = linear.weight.data.bfloat16()
            if linear.bias is not None:
                linear.bias.data = linear.bias.data.bfloat16()
        timed("bf16, Linear weights cast once", lambda: run(model), reference)
        if not args.no_compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            started = time.perf_counter()
            compiled = torch.compile(model, dynamic=True)
            run(compiled)
            print(f"torch.compile + first pass: {time.perf_counter() - started:.1f} s", flush=True)
            timed("bf16, compiled (freezing, dynamic)", lambda: run(compiled), reference)


def profile_table(call: Callable[[], Any]) -> None:
    """Self CPU time per op of one pass of `call`, the 12 largest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
