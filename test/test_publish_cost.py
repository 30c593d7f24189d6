"""bench/publish_cost.py runs end to end over real DDS (a subscriber in another process) and
reports every step; its numbers are benchmarks (bench/RESULTS.md), not asserted here."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_publish_cost_reports_each_step_with_a_matched_subscriber():
    proc = subprocess.run([sys.executable, "bench/publish_cost.py", "--runs", "3", "--qos",
                           "best_effort"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^\| (.+?) \| ([0-9.]+) \| ([0-9.]+)x \|$", proc.stdout, re.MULTILINE)
    names = [name for name, _, _ in rows]
    assert names == ["serialize_message (what node_overhead.py charges)",
                     "publish(msg), no subscriber",
                     "publish(msg), subscriber in another process",
                     "publish(bytes) pre-serialised, subscriber in another process",
                     "memcpy of the same bytes"]
    assert all(float(ms) > 0 for _, ms, _ in rows) and rows[0][2] == "1.00"
    assert "2.62 MB" in proc.stdout and "best_effort output" in proc.stdout
