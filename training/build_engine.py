"""Build a TensorRT 10 engine from an exported ONNX model, with its metadata sidecar.

    python -m training.build_engine --onnx model.onnx --out model.engine [--precision fp16]
        [--device cuda:0] [--calib-data MS2_ROOT --calib-frames 200] [--workspace-gb 4]
        [--timing-cache FILE] [--accuracy-frames 8]

The command line of `depth_fusion_ros.backends.tensorrt_build.build_engine`, the builder the node
shares: it selects the GPU first, parses the ONNX from its file (external weights work), builds
(fp16/int8 keep LayerNorm and Softmax in fp32; int8 calibrates on real MS2 frames through the
shared preprocessing, with a cache keyed by the ONNX sha256), checks the engine against ONNX
Runtime fp32 (limits per precision in `backends/accuracy.py`) and writes the engine, its sidecar
(TensorRT version, GPU, precision, accuracy) and then the timing cache. `.engine` and `.plan` names
are accepted. Engines are not portable: build on the machine (GPU + TensorRT 10) that runs it.

Exit codes: 0 written, 1 build or accuracy check failed, 2 bad arguments, ONNX / sidecar or an
output folder that does not exist or is not writable, 3 TensorRT 10 (or ONNX Runtime, the
accuracy check's reference) not importable. Both are checked before the build starts.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from depth_fusion_ros.backends.tensorrt_build import (
    EngineBuildError,
    build_engine,
    describe_engine,
)
from depth_fusion_ros.metadata import ModelMetadataError, sidecar_path

TRTEXEC_EPILOG = """\
Equivalent trtexec command (TensorRT 10), for users who prefer it:
  trtexec --onnx=model.onnx --saveEngine=model.engine --fp16 \\
          --memPoolSize=workspace:4096M --timingCacheFile=timing.cache
trtexec writes no sidecar: afterwards run
  python -m training.build_engine --onnx model.onnx --out model.engine --precision fp16 --sidecar-only
on the same machine; it checks the engine against ONNX Runtime fp32 and writes the sidecar the
node needs. (trtexec keeps LayerNorm/Softmax in fp32 only with --precisionConstraints=obey
--layerPrecisions=...; this builder does it for you.)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.build_engine",
        description="Build a TensorRT 10 engine (+ sidecar) from an exported DMCF-SIDE ONNX model.",
        epilog=TRTEXEC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--onnx", required=True, type=Path, help="exported model (with .onnx.json)")
    parser.add_argument("--out", required=True, type=Path,
                        help="engine file to write (.engine or .plan)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    parser.add_argument("--device", default="cuda:0", help="GPU to build for (cuda or cuda:N)")
    parser.add_argument("--calib-data", type=Path,
                        help="MS2 root with real frames: int8 calibration (required for int8) "
                             "and extra frames for the accuracy check")
    parser.add_argument("--calib-split", default="train", help="MS2 split of those frames")
    parser.add_argument("--calib-frames", type=int, default=200, help="frames for int8 calibration")
    parser.add_argument("--calib-cache", type=Path,
                        help="calibration cache (default <out>.calib; tied to the ONNX sha256)")
    parser.add_argument("--accuracy-frames", type=int, default=8,
                        help="real frames (from --calib-data) for the accuracy check")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file to load and update")
    parser.add_argument(
        "--sidecar-only", action="store_true",
        help="only check and describe an engine already built (e.g. by trtexec) on this machine",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace):
    """Builds (or, with --sidecar-only, describes) the engine; returns its sidecar metadata."""
    if args.sidecar_only:
        return describe_engine(args.onnx, args.out, precision=args.precision, device=args.device,
                               calib_data=args.calib_data, calib_split=args.calib_split,
                               accuracy_frames=args.accuracy_frames, progress=print)
    return build_engine(args.onnx, args.out, precision=args.precision, device=args.device,
                        workspace_gb=args.workspace_gb, calib_data=args.calib_data,
                        calib_split=args.calib_split, calib_frames=args.calib_frames,
                        calib_cache=args.calib_cache, accuracy_frames=args.accuracy_frames,
                        timing_cache=args.timing_cache, progress=print)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        md = run(args)
    except (ModelMetadataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except EngineBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # no visible GPU, CUDA errors outside the build itself
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    written = "" if args.sidecar_only else f"{args.out} and "
    print(f"wrote {written}{sidecar_path(args.out)} (model_id {md.model_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
