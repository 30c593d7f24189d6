"""`make gpu-check`: the GPU deployment path measured on one CUDA machine, in one command.

    python bench/gpu_check.py [--device cuda:0] [--budget-s 450] [--results bench/RESULTS.md]
    python bench/gpu_check.py --dry-run     # no GPU: the same code on cpu, tiny model, few runs,
                                            # results to a temporary file (--device cpu = same)

Parts, in priority order. Each runs when what it needs is installed and the time budget (under
8 minutes in all) has room for it; otherwise it is listed under "skipped" with the reason. Only
the standard library is imported at module level, so a machine with torch alone still runs the
backend timings.
1. export: tiny, swin_t, swin_b, swin_l at 256x640 from seeded untrained weights (latency does
   not depend on the weights) with `training.export` to `.pt2`. The fp16 file is the same
   program with an fp16 sidecar, which is what `training.export --precision fp16` writes.
2. torch backend: every `.pt2` on the device in fp32 and fp16 (autocast): latency p50/p90 of
   `Backend.infer` (host copies included), peak GPU memory, parity against the CPU fp32 run of
   the same file (limits of `depth_fusion_ros/backends/accuracy.py`).
3. node: depth_fusion_node over real DDS with the torch backend on the device at 30 Hz input
   (bench/node_probe.py; needs rclpy): start-up to first depth, pairs/s vs the standalone
   rate, the node's median stamp-to-publish latency vs its median inference time; once with
   the default pipelined worker and once with `pipelined: false` (stages on one thread).
4. tensorrt: swin_b ONNX, its engine built through the engine cache in a child process (a
   cache miss, killed at the budget), then the node started on the cache hit (start-up to first
   depth) and the engine's standalone latency; parity is the builder's own check against ONNX
   Runtime fp32 (sidecar `tensorrt.accuracy`).
5. aoti: AOTInductor fp32 packages (tiny, swin_b; compiled by a `training.export --aoti`
   child stopped at the budget) through the torch backend, parity as in part 2.
Without the runtime's numpy/opencv, part 2 runs in plain torch (the torch backend's own loading:
`torch.export.load` + `move_to_device_pass`) and parts 3-5 are skipped.

The tables go to bench/RESULTS.md through bench/common.py `record`. Figures are reported, never
asserted: node throughput vs standalone rate, stamp-to-publish vs inference, swin_l fp16 torch
latency at 256x640, and the engine-cache-hit start-up of swin_b.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import REPO_ROOT
from gpu_report import HEIGHT, INPUT_HZ, WIDTH, NodeRow, Row, find_row, format_row, report
from gpu_timing import device_used_mib, free_gpu, latency_ms, peak_mib, plain_torch_rows

# Rough seconds a step needs on a 16-core CUDA machine (guesses, not measured: a step starts
# only with that much budget left, and children are stopped at the budget). "tensorrt" is the
# ONNX export (~45 s) plus a Swin engine build (minutes) plus the node's start on the hit.
NEED_S = {"tiny": 10, "swin_t": 25, "swin_b": 35, "swin_l": 50, "rows": 15, "node": 40,
          "tensorrt": 180, "engine": 120, "aoti": 90}
BUILD_CHILD = """
import sys
from depth_fusion_ros.backends import create_backend
backend = create_backend(sys.argv[1], "tensorrt", sys.argv[3], precision="fp16",
                         engine_cache_dir=sys.argv[2], log=lambda line: print(line, flush=True))
print("engine cache:", backend.engine_cache.status, flush=True)
"""


class Check:
    """The run's settings, time budget and results."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.dry_run = args.dry_run
        self.device = args.device
        self.variants = args.variants.split(",")
        self.aoti_variants = args.aoti_variants.split(",")
        self.node_variant, self.trt_variant = args.node_variant, args.trt_variant
        self.runs, self.warmup = args.runs, 1 if args.dry_run else 5
        self.node_seconds = args.node_seconds
        self.deadline = time.monotonic() + args.budget_s
        self.workdir = workdir
        self.rows: list[Row] = []
        self.node_rows: list[NodeRow] = []
        self.skipped: list[tuple[str, str]] = []
        self.references: dict[str, dict] = {}  # variant -> CPU fp32 depth maps
        self.exported: dict[str, Path] = {}

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def skip(self, part: str, reason: str) -> None:
        self.skipped.append((part, reason))
        print(f"skipped {part}: {reason}", flush=True)

    def has_time(self, part: str, need: str) -> bool:
        if self.left_s() >= NEED_S[need]:
            return True
        self.skip(part, f"time budget: {max(self.left_s(), 0):.0f} s left, needs ~{NEED_S[need]} s")
        return False

    def row(self, model: str, runtime: str, asked: str) -> Row | None:
        """The measured row of a model and runtime asked for a precision, if any."""
        return find_row(self.rows, model, runtime, asked)


