"""Per-stage costs of the node's plain-Python parts, each alone (no ROS, no inference).

Preprocessing (MS2 thermal 640x256 mono16, RGB 1224x384 rgb8 to the 256x640 network input) and
organised cloud building at 640x256 (rays cached, as in the node), median over --runs calls.

    python bench/components.py [--runs 300]
"""
from __future__ import annotations

import argparse

import numpy as np
from common import median_ms

from depth_fusion_ros.clouds import xyz_intensity_points, xyz_rgb_points
from depth_fusion_ros.geometry import compute_rays
from depth_fusion_ros.preprocess import percentile_bounds, preprocess_rgb, preprocess_thermal

NET_HW = (256, 640)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    thermal = rng.integers(3000, 6000, (256, 640), dtype=np.uint16)
    rgb = rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8)
    depth = np.linspace(0.5, 79.0, NET_HW[0] * NET_HW[1], dtype=np.float32).reshape(NET_HW)
    k = np.array([[400.0, 0, 320], [0, 400.0, 128], [0, 0, 1]])
    rays = compute_rays(k, NET_HW[1], NET_HW[0])
    intensity = rng.random(NET_HW, dtype=np.float32)
    colours = rng.integers(0, 256, (*NET_HW, 3), dtype=np.uint8)
    points = np.empty((*NET_HW, 4), np.float32)
    rows = [
        ("thermal 1-99 % bounds (histogram)", lambda: percentile_bounds(thermal, 1, 99)),
        ("np.percentile on a float copy (for contrast)",
         lambda: np.percentile(thermal.astype(np.float64), [1, 99])),
        ("preprocess thermal 640x256 -> 256x640", lambda: preprocess_thermal(thermal, NET_HW)),
        ("preprocess RGB 1224x384 -> 256x640", lambda: preprocess_rgb(rgb, NET_HW)),
        ("cloud xyz+intensity 640x256", lambda: xyz_intensity_points(depth, rays, 1, intensity, out=points)),
        ("cloud xyz+rgb 640x256", lambda: xyz_rgb_points(depth, rays, 1, colours, out=points)),
    ]
    print("| stage | median ms |\n|---|---|")
    for label, fn in rows:
        print(f"| {label} | {median_ms(fn, args.runs):.3f} |", flush=True)


if __name__ == "__main__":
    main()
