"""ms2_to_bag conversion speed (frames/s) and bag size per frame, for both rosbag2 storages.

    .venv/bin/python bench/bag_speed.py [--frames 30] [--repeats 3] [--data DIR] [--json OUT]

Generates one synthetic MS2-format sequence (`python -m training.synthetic`) unless --data points
at an MS2 root, converts it with mcap and sqlite3 storage (with GT), and prints the median
frames/s over the repeats (PNG decoding included, as in real use) and MB per frame.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depth_fusion_ros.bag.ms2_to_bag import ConvertConfig, convert  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="existing MS2 root (1st sequence)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bag_speed_") as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "ms2"
            subprocess.run([sys.executable, "-m", "training.synthetic", "--out", str(root),
                            "--sequences", "1", "--frames", str(args.frames), "--seed", "0"],
                           check=True, cwd=REPO, capture_output=True)
        seq = sorted(p.name for p in (root / "sync_data").iterdir())[0]
        results = {}
        for storage in ("mcap", "sqlite3"):
            rates, result = [], None
            for i in range(args.repeats):
                out = Path(tmp) / f"{storage}_{i}.bag"
                result = convert(ConvertConfig(ms2_root=root, sequence=seq, out=out,
                                               storage=storage, max_frames=args.frames,
                                               progress=False))
                rates.append(result.frames / result.seconds)
            results[storage] = {"frames": result.frames,
                                "frames_per_s": statistics.median(rates),
                                "mb_per_frame": result.size_bytes / 1e6 / result.frames}
    for storage, r in results.items():
        print(f"{storage:8s} {r['frames']} frames: {r['frames_per_s']:.1f} frames/s, "
              f"{r['mb_per_frame']:.2f} MB/frame (thermal+rgb images, camera_info, GT depth)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
