"""Load ImageNet Swin weights (official or timm checkpoints) into the DMCF-SIDE encoder(s).

`checkpoint_filter_fn` is pure, in the style of timm's swin `checkpoint_filter_fn`: it maps key
names, drops what the encoder rebuilds itself (relative_position_index, attn_mask) or does not
have (classifier head), resizes relative-position bias tables bicubically when the window size
differs and derives the 1-channel thermal patch embedding from the RGB one.
"""
from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import SWIN_SPECS
from .swin import SwinEncoder

log = logging.getLogger(__name__)

_DROP = re.compile(r"(relative_position_index|attn_mask|relative_coords_table)$|^head\.")
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.")


def _unwrap(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip checkpoint wrappers ({'model': ...}, {'state_dict': ...}) and DDP/backbone prefixes."""
    for key in ("model", "state_dict"):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
    out = {}
    for k, v in state_dict.items():
        for prefix in ("module.", "backbone.", "encoder."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _is_timm_layout(keys) -> bool:
    """timm >= 0.9 puts PatchMerging at the start of stage i+1 (layers.1..3.downsample);
    the official code at the end of stage i (layers.0..2.downsample)."""
    stages = {int(m.group(1)) for k in keys if (m := _DOWNSAMPLE.match(k))}
    return bool(stages) and 0 not in stages


def resize_bias_table(table: torch.Tensor, window_size: int) -> torch.Tensor:
    """[(2w-1)^2, heads] -> [(2*window_size-1)^2, heads], bicubic over the 2-D offset grid."""
    old = int(round(table.shape[0] ** 0.5))
    new = 2 * window_size - 1
    if old == new:
        return table
    grid = table.float().T.reshape(1, -1, old, old)  # [1, heads, 2w-1, 2w-1]
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return grid.reshape(-1, new * new).T.contiguous().to(table.dtype)  # [(2w'-1)^2, heads]


def map_checkpoint_keys(state_dict: Mapping[str, torch.Tensor],
                        encoder: SwinEncoder) -> dict[str, torch.Tensor]:
    """Rename / drop / resize a checkpoint into this project's Swin naming (all keys kept that
    are not dropped on purpose, whether or not `encoder` has them)."""
    src = _unwrap(state_dict)
    timm = _is_timm_layout(src)
    out: dict[str, torch.Tensor] = {}
    for k, v in src.items():
        if _DROP.search(k):
            continue
        if timm:
            k = _DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k)
        if k.startswith("norm."):  # classification's final norm = the last stage's output norm
            k = "norm3." + k[len("norm."):]
        if k.endswith("relative_position_bias_table"):
            v = resize_bias_table(v, encoder.window_size)
        out[k] = v
    if "patch_embed_thermal.proj.weight" in encoder.state_dict() and \
            "patch_embed.proj.weight" in out:
        # 1-channel thermal embedding = mean of the RGB embedding over its input channels.
        out["patch_embed_thermal.proj.weight"] = out["patch_embed.proj.weight"].mean(1, True)
        for name in ("proj.bias", "norm.weight", "norm.bias"):
            if f"patch_embed.{name}" in out:
                out[f"patch_embed_thermal.{name}"] = out[f"patch_embed.{name}"]
    return out


def swin_architecture(state_dict: Mapping[str, torch.Tensor]) -> tuple[int | None, tuple[int, ...]]:
    """(embed dim C, blocks per stage) of a state dict in this project's (official) naming."""
    blocks: dict[int, int] = {}
    for k in state_dict:
        if m := _BLOCK.match(k):
            stage, block = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    first = state_dict.get("layers.0.blocks.0.norm1.weight")
    embed_dim = int(first.shape[0]) if first is not None else None
    depths = tuple(blocks.get(i, 0) for i in range(max(blocks, default=-1) + 1))
    return embed_dim, depths


def describe_architecture(embed_dim: int | None, depths: tuple[int, ...]) -> str:
    """'swin_s (C=96, depths (2, 2, 18, 2))', or just the numbers for an unknown size."""
    names = [n for n, spec in SWIN_SPECS.items()
             if spec.embed_dim == embed_dim and tuple(spec.depths) == depths]
    numbers = f"C={embed_dim}, depths {depths}"
    return f"{names[0]} ({numbers})" if names else f"an unlisted Swin ({numbers})"


