"""bench/ros_throughput.py end to end (the real node process over real DDS), including --ab, the
alternating comparison of one node parameter's values; its figures are benchmarks, not asserted."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def test_ab_runs_each_setting_in_turn_and_summarises(tiny_onnx_model):
    proc = subprocess.run(
        [sys.executable, "bench/ros_throughput.py", "--model", str(tiny_onnx_model), "--rate",
         "5", "--seconds", "2", "--ab", "pipelined=true,false", "--repeats", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^\| (pipelined=\w+) \| (\d+) \| (\d+) \(", proc.stdout, re.MULTILINE)
    assert [setting for setting, _, _ in rows] == ["pipelined=true", "pipelined=false"]
    assert all(int(sent) >= 5 and int(processed) >= 1 for _, sent, processed in rows), rows
    assert "| setting | sent |" in proc.stdout
    assert re.search(r"mean share of pairs processed: pipelined=true [0-9.]+ %, "
                     r"pipelined=false [0-9.]+ %", proc.stdout), proc.stdout


def test_ab_settings_parse_and_refuse_bad_input():
    from ros_throughput import ab_settings

    assert ab_settings("") == [""]
    assert ab_settings("pipelined=true, false") == ["pipelined=true", "pipelined=false"]
    for bad in ("pipelined", "pipelined=true", "=1,2"):
        with pytest.raises(SystemExit, match="--ab"):
            ab_settings(bad)
