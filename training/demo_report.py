"""Demo stage 7: pictures, point clouds and the summary a person looks at.

Contact sheets run the exported ONNX model through the runtime's own preprocessing and backend (the
code path of the node) on frames of a test sequence; PLY files come from clouds the node published.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_fusion_ros import ms2
from depth_fusion_ros.backends import create_backend
from depth_fusion_ros.clouds import cloud_to_numpy, unpack_rgb
from depth_fusion_ros.metrics import format_metrics_table
from depth_fusion_ros.preprocess import percentile_bounds, preprocess_rgb, preprocess_thermal
from depth_fusion_ros.viz import (
    colorize_confidence,
    colorize_depth,
    colorize_error,
    contact_sheet,
    save_png,
    write_ply,
)


def _frame_row(backend, root: Path, seq: str, frame: str, max_depth_m: float) -> list:
    size = (backend.metadata.height, backend.metadata.width)
    thermal_raw = ms2.read_thermal(root, seq, frame)
    rgb_raw = ms2.read_rgb(root, seq, frame)
    outputs = backend.infer_outputs(preprocess_thermal(thermal_raw, size)[None],
                                    preprocess_rgb(rgb_raw, size)[None])
    depth, confidence = outputs["depth"], outputs["confidence"]
    gt_thr = ms2.read_depth(root, seq, "thr", frame)
    gt_rgb = ms2.read_depth(root, seq, "rgb", frame)
    low, high = percentile_bounds(thermal_raw, 1.0, 99.0)  # as the network sees it
    thermal_unit = (thermal_raw.astype(np.float32) - low) / max(high - low, 1)
    thermal_u8 = (np.clip(thermal_unit, 0, 1) * 255).astype(np.uint8)
    row = [(f"{seq} #{frame} thermal", thermal_u8), ("RGB", rgb_raw)]
    if "thermal" in depth:
        row.append(("thermal-view depth", colorize_depth(depth["thermal"], max_depth_m)))
    if "rgb" in depth:
        row.append(("RGB-view depth", colorize_depth(depth["rgb"], max_depth_m)))
    row.append(("GT (thermal, LiDAR)", colorize_depth(gt_thr, max_depth_m, dilate_px=1)))
    if "thermal" in depth:
        row.append(("abs rel error (thermal)", colorize_error(depth["thermal"], gt_thr, dilate_px=1)))
    if "rgb" in depth:
        row.append(("abs rel error (RGB)", colorize_error(depth["rgb"], gt_rgb, dilate_px=1)))
    for view, conf in confidence.items():
        row.append((f"confidence ({'RGB' if view == 'rgb' else view})", colorize_confidence(conf)))
    return row


def write_contact_sheets(model_path: Path, root: Path, seq: str, out_dir: Path, *,
                         frames_per_sheet: int = 3, sheets: int = 2) -> list[Path]:
    """PNG contact sheets (inputs, both depths, GT, error maps) for evenly spaced frames of `seq`."""
    backend = create_backend(str(model_path), backend="onnxruntime", device="cpu")
    frames = ms2.list_frames(root, seq)
    count = min(len(frames), frames_per_sheet * sheets)
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    paths = []
    for sheet_index in range(0, count, frames_per_sheet):
        rows = [_frame_row(backend, root, seq, frame, backend.metadata.max_depth_m)
                for frame in picks[sheet_index:sheet_index + frames_per_sheet]]
        path = out_dir / f"contact_{seq}_{sheet_index // frames_per_sheet:02d}.png"
        paths.append(save_png(path, contact_sheet(rows, tile_height=128)))
    return paths


def write_clouds(clouds: dict, out_dir: Path) -> list[Path]:
    """PLY files from the node's published clouds (thermal: intensity, RGB: colours)."""
    paths = []
    for view, msg in clouds.items():
        points = cloud_to_numpy(msg)  # [h, w, 4]: x y z + intensity | packed rgb
        path = out_dir / f"cloud_{view}.ply"
        if view == "thermal":
            write_ply(path, points[..., :3], intensity=points[..., 3])
        else:
            write_ply(path, points[..., :3], rgb=unpack_rgb(points[..., 3]))
        paths.append(path)
    return paths


def metrics_rows(offline: dict, live: dict) -> dict[str, dict[str, float]]:
    """Flatten offline (per split) and live (per mode) results into labelled table rows."""
    rows = {}
    for split, result in offline.items():
        for mode in ("metric", "median"):
            for view, values in result.get(mode, {}).items():
                rows[f"offline {split} / {view} / {mode}"] = values
    for mode, views in live.items():
        for view, values in views.items():
            rows[f"live ROS (night bag) / {view} / {mode}"] = values
    return rows


def summary_markdown(rows: dict, ros: dict, files: dict[str, list[Path]], timings: dict[str, float]) -> str:
    """The demo's summary.md (also printed)."""
    status = ros.get("node_diagnostics", {})
    # latency_ms compares bag stamps with the wall clock here: meaningless in a replay without /clock
    stage_keys = [k for k in status if k.endswith("_ms") and k != "latency_ms"]
    lines = ["# depth_fusion_ros demo summary", "",
             "Metrics (abs_rel, sq_rel, rmse in m, rmse_log, d1-d3); 'metric' = no scaling, "
             "'median' = per-image median scaling as in the MS2 benchmark.", "",
             format_metrics_table(rows), "",
             "## Through ROS 2 (player -> depth_fusion_node (ONNX Runtime CPU) -> evaluator)", "",
             f"- depth images received: {ros.get('depth_images_received')}",
             f"- output rate while playing: {ros.get('output_pairs_per_s', 0.0):.1f} pairs/s "
             "(bag played at its recorded 15 fps)",
             f"- evaluator metric messages: {ros.get('evaluator_messages')}"]
    lines += [f"- node {key}: {status[key]}" for key in stage_keys]
    for key in ("pairs_matched", "pairs_processed", "pairs_dropped", "backend", "model_id"):
        if key in status:
            lines.append(f"- node {key}: {status[key]}")
    lines += ["", "## Stage times (s)", ""] + [f"- {k}: {v:.1f}" for k, v in timings.items()]
    lines += ["", "## Files", ""]
    for label, paths in files.items():
        lines += [f"- {label}: " + ", ".join(str(p) for p in paths)]
    lines += ["", "Next: on a vehicle with ROS 2 Jazzy, follow the README sections "
              "'On a vehicle' and 'Replay MS2 in RViz'."]
    return "\n".join(lines) + "\n"
