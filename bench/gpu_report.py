"""Rows, tables and target sentences of bench/gpu_check.py (formatting only, standard library)."""
from __future__ import annotations

import dataclasses

import common

HEIGHT, WIDTH, INPUT_HZ = 256, 640, 30.0


@dataclasses.dataclass
class Row:
    """One standalone inference measurement; `precision` and `device` are what ran, `asked`
    the precision requested (the torch backend runs fp32 on the CPU whatever it is asked)."""

    model: str
    runtime: str
    device: str
    precision: str
    asked: str
    p50_ms: float | None = None
    p90_ms: float | None = None
    gpu_mib: float | None = None
    parity_m: float | None = None
    parity: str = ""  # "ok" | "FAILED" against the precision's limits, or "not checked"
    note: str = ""


@dataclasses.dataclass
class NodeRow:
    """One node run (bench/node_probe.py `NodeRun`) with what it is compared with."""

    model: str
    backend: str
    run: object  # node_probe.NodeRun
    standalone_per_s: float | None
    note: str = ""

    @property
    def ceiling_per_s(self) -> float | None:
        """What the node could at most do: the standalone rate or the input rate, the lower."""
        return min(filter(None, [self.standalone_per_s, self.run.sent_hz]), default=None)


def find_row(rows: list[Row], model: str, runtime: str, asked: str) -> Row | None:
    """The measured row of a model and runtime asked to run at `asked` precision, if any."""
    return next((r for r in rows if (r.model, r.runtime, r.asked) == (model, runtime, asked)
                 and r.p50_ms is not None), None)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_row(row: Row) -> str:
    """The Markdown table line of a standalone row."""
    rate = 1000.0 / row.p50_ms if row.p50_ms else None
    parity = "-" if row.parity_m is None else f"{row.parity_m:.2e} {row.parity}"
    return (f"| {row.model} | {row.runtime} | {row.device} | {row.precision} | {_num(row.p50_ms)} "
            f"| {_num(row.p90_ms)} | {_num(rate, 1)} | {_num(row.gpu_mib, 0)} | {parity} "
            f"| {row.note.strip('; ')} |")


def node_line(row: NodeRow) -> str:
    """The Markdown table line of a node run."""
    run = row.run
    ceiling = row.ceiling_per_s
    ratio = run.pairs_per_s / ceiling if run.pairs_per_s and ceiling else None
    return (f"| {row.model} | {row.backend} | {run.diagnostics.get('device', '-')} "
            f"| {run.diagnostics.get('precision', '-')} | {_num(run.startup_s, 1)} "
            f"| {_num(run.sent_hz, 1)} | {_num(run.pairs_per_s, 1)} "
            f"| {_num(row.standalone_per_s, 1)} | {_num(ratio)} "
            f"| {_num(run.node_latency_ms, 1)} | {_num(run.node_inference_ms, 1)} "
            f"| {_num(run.receipt_latency_ms, 1)} | {row.note} |")


def targets(rows: list[Row], node_rows: list[NodeRow]) -> list[str]:
    """The figures the deployment issue asks for, as sentences (reported, never asserted)."""
    lines = []
    torch_node = next((r for r in node_rows if r.backend == "torch"), None)
    if torch_node and torch_node.run.pairs_per_s and torch_node.standalone_per_s:
        run = torch_node.run
        lines.append(
            f"- node throughput, torch backend on {run.diagnostics.get('device', '?')}: "
            f"{run.pairs_per_s:.1f} pairs/s through ROS at {run.sent_hz:.1f} Hz input vs "
            f"{torch_node.standalone_per_s:.1f}/s standalone: ratio "
            f"{run.pairs_per_s / torch_node.standalone_per_s:.2f} "
            f"({run.pairs_per_s / torch_node.ceiling_per_s:.2f} of min(standalone, input))")
        lines.append(f"- stamp-to-publish latency (median) {_num(run.node_latency_ms, 1)} ms vs "
                     f"inference {_num(run.node_inference_ms, 1)} ms (node /diagnostics)")
    else:
        lines.append("- node throughput and latency: not measured (see skipped)")
    swin_l = find_row(rows, "swin_l", "torch .pt2", "fp16")
    lines.append(f"- swin_l fp16 torch latency at {HEIGHT}x{WIDTH}: p50 {swin_l.p50_ms:.2f} ms, "
                 f"p90 {swin_l.p90_ms:.2f} ms on {swin_l.device}" if swin_l else
                 "- swin_l fp16 torch latency: not measured (see skipped)")
    trt_node = next((r for r in node_rows if r.backend == "tensorrt"), None)
    if trt_node and trt_node.run.startup_s is not None:
        lines.append(f"- engine-cache-hit start-up, {trt_node.model}: "
                     f"{trt_node.run.startup_s:.1f} s from node start to first depth")
    else:
        lines.append("- engine-cache-hit start-up: not measured (see skipped)")
    return lines


def report(rows: list[Row], node_rows: list[NodeRow], skipped: list[tuple[str, str]],
           node_seconds: float, title: str, command: str, notes: str) -> None:
    """Prints the tables and appends them to common.RESULTS_MD (bench/common.py `record`)."""
    table = [f"Standalone inference at {HEIGHT}x{WIDTH}, batch 1 (`Backend.infer`, host copies "
             "included); GPU MiB = peak torch allocation, for TensorRT the GPU memory in use "
             "after loading minus before (engine, context and buffers).",
             "", "| model | runtime | device | precision | p50 ms | p90 ms | inferences/s "
             "| GPU MiB | parity max abs m | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    table += [format_row(row) for row in rows]
    if node_rows:
        table += ["", f"depth_fusion_node over real DDS, {INPUT_HZ:g} Hz input, {node_seconds:g}"
                  " s after the first depth; ratio = pairs/s over min(standalone rate, input "
                  "rate); latencies are medians; device and precision as the node reports them.",
                  "", "| model | backend | device | precision | start-up s | input Hz | pairs/s "
                  "| standalone /s | ratio | stamp->publish ms | inference ms | stamp->receipt ms "
                  "| note |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        table += [node_line(row) for row in node_rows]
    table += ["", "Targets:", *targets(rows, node_rows), "", "Skipped:"]
    table += [f"- {part}: {reason}" for part, reason in skipped] or ["- nothing"]
    common.record(title, "\n".join(table), command, notes)