def missing(*modules: str) -> str | None:
    """"a, b not installed" for the modules that cannot be imported here (none is imported)."""
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def failure(exc: BaseException) -> str:
    """One table-safe line naming an exception (a child's own output is printed above)."""
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"stopped at the time budget after {exc.timeout:.0f} s"
    if isinstance(exc, subprocess.CalledProcessError):
        return f"failed: its process exited with code {exc.returncode} (output above)"
    first = (str(exc).strip().splitlines() or [""])[0][:160].replace("|", "/")
    return f"failed: {type(exc).__name__}: {first}"


# ---- 1. export ---------------------------------------------------------------------------------

def checkpoint_for(check: Check, variant: str) -> Path:
    """A seeded untrained checkpoint at 256x640 (made once; every export starts from it)."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model

    ckpt = check.workdir / f"{variant}.pt"
    if not ckpt.exists():
        torch.manual_seed(0)
        cfg = ModelConfig(variant=variant, height=HEIGHT, width=WIDTH)
        save_checkpoint(ckpt, model=build_model(cfg).eval(), step=0,
                        config={"name": f"{variant}_untrained", "model": cfg.to_dict()})
    return ckpt


def export_variant(check: Check, variant: str) -> Path:
    """`training.export` of the variant's checkpoint to `<variant>.pt2` + sidecar."""
    from training.export import export_checkpoint

    return export_checkpoint(checkpoint_for(check, variant), check.workdir / f"{variant}.pt2",
                             fmt="pt2")


def export_child(check: Check, variant: str, out: Path, *flags: str, reserve_s: float) -> Path:
    """`python -m training.export` in a child process the budget can stop (ONNX export with
    its ONNX Runtime parity check, AOTInductor compilation: minutes for large models).
    Raises subprocess.TimeoutExpired / CalledProcessError."""
    subprocess.run([sys.executable, "-m", "training.export", "--checkpoint",
                    str(checkpoint_for(check, variant)), "--out", str(out), *flags],
                   cwd=REPO_ROOT, env=child_env(), check=True,
                   timeout=max(check.left_s() - reserve_s, 10.0))
    return out


