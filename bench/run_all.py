"""`make bench`: every CPU benchmark in turn; each result block is appended to bench/RESULTS.md.

Models for the latency and ROS figures are exported here from seeded, untrained checkpoints
(latency does not depend on the weights); the end-to-end ROS figures use the demo model
(training/models/demo_model.pt, exported here) when it exists, else an untrained `tiny` at the
same 128x256. GPU figures come from bench/gpu.py on a CUDA machine.

    python bench/run_all.py [--only NAME,...] [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, record

PY = sys.executable


def export_untrained(variant: str, height: int, width: int, out_dir: Path) -> Path:
    """A seeded untrained checkpoint of `variant`, exported to ONNX with its sidecar."""
    code = (
        "import sys, torch\n"
        "from training.model import ModelConfig, build_model\n"
        "from training.checkpoint import save_checkpoint\n"
        "from training.export import export_checkpoint\n"
        f"torch.manual_seed(0); cfg = ModelConfig(variant='{variant}', height={height}, width={width})\n"
        f"ckpt = '{out_dir}/{variant}.pt'\n"
        "save_checkpoint(ckpt, model=build_model(cfg), config={'model': cfg.to_dict()}, step=0)\n"
        f"export_checkpoint(ckpt, '{out_dir}/{variant}_{height}x{width}.onnx')\n"
    )
    subprocess.run([PY, "-c", code], cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    return out_dir / f"{variant}_{height}x{width}.onnx"


def run_bench(title: str, args: list[str], notes: str = "") -> None:
    """Run one bench script, print its output and record it."""
    cmd = [PY, *args]
    print(f"\n### {title}\n$ {' '.join(args)}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(proc.stdout)
        raise SystemExit(f"bench '{title}' failed with code {proc.returncode}: {' '.join(args)}")
    took = time.monotonic() - start
    record(title, proc.stdout.strip(), " ".join(args), (notes + f" (ran {took:.0f} s)").strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma list of bench names to run")
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    runs = "20" if args.quick else "300"
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        benches = {
            "node_overhead": lambda: run_bench(
                "Node overhead per pair vs a straightforward baseline (no inference)",
                ["bench/node_overhead.py", "--pairs", "50" if args.quick else "300"]),
            "publish_cost": lambda: run_bench(
                "Publishing one cloud vs the serialisation node_overhead.py charges",
                ["bench/publish_cost.py", "--runs", "50" if args.quick else "200"]),
            "components": lambda: run_bench("Preprocessing and cloud building alone",
                                            ["bench/components.py", "--runs", runs]),
            "onnx": lambda: run_bench(
                "ONNX export and ONNX Runtime CPU latency at 256x640",
                ["bench/onnx_latency.py", "--variants", "tiny" if args.quick else "tiny,swin_t,swin_b",
                 "--latency", "tiny" if args.quick else "tiny,swin_t,swin_b",
                 "--runs", "3" if args.quick else "10"]),
            "dds": lambda: run_bench(
                "DDS transport for camera images (received of sent)",
                ["bench/dds_transport.py", "--count", "60" if args.quick else "150"]),
            "ros": lambda: ros_benches(tmp_dir, args.quick),
            "synthetic": lambda: run_bench("Synthetic MS2 generation speed",
                                           ["bench/synthetic_speed.py", "--no-record"]),
            "bag": lambda: run_bench("ms2_to_bag conversion speed", ["bench/bag_speed.py"]),
            "bag_to_ms2": lambda: [run_bench(
                f"bag_to_ms2 conversion speed and GT accuracy (simulated rig{label})",
                ["bench/bag_to_ms2_speed.py"] + (["--seconds", "2"] if args.quick else []) + flag)
                for label, flag in (("", []), (", no motion compensation",
                                               ["--no-motion-compensation"]))],
            "rig_finetune": lambda: run_bench(
                "Fine-tuning the demo model on another rig (synthetic rig bags, bag_to_ms2)",
                ["bench/rig_finetune.py", "--no-record"]
                + (["--train-drives", "1", "--seconds", "2", "--steps", "20"] if args.quick else [])),
            "train": lambda: run_bench("Training steps/s, tiny_synthetic on CPU",
                                       ["bench/train_speed.py", "--steps", "20"]),
            "model": lambda: run_bench("Parameter counts and swin_t CPU forward at 1x256x640",
                                       ["bench/model_forward.py", "--runs", "3"]),
        }
        unknown = only - set(benches)
        if unknown:
            raise SystemExit(f"unknown bench name(s) {sorted(unknown)}; choose from {sorted(benches)}")
        for name, bench in benches.items():
            if not only or name in only:
                bench()
    return 0


def demo_model_onnx(tmp_dir: Path) -> tuple[str, Path]:
    """(label, .onnx) of the demo model: the shipped checkpoint exported, else an untrained tiny
    at the demo's 128x256 (speed does not depend on the weights)."""
    ckpt = REPO_ROOT / "training" / "models" / "demo_model.pt"
    if ckpt.is_file():
        out = tmp_dir / "demo_model.onnx"
        subprocess.run([PY, "-m", "training.export", "--checkpoint", str(ckpt), "--out", str(out)],
                       cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
        return "demo model (training/models/demo_model.pt)", out
    return "tiny 128x256 (untrained, the demo model's size)", export_untrained("tiny", 128, 256,
                                                                              tmp_dir)


def ros_benches(tmp_dir: Path, quick: bool) -> None:
    """End-to-end pairs through ROS (node process with default parameters, 30 Hz input, both
    processes on config/fastdds.xml): the demo model with a reliable and a best-effort camera,
    then heavier models."""
    seconds = "5" if quick else "15"
    label, demo = demo_model_onnx(tmp_dir)
    for qos in ("reliable", "best_effort"):
        run_bench(f"End-to-end pairs through ROS, {label}, {qos} camera, ONNX Runtime CPU",
                  ["bench/ros_throughput.py", "--model", str(demo), "--rate", "30",
                   "--seconds", seconds, "--qos", qos, "--repeats", "1" if quick else "2"])
    models = [("tiny 256x640 (untrained)", export_untrained("tiny", 256, 640, tmp_dir))]
    if not quick:
        models.append(("swin_t 256x640 (untrained)", export_untrained("swin_t", 256, 640, tmp_dir)))
    for label, model in models:
        run_bench(f"End-to-end pairs through ROS, {label}, ONNX Runtime CPU",
                  ["bench/ros_throughput.py", "--model", str(model), "--rate", "30",
                   "--seconds", seconds])


if __name__ == "__main__":
    sys.exit(main())
