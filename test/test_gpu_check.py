"""bench/gpu_check.py (`make gpu-check`) stays runnable on machines without a GPU.

The CPU dry run is the script's own code path on `cpu` with the tiny model: it must finish,
write its table to the file it is given (never bench/RESULTS.md) and name what it skipped. A
second run hides numpy, opencv, rclpy, ONNX and TensorRT, as on a GPU machine that has torch
alone, and must still time the network. Figures are checked for shape (numbers, units), never
for speed: on CUDA they are reported, not asserted.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
NUMBER = r"\d+(?:\.\d+)?"


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _table(text: str, header_start: str) -> list[list[str]]:
    """The cells of each data line of the Markdown table whose header starts with the text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _run(args: list[str], tmp_path: Path, prelude: str = "") -> subprocess.CompletedProcess:
    code = (f"{prelude}import runpy, sys; sys.path.insert(0, {str(BENCH)!r}); "
            f"sys.argv = ['bench/gpu_check.py', *{args!r}]; "
            "runpy.run_path('bench/gpu_check.py', run_name='__main__')")
    env = {**os.environ, "ROS_HOME": str(tmp_path / "ros_home")}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


def test_modules_import_only_the_standard_library():
    code = ("import sys; sys.path.insert(0, 'bench'); "
            "import gpu_check, gpu_report, gpu_timing, node_probe; "
            "print(sorted(m for m in ('torch', 'numpy', 'cv2', 'rclpy', 'onnx', 'onnxruntime', "
            "'tensorrt', 'depth_fusion_ros', 'training') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_cpu_dry_run_writes_its_table_to_the_given_file(tmp_path):
    real_results = BENCH / "RESULTS.md"
    before = real_results.read_bytes() if real_results.exists() else None
    results = tmp_path / "out" / "RESULTS.md"
    proc = _run(["--dry-run", "--results", str(results)], tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert f"results appended to {results}" in proc.stdout
    assert (real_results.read_bytes() if real_results.exists() else None) == before
    text = results.read_text()
    assert "## GPU check (CPU dry run, 256x640)" in text
    assert "- command: `python bench/gpu_check.py --dry-run --results" in text

    rows = _table(text, "| model | runtime |")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("tiny", "torch .pt2", "cpu", "fp32"), ("tiny", "torch .pt2", "cpu", "fp32")]
    for row in rows:
        p50, p90, rate = (float(row[i]) for i in (4, 5, 6))
        assert 0 < p50 <= p90 and rate == pytest.approx(1000 / p50, rel=0.01, abs=0.06)
        assert row[7] == "-"  # no GPU memory on the CPU
        assert re.fullmatch(rf"{NUMBER}e[+-]\d+ ok", row[8])  # same file on the same CPU
    assert rows[1][9] == "asked fp16"  # the torch backend runs fp32 on the CPU, and says so

    node = _table(text, "| model | backend |")  # the default (pipelined) worker, then sequential
    assert [row[0] for row in node] == ["tiny .pt2 fp16", "tiny .pt2 fp16, pipelined false"]
    for row in node:
        backend, device, precision, startup, input_hz, pairs, standalone = row[1:8]
        assert (backend, device, precision) == ("torch", "cpu", "fp32")
        assert float(startup) > 0 and float(input_hz) > 0 and float(standalone) > 0
        assert float(pairs) > 0 and float(row[9]) > 0 and float(row[10]) > 0
        assert row[12] == ""  # no error note

    targets = text.split("Targets:")[1].split("Skipped:")[0]
    assert re.search(rf"node throughput, torch backend on cpu: {NUMBER} pairs/s through ROS at "
                     rf"{NUMBER} Hz input vs {NUMBER}/s standalone: ratio {NUMBER}", targets)
    assert re.search(rf"stamp-to-publish latency \(median\) {NUMBER} ms vs inference {NUMBER} ms",
                     targets)
    assert "swin_l fp16 torch latency: not measured" in targets
    assert "engine-cache-hit start-up: not measured" in targets
    skipped = text.split("Skipped:")[1]
    assert "- tensorrt: TensorRT needs a CUDA device" in skipped
    assert "- aoti: AOTInductor packages are compiled for CUDA" in skipped


def test_torch_alone_still_times_the_network(tmp_path):
    hide = ("numpy", "cv2", "rclpy", "onnx", "onnxruntime", "tensorrt", "rosbags", "yaml")
    # sys.modules[name] = None: importing raises ModuleNotFoundError and find_spec says absent.
    prelude = f"import sys; sys.modules.update(dict.fromkeys({hide!r})); "
    results = tmp_path / "RESULTS.md"
    proc = _run(["--device", "cpu", "--results", str(results)], tmp_path, prelude)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = results.read_text()
    rows = _table(text, "| model | runtime |")
    assert [(r[0], r[1], r[3]) for r in rows] == [("tiny", "plain torch .pt2", "fp32")] * 2
    for row in rows:
        assert 0 < float(row[4]) <= float(row[5])
        assert re.fullmatch(rf"{NUMBER}e[+-]\d+ not checked", row[8])
    assert "- torch backend, node, tensorrt, aoti: depth_fusion_ros needs numpy, cv2: plain " \
           "torch timings instead" in text
    assert "| model | backend |" not in text  # no node table without rclpy


@pytest.mark.skipif(_cuda_available(), reason="a CUDA GPU is visible: nothing to refuse")
def test_gpu_run_without_a_gpu_points_to_the_dry_run(tmp_path):
    proc = _run(["--device", "cuda:0", "--results", str(tmp_path / "R.md")], tmp_path)
    assert proc.returncode == 2
    assert "torch sees no CUDA GPU here; run `python bench/gpu_check.py --dry-run`" in proc.stdout
    assert not (tmp_path / "R.md").exists()


def test_report_figures_and_ratio():
    sys.path.insert(0, str(BENCH))
    try:
        from gpu_report import NodeRow, Row, format_row, node_line, targets
        from node_probe import NodeRun
    finally:
        sys.path.remove(str(BENCH))
    swin_l = Row("swin_l", "torch .pt2", "cuda:0", "fp16", "fp16", 20.0, 25.0, 3000.0, 0.2, "ok")
    assert format_row(swin_l) == ("| swin_l | torch .pt2 | cuda:0 | fp16 | 20.00 | 25.00 | 50.0 "
                                  "| 3000 | 2.00e-01 ok |  |")
    run = NodeRun(startup_s=12.0, sent_hz=30.0, pairs_per_s=27.0, node_latency_ms=45.0,
                  node_inference_ms=20.0, receipt_latency_ms=46.0,
                  diagnostics={"device": "cuda:0", "precision": "fp16"})
    node = NodeRow("swin_b .pt2 fp16", "torch", run, 50.0)
    assert node.ceiling_per_s == 30.0  # the input rate limits it, not the 50/s standalone
    assert node_line(node) == ("| swin_b .pt2 fp16 | torch | cuda:0 | fp16 | 12.0 | 30.0 | 27.0 "
                               "| 50.0 | 0.90 | 45.0 | 20.0 | 46.0 |  |")
    lines = targets([swin_l], [node, NodeRow("swin_b engine fp16 (cache hit)", "tensorrt",
                                             NodeRun(startup_s=4.5, sent_hz=30.0), 100.0)])
    assert lines == [
        "- node throughput, torch backend on cuda:0: 27.0 pairs/s through ROS at 30.0 Hz input "
        "vs 50.0/s standalone: ratio 0.54 (0.90 of min(standalone, input))",
        "- stamp-to-publish latency (median) 45.0 ms vs inference 20.0 ms (node /diagnostics)",
        "- swin_l fp16 torch latency at 256x640: p50 20.00 ms, p90 25.00 ms on cuda:0",
        "- engine-cache-hit start-up, swin_b engine fp16 (cache hit): 4.5 s from node start to "
        "first depth"]
