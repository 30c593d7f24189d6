"""bench/onnx_ab.py compares two ONNX (or two .pt2) files of one network through the node's
backend; its
latencies are benchmarks (bench/RESULTS.md), only the table's layout and parity are asserted."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _copy(model: Path, out_dir: Path) -> Path:
    """The model and its sidecar in another folder (a sidecar names its model file)."""
    out_dir.mkdir()
    shutil.copy(model, out_dir)
    shutil.copy(str(model) + ".json", out_dir)
    return out_dir / model.name


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/onnx_ab.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_two_copies_of_one_export_agree_exactly(tiny_onnx_model, tmp_path):
    copy = _copy(tiny_onnx_model, tmp_path / "copy")
    proc = _run(str(tiny_onnx_model), str(copy), "--runs", "2", "--threads", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^\| ([AB]): (.+?) \| (\d+) \| ([0-9.]+) \| ([0-9.]+) \|$", proc.stdout,
                      re.MULTILINE)
    assert [(name, path) for name, path, *_ in rows] == [("A", str(tiny_onnx_model)),
                                                        ("B", str(copy))]
    assert rows[0][2] == rows[1][2] and int(rows[0][2]) > 100  # the same graph, node count
    assert all(float(ms) > 0 for *_, ms, p10 in rows for ms in (ms, p10))
    assert "largest output difference: 0 " in proc.stdout
    assert ("256x640, 2 alternating runs each; onnxruntime backend, ort_threads 1, "
            "ort_allow_spinning false") in proc.stdout


def test_networks_with_other_outputs_are_refused(tiny_onnx_model, tiny_confidence_onnx_model):
    proc = _run(str(tiny_onnx_model), str(tiny_confidence_onnx_model), "--runs", "1")
    assert proc.returncode != 0
    assert "do not hold the same network interface" in proc.stderr
    assert str(tiny_confidence_onnx_model) in proc.stderr


def test_missing_file_is_named(tiny_onnx_model, tmp_path):
    proc = _run(str(tiny_onnx_model), str(tmp_path / "absent.onnx"))
    assert proc.returncode == 2 and f"no such model file: {tmp_path / 'absent.onnx'}" \
        in proc.stderr


def test_two_pt2_programs_run_through_the_torch_backend(tmp_path):
    from model_fixtures import make_tiny_pt2

    model = make_tiny_pt2(tmp_path / "a")
    copy = _copy(model, tmp_path / "b")
    proc = _run(str(model), str(copy), "--runs", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("| file | graph nodes | median ms | p10 ms |")
    counts = re.findall(r"^\| [AB]: .+? \| (\d+) \|", proc.stdout, re.MULTILINE)
    assert len(counts) == 2 and counts[0] == counts[1] and int(counts[0]) > 100
    assert "largest output difference: 0 " in proc.stdout
    assert "1 alternating runs each; torch backend)" in proc.stdout


def test_formats_are_not_mixed(tiny_onnx_model, tmp_path):
    other = tmp_path / "model.pt2"
    other.write_bytes(b"not read")
    proc = _run(str(tiny_onnx_model), str(other), "--runs", "1")
    assert proc.returncode != 0 and "compare two .onnx or two .pt2 files" in proc.stderr
