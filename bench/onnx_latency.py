"""ONNX export time, file size and ONNX Runtime CPU latency of DMCF-SIDE variants (issue 5).

    .venv/bin/python bench/onnx_latency.py [--variants tiny,swin_t,swin_b] [--latency tiny,swin_t]
        [--runs 20] [--height 256 --width 640] [--threads N] [--sharing shared,two_towers]

Each variant is built with seeded random weights (latency and size do not depend on training),
saved in the training checkpoint contract and exported with the real `training.export` code,
including its graph checks and the ONNX Runtime parity check. `--sharing` times each variant
with the paper's weight sharing and/or as two towers (`swin_b_two_towers.yaml`'s model switches:
the same FLOPs, twice the parameters). Prints a Markdown table.
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

SHARING = ("shared", "two_towers")  # --sharing choices
SHARING_KEYS = ("shared_encoder", "shared_dmcf", "shared_decoder", "detach_cross_modal")


def sharing_switches(sharing: str) -> dict:
    """ModelConfig switches of a --sharing choice: none for the paper's sharing, the model
    block's sharing keys of training/configs/swin_b_two_towers.yaml for two towers."""
    if sharing == "shared":
        return {}
    import yaml

    model = yaml.safe_load((REPO_ROOT / "training/configs/swin_b_two_towers.yaml").read_text())
    return {k: model["model"][k] for k in SHARING_KEYS}


def make_checkpoint(variant: str, height: int, width: int, out_dir: Path,
                    sharing: str = "shared") -> Path:
    """A seeded, untrained network of `variant` in the training checkpoint format."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, height=height, width=width, **sharing_switches(sharing))
    model = build_model(cfg).eval()
    config = {"name": f"bench_{variant}_{sharing}", "model": cfg.to_dict()}
    return save_checkpoint(out_dir / f"{variant}_{sharing}.pt", model=model, config=config,
                           step=0)


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


def bench_variant(variant: str, args, work: Path, sharing: str = "shared") -> dict:
    from depth_fusion_ros.metadata import load_metadata
    from training.export import export_checkpoint

    ckpt = make_checkpoint(variant, args.height, args.width, work, sharing)
    start = time.perf_counter()
    model_path = export_checkpoint(ckpt, work / f"{variant}_{sharing}.onnx")
    row = {
        "variant": variant if sharing == "shared" else f"{variant} ({sharing})",
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
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--sharing", default="shared",
                        help=f"comma list of weight sharings to build, of {sorted(SHARING)}")
    args = parser.parse_args(argv)
    args.latency = set(args.latency.split(","))
    sharings = args.sharing.split(",")
    unknown = [x for x in sharings if x not in SHARING]
    if unknown:
        parser.error(f"--sharing {unknown}: choose from {sorted(SHARING)}")
    jobs = [(v, x) for v in args.variants.split(",") for x in sharings]
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnx_bench_") as tmp:
        for variant, sharing in tqdm(jobs, desc="models", unit="model"):
            rows.append(bench_variant(variant, args, Path(tmp), sharing))
    table = format_table(rows, args)
    if args.record:
        from common import record

        record("ONNX export and ONNX Runtime CPU latency", table,
               "bench/onnx_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
