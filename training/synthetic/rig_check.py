"""Score `bag_to_ms2`'s output for a bag written by `rig_bag.py` against the simulation's truth.

For every converted frame (its stamps and scans from `bag_to_ms2_frames.csv`) and camera:
- GT accuracy: abs_rel = |gt - exact| / exact on every pixel with GT, `exact` being the
  renderer's depth of the rectified camera at the image's stamp. Pixels on objects that moved
  between the LiDAR's firing time and the image differ for a real reason (no converter can
  undo object motion), so the median is the headline figure.
- Occlusion: every LiDAR point is moved into the camera with the true poses (as the converter
  must), and the simulation says whether the camera sees it: a point is hidden when the
  camera's exact ray to it hits a surface nearer by more than 5 % of its distance, with moving
  objects where they were when the point was measured (the parallax occlusion a filter can
  remove). A hidden point survived the conversion if its depth is at its pixel in the GT.
  `visible_kept` is the same for the visible points (what the filter costs). Points on
  rectified pixels without a raw pixel behind them (whose GT the converter blanks) are left out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_fusion_ros import ms2

from .rig_drive import Drive

HIDDEN_MARGIN = 0.05  # "hidden" = a surface more than 5 % nearer is in the way


def read_provenance(root: Path, seq: str) -> list[dict]:
    """Rows of bag_to_ms2_frames.csv: frame, stamps, {LiDAR topic: scan stamp}."""
    rows = []
    for line in (Path(root) / "sync_data" / seq / "bag_to_ms2_frames.csv").read_text().splitlines():
        frame, thr, rgb, scans, *_ = line.split()
        rows.append({"frame": frame, "thr": int(thr), "rgb": int(rgb),
                     "scans": {s.split("@")[0]: int(s.split("@")[1]) for s in scans.split(";")}})
    return rows


def _true_points(drive: Drive, name: str, stamp_ns: int, scan_ns: int):
    """(noisy LiDAR points in the camera at `stamp_ns` with true poses [N, 3], true world points
    [N, 3], firing times [N]) of the scan stamped `scan_ns`."""
    scan = drive.scan(scan_ns)
    valid = np.isfinite(scan.xyz_lidar[..., 0])
    offsets = np.broadcast_to(scan.offset_ns[None, :], valid.shape)[valid]
    xyz = scan.xyz_lidar[valid].astype(np.float64)
    camera = np.linalg.inv(drive.T_odom_base(drive.seconds_of(stamp_ns)) @ drive.T_base(name))
    points = np.empty_like(xyz)
    for offset in np.unique(offsets):
        m = offsets == offset
        pose = camera @ drive.T_odom_base(drive.seconds_of(scan_ns + offset)) @ drive.T_base("lidar")
        points[m] = xyz[m] @ pose[:3, :3].T + pose[:3, 3]
    return points, scan.world[valid], scan_ns + offsets


def _occlusion_counts(drive: Drive, name: str, stamp_ns: int, scan_ns: int,
                      gt: np.ndarray, max_depth_m: float) -> np.ndarray:
    """[hidden, hidden survived, visible, visible kept] for one frame, camera and scan."""
    cam = getattr(drive.rig, name)
    pts, world, fired = _true_points(drive, name, stamp_ns, scan_ns)
    z = pts[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.floor(cam.K[0, 0] * pts[:, 0] / z + cam.K[0, 2] + 0.5)
        v = np.floor(cam.K[1, 1] * pts[:, 1] / z + cam.K[1, 2] + 0.5)
    inside = (z >= 0.5) & (z <= max_depth_m) & (u >= 0) & (u < cam.width) & (v >= 0) \
        & (v < cam.height)
    inside[inside] = drive.rectified_coverage(name)[v[inside].astype(int), u[inside].astype(int)]
    visible = np.zeros(inside.sum(), bool)
    for t in np.unique(fired[inside]):
        m = fired[inside] == t
        visible[m] = drive.visible_from(name, stamp_ns, world[inside][m], boxes_at_ns=int(t),
                                        margin=HIDDEN_MARGIN)
    zi = z[inside]
    at_pixel = gt[v[inside].astype(int), u[inside].astype(int)]
    present = np.abs(at_pixel - zi) <= 0.6 / ms2.DEPTH_SCALE + 1e-4 * zi  # PNG rounding
    return np.array([(~visible).sum(), (present & ~visible).sum(), visible.sum(),
                     (present & visible).sum()], np.int64)


def check_sequence(drive: Drive, root: str | Path, seq: str, *, max_depth_m: float = 80.0,
                   max_frames: int | None = None) -> dict:
    """GT accuracy and occlusion figures of one converted sequence (see the module docstring).

    Returns:
        {"frames", "abs_rel_median", "abs_rel_mean", "gt_pixels", "hidden",
         "hidden_removed", "visible_kept"}, the last five per view ("thr", "rgb").
    """
    rows = read_provenance(root, seq)[:max_frames]
    rel = {v: [] for v in ms2.VIEWS}
    counts = {v: np.zeros(4, np.int64) for v in ms2.VIEWS}
    for row in rows:
        for view in ms2.VIEWS:
            gt = ms2.read_depth(root, seq, view, row["frame"])
            _, exact = drive.render(view, row[view])
            valid = (gt > 0) & np.isfinite(exact)
            rel[view].append(np.abs(gt[valid] - exact[valid]) / exact[valid])
            for scan_ns in row["scans"].values():
                counts[view] += _occlusion_counts(drive, view, row[view], scan_ns, gt,
                                                  max_depth_m)
    pooled = {v: np.concatenate(r) for v, r in rel.items()}
    return {
        "frames": len(rows),
        "abs_rel_median": {v: float(np.median(r)) for v, r in pooled.items()},
        "abs_rel_mean": {v: float(np.mean(r)) for v, r in pooled.items()},
        "gt_pixels": {v: int(r.size) for v, r in pooled.items()},
        "hidden": {v: int(c[0]) for v, c in counts.items()},
        "hidden_removed": {v: float(1 - c[1] / max(c[0], 1)) for v, c in counts.items()},
        "visible_kept": {v: float(c[3] / max(c[2], 1)) for v, c in counts.items()},
    }
