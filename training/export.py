"""Export a trained DMCF-SIDE checkpoint to a deployable model file plus its metadata sidecar.

    python -m training.export --checkpoint runs/x/best.pt --out model.onnx
        [--views thermal,rgb] [--height 256 --width 640] [--opset 17] [--format onnx|pt2] [--aoti]

ONNX: static shapes (inputs `thermal` [1,1,H,W], `rgb` [1,3,H,W] normalised float32; outputs
`depth_<view>` [1,1,H,W] metres), eval mode (BatchNorm folded into constants by the exporter's
constant folding), checked with `onnx.checker`, restricted to default-domain ONNX ops with no
Loop/Scan/If/Sequence ops (what TensorRT's ONNX parser handles best), and verified against PyTorch
with ONNX Runtime (max |diff| < 1e-3 m or the export fails). pt2: a `torch.export` ExportedProgram
for the torch backend (optionally an fp32 AOTInductor package on CUDA with `--aoti`). Both get
the sidecar of depth_fusion_ros.metadata; files are written under temporary names and renamed,
model first and sidecar last, so an interrupted export never leaves a complete-looking pair.

Exit codes (the project's convention, README "Exit codes"): 0 written, 1 the export or its
parity check failed, 2 bad input (arguments, a missing or unreadable checkpoint).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from depth_fusion_ros.backends.accuracy import ACCURACY_LIMITS, sample_inputs
from depth_fusion_ros.fileio import atomic_output
from depth_fusion_ros.metadata import (
    SCHEMA_VERSION,
    ModelMetadata,
    TensorSpec,
    sha256_file,
    sidecar_path,
    write_metadata,
)
from depth_fusion_ros.preprocess import normalisation_params

# fp32 files must agree with PyTorch as closely as an fp32 TensorRT engine with ONNX Runtime.
PARITY_TOLERANCE_M = ACCURACY_LIMITS["fp32"].max_abs_m
# Ops that make TensorRT's parser fall back or fail, and that a static-shape export never needs.
FORBIDDEN_OPS = {"Loop", "Scan", "If", "SequenceConstruct", "SequenceAt", "SequenceInsert",
                 "SequenceEmpty", "SplitToSequence", "ConcatFromSequence", "SequenceLength"}
MODALITY_INPUTS = {"fusion": ("thermal", "rgb"), "thermal_only": ("thermal",), "rgb_only": ("rgb",)}


class ExportError(RuntimeError):
    """The export failed a check (graph ops, parity); the message says which and why."""


class _DepthExportWrapper(torch.nn.Module):
    """Positional inputs (sidecar order) -> tuple of [1,1,H,W] depths (sidecar output order),
    then, for a model with an uncertainty head, one confidence map per view:
    confidence = exp(-sigma) in (0, 1], sigma = the predicted expected |log(depth/true depth)|."""

    def __init__(self, model: torch.nn.Module, inputs: tuple[str, ...], views: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.views = views
        self.confidence = bool(getattr(model.cfg, "uncertainty_head", False))

    def output_names(self) -> list[str]:
        names = [f"depth_{v}" for v in self.views]
        return names + ([f"confidence_{v}" for v in self.views] if self.confidence else [])

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.inputs, tensors, strict=True))
        out = self.model(named.get("thermal"), named.get("rgb"), views=list(self.views))
        depths = tuple(out[f"depth_{view}"] for view in self.views)
        if not self.confidence:
            return depths
        return depths + tuple(torch.exp(-out[f"uncertainty_{view}"]) for view in self.views)


def git_commit(folder: Path | None = None) -> str:
    """HEAD of the repository holding `folder` (default: this file's), with "-dirty" appended
    when tracked files differ from it (the model was made by code no commit holds), or
    "unknown" outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder or Path(__file__).parent,
                              capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return head + "-dirty" if git("status", "--porcelain", "--untracked-files=no") else head
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_onnx_graph(path: Path) -> dict:
    """onnx.checker plus the op whitelist; returns {"opset": n, "ops": sorted op types,
    "graph_nodes": number of nodes}.

    Raises:
        ExportError naming the custom-domain or control-flow/sequence ops found.
    """
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {(node.domain or "", node.op_type) for node in model.graph.node}
    custom = sorted(f"{d}::{op}" for d, op in ops if d not in ("", "ai.onnx"))
    forbidden = sorted(op for _, op in ops if op in FORBIDDEN_OPS)
    if custom or forbidden or model.functions:
        raise ExportError(f"{path}: non-standard ops in the graph (custom {custom}, control-flow/"
                          f"sequence {forbidden}, functions {len(model.functions)}); TensorRT's "
                          "ONNX parser would reject or fall back on them")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": int(opset), "ops": sorted(op for _, op in ops),
            "graph_nodes": len(model.graph.node)}


