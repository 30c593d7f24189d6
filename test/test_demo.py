"""A reduced `make demo` end to end (few frames, few training steps) so CI keeps the demo working.

Real processes throughout: generator, training, export, ms2_to_bag, then the bag player, the node
and the evaluator over DDS; checks that every file the demo promises is there and holds numbers.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from conftest import REPO_ROOT


def test_quick_demo_end_to_end(tmp_path: Path):
    out = tmp_path / "demo_out"
    proc = subprocess.run([sys.executable, "-m", "training.demo", "--quick", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DEMO FAILED" not in proc.stderr

    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("test_day", "test_night"):
        for mode in ("metric", "median"):
            for view in ("thermal", "rgb"):
                value = metrics["offline"][split][mode][view]["abs_rel"]
                assert np.isfinite(value) and value > 0
    live = metrics["live_ros"]["metric"]
    assert set(live) == {"thermal", "rgb"} and all(live[v]["frames"] >= 1 for v in live)
    assert metrics["ros"]["depth_images_received"]["thermal"] >= 1
    # Lossless replay: every bag frame reached the node; a frame not evaluated is one the node
    # dropped itself (slower than the bag's 15 fps on a busy machine), counted in pairs_dropped.
    ros = metrics["ros"]
    node = ros["node_diagnostics"]
    assert int(node["pairs_matched"]) == ros["bag_frames"], node
    for view in ("thermal", "rgb"):
        assert ros["frames_evaluated"][view] + int(node["pairs_dropped"]) == ros["bag_frames"], ros

    sheets = sorted(out.glob("contact_*.png"))
    assert len(sheets) == 3
    sheet = cv2.imread(str(sheets[0]))
    assert sheet is not None and sheet.shape[0] > 100 and sheet.std() > 5  # a real picture
    for view in ("thermal", "rgb"):
        header = (out / f"cloud_{view}.ply").read_bytes()[:300].decode("ascii", "ignore")
        assert header.startswith("ply") and "element vertex" in header
        assert int(header.split("element vertex ")[1].split()[0]) > 100
    summary = (out / "summary.md").read_text()
    assert "| offline test_night / rgb / metric |" in summary and "pairs/s" in summary

    # A second run reuses data, checkpoint and model instead of redoing them.
    again = subprocess.run([sys.executable, "-m", "training.demo", "--quick", "--out", str(out)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "reusing" in again.stdout and again.stdout.count("reusing") >= 3


def test_demo_model_card_counts_training_time_over_resumed_sessions(tmp_path):
    from training.demo_model import training_seconds

    (tmp_path / "train.log").write_text(
        "2026-12-01 13:00:00 INFO run folder x on cpu (world size 1)\n"
        "2026-12-01 13:30:00 INFO step 100 loss 1.0\n"
        "Traceback (most recent call last):\n"  # a line without a stamp is skipped
        "2026-12-01 14:50:00 INFO run folder x on cpu (world size 1)\n"
        "2026-12-01 14:50:01 INFO resumed from x/last.pt at step 100\n"
        "2026-12-01 15:00:00 INFO done at step 200\n")
    seconds, sessions = training_seconds(tmp_path)
    assert (seconds, sessions) == (30 * 60 + 10 * 60, 2)  # the pause between them not counted


def test_source_fingerprint_follows_the_code(tmp_path, monkeypatch):
    from training import demo

    monkeypatch.setattr(demo, "REPO_ROOT", tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "tool.py").write_text("y = 2\n")
    first = demo.source_fingerprint("pkg", "tool.py")
    assert first == demo.source_fingerprint("pkg", "tool.py") and len(first) == 64
    (tmp_path / "pkg" / "a.py").write_text("x = 3\n")
    changed = demo.source_fingerprint("pkg", "tool.py")
    assert changed != first
    (tmp_path / "pkg" / "b.py").write_text("")  # a new, empty module counts too
    assert demo.source_fingerprint("pkg", "tool.py") != changed
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    assert demo.source_fingerprint("pkg") == demo.source_fingerprint("pkg")


def test_export_is_redone_when_the_exporting_code_changed(tmp_path, capsys):
    import json

    from model_fixtures import make_tiny_checkpoint

    from training import demo

    ckpt = make_tiny_checkpoint(tmp_path, height=64, width=128)
    model = tmp_path / "model" / "tiny.onnx"
    model.parent.mkdir()
    demo.export(ckpt, model)
    stamp = json.loads((model.parent / "export_stamp.json").read_text())
    assert stamp["code"] == demo.source_fingerprint(*demo.EXPORT_SOURCES)
    capsys.readouterr()
    demo.export(ckpt, model)
    assert "reusing" in capsys.readouterr().out
    stamp["code"] = "0" * 64  # exported by other network/exporter code: made again
    (model.parent / "export_stamp.json").write_text(json.dumps(stamp))
    before = model.stat().st_mtime_ns
    demo.export(ckpt, model)
    out = capsys.readouterr().out
    assert "reusing" not in out and "training.export" in out
    assert model.stat().st_mtime_ns != before
    assert json.loads((model.parent / "export_stamp.json").read_text())["code"] != "0" * 64


def test_demo_model_data_is_remade_when_the_generator_changed(tmp_path, monkeypatch):
    import json

    from training import demo_model

    calls = []
    monkeypatch.setattr(demo_model.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    root = tmp_path / "data"
    root.mkdir()
    args = ["--frames", "2", "--seed", "0"]
    demo_model.generate(root, args)
    assert len(calls) == 1 and calls[0][-5:] == ["--overwrite", *args]
    demo_model.generate(root, args)
    assert len(calls) == 1  # same arguments, same generator code: reused
    stamp = json.loads((root / "generator_args.json").read_text())
    (root / "generator_args.json").write_text(json.dumps({**stamp, "code": "0" * 64}))
    demo_model.generate(root, args)
    assert len(calls) == 2  # made by other generator code: made again
    demo_model.generate(root, ["--frames", "3", "--seed", "0"])
    assert len(calls) == 3
