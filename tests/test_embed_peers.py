"""The peer benchmark's pure parts, without the peer venv (building it takes minutes and downloads wheels):
the FLOP count behind the ceiling, the pinned requirements, and the report and table on made-up numbers."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import embed_peers
from benchmarks.embed_peers import (
    OV_INT8_FILE,
    REQUIREMENTS,
    Contender,
    Measured,
    build_report,
    contenders,
    cpu_info,
    ensure_peer_venv,
    file_digest,
    flops_per_sentence,
    format_table,
    int8_quantization_config,
    interleave,
    mean_gflop,
    missing_exports,
    requirement_pins,
)
from mtl_model.embed.tiers import MIN_COSINE, MIN_NEIGHBOUR_OVERLAP

MINILM = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}
GATES = {"min_cosine": MIN_COSINE, "neighbour_overlap": MIN_NEIGHBOUR_OVERLAP}


def test_flops_of_a_25_token_minilm_sentence_are_the_issues_half_gflop() -> None:
    # 6 layers × 25 tokens × 2 × (4·384² + 2·384·1536 + 2·25·384) multiply-adds
    assert flops_per_sentence(MINILM, 25) == 2 * 6 * 25 * (4 * 384**2 + 2 * 384 * 1536 + 2 * 25 * 384)
    assert flops_per_sentence(MINILM, 25) / 1e9 == pytest.approx(0.5366, abs=1e-4)
    assert mean_gflop(MINILM, [20, 30]) == pytest.approx(
        (flops_per_sentence(MINILM, 20) + flops_per_sentence(MINILM, 30)) / 2e9
    )


def test_peer_requirements_pin_everything_and_take_the_local_torch() -> None:
    pins = requirement_pins(REQUIREMENTS.read_text())
    assert pins["torch"] == "2.13.0"  # exactly: any other spec downloads a multi-GB CUDA build
    assert "torchvision" not in pins  # fails to import beside torch 2.13
    assert {"sentence-transformers", "optimum-intel", "optimum-onnx", "openvino", "onnxruntime"} <= pins.keys()
    assert int(pins["transformers"].split(".")[0]) == 4  # optimum-onnx needs transformers < 4.58


def test_a_loose_requirement_is_refused() -> None:
    with pytest.raises(ValueError, match="exact pin"):
        requirement_pins("torch>=2.13\n")
    assert requirement_pins("# c\nhuggingface_hub==0.36.2  # why\n") == {"huggingface-hub": "0.36.2"}


def test_cache_key_changes_with_any_part() -> None:
    assert file_digest(b"a", b"b") != file_digest(b"ab")
    assert file_digest(b"a") == file_digest(b"a")


def test_cpu_flags_and_int8_preset() -> None:
    info = cpu_info("model name\t: Xeon\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n")
    assert info["model"] == "Xeon"
    assert info["flags"]["amx_bf16"] and info["flags"]["avx512_bf16"] and not info["flags"]["amx_int8"]
    assert int8_quantization_config(info["flags"]) == "avx512"
    assert int8_quantization_config({"avx2": True}) == "avx2"


def test_interleave_takes_sources_in_turn_and_calibration_from_the_other_end() -> None:
    sources = {"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}
    assert interleave(sources, 5) == ["a1", "b1", "c1", "a2", "c2"]
    assert interleave(sources, 3, from_end=True) == ["a3", "b1", "c2"]


def fake_report(has_bf16: bool = True) -> dict:
    rows = contenders(has_bf16, "avx512")
    measured = {
        "encode": Measured([100.0, 110.0, 120.0], min_cosine=1.0, neighbour_overlap=1.0),
        "st-openvino": Measured([200.0], min_cosine=0.99995, neighbour_overlap=0.995),
        "st-onnx": Measured([150.0], min_cosine=1.0, neighbour_overlap=1.0),
        "ort-int8": Measured([300.0], min_cosine=0.96, neighbour_overlap=0.85),
        "ov-int8": Measured(errors=["boom"]),
        "ours-fp32": Measured([130.0], min_cosine=1.0, neighbour_overlap=1.0),
        "ours-bf16": Measured([440.0], min_cosine=0.99994, neighbour_overlap=0.9945),
    }
    return build_report(
        cpu=cpu_info("model name: Xeon\nflags: avx512_bf16\n"),
        rows=rows,
        measured=measured,
        ceiling_gflops={"fp32": 250.0, "bf16": 1100.0, "int8": None},
        gflop_per_sentence=0.55,
        gates=GATES,
        has_bf16=has_bf16,
        auto_tier="bf16",
        meta={"sentences": 4000, "ceiling_rows": 1600, "mean_tokens": 25.0},
    )


def test_report_ratios_gates_and_ceiling_shares() -> None:
    report = fake_report()
    rows = report["contenders"]
    assert rows["encode"]["sentences_per_s"] == 110.0 and rows["encode"]["x_encode"] == 1.0  # median of rounds
    assert rows["st-openvino"]["precision"] == "bf16"  # OpenVINO's default on a native-bf16 CPU
    assert rows["ort-int8"]["passes_gates"] is False and rows["st-openvino"]["passes_gates"] is True
    assert rows["ov-int8"]["sentences_per_s"] is None and rows["ov-int8"]["errors"] == ["boom"]
    assert rows["ours-bf16"]["pct_of_ceiling"] == pytest.approx(100 * 440 * 0.55 / 1100, abs=0.05)
    assert rows["ort-int8"]["pct_of_ceiling"] is None  # no int8 ceiling measured
    assert report["ratios"] == {
        "ours": "ours-bf16",
        "ours_vs_encode": 4.0,
        "best_gated_peer": "st-openvino",  # ort-int8 is faster but fails the gates
        "ours_vs_best_gated_peer": 2.2,
        "ours_pct_of_ceiling": 22.0,
    }
    assert json.loads(json.dumps(report)) == report


def test_table_has_a_row_per_contender_and_marks_gaps() -> None:
    table = format_table(fake_report())
    lines = table.splitlines()
    assert lines[0].startswith("| contender") and len([line for line in lines if line.startswith("| ")]) == 1 + 7
    assert "| FAIL |" in table and "| pass |" in table and "boom" in table
    assert "2.20× the fastest gated peer (st-openvino)" in table


def test_without_native_bf16_there_is_no_bf16_tier_and_openvino_is_fp32() -> None:
    rows = contenders(False, "avx2")
    assert [row.name for row in rows if row.side == "ours"] == ["ours-fp32"]
    assert all(isinstance(row, Contender) for row in rows)
    report = fake_report(has_bf16=False)
    assert report["contenders"]["st-openvino"]["precision"] == "fp32"
    assert "ours-bf16" not in report["contenders"]


def test_the_peer_venv_is_reused_while_its_requirements_are_unchanged(tmp_path, monkeypatch) -> None:
    requirements = tmp_path / "requirements-peers.txt"
    requirements.write_text("torch==2.13.0\n")
    venv = tmp_path / "venv"
    commands: list[list[str]] = []

    def fake_run(command, **kwargs):
        commands.append([str(part) for part in command])
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        (venv / "bin" / "python").touch()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(embed_peers.subprocess, "run", fake_run)
    python, built = ensure_peer_venv(requirements, venv)
    assert python == venv / "bin" / "python" and built is not None
    assert "--only-binary=:all:" in commands[-1] and str(requirements) in commands[-1]
    commands.clear()
    assert ensure_peer_venv(requirements, venv) == (python, None) and commands == []  # reused: nothing runs
    requirements.write_text("torch==2.13.0\nnumpy==2.4.6\n")
    assert ensure_peer_venv(requirements, venv)[1] is not None and len(commands) == 2  # changed: rebuilt


def test_missing_exports_lists_what_the_peer_rows_need(tmp_path) -> None:
    rows = contenders(False, "avx2")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").touch()
    assert missing_exports(tmp_path, rows) == [
        "onnx/model_int8_avx2.onnx",
        "openvino/openvino_model.xml",
        f"openvino/{OV_INT8_FILE}",
    ]
