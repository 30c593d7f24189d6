"""bag_to_ms2 conversion speed (frames/s) and GT accuracy against the simulation's exact depth.

    .venv/bin/python bench/bag_to_ms2_speed.py [--seconds 4] [--seed 1] [--scale 1.0]
        [--storage mcap|sqlite3] [--repeats 2] [--no-motion-compensation] [--json OUT]

Records a drive of the synthetic rig as a rosbag2 (`python -m training.synthetic.rig_bag`:
thermal 640x480 + RGB 1024x576 raw images with lens distortion, a 64 x 1024 spinning LiDAR at
10 Hz, /tf odom -> base_link at 50 Hz), converts it with bag_to_ms2 (both passes, rectification,
motion compensation, projection, occlusion filter, PNG writing; median wall time over the
repeats) and scores the result with training/synthetic/rig_check.py: the median and mean abs_rel
of the GT against the exact depth on every GT pixel, the share of hidden LiDAR points (a surface
> 5 % nearer is in the camera's way) that the conversion removed, and of visible ones it kept.
`--no-motion-compensation` converts as a rig without odometry would (bag_to_ms2's option of that
name): every LiDAR point where it was measured, not where it was at the image's stamp.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depth_fusion_ros.bag.bag_to_ms2 import convert, parse_args  # noqa: E402
from training.synthetic.rig_bag import write_rig_bag  # noqa: E402
from training.synthetic.rig_check import check_sequence  # noqa: E402
from training.synthetic.rig_drive import DriveSpec  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the drive")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="camera size factor")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-motion-compensation", action="store_true",
                        help="convert without odometry (bag_to_ms2's option)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    spec = DriveSpec(seconds=args.seconds, seed=args.seed, scale=args.scale)
    with tempfile.TemporaryDirectory(prefix="bag_to_ms2_speed_") as tmp:
        bag = Path(tmp) / "drive"
        drive = write_rig_bag(bag, spec, storage=args.storage)
        seconds, frames = [], 0
        for i in range(args.repeats):
            out = Path(tmp) / f"out{i}"
            cfg = parse_args([str(bag), "--out", str(out), "--lidar-topic", "/lidar/points",
                              "--quiet"] + (["--no-motion-compensation"]
                                            if args.no_motion_compensation else []))
            start = time.perf_counter()
            results = convert(cfg)
            seconds.append(time.perf_counter() - start)
            frames = results[0].frames
        figures = check_sequence(drive, out, "drive")
    rate = frames / statistics.median(seconds)
    report = {"frames": frames, "frames_per_s": rate, "storage": args.storage,
              "motion_compensation": not args.no_motion_compensation,
              "sizes": {"thr": [drive.rig.thr.width, drive.rig.thr.height],
                        "rgb": [drive.rig.rgb.width, drive.rig.rgb.height]}, **figures}
    print(f"bag_to_ms2 ({args.storage}, thermal {drive.rig.thr.width}x{drive.rig.thr.height}, "
          f"RGB {drive.rig.rgb.width}x{drive.rig.rgb.height}, 64x1024 LiDAR"
          f"{', no motion compensation' if args.no_motion_compensation else ''}): {frames} frames, "
          f"{rate:.1f} frames/s (median of {args.repeats})")
    for view, name in (("thr", "thermal"), ("rgb", "RGB")):
        line = (f"{name:8s} GT abs_rel median {100 * figures['abs_rel_median'][view]:.2f} % "
                f"(mean {100 * figures['abs_rel_mean'][view]:.2f} %) over "
                f"{figures['gt_pixels'][view]} GT pixels")
        if not args.no_motion_compensation:  # the check looks for each point at the pixel of
            # its compensated position: without compensation it is elsewhere, the shares void
            line += (f"; hidden points removed {100 * figures['hidden_removed'][view]:.1f} % of "
                     f"{figures['hidden'][view]}, visible points kept "
                     f"{100 * figures['visible_kept'][view]:.1f} %")
        print(line)
    if args.no_motion_compensation:
        print("(occlusion shares not scored without motion compensation: the check finds a point "
              "at the pixel of where it was at the image's stamp)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
