"""Parameter counts of every DMCF-SIDE variant and a CPU forward timing.

    .venv/bin/python bench/model_forward.py [--variants tiny swin_t ...] [--runs 3] [--threads N]

Prints one Markdown row per variant: parameters (total / encoder) and, for the variants named
in --time (default swin_t), the median no-grad forward time at 1x256x640 on this CPU and the
number of ATen operator calls one forward dispatches (after autograd; each is at least one
kernel launch on a GPU, so eager GPU runs of small inputs are bound by this count).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def count_ops(model: torch.nn.Module, height: int, width: int) -> int:
    """ATen operator calls of one no-grad forward of a 1-image batch."""
    thermal, rgb = torch.randn(1, 1, height, width), torch.randn(1, 3, height, width)
    with torch.inference_mode(), _OpCounter() as counter:
        model(thermal, rgb)
    return counter.calls


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
    print("| variant | params | encoder params | CPU forward median (ms) | ATen ops / forward |")
    print("|---|---:|---:|---:|---:|")
    for variant in args.variants:
        cfg = ModelConfig(variant=variant, height=args.height, width=args.width)
        model = build_model(cfg).eval()
        total = sum(p.numel() for p in model.parameters())
        enc = sum(p.numel() for e in {id(e): e for e in model.encoders().values()}.values()
                  for p in e.parameters())
        ms = ops = "-"
        if variant in args.time:
            times = time_forward(model, args.height, args.width, args.runs)
            ms = f"{statistics.median(times) * 1e3:.0f} (n={len(times)})"
            ops = f"{count_ops(model, args.height, args.width):,}"
        print(f"| {variant} | {total:,} | {enc:,} | {ms} | {ops} |", flush=True)
        del model
    return 0


if __name__ == "__main__":
    sys.exit(main())
