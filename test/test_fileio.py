"""Atomic file output: complete files with the usual mode, nothing left behind on failure."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from depth_fusion_ros.fileio import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    pid_alive,
    remove_stale_temporaries,
    temporary_pattern,
)

REPO = Path(__file__).resolve().parents[1]


def test_atomic_write_gives_usual_mode_and_content(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "sub" / "model.onnx.json", '{"a": 1}\n')
    finally:
        os.umask(umask)
    assert path.read_text() == '{"a": 1}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by a node running as another user
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx.json"]


def test_failure_keeps_previous_file_and_leaves_no_temp(tmp_path):
    path = atomic_write_bytes(tmp_path / "model.engine", b"old engine")
    with pytest.raises(RuntimeError, match="build failed"), atomic_output(path, suffix=".engine") as tmp:
        tmp.write_bytes(b"half an eng")
        raise RuntimeError("build failed")
    assert path.read_bytes() == b"old engine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.engine"]


def test_temporary_name_carries_writer_pid(tmp_path):
    with atomic_output(tmp_path / "last.pt") as tmp:
        assert re.fullmatch(rf"\.last\.pt\.{os.getpid()}\.[a-z0-9_]{{8}}\.tmp", tmp.name)
        tmp.write_bytes(b"x")
    assert temporary_pattern(tmp_path / "last.pt").fullmatch(tmp.name)
    assert not temporary_pattern(tmp_path / "last.pt", ".onnx").fullmatch(tmp.name)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sigkill_leftover_removed_by_next_write(tmp_path):
    """A writer killed mid-write (SIGKILL: no cleanup) leaves `.last.pt.PID.XXXXXXXX.tmp`; the
    next write of last.pt removes it, and only leftovers of dead writers of that same target."""
    target = tmp_path / "last.pt"
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from depth_fusion_ros.fileio import atomic_output\n"
         "with atomic_output(sys.argv[1]) as tmp:\n"
         "    tmp.write_bytes(b'half a checkpoint'); print('ready', flush=True); time.sleep(60)",
         str(target)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.kill()
    child.wait(timeout=20)
    (leftover,) = tmp_path.glob(f".last.pt.{child.pid}.*.tmp")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ours_from_earlier_run = tmp_path / f".last.pt.{os.getpid()}.zzzzzzzz.tmp"  # PID reused
        keep = [tmp_path / f".last.pt.{live.pid}.abcdefgh.tmp",  # a live concurrent writer
                tmp_path / f".best.pt.{_dead_pid()}.abcdefgh.tmp",  # another target
                tmp_path / f".last.pt.{_dead_pid()}.abcdefgh.onnx",  # another suffix
                tmp_path / ".last.pt.notes.tmp", tmp_path / f"last.pt.{_dead_pid()}.abcdefgh.tmp"]
        for path in [*keep, ours_from_earlier_run]:
            path.write_bytes(b"")
        atomic_write_bytes(target, b"complete checkpoint")
        assert target.read_bytes() == b"complete checkpoint"
        assert not leftover.exists() and not ours_from_earlier_run.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["last.pt"] + [p.name for p in keep])
    finally:
        live.kill()
        live.wait()


def test_remove_stale_temporaries_needs_pid_group(tmp_path):
    with pytest.raises(ValueError, match="pid"):
        remove_stale_temporaries(tmp_path, re.compile(r"\.x\.\d+"))
    assert pid_alive(os.getpid()) and not pid_alive(_dead_pid()) and not pid_alive(0)
