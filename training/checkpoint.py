"""Checkpoint files: atomic writes, the contract of docs/ARCHITECTURE.md, and RNG state capture.

A checkpoint is `{"model", "config", "step", "optimizer", "scheduler", "rng", "best_abs_rel"}`.
Writes go to a temporary file in the same folder, are fsync'ed, then `os.replace`d over the target
(atomic on POSIX), and the folder is fsync'ed: a crash or SIGKILL at any point leaves either the
old complete file or the new complete file, never a truncated one. The temporary file of a run
killed mid-write (`.last.pt.<pid>.XXXXXXXX.tmp`) is removed once that PID is gone, when the next
`training.train` in that run folder starts and by the next save of the same file
(depth_fusion_ros.fileio.atomic_output).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_fusion_ros.fileio import atomic_output

CHECKPOINT_KEYS = ("model", "config", "step", "optimizer", "scheduler", "rng", "best_abs_rel")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not a DMCF-SIDE training checkpoint."""


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save to `path` atomically (temp file + fsync + os.replace + folder fsync)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as stream:
        torch.save(obj, stream)
    return Path(path)


def capture_rng_state() -> dict:
    """Python, numpy, torch CPU (and CUDA, if used) generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of capture_rng_state (CUDA states only when CUDA is in use here too)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DistributedDataParallel (so state_dict keys carry no `module.`)."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, config: dict, step: int,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    best_abs_rel: float = float("inf"), extra: dict | None = None) -> Path:
    """Write a training checkpoint atomically (contract in docs/ARCHITECTURE.md).

    `extra` adds further top-level entries (e.g. the AMP grad scaler's state).
    """
    payload = {
        "model": unwrap_model(model).state_dict(),
        "config": config,
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": capture_rng_state(),
        "best_abs_rel": float(best_abs_rel),
        **(extra or {}),
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint and check it has the contract's keys.

    Raises:
        CheckpointError naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the last.pt / best.pt of a "
                              "training run (python -m training.train ... --out RUN_DIR)")
    try:
        # weights_only=False: the payload holds RNG states (numpy tuples) next to tensors; only
        # load checkpoints you wrote yourself.
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"checkpoint {path} could not be read ({exc}); it is not a "
                              "complete torch checkpoint") from exc
    missing = [key for key in ("model", "config", "step") if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; expected the keys "
                              f"{list(CHECKPOINT_KEYS)} written by training.train")
    return payload


def model_from_checkpoint(payload: dict, height: int | None = None, width: int | None = None):
    """(network in eval mode on CPU, its ModelConfig) rebuilt from a loaded checkpoint.

    The network comes from the checkpoint's saved model config, input size optionally overridden;
    weights load strictly (a missing or unexpected key is an error, never silently dropped).
    """
    from training.model import ModelConfig, build_model

    model_cfg = dict(payload["config"]["model"])
    if height is not None:
        model_cfg["height"] = int(height)
    if width is not None:
        model_cfg["width"] = int(width)
    cfg = ModelConfig.from_dict(model_cfg)
    model = build_model(cfg)
    model.load_state_dict(payload["model"], strict=True)
    return model.eval(), cfg
