"""Benchmark: synthetic MS2 generation speed (both cameras + GT + PNG writing).

Usage: .venv/bin/python bench/synthetic_speed.py [--frames 15] [--kinds day,night,rain]
                                                  [--workers 2] [--no-record]
One frame = RGB 1224x384 + thermal 640x256 + both depth_filtered maps, rendered and written as
PNG. Prints frames/s by wall clock and by process CPU time (the figure that depends least on
other jobs sharing the cores; the load average is recorded with it), then, with --workers N,
the wall-clock rate of the real CLI path (`generate_dataset`) with N processes. Appends the
table to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `training` is a source tree

from bench.common import record  # noqa: E402
from training.synthetic import generate_dataset, plan_sequences  # noqa: E402
from training.synthetic.render import SequenceRenderer, SequenceSpec  # noqa: E402
from training.synthetic.writer import write_sequence  # noqa: E402


def single_process(kinds: list[str], frames: int) -> list[tuple[str, float, float]]:
    """(kind, wall frames/s, CPU-time frames/s) per kind, one sequence each, in this process."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="synth_bench_") as tmp:
        for i, kind in enumerate(kinds):
            spec = SequenceSpec(f"bench_{kind}", "train", kind, frames, seed=100 + i)
            SequenceRenderer(spec)  # warm imports and caches outside the timing
            wall0, cpu0 = time.perf_counter(), time.process_time()
            write_sequence(Path(tmp), spec)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            rows.append((kind, frames / wall, frames / cpu))
            print(f"{kind:6s}: {frames / wall:6.1f} frames/s wall, {frames / cpu:6.1f} frames/s "
                  f"CPU time ({1000 * cpu / frames:.0f} ms/frame)")
    return rows


def multi_process(workers: int, frames: int) -> float:
    """Wall frames/s of `generate_dataset` with `workers` processes over 2 * workers sequences."""
    specs = plan_sequences({"train": 2 * workers}, frames, seed=7)
    with tempfile.TemporaryDirectory(prefix="synth_bench_") as tmp:
        start = time.perf_counter()
        generate_dataset(Path(tmp) / "ds", specs, workers=workers)
        wall = time.perf_counter() - start
    return len(specs) * frames / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=15, help="frames per sequence")
    parser.add_argument("--kinds", default="day,night,rain")
    parser.add_argument("--workers", type=int, default=0, help="also time the CLI path with N processes")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = single_process(args.kinds.split(","), args.frames)
    lines = ["| run | frames/s (wall) | frames/s (CPU time) |", "|---|---|---|"]
    lines += [f"| 1 process, {k} | {w:.1f} | {c:.1f} |" for k, w, c in rows]
    cpu_all = len(rows) / sum(1.0 / c for _, _, c in rows)
    lines.append(f"| 1 process, all kinds | {len(rows) / sum(1.0 / w for _, w, _ in rows):.1f} | {cpu_all:.1f} |")
    if args.workers > 0:
        rate = multi_process(args.workers, args.frames)
        print(f"--workers {args.workers}: {rate:.1f} frames/s wall (incl. process start-up)")
        lines.append(f"| --workers {args.workers} (CLI path) | {rate:.1f} | - |")
    notes = (f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after on "
             f"{os.cpu_count()} cores (shared machine: wall figures are contended)")
    command = "python bench/synthetic_speed.py " + " ".join(sys.argv[1:])
    if not args.no_record:
        record("Synthetic MS2 generation speed", "\n".join(lines), command.strip(), notes)
    else:
        print("\n".join(lines) + "\n" + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