def _export_onnx(wrapper, args, tmp: Path, names_in, names_out, opset: int) -> None:
    """torch -> ONNX file. The TorchScript-based exporter (dynamo=False) is tried first: it gives
    a plain static graph with BatchNorm and constants folded, and is fast. The dynamo exporter is
    the fallback (opset >= 18, which its op set needs) if tracing fails."""
    common = dict(input_names=list(names_in), output_names=list(names_out))
    try:
        with warnings.catch_warnings():
            # Tracing static shapes is the intent here: python-int shape warnings are expected.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(wrapper, args, str(tmp), dynamo=False, do_constant_folding=True,
                              opset_version=opset, **common)
    except (RuntimeError, TypeError) as exc:
        print(f"TorchScript ONNX export failed ({str(exc).splitlines()[0][:200]}); "
              "retrying with the dynamo exporter", file=sys.stderr)
        torch.onnx.export(wrapper, args, str(tmp), dynamo=True, external_data=False,
                          opset_version=max(opset, 18), **common)


def simplify_onnx(path: Path) -> None:
    """Folds the static-shape arithmetic (Shape/Gather/Range chains) left by tracing.

    Uses ONNX Runtime's *basic* graph optimisations, which only emit standard ONNX ops
    (constant folding, redundant-node elimination), in the spirit of onnx-simplifier; the file
    is rewritten in place and then re-checked by the caller.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path) + ".opt"
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    os.replace(str(path) + ".opt", path)
    dedupe_initializers(path)


def dedupe_initializers(path: Path) -> int:
    """Merges byte-identical initializers (tracing bakes e.g. the same shifted-window attention
    mask once per attention module); returns the number removed. Rewrites `path` in place."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    keep: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    unique = []
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        key = (array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).hexdigest())
        if key in keep:
            rename[init.name] = keep[key]
        else:
            keep[key] = init.name
            unique.append(init)
    if rename:
        del model.graph.initializer[:]
        model.graph.initializer.extend(unique)
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                node.input[i] = rename.get(name, name)
        onnx.save(model, str(path))
    return len(rename)


