"""Real tiny DMCF-SIDE model files for tests (seeded, untrained): checkpoint, ONNX, pt2.

Used by the session fixture `tiny_onnx_model` in conftest.py and by the export/backend tests.
Everything goes through the real export code, so the files carry real sidecars.
"""
from __future__ import annotations

from pathlib import Path

TINY_CONFIG_NAME = "tiny_test"


def make_tiny_checkpoint(out_dir: Path, height: int = 256, width: int = 640,
                         modality: str = "fusion", seed: int = 0,
                         uncertainty_head: bool = False, **model_options) -> Path:
    """A seeded `tiny` network saved in the training checkpoint contract; returns its path.

    uncertainty_head: the network also predicts sigma per view (exported as confidence).
    model_options: further ModelConfig fields (e.g. align_views, view_homography)."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model

    torch.manual_seed(seed)
    cfg = ModelConfig(variant="tiny", height=height, width=width, modality=modality,
                      uncertainty_head=uncertainty_head, **model_options)
    model = build_model(cfg).eval()
    config = {"name": TINY_CONFIG_NAME, "model": cfg.to_dict(), "seed": seed}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_uncertainty" if uncertainty_head else ""
    return save_checkpoint(out_dir / f"tiny_{modality}{suffix}.pt", model=model, config=config,
                           step=0)


def make_tiny_onnx(out_dir: Path) -> Path:
    """Exports the seeded tiny model (256x640, both views) to out_dir/"tiny.onnx" + sidecar."""
    from training.export import export_checkpoint

    out_dir = Path(out_dir)
    ckpt = make_tiny_checkpoint(out_dir)
    return export_checkpoint(ckpt, out_dir / "tiny.onnx", fmt="onnx")


def make_tiny_pt2(out_dir: Path) -> Path:
    """Exports the same seeded tiny model to out_dir/"tiny.pt2" (torch.export) + sidecar."""
    from training.export import export_checkpoint

    out_dir = Path(out_dir)
    ckpt = make_tiny_checkpoint(out_dir)
    return export_checkpoint(ckpt, out_dir / "tiny.pt2", fmt="pt2")


def make_tiny_confidence_onnx(out_dir: Path) -> Path:
    """The seeded tiny model (256x640, both views) WITH the uncertainty head, exported to
    out_dir/"tiny_confidence.onnx" + sidecar: outputs depth_<view> and confidence_<view>."""
    from training.export import export_checkpoint

    out_dir = Path(out_dir)
    ckpt = make_tiny_checkpoint(out_dir, uncertainty_head=True)
    return export_checkpoint(ckpt, out_dir / "tiny_confidence.onnx", fmt="onnx")


def make_tiny_baseline_onnx(out_dir: Path, modality: str = "thermal_only") -> Path:
    """A seeded single-camera tiny baseline (one input, one view) exported to
    out_dir/"tiny_<modality>.onnx" + sidecar."""
    from training.export import export_checkpoint

    out_dir = Path(out_dir)
    ckpt = make_tiny_checkpoint(out_dir, modality=modality)
    return export_checkpoint(ckpt, out_dir / f"tiny_{modality}.onnx", fmt="onnx")


def tensorrt_10_available() -> bool:
    """True when `tensorrt` imports as TensorRT 10.x, the only API the project supports (11.x
    removed the builder flags it uses): GPU tests skip, rather than fail, under another one."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return False
    from depth_fusion_ros.backends.tensorrt_backend import import_tensorrt

    try:
        import_tensorrt()
    except ImportError:
        return False
    return True