def child_env() -> dict:
    """This environment with the checkout first on PYTHONPATH (children run its code)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def fp16_twin(pt2: Path) -> Path:
    """The same program with an fp16 sidecar (the torch backend then runs it under autocast)."""
    from depth_fusion_ros.metadata import load_metadata, write_metadata

    twin = pt2.with_name(f"{pt2.stem}_fp16.pt2")
    if not twin.exists():
        try:
            os.link(pt2, twin)
        except OSError:
            shutil.copyfile(pt2, twin)
    md = load_metadata(pt2, verify_hash=False)
    write_metadata(dataclasses.replace(md, model_file=twin.name, precision="fp16"), twin)
    return twin


# ---- 2. torch backend ----------------------------------------------------------------------------

def backend_row(check: Check, variant: str, runtime: str, path: Path, asked: str,
                backend: str = "torch", **options) -> Row:
    """Latency, memory and parity of one model file through `create_backend`."""
    from depth_fusion_ros.backends import create_backend
    from depth_fusion_ros.backends.accuracy import compare_depths, sample_inputs

    row = Row(variant, runtime, check.device, asked, asked)
    inputs = sample_inputs(HEIGHT, WIDTH)
    free_gpu(check.device)
    used_before = device_used_mib(check.device) if backend == "tensorrt" else 0.0
    try:
        made = create_backend(path, backend, check.device, **options)
        row.device, row.precision = made.device, made.precision
        if made.precision != asked:
            row.note = f"asked {asked}; "

        def infer():
            return made.infer(inputs["thermal"], inputs["rgb"])

        row.p50_ms, row.p90_ms = latency_ms(infer, check.runs, check.warmup)
        row.gpu_mib = peak_mib(check.device)
        reference = check.references.get(variant)
        if backend == "tensorrt":  # the builder compared it with ONNX Runtime fp32 already
            row.gpu_mib = device_used_mib(check.device) - used_before  # engine + context too
            accuracy = made.metadata.tensorrt.get("accuracy", {})
            row.parity_m = accuracy.get("max_abs_diff_m")
            row.parity = "ok" if accuracy.get("passed") else "FAILED"
            row.note += "parity: the build's check vs ONNX Runtime fp32"
        elif reference is not None:
            report = compare_depths([(reference, infer())], made.precision, label=runtime,
                                    reference_label="torch CPU fp32")
            row.parity_m, row.parity = report.max_abs_diff_m, "ok" if report.passed else "FAILED"
        made.close()
    except Exception as exc:  # noqa: BLE001 - a failing mode is a row, not an abort
        row.note += failure(exc)
    free_gpu(check.device)
    print(format_row(row), flush=True)
    return row


def torch_rows(check: Check, variant: str, pt2: Path) -> None:
    """The CPU fp32 reference, then fp32 and fp16 on the device."""
    from depth_fusion_ros.backends import create_backend
    from depth_fusion_ros.backends.accuracy import sample_inputs

    inputs = sample_inputs(HEIGHT, WIDTH)
    cpu = create_backend(pt2, "torch", "cpu")
    check.references[variant] = cpu.infer(inputs["thermal"], inputs["rgb"])
    del cpu
    for path, asked in ((pt2, "fp32"), (fp16_twin(pt2), "fp16")):
        check.rows.append(backend_row(check, variant, "torch .pt2", path, asked))


# ---- 3. node over DDS, 4. TensorRT engine cache, 5. AOTInductor ---------------------------------

def node_row(check: Check, label: str, params: dict, standalone: Row | None,
             namespace: str) -> None:
    """Runs the node once (bench/node_probe.py) and adds its row."""
    from node_probe import run_node

    timeout_s = max(min(check.left_s() - 15.0, 300.0), 20.0)
    run = run_node({"device": check.device, "warmup_iterations": 3, **params}, check.workdir,
                   namespace=namespace, rate_hz=INPUT_HZ, seconds=check.node_seconds,
                   timeout_s=timeout_s)
    row = NodeRow(label, params["backend"], run,
                  1000.0 / standalone.p50_ms if standalone is not None else None)
    if run.error:
        last = run.log_tail.strip().splitlines()[-1:] or [""]
        row.note = f"{run.error}; node log: {last[0][:160].replace('|', '/')}"
        print(f"node run {label}: {run.error}\n{run.log_tail}", flush=True)
    check.node_rows.append(row)


def node_part(check: Check) -> None:
    variant = check.node_variant
    reason = missing("rclpy", "sensor_msgs", "diagnostic_msgs")
    if reason or variant not in check.exported:
        check.skip("node over DDS", reason or f"{variant} was not exported")
        return
    params = {"model_path": str(fp16_twin(check.exported[variant])), "backend": "torch"}
    standalone = check.row(variant, "torch .pt2", "fp16")
    if check.has_time("node over DDS", "node"):
        node_row(check, f"{variant} .pt2 fp16", params, standalone, "gpu_check_torch")
    # The same with the stages one after the other on one thread: what the overlap gains.
    if check.has_time("node over DDS, sequential worker", "node"):
        node_row(check, f"{variant} .pt2 fp16, pipelined false", {**params, "pipelined": False},
                 standalone, "gpu_check_torch_seq")


def tensorrt_part(check: Check) -> None:
    variant = check.trt_variant
    reason = ("TensorRT needs a CUDA device" if check.device == "cpu"
              else missing("tensorrt", "onnx", "onnxruntime"))
    if reason:
        check.skip("tensorrt", reason)
        return
    if not check.has_time("tensorrt", "tensorrt"):
        return
    engines = check.workdir / "engines"
    try:
        onnx = export_child(check, variant, check.workdir / f"{variant}.onnx",
                            reserve_s=NEED_S["engine"])
        start = time.monotonic()
        # The cache miss: the node's own build path, in a child the budget can stop; what is
        # left after it is for the standalone row and the node's start on the cache hit.
        subprocess.run([sys.executable, "-c", BUILD_CHILD, str(onnx), str(engines), check.device],
                       cwd=REPO_ROOT, env=child_env(), check=True,
                       timeout=max(check.left_s() - 50, 10))
    except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
        check.skip("tensorrt", f"{variant} ONNX export or engine build did not finish: "
                   f"{failure(exc)}")
        return
    build_s = time.monotonic() - start
    params = {"model_path": str(onnx), "backend": "tensorrt", "precision": "fp16",
              "engine_cache_dir": str(engines)}
    standalone = backend_row(check, variant, "TensorRT engine (cache hit)", onnx, "fp16",
                             backend="tensorrt", precision="fp16", engine_cache_dir=engines)
    standalone.note += f"; engine build (cache miss) {build_s:.0f} s"
    check.rows.append(standalone)
    if missing("rclpy"):
        check.skip("tensorrt node start", missing("rclpy"))
    elif check.has_time("tensorrt node start", "node"):
        node_row(check, f"{variant} engine fp16 (cache hit)", params, standalone,
                 "gpu_check_trt")


def aoti_part(check: Check) -> None:
    if check.device == "cpu":
        check.skip("aoti", "AOTInductor packages are compiled for CUDA")
        return
    for variant in check.aoti_variants:
        if variant in check.references and check.has_time(f"aoti {variant}", "aoti"):
            try:
                package = export_child(check, variant, check.workdir / f"{variant}_aoti.pt2",
                                       "--format", "pt2", "--aoti", reserve_s=20.0)
            except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
                check.skip(f"aoti {variant}", failure(exc))
                continue
            check.rows.append(backend_row(check, variant, "torch AOTInductor", package, "fp32"))


# ---- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda:0", help="cuda[:N], or cpu (= --dry-run)")
    parser.add_argument("--dry-run", action="store_true",
                        help="cpu, tiny, few runs, results to a temporary file")
    parser.add_argument("--variants", default="tiny,swin_t,swin_b,swin_l")
    parser.add_argument("--aoti-variants", default="tiny,swin_b")
    parser.add_argument("--node-variant", default="swin_b")
    parser.add_argument("--trt-variant", default="swin_b")
    parser.add_argument("--runs", type=int, default=50, help="timed inferences per row")
    parser.add_argument("--node-seconds", type=float, default=10.0)
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="parts that would not fit are skipped (the run stays < 8 min)")
    parser.add_argument("--results", type=Path, help="Markdown file to append to (default "
                        "bench/RESULTS.md; a temporary file for a dry run)")
    args = parser.parse_args(argv)
    args.dry_run = args.dry_run or args.device == "cpu"
    if args.dry_run:
        args.device, args.variants, args.aoti_variants = "cpu", "tiny", "tiny"
        args.node_variant = args.trt_variant = "tiny"
        args.runs, args.node_seconds = min(args.runs, 2), min(args.node_seconds, 4.0)
        if args.results is None:
            args.results = Path(tempfile.mkdtemp(prefix="gpu_check_")) / "RESULTS.md"
    return args


def run_parts(check: Check) -> None:
    runtime_missing = missing("numpy", "cv2")
    if runtime_missing:
        check.skip("torch backend, node, tensorrt, aoti", f"depth_fusion_ros needs "
                   f"{runtime_missing.replace(' not installed', '')}: plain torch timings instead")
        for variant in check.variants:
            if check.has_time(f"plain torch {variant}", variant):
                for row in plain_torch_rows(variant, check.device, check.runs, check.warmup,
                                            check.workdir):
                    check.rows.append(row)
                    print(format_row(row), flush=True)
        return
    for variant in check.variants:
        if check.has_time(f"export {variant}", variant):
            try:
                check.exported[variant] = export_variant(check, variant)
            except Exception as exc:  # noqa: BLE001 - reported, the other variants still run
                check.skip(f"export {variant}", failure(exc))
    for variant, pt2 in check.exported.items():
        if check.has_time(f"torch backend {variant}", "rows"):
            guarded(check, f"torch backend {variant}", torch_rows, check, variant, pt2)
    for name, part in (("node over DDS", node_part), ("tensorrt", tensorrt_part),
                       ("aoti", aoti_part)):
        guarded(check, name, part, check)


def guarded(check: Check, name: str, part, *args) -> None:
    """Runs a part; an exception becomes a skipped line naming it (the other parts still run)."""
    try:
        part(*args)
    except Exception as exc:  # noqa: BLE001 - reported in the table, not an abort
        check.skip(name, failure(exc))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if missing("torch"):
        print("bench/gpu_check.py needs torch; it is not installed here.")
        return 2
    import torch

    if args.device != "cpu" and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA GPU here; run `python "
              "bench/gpu_check.py --dry-run` for the CPU check of this script.")
        return 2
    if args.results is not None:
        common.RESULTS_MD = args.results.resolve()  # record() appends to this file
        common.RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
    from depth_fusion_ros.malloc_tuning import keep_large_buffers_in_heap  # ctypes only

    keep_large_buffers_in_heap()  # as depth_fusion_node's main() does: same standalone terms
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 5))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    start = time.monotonic()
    gpu = "CPU dry run" if args.dry_run else torch.cuda.get_device_name(args.device)
    with tempfile.TemporaryDirectory(prefix="gpu_check_work_") as tmp:
        check = Check(args, Path(tmp))
        run_parts(check)
        versions = common.versions("torch", "tensorrt", "onnxruntime", "ros-jazzy-rclpy")
        cuda = f"CUDA {torch.version.cuda}, " if torch.version.cuda else ""
        report(check.rows, check.node_rows, check.skipped, check.node_seconds,
               f"GPU check ({gpu}, {HEIGHT}x{WIDTH})",
               "python bench/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               f"{cuda}{versions}; ran {time.monotonic() - start:.0f} s of a "
               f"{args.budget_s:.0f} s budget")
    print(f"results appended to {common.RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
