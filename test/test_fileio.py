"""Atomic file output: complete files with the usual mode, nothing left behind on failure."""
from __future__ import annotations

import os
import stat

import pytest

from depth_fusion_ros.fileio import atomic_output, atomic_write_bytes, atomic_write_text


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
