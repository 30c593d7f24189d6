"""Two exports of one model side by side: CPU latency in alternating runs, and parity.

    .venv/bin/python bench/onnx_ab.py A.onnx B.onnx [--runs 40] [--threads N] [--label TEXT]
        [--record]
    .venv/bin/python bench/onnx_ab.py A.pt2 B.pt2 ...   (torch.export programs, torch backend)

Both files are loaded the way the node loads them (`create_backend` with the node's defaults:
ONNX Runtime for .onnx with intra-op threads = usable cores and no spinning, the torch backend
for .pt2), fed the same seeded random inputs, and run in turns A, B, A, B, ... so that load from
other jobs on this shared machine hits both alike. Prints the median and p10 latency of each,
the ratio B/A, the graph's node count per file (ONNX nodes, or the program's operator calls for
.pt2: what the torch backend dispatches per forward, one or more GPU kernels each), and the
largest output difference (the two files must hold the same network). Typical use: the same
checkpoint exported by two commits (`git worktree add /tmp/old <commit>`, then
`training.export` in each).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import record, times_ms  # noqa: E402
from depth_fusion_ros.backends import backend_details, create_backend  # noqa: E402


def node_count(path: Path) -> int:
    """Operators in the graph (0 if the onnx package is missing)."""
    if path.suffix == ".pt2":
        import torch

        program = torch.export.load(str(path))
        return sum(node.op == "call_function" for node in program.graph.nodes)
    try:
        import onnx
    except ImportError:
        return 0
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def compare(paths: list[Path], runs: int, threads: int | None) -> tuple[str, float]:
    """Markdown table of the two files, and the B/A ratio of the median latencies."""
    if paths[0].suffix != paths[1].suffix:
        raise SystemExit(f"{paths[0]} and {paths[1]}: compare two .onnx or two .pt2 files")
    kind = "torch" if paths[0].suffix == ".pt2" else "onnxruntime"
    backends = [create_backend(p, kind, "cpu", threads) for p in paths]
    md = backends[0].metadata
    shapes = [([(i.name, tuple(i.shape)) for i in b.metadata.inputs],
               [o.name for o in b.metadata.outputs]) for b in backends]
    if shapes[0] != shapes[1]:
        raise SystemExit(f"{paths[0]} and {paths[1]} do not hold the same network interface: "
                         f"inputs/outputs {shapes[0]} vs {shapes[1]} (see their sidecars)")
    rng = np.random.default_rng(0)
    thermal = rng.standard_normal((1, 1, md.height, md.width)).astype(np.float32)
    rgb = rng.standard_normal((1, 3, md.height, md.width)).astype(np.float32)
    outputs = [b.infer_outputs(thermal, rgb) for b in backends]
    diff = max(float(np.abs(outputs[0][kind][view] - outputs[1][kind][view]).max())
               for kind in outputs[0] for view in outputs[0][kind])
    times: list[list[float]] = [[], []]
    for b in backends:
        b.warmup(3)
    for _ in range(runs):  # alternate: A, B, A, B, ...
        for i, b in enumerate(backends):
            times[i] += times_ms(lambda b=b: b.infer(thermal, rgb), 1)
    medians = [statistics.median(t) for t in times]
    rows = ["| file | graph nodes | median ms | p10 ms |", "|---|---:|---:|---:|"]
    for name, path, t, med in zip("AB", paths, times, medians, strict=True):
        rows.append(f"| {name}: {path} | {node_count(path)} | {med:.2f} | "
                    f"{np.percentile(t, 10):.2f} |")
    ratio = medians[1] / medians[0]
    how = ", ".join([f"{backends[0].name} backend"] + [
        f"{k} {v}" for k, v in backend_details(backends[0]).items()])
    rows += ["", f"B/A median latency: {ratio:.3f}; largest output difference: {diff:.3g} "
             f"({md.height}x{md.width}, {runs} alternating runs each; {how})"]
    for b in backends:
        b.close()
    return "\n".join(rows), ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="first .onnx or .pt2 (with its .json sidecar)")
    parser.add_argument("b", type=Path, help="second file of the same network and format")
    parser.add_argument("--runs", type=int, default=40, help="timed inferences per file")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--label", default="", help="what A and B are (for the record)")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    for path in (args.a, args.b):
        if not path.is_file():
            parser.error(f"no such model file: {path}")
    table, _ = compare([args.a, args.b], args.runs, args.threads)
    title = ("Two torch.export programs of one model, torch backend CPU latency (alternating "
             "runs)" if args.a.suffix == ".pt2" else
             "Two ONNX exports of one model, ONNX Runtime CPU latency (alternating runs)")
    body = (f"{args.label}\n\n{table}" if args.label else table)
    if args.record:
        record(title, body, "bench/onnx_ab.py " + " ".join(sys.argv[1:]))
    else:
        print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
