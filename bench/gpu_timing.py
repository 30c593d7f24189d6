"""Timing helpers of bench/gpu_check.py and its torch-only fallback (torch imported lazily)."""
from __future__ import annotations

import gc
import math
from pathlib import Path

from common import times_ms
from gpu_report import HEIGHT, WIDTH, Row


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_ms(fn, runs: int, warmup: int) -> tuple[float, float]:
    """(p50, p90) wall ms of `fn()`; fn returns host arrays, so every call is synchronised."""
    times = times_ms(fn, runs, warmup)
    return percentile(times, 50), percentile(times, 90)


def free_gpu(device: str) -> None:
    """Drops unreferenced models and torch's cached blocks; restarts the peak-memory count."""
    gc.collect()
    if device != "cpu":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def device_used_mib(device: str) -> float:
    """Memory in use on the whole GPU (cudaMemGetInfo): counts TensorRT's own allocations."""
    import torch

    free, total = torch.cuda.mem_get_info(device)
    return (total - free) / 2**20


def peak_mib(device: str) -> float | None:
    """Peak memory torch allocated on `device` since the last free_gpu (None on cpu)."""
    if device == "cpu":
        return None
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20


def plain_torch_rows(variant: str, device_name: str, runs: int, warmup: int,
                     workdir: Path) -> list[Row]:
    """Without depth_fusion_ros: the network through torch.export, loaded as the torch backend
    loads it (`move_to_device_pass`), fp32 and fp16 autocast; parity is max |device - CPU
    eager| (no limits: they live in depth_fusion_ros). Returns the fp32 and fp16 rows."""
    import torch
    from torch.export.passes import move_to_device_pass

    from training.model import ModelConfig, build_model

    class Views(torch.nn.Module):  # positional inputs -> tuple of depths, as the export writes
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, thermal, rgb):
            out = self.model(thermal, rgb)
            return tuple(out[f"depth_{view}"] for view in self.model.output_views)

    torch.manual_seed(0)
    wrapper = Views(build_model(ModelConfig(variant=variant, height=HEIGHT, width=WIDTH)).eval())
    rows = torch.linspace(-1.5, 1.5, HEIGHT)[:, None]  # camera-like gradients, not pure noise
    cols = torch.linspace(-1.0, 1.0, WIDTH)[None, :]
    thermal = (rows + 0.3 * cols + 0.05 * torch.randn(HEIGHT, WIDTH))[None, None]
    rgb = torch.stack([rows - cols, cols + 0 * rows, rows * cols])[None]
    with torch.no_grad():
        program = torch.export.export(wrapper, (thermal, rgb), strict=False)
        reference = wrapper(thermal, rgb)
    path = workdir / f"{variant}_plain.pt2"
    torch.export.save(program, str(path))
    device = torch.device(device_name)
    module = move_to_device_pass(torch.export.load(str(path)), device).module()
    out = []
    for asked in ("fp32", "fp16"):
        fp16 = asked == "fp16" and device.type == "cuda"  # as the torch backend: fp32 on cpu
        row = Row(variant, "plain torch .pt2", device_name, "fp16" if fp16 else "fp32", asked,
                  note="" if fp16 or asked == "fp32" else "asked fp16; ")

        def infer(fp16=fp16):
            with torch.inference_mode(), torch.autocast(device.type, torch.float16,
                                                        enabled=fp16):
                return [o.float().cpu() for o in module(thermal.to(device), rgb.to(device))]

        free_gpu(device_name)
        row.p50_ms, row.p90_ms = latency_ms(infer, runs, warmup)
        row.gpu_mib = peak_mib(device_name)
        row.parity_m = max(float((a - b).abs().max()) for a, b in zip(infer(), reference,
                                                                       strict=True))
        row.parity, row.note = "not checked", row.note + "max abs diff vs CPU eager fp32"
        out.append(row)
    return out
