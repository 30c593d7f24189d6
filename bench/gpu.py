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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `training` and `depth_fusion_ros` from any working directory


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


def _modes(model, thermal, rgb, workdir: Path, variant: str) -> list:
    """(mode name, factory) pairs. A factory prepares its mode (compile, export, copy) and returns
    the callable to time; main() runs each factory *and* its timing inside the row's own try, so a
    mode that fails (torch.compile raises at the first call, not at torch.compile()) becomes a
    table row with its reason instead of aborting the benchmark."""
    import copy

    import torch

    def eager():
        with torch.inference_mode():
            return model(thermal, rgb)

    def amp(dtype):
        def run():
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                return model(thermal, rgb)
        return run

    def channels_last():
        # A copy: .to(memory_format=...) converts a module in place, and every later row must
        # still measure the original contiguous model.
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        rgb_cl = rgb.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                return model_cl(thermal, rgb_cl)
        return run

    def compiled():
        torch._dynamo.reset()  # no state from an earlier variant's compile
        compiled_model = torch.compile(model, mode="max-autotune-no-cudagraphs")

        def run():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                return compiled_model(thermal, rgb)
        return run

    cache = {}

    def program():
        if "program" not in cache:
            cache["program"] = torch.export.export(model, (thermal, rgb))
        return cache["program"]

    def exported():
        pt2_path = workdir / f"{variant}.pt2"
        torch.export.save(program(), str(pt2_path))
        loaded = torch.export.load(str(pt2_path)).module()
        return lambda: loaded(thermal, rgb)

    def aoti():
        package = torch._inductor.aoti_compile_and_package(
            program(), package_path=str(workdir / f"{variant}_aoti.pt2"))
        runner = torch._inductor.aoti_load_package(package, device_index=thermal.device.index or 0)
        return lambda: runner(thermal, rgb)

    return [
        ("fp32", lambda: eager),
        ("fp16 autocast", lambda: amp(torch.float16)),
        ("bf16 autocast", lambda: amp(torch.bfloat16)),
        ("bf16 channels-last", channels_last),
        ("bf16 torch.compile", compiled),
        (".pt2 ExportedProgram fp32", exported),
        (".pt2 AOTInductor fp32", aoti),
    ]


def _failure(exc: BaseException) -> str:
    """One table-safe line naming a failed mode's exception."""
    first = (str(exc).strip().splitlines() or [""])[0][:160].replace("|", "/")
    return f"failed: {type(exc).__name__}: {first}"


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
            for mode, factory in _modes(model, thermal, rgb, Path(tmp), variant):
                try:
                    ms = _time_cuda(factory(), args.runs)
                    rows.append(f"| {variant} | {mode} | {ms:.2f} | {1000.0 * args.batch / ms:.1f} |")
                except Exception as exc:  # noqa: BLE001 - a failing mode is a result, not an abort
                    rows.append(f"| {variant} | {mode} | {_failure(exc)} | |")
                    torch.cuda.empty_cache()
                print(rows[-1], flush=True)
            rows += _tensorrt_rows(model, variant, Path(tmp), args)
            print(rows[-1], flush=True)
    record(f"GPU model latency ({torch.cuda.get_device_name()}, batch {args.batch}, 256x640)",
           "\n".join(rows), "python bench/gpu.py " + " ".join(sys.argv[1:]))
    return 0


def _tensorrt_rows(model, variant: str, workdir: Path, args) -> list[str]:
    """TensorRT fp16 through the project's own export + engine build, when tensorrt is present;
    a failure (export, build, accuracy check, run) is reported in the row."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return [f"| {variant} | TensorRT fp16 | skipped: tensorrt not importable | |"]
    try:
        return _tensorrt_row(model, variant, workdir, args)
    except Exception as exc:  # noqa: BLE001 - a failing mode is a result, not an abort
        return [f"| {variant} | TensorRT fp16 | {_failure(exc)} | |"]


def _tensorrt_row(model, variant: str, workdir: Path, args) -> list[str]:
    import subprocess

    import torch

    ckpt = workdir / f"{variant}.ckpt.pt"
    torch.save({"model": model.state_dict(), "config": {"model": {"variant": variant}}, "step": 0}, ckpt)
    onnx_path, engine_path = workdir / f"{variant}.onnx", workdir / f"{variant}.engine"
    subprocess.run([sys.executable, "-m", "training.export", "--checkpoint", str(ckpt), "--out", str(onnx_path)], check=True,
                   cwd=REPO)
    subprocess.run([sys.executable, "-m", "training.build_engine", "--onnx", str(onnx_path), "--out",
                    str(engine_path), "--precision", "fp16"], check=True, cwd=REPO)
    from depth_fusion_ros.backends import create_backend

    backend = create_backend(str(engine_path), backend="tensorrt", device="cuda")
    import numpy as np

    thermal = np.random.default_rng(0).standard_normal((1, 1, 256, 640)).astype(np.float32)
    rgb = np.random.default_rng(1).standard_normal((1, 3, 256, 640)).astype(np.float32)
    ms = _time_cuda(lambda: backend.infer(thermal, rgb), args.runs)
    return [f"| {variant} | TensorRT fp16 (incl. host copies) | {ms:.2f} | {1000.0 / ms:.1f} |"]


if __name__ == "__main__":
    sys.exit(main())
