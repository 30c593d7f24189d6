"""GPU model benchmark (run on a CUDA machine): DMCF-SIDE latency and throughput at 256x640.

Modes per variant (swin_t, swin_b, swin_l by default): torch fp32, fp16 and bf16 autocast,
channels-last, `torch.compile`, the `.pt2` ExportedProgram and its AOTInductor package, and a
TensorRT fp16 engine when `tensorrt` is importable. Prints a Markdown table and appends it to
bench/RESULTS.md. Not a test: on a machine without CUDA it exits with a message.

    python bench/gpu.py [--variants swin_t,swin_b,swin_l] [--batch 1] [--runs 50]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import record


def _time_cuda(fn, runs: int, warmup: int = 5) -> float:
    """Median latency in ms of a CUDA callable, synchronised per call."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


def _modes(model, thermal, rgb, workdir: Path, variant: str):
    """Yield (mode name, callable) pairs; a mode that cannot run yields an error string."""
    import torch

    def eager():
        with torch.inference_mode():
            return model(thermal, rgb)

    yield "fp32", eager
    for name, dtype in (("fp16 autocast", torch.float16), ("bf16 autocast", torch.bfloat16)):
        def amp(dtype=dtype):
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                return model(thermal, rgb)
        yield name, amp

    model_cl = model.to(memory_format=torch.channels_last)
    rgb_cl = rgb.contiguous(memory_format=torch.channels_last)

    def channels_last():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model_cl(thermal, rgb_cl)
    yield "bf16 channels-last", channels_last

    try:
        compiled = torch.compile(model, mode="max-autotune-no-cudagraphs")

        def run_compiled():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                return compiled(thermal, rgb)
        yield "bf16 torch.compile", run_compiled
    except Exception as exc:  # noqa: BLE001 - report, do not hide, a mode that cannot run
        yield "bf16 torch.compile", f"failed: {exc}"

    try:
        program = torch.export.export(model, (thermal, rgb))
        pt2_path = workdir / f"{variant}.pt2"
        torch.export.save(program, str(pt2_path))
        loaded = torch.export.load(str(pt2_path)).module()
        yield ".pt2 ExportedProgram fp32", lambda: loaded(thermal, rgb)
        package = torch._inductor.aoti_compile_and_package(program, package_path=str(workdir / f"{variant}_aoti.pt2"))
        runner = torch._inductor.aoti_load_package(package)
        yield ".pt2 AOTInductor fp32", lambda: runner(thermal, rgb)
    except Exception as exc:  # noqa: BLE001
        yield ".pt2 / AOTInductor", f"failed: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="swin_t,swin_b,swin_l")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU; none is visible here (torch.cuda.is_available() is False).")
        return 2
    from training.model import ModelConfig, build_model

    rows = ["| variant | mode | latency ms (median) | pairs/s |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            torch.manual_seed(0)
            model = build_model(ModelConfig(variant=variant)).cuda().eval()
            thermal = torch.randn(args.batch, 1, 256, 640, device="cuda")
            rgb = torch.randn(args.batch, 3, 256, 640, device="cuda")
            for mode, fn in _modes(model, thermal, rgb, Path(tmp), variant):
                if isinstance(fn, str):
                    rows.append(f"| {variant} | {mode} | {fn} | |")
                    continue
                ms = _time_cuda(fn, args.runs)
                rows.append(f"| {variant} | {mode} | {ms:.2f} | {1000.0 * args.batch / ms:.1f} |")
                print(rows[-1], flush=True)
            rows += _tensorrt_rows(model, variant, Path(tmp), args)
    record(f"GPU model latency ({torch.cuda.get_device_name()}, batch {args.batch}, 256x640)",
           "\n".join(rows), "python bench/gpu.py " + " ".join(sys.argv[1:]))
    return 0


def _tensorrt_rows(model, variant: str, workdir: Path, args) -> list[str]:
    """TensorRT fp16 through the project's own export + engine build, when tensorrt is present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return [f"| {variant} | TensorRT fp16 | skipped: tensorrt not importable | |"]
    import subprocess

    import torch

    ckpt = workdir / f"{variant}.ckpt.pt"
    torch.save({"model": model.state_dict(), "config": {"model": {"variant": variant}}, "step": 0}, ckpt)
    onnx_path, engine_path = workdir / f"{variant}.onnx", workdir / f"{variant}.engine"
    subprocess.run([sys.executable, "-m", "training.export", "--checkpoint", str(ckpt), "--out", str(onnx_path)], check=True)
    subprocess.run([sys.executable, "-m", "training.build_engine", "--onnx", str(onnx_path), "--out",
                    str(engine_path), "--precision", "fp16"], check=True)
    from depth_fusion_ros.backends import create_backend

    backend = create_backend(str(engine_path), backend="tensorrt", device="cuda")
    import numpy as np

    thermal = np.random.default_rng(0).standard_normal((1, 1, 256, 640)).astype(np.float32)
    rgb = np.random.default_rng(1).standard_normal((1, 3, 256, 640)).astype(np.float32)
    ms = _time_cuda(lambda: backend.infer(thermal, rgb), args.runs)
    return [f"| {variant} | TensorRT fp16 (incl. host copies) | {ms:.2f} | {1000.0 / ms:.1f} |"]


if __name__ == "__main__":
    sys.exit(main())
