"""Training-step throughput of a run config (the real `Trainer.train_step`: forward, SILog on both
views, backward, clipping, Adam, LR schedule) on random inputs with LiDAR-sparse random GT.

    .venv/bin/python bench/train_speed.py [--config training/configs/tiny_synthetic.yaml]
        [--batch-size B] [--steps 5] [--device cpu|cuda] [--threads N] [--record] [key=value ...]

Prints steps/s and images/s (and peak GPU memory on CUDA); `--record` appends to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `training` is a source tree

from bench.common import machine_line, record  # noqa: E402
from training.config import load_config  # noqa: E402
from training.train import Trainer  # noqa: E402


def random_batch(batch: int, height: int, width: int, max_depth_m: float) -> dict:
    """Normalised-looking inputs and GT valid on ~5 % of pixels (like projected LiDAR)."""
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(batch, 1, height, width, generator=gen) * (max_depth_m - 1.0) + 1.0
    sparse = torch.rand(batch, 1, height, width, generator=gen) < 0.05
    gt = gt * sparse
    return {"thermal": torch.randn(batch, 1, height, width, generator=gen),
            "rgb": torch.randn(batch, 3, height, width, generator=gen),
            "gt_thermal": gt, "gt_rgb": gt.clone(),
            "has_thermal": torch.ones(batch, dtype=torch.bool),
            "has_rgb": torch.ones(batch, dtype=torch.bool)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="training/configs/tiny_synthetic.yaml")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. model.variant=swin_b")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    if args.batch_size:
        overrides.append(f"optim.batch_size={args.batch_size}")
    cfg = load_config(args.config, overrides)
    device = torch.device(args.device)
    m = cfg.model
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, Path(run_dir), rank=0, world=1, device=device)
        trainer.model.train()
        batch = random_batch(cfg.optim.batch_size, m.height, m.width, m.max_depth_m)
        for _ in range(args.warmup):
            trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.steps
    memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f}" if device.type == "cuda" else "-"
    amp = cfg.optim.amp if device.type == "cuda" else "off (CPU)"
    table = "\n".join([
        "| config | variant | input | batch | device | amp | s/step | images/s | peak GiB |",
        "|---|---|---|---:|---|---|---:|---:|---:|",
        f"| {Path(args.config).name} | {m.variant} ({m.modality}) | {m.height}x{m.width} | "
        f"{cfg.optim.batch_size} | {device} ({args.threads} thr) | {amp} | {seconds:.3f} | "
        f"{cfg.optim.batch_size / seconds:.1f} | {memory} |"])
    command = "bench/train_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.record:
        record("Training step throughput", table, command)
    else:
        print(machine_line())
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