def onnx_parity(path: Path, torch_out: list[np.ndarray], feeds: dict[str, np.ndarray],
                names_out: list[str]) -> float:
    """Max |ONNX Runtime - PyTorch| in metres over all outputs (CPU EP, full optimisation)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = min(4, os.cpu_count() or 1)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ort_out = session.run(names_out, feeds)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ort_out, torch_out, strict=True))


def pt2_parity(program, torch_out: list[np.ndarray], tensors: tuple) -> float:
    """Max |ExportedProgram - eager PyTorch| in metres (the saved file is this program; loading
    it back costs seconds and is exercised by the torch backend tests)."""
    module = program.module()
    with torch.inference_mode():
        out = module(*tensors)
    return max(float(np.max(np.abs(a.numpy() - b))) for a, b in zip(out, torch_out, strict=True))


def _config_name(config: dict, cfg) -> str:
    name = config.get("name") or config.get("run_name") or config.get("experiment")
    return str(name) if name else f"dmcf_{cfg.variant}"


def _jsonable(value) -> dict:
    """The training config as plain JSON types (tuples -> lists, paths -> str)."""
    return json.loads(json.dumps(value, default=str))


def build_metadata(fmt: str, out: Path, model_sha: str, ckpt_sha: str, ckpt: dict, cfg,
                   inputs: tuple[str, ...], views: tuple[str, ...], precision: str,
                   extra: dict) -> ModelMetadata:
    """The sidecar of an exported file (every field of DESIGN.md section 4)."""
    h, w = cfg.height, cfg.width
    channels = {"thermal": 1, "rgb": 3}
    return ModelMetadata(
        schema_version=SCHEMA_VERSION, format=fmt, model_file=out.name, model_sha256=model_sha,
        model_id=f"{_config_name(ckpt['config'], cfg)}-{model_sha[:12]}",
        inputs=[TensorSpec(v, [1, channels[v], h, w], "float32", v) for v in inputs],
        outputs=[TensorSpec(f"depth_{v}", [1, 1, h, w], "float32", v, "m") for v in views]
        + ([TensorSpec(f"confidence_{v}", [1, 1, h, w], "float32", v, "1", kind="confidence")
            for v in views] if getattr(cfg, "uncertainty_head", False) else []),
        input_size={"height": h, "width": w}, max_depth_m=float(cfg.max_depth_m),
        normalization=normalisation_params(), training_config=_jsonable(ckpt["config"]),
        source_checkpoint_sha256=ckpt_sha, git_commit=git_commit(),
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        precision=precision, extra=extra,
    )


def _resolve_views(views, cfg) -> tuple[str, ...]:
    available = tuple(cfg.output_views)
    if views is None:
        return available
    views = tuple(views.split(",")) if isinstance(views, str) else tuple(views)
    unknown = [v for v in views if v not in available]
    if not views or unknown:
        raise ValueError(f"--views {','.join(views)}: this model outputs {','.join(available)}")
    return tuple(v for v in available if v in views)  # keep the canonical order


def _write_and_check(fmt, wrapper, tensors, feeds, torch_out, tmp: Path, names_out, opset,
                     aoti) -> tuple[dict, float | None, str]:
    """Writes the model to `tmp` and checks it; returns (extra sidecar info, max |diff| m or
    None when not checkable, what the parity was checked with)."""
    if fmt == "onnx":
        _export_onnx(wrapper, tensors, tmp, list(feeds), names_out, opset)
        simplify_onnx(tmp)
        extra = check_onnx_graph(tmp)
        return extra, onnx_parity(tmp, torch_out, feeds, names_out), "onnxruntime CPU"
    if aoti:
        return _save_aoti(wrapper, tensors, tmp), None, "not checked (AOTInductor package)"
    # The eager forward that made torch_out filled training.model.memo, so the size-only
    # tensors (window permutations, shift masks, position embeddings) enter the program as
    # constants instead of operators the torch backend would run at every forward.
    with torch.no_grad():
        program = torch.export.export(wrapper, tensors, strict=False)
    torch.export.save(program, str(tmp))
    nodes = sum(node.op == "call_function" for node in program.graph.nodes)
    return {"graph_nodes": nodes}, pt2_parity(program, torch_out, tensors), "torch.export"


def export_checkpoint(ckpt_path, out_path, fmt: str = "onnx", views=None, height=None,
                      width=None, opset: int = 17, precision: str = "fp32",
                      aoti: bool = False, verbose: bool = False) -> Path:
    """Exports a training checkpoint to `out_path` (.onnx or .pt2) plus `<out_path>.json`.

    Args:
        ckpt_path: checkpoint with the docs/ARCHITECTURE.md contract ("model", "config", ...).
        fmt: "onnx" or "pt2"; views: subset of the model's output views (default: all).
        height, width: network input size override (default: the checkpoint's).
        precision: sidecar precision; "fp16" only for a plain pt2 (the torch backend autocasts
            on CUDA).
        aoti: pt2 only, fp32 only: compile an AOTInductor package (CUDA) instead of a plain
            ExportedProgram.
    Returns:
        the model path. Raises ExportError when a graph or parity check fails.
    """
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    out = Path(out_path)
    if fmt not in ("onnx", "pt2") or out.suffix != f".{fmt}":
        raise ValueError(f"--out {out}: format {fmt!r} needs a .onnx or .pt2 file name to match")
    if precision != "fp32" and fmt == "onnx":
        raise ValueError("ONNX exports are fp32; build an fp16/int8 engine with training.build_engine")
    if aoti and fmt != "pt2":
        raise ValueError("--aoti packages a .pt2 for the torch backend; use --format pt2")
    if aoti and precision != "fp32":
        # The package runs the fp32 kernels it was compiled with (autocast does not reach
        # compiled code), so an fp16 sidecar would misreport what runs.
        raise ValueError(f"--aoti with --precision {precision} is not supported: AOTInductor "
                         "packages are compiled fp32. Export a plain .pt2 with --precision fp16 "
                         "(autocast on CUDA) or an fp32 --aoti package")
    ckpt = load_checkpoint(ckpt_path)
    model, cfg = model_from_checkpoint(ckpt, height, width)
    views = _resolve_views(views, cfg)
    inputs = MODALITY_INPUTS[cfg.modality]
    wrapper = _DepthExportWrapper(model, inputs, views).eval()
    samples = sample_inputs(cfg.height, cfg.width)
    feeds = {k: samples[k] for k in inputs}  # ordered as the graph inputs
    tensors = tuple(torch.from_numpy(feeds[k]) for k in inputs)
    with torch.inference_mode():
        torch_out = [t.numpy() for t in wrapper(*tensors)]
    names_out = wrapper.output_names()
    start = time.perf_counter()
    with atomic_output(out, suffix=out.suffix) as tmp:  # writers pick the format by extension
        extra, max_diff, checked_with = _write_and_check(
            fmt, wrapper, tensors, feeds, torch_out, tmp, names_out, opset, aoti)
        export_s = time.perf_counter() - start
        if max_diff is not None:
            print(f"parity {checked_with} vs PyTorch eager: max |diff| = {max_diff:.3e} m "
                  f"(tolerance {PARITY_TOLERANCE_M:g} m)")
            if not max_diff < PARITY_TOLERANCE_M:
                raise ExportError(f"{out}: exported model differs from PyTorch by {max_diff:.3e}"
                                  f" m >= {PARITY_TOLERANCE_M:g} m; not writing it")
        extra.update(parity_max_abs_diff_m=max_diff, parity_checked_with=checked_with,
                     export_seconds=round(export_s, 3))
        md = build_metadata(fmt, out, sha256_file(tmp), sha256_file(ckpt_path), ckpt, cfg,
                            inputs, views, precision, extra)
        sidecar_path(out).unlink(missing_ok=True)  # an old sidecar must never pair with a new file
    write_metadata(md, out)
    if verbose:
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {export_s:.1f} s) and "
              f"{sidecar_path(out)}; model_id {md.model_id}")
    return out


def _save_aoti(wrapper: torch.nn.Module, tensors: tuple, tmp: Path) -> dict:
    """AOTInductor package (CUDA machines; compiled kernels, no Python graph at runtime)."""
    if not torch.cuda.is_available():
        raise ValueError("--aoti needs a CUDA GPU (compile on the machine that will run it)")
    with torch.no_grad():
        program = torch.export.export(wrapper.cuda(), tuple(t.cuda() for t in tensors))
    torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
    return {"packaging": "aoti", "gpu_name": torch.cuda.get_device_name()}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="last.pt / best.pt")
    parser.add_argument("--out", required=True, type=Path, help="model.onnx or model.pt2")
    parser.add_argument("--format", choices=("onnx", "pt2"), help="default: from --out extension")
    parser.add_argument("--views", help="comma-separated subset of thermal,rgb (default: all)")
    parser.add_argument("--height", type=int, help="network input height (default: checkpoint's)")
    parser.add_argument("--width", type=int, help="network input width (default: checkpoint's)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (TensorRT 10: <= 20)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="plain pt2 only: fp16 runs under autocast on CUDA")
    parser.add_argument("--aoti", action="store_true",
                        help="pt2: fp32 AOTInductor package (CUDA only)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from training.checkpoint import CheckpointError

    args = parse_args(argv)
    fmt = args.format or args.out.suffix.lstrip(".")
    torch.manual_seed(0)
    try:
        export_checkpoint(args.checkpoint, args.out, fmt=fmt, views=args.views,
                          height=args.height, width=args.width, opset=args.opset,
                          precision=args.precision, aoti=args.aoti, verbose=True)
    except (ValueError, CheckpointError) as exc:  # bad input: the message names what to fix
        print(f"export failed: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # ExportError (parity, forbidden ops) or torch's own failure
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
