"""LiDAR-like sparse ground truth: projected scan lines of a roof-mounted 64-beam scanner.

MS2's `proj_depth/*/depth_filtered` maps are LiDAR points projected into each camera: sparse
curved lines, 0 elsewhere. We keep a camera pixel's depth only when its surface point, seen from
the LiDAR, lies within half a camera pixel (in elevation) of one of the beams; range is capped
at 80 m (the benchmark's evaluation cap) and the sky never returns.
"""
from __future__ import annotations

import numpy as np

from depth_fusion_ros.ms2 import DEPTH_SCALE  # MS2 PNG convention: metres * 256

from .raycast import CameraRays, Hits

N_BEAMS = 64
BEAM_LOW_DEG, BEAM_HIGH_DEG = -24.8, 2.0  # an HDL-64-like vertical field of view
MAX_DEPTH_M = 80.0


def lidar_depth_png(hits: Hits, rays: CameraRays, pts, lidar_m: np.ndarray,
                    rng: np.random.Generator, dropout: float = 0.05) -> np.ndarray:
    """Sparse depth of one camera as the MS2 uint16 PNG array, [H, W], metres * 256, 0 = none."""
    depth = hits.t_m
    cand = np.flatnonzero((depth <= MAX_DEPTH_M).ravel())  # finite, in range (inf = sky)
    px, py, pz = (p.ravel()[cand] for p in pts)
    dx, dy, dz = px - np.float32(lidar_m[0]), py - np.float32(lidar_m[1]), pz - np.float32(lidar_m[2])
    tan_elev = -dy / np.sqrt(dx * dx + dz * dz)  # up positive
    # Beams are spaced uniformly in tan(elevation), like the rows of a level pinhole camera,
    # so "within half a camera pixel of a beam" is one constant tolerance (no arctan needed).
    low, high = np.tan(np.deg2rad(BEAM_LOW_DEG)), np.tan(np.deg2rad(BEAM_HIGH_DEG))
    spacing = (high - low) / (N_BEAMS - 1)
    beam = (tan_elev - np.float32(low)) * np.float32(1.0 / spacing)
    nearest = np.round(beam)
    tol = 0.5 / rays.camera.K[1, 1] / spacing  # half a camera pixel, in beam units
    keep = cand[(np.abs(beam - nearest) <= tol) & (nearest >= 0) & (nearest < N_BEAMS)]
    keep = keep[rng.random(keep.size, dtype=np.float32) >= dropout]  # missing returns
    out = np.zeros(depth.shape, np.uint16)
    out.ravel()[keep] = np.round(depth.ravel()[keep] * DEPTH_SCALE).astype(np.uint16)
    return out
