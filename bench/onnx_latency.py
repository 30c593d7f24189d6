"""ONNX export time, file size and ONNX Runtime CPU latency of DMCF-SIDE variants (issue 5).

    .venv/bin/python bench/onnx_latency.py [--variants tiny,swin_t,swin_b] [--latency tiny,swin_t]
        [--runs 20] [--height 256 --width 640] [--threads N]

Each variant is built with seeded random weights (latency and size do not depend on training),
saved in the training checkpoint contract and exported with the real `training.export` code,
including its graph checks and the ONNX Runtime parity check. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # `training` is a source tree, not installed


def make_checkpoint(variant: str, height: int, width: int, out_dir: Path) -> Path:
    """A seeded, untrained network of `variant` in the training checkpoint format."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, height=height, width=width)
    model = build_model(cfg).eval()
    config = {"name": f"bench_{variant}", "model": cfg.to_dict()}
    return save_checkpoint(out_dir / f"{variant}.pt", model=model, config=config, step=0)


def ort_latency_ms(model_path: Path, runs: int, threads: int | None) -> tuple[float, float]:
    """(median, p90) ms of backend.infer on the export's seeded sample input, after warm-up."""
    from depth_fusion_ros.backends import create_backend
    from training.export import sample_inputs

    backend = create_backend(model_path, backend="onnxruntime", device="cpu", num_threads=threads)
    feeds = sample_inputs(backend.metadata.height, backend.metadata.width)
    backend.warmup(2)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.infer(feeds["thermal"], feeds["rgb"])
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), float(np.percentile(times, 90))


def bench_variant(variant: str, args, work: Path) -> dict:
    from depth_fusion_ros.metadata import load_metadata
    from training.export import export_checkpoint

    ckpt = make_checkpoint(variant, args.height, args.width, work)
    start = time.perf_counter()
    model_path = export_checkpoint(ckpt, work / f"{variant}.onnx")
    row = {
        "variant": variant,
        "export_s": time.perf_counter() - start,
        "size_mb": model_path.stat().st_size / 1e6,
        "parity_m": load_metadata(model_path).extra["parity_max_abs_diff_m"],
        "median_ms": float("nan"),
        "p90_ms": float("nan"),
    }
    if variant in args.latency:
        row["median_ms"], row["p90_ms"] = ort_latency_ms(model_path, args.runs, args.threads)
    ckpt.unlink()
    model_path.unlink()
    return row


def format_table(rows: list[dict], args) -> str:
    lines = [
        f"ONNX export and ONNX Runtime CPU latency at {args.height}x{args.width} "
        f"(opset 17, fp32, {args.runs} runs, threads={args.threads or 'all'})",
        "",
        "| variant | export s (incl. checks + parity) | ONNX MB | parity max abs diff m "
        "| ORT CPU median ms | ORT CPU p90 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lat = "not run" if np.isnan(r["median_ms"]) else f"{r['median_ms']:.0f}"
        p90 = "not run" if np.isnan(r["p90_ms"]) else f"{r['p90_ms']:.0f}"
        lines.append(f"| {r['variant']} | {r['export_s']:.1f} | {r['size_mb']:.1f} | "
                     f"{r['parity_m']:.1e} | {lat} | {p90} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="tiny,swin_t,swin_b", help="variants to export")
    parser.add_argument("--latency", default="tiny,swin_t", help="variants to time with ORT")
    parser.add_argument("--runs", type=int, default=20, help="timed inferences per variant")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, help="ORT intra-op threads (default: all cores)")
    args = parser.parse_args(argv)
    args.latency = set(args.latency.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnx_bench_") as tmp:
        for variant in tqdm(args.variants.split(","), desc="variants", unit="model"):
            rows.append(bench_variant(variant, args, Path(tmp)))
    print(format_table(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
