"""Writes synthetic sequences in exactly the MS2 layout, through the layout's one writer
(`depth_fusion_ros.ms2_writer.SequenceWriter`, beside the reader in ms2.py).

Crash safety: each sequence is rendered into `sync_data/<seq>.partial` and
`proj_depth/<seq>.partial` and renamed when complete; the split lists and `synthetic.json` are
written last (temp file + rename). A dataset without list files is therefore recognisably
half-written, and `depth_fusion_ros.ms2.read_split` says so.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from depth_fusion_ros.fileio import atomic_write_text
from depth_fusion_ros.ms2_writer import SequenceWriter, write_conditions, write_split_lists

from .render import SequenceRenderer, SequenceSpec
from .rig import calib_dict


def write_sequence(root: Path, spec: SequenceSpec,
                   progress: Callable[[int], None] | None = None) -> None:
    """Render all frames of `spec` into `root` (MS2 layout), atomically per sequence."""
    renderer = SequenceRenderer(spec)
    writer = SequenceWriter(root, spec.name)
    writer.write_calib(calib_dict(renderer.rig))
    stamps = renderer.stamps_ns()
    velocity = np.array([0.0, 0.0, renderer.scene.speed_mps])  # straight ahead
    for index in range(spec.frames):
        frame = renderer.render(index, stamps)
        writer.write_frame(f"{index:06d}", thermal=frame["thr"], rgb=frame["rgb"],
                           depth={"rgb": frame["depth_rgb"], "thr": frame["depth_thr"]},
                           stamps_ns={v: int(stamps[v][index]) for v in ("thr", "rgb")},
                           velocity_mps=velocity)
        if progress is not None:
            progress(1)
    writer.commit()


def write_lists(root: Path, specs: list[SequenceSpec], meta: dict) -> None:
    """Split lists (every split, possibly empty), `conditions.txt` and `synthetic.json`, the
    dataset's last files."""
    assignment: dict[str, list[str]] = {}
    for spec in specs:
        assignment.setdefault(spec.split, []).append(spec.name)
    write_split_lists(root, assignment)
    write_conditions(root, {s.name: s.kind for s in specs})
    meta = {"args": meta, "sequence_specs": [asdict(s) for s in specs]}
    atomic_write_text(root / "synthetic.json", json.dumps(meta, indent=2) + "\n")
