"""CLI: `python -m training.synthetic --out DIR [--sequences N] [--frames M] [--seed S] ...`."""
from __future__ import annotations

import argparse
import sys

from .generate import generate_dataset
from .plan import DEFAULT_COUNTS, plan_sequences, split_counts
from .sensors import KINDS
from .thermal import DEFAULT_ATTENUATION_M, RAIN_ATTENUATION_FACTOR


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.synthetic",
        description="Generate synthetic driving sequences in the MS2 dataset layout (RGB 1224x384 "
                    "+ thermal 640x256 16-bit, LiDAR-like depth_filtered GT, calib.npy, stamps, "
                    "split lists). Split assignment: with no count options, "
                    f"{DEFAULT_COUNTS}; with only --sequences N: 1 val (N>=2), 1 test_day "
                    "(N>=3), 1 test_night (N>=4), the rest train. Train sequences cycle through "
                    "--kinds; val is day; test_day/night/rainy are day/night/rain.")
    parser.add_argument("--out", required=True, help="dataset root to create (absent or empty)")
    parser.add_argument("--sequences", type=int, default=None, help="total number of sequences")
    parser.add_argument("--frames", type=int, default=40, help="frames per sequence (15 fps)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (output is a pure "
                        "function of it and the options)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma list of kinds cycled over train sequences (day,night,rain)")
    for split in DEFAULT_COUNTS:
        parser.add_argument(f"--{split.replace('_', '-')}", type=int, default=None,
                            dest=split, help=f"sequences in {split} (default {DEFAULT_COUNTS[split]})")
    parser.add_argument("--thermal-attenuation-m", type=float, default=DEFAULT_ATTENUATION_M,
                        help="clear-air distance (m) over which thermal counts fade by 1/e toward "
                             f"ambient (rain: x{RAIN_ATTENUATION_FACTOR:.2f}); default "
                             f"{DEFAULT_ATTENUATION_M:g} is a strong depth cue, real LWIR in clear "
                             "air fades over kilometres (e.g. 3000)")
    parser.add_argument("--aligned-cameras", action="store_true",
                        help="control rig: the RGB camera at the thermal camera's place with its "
                             "field of view, so the two images show the same rays once resized "
                             "to one size (default: MS2-like cameras that differ in place, pitch "
                             "and field of view)")
    parser.add_argument("--matched-fov", action="store_true",
                        help="control rig: the RGB camera keeps its place and pitch but gets the "
                             "thermal camera's field of view (one scale, different poses)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (one sequence each)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        counts = split_counts(args.sequences, {k: getattr(args, k) for k in DEFAULT_COUNTS})
        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        specs = plan_sequences(counts, args.frames, args.seed, kinds,
                               args.thermal_attenuation_m, args.aligned_cameras,
                               args.matched_fov)
        root = generate_dataset(args.out, specs, workers=args.workers, meta=vars(args),
                                overwrite=args.overwrite)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    print(f"wrote {len(specs)} sequences x {args.frames} frames ({summary}) to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
