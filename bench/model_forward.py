"""Parameter counts of every DMCF-SIDE variant and a CPU forward timing.

    .venv/bin/python bench/model_forward.py [--variants tiny swin_t ...] [--runs 3] [--threads N]

Prints one Markdown row per variant: parameters (total / encoder) and, for the variants named
in --time (default swin_t), the median no-grad forward time at 1x256x640 on this CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `training` is a source tree

from training.model import SWIN_SPECS, ModelConfig, build_model  # noqa: E402


def time_forward(model: torch.nn.Module, height: int, width: int, runs: int) -> list[float]:
    """Seconds per no-grad forward of a 1-image batch (after one warm-up pass)."""
    thermal = torch.randn(1, 1, height, width)
    rgb = torch.randn(1, 3, height, width)
    times = []
    with torch.inference_mode():
        model(thermal, rgb)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(thermal, rgb)
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(SWIN_SPECS), choices=list(SWIN_SPECS))
    ap.add_argument("--time", nargs="*", default=["swin_t"], help="variants to time")
    ap.add_argument("--runs", type=int, default=3, help="timed forwards (median reported)")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), input 1x{args.height}x"
          f"{args.width}, fusion (both views)\n")
    print("| variant | params | encoder params | CPU forward median (ms) |")
    print("|---|---:|---:|---:|")
    for variant in args.variants:
        cfg = ModelConfig(variant=variant, height=args.height, width=args.width)
        model = build_model(cfg).eval()
        total = sum(p.numel() for p in model.parameters())
        enc = sum(p.numel() for e in {id(e): e for e in model.encoders().values()}.values()
                  for p in e.parameters())
        ms = "-"
        if variant in args.time:
            times = time_forward(model, args.height, args.width, args.runs)
            ms = f"{statistics.median(times) * 1e3:.0f} (n={len(times)})"
        print(f"| {variant} | {total:,} | {enc:,} | {ms} |", flush=True)
        del model
    return 0


if __name__ == "__main__":
    sys.exit(main())