def check_same_variant(mapped: Mapping[str, torch.Tensor], encoder: SwinEncoder) -> None:
    """Raise ValueError naming both sizes when a checkpoint is another Swin variant than the
    encoder (e.g. Swin-S into swin_t: same widths, so shapes alone would let 156 stage-3 keys be
    dropped silently)."""
    ckpt = swin_architecture(mapped)
    if ckpt[0] is None and not ckpt[1]:
        return  # no stage weights at all: load_pretrained_encoder reports what is missing
    mine = swin_architecture(encoder.state_dict())
    if ckpt != mine:
        raise ValueError(
            f"pretrained Swin checkpoint is {describe_architecture(*ckpt)} but the model's "
            f"encoder is {describe_architecture(*mine)}: wrong variant. Pass the checkpoint of "
            "the encoder's size or set model.variant to the checkpoint's.")


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor],
                         encoder: SwinEncoder) -> dict[str, torch.Tensor]:
    """Adapt an official / timm Swin checkpoint to `encoder`'s parameter names and shapes.

    Returns only keys the encoder has (`map_checkpoint_keys` minus the rest). Raises ValueError
    naming both sizes when the checkpoint is another Swin variant (different width or number of
    blocks per stage), and on any other shape mismatch that is not a window-size change.
    """
    target = encoder.state_dict()
    mapped = map_checkpoint_keys(state_dict, encoder)
    check_same_variant(mapped, encoder)
    kept = {}
    for k, v in mapped.items():
        if k not in target:
            continue
        if tuple(v.shape) != tuple(target[k].shape):
            raise ValueError(f"pretrained Swin weight {k} has shape {tuple(v.shape)}, the "
                             f"encoder expects {tuple(target[k].shape)}: wrong variant?")
        kept[k] = v
    return kept


def _load_file(path: str | Path) -> Mapping[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained Swin checkpoint {path} not found; download an "
                                "official Swin ImageNet .pth (or a timm one) and pass its path")
    try:  # weights_only: a downloaded checkpoint must not run code when unpickled
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"pretrained Swin checkpoint {path} holds more than tensors ({err}); "
                         "re-save just its state dict: torch.save({'model': sd}, path)") from err


def load_pretrained_encoder(model: torch.nn.Module,
                            path_or_state_dict: str | Path | Mapping[str, torch.Tensor]) -> dict:
    """Load Swin ImageNet weights into every encoder of `model` (a `DMCFSide` or a `SwinEncoder`).

    Logs missing and unexpected keys; raises RuntimeError if any stage or patch-embedding weight
    of an encoder is not covered by the checkpoint. Returns {encoder name: {"loaded", "missing",
    "unexpected"}} key lists.
    """
    state = path_or_state_dict
    source = "state dict"
    if isinstance(state, (str, Path)):
        source = str(state)
        state = _load_file(state)
    if isinstance(model, SwinEncoder):
        encoders = {"encoder": model}
    else:
        encoders = {}
        for enc in model.encoders().values():
            name = next(n for n, m in model.named_children() if m is enc)
            encoders[name] = enc
    report = {}
    for name, enc in encoders.items():
        filtered = checkpoint_filter_fn(state, enc)
        missing = [k for k in enc.state_dict() if k not in filtered]
        essential = [k for k in missing if k.startswith(("layers.", "patch_embed"))]
        if essential:  # checked before loading, so a failed load leaves the model untouched
            raise RuntimeError(f"pretrained Swin checkpoint ({source}) lacks {len(essential)} "
                               f"weight(s) of {name}, e.g. {essential[:5]}: truncated file or "
                               "another architecture")
        enc.load_state_dict(filtered, strict=False)
        unexpected = sorted(set(map_checkpoint_keys(state, enc)) - set(filtered))
        if missing:  # e.g. the per-stage norms 0..2 that classification checkpoints lack
            log.info("%s: not in the checkpoint (kept at init): %s", name, missing)
        if unexpected:
            log.warning("%s: checkpoint keys not used: %s", name, unexpected)
        log.info("%s: loaded %d tensors from %s", name, len(filtered), source)
        report[name] = {"loaded": sorted(filtered), "missing": missing,
                        "unexpected": unexpected}
    return report

