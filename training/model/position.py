"""2-D sine position embedding (DETR, Carion et al. 2020; as used by GMFlow)."""
from __future__ import annotations

import math

import torch

from .memo import size_constant


@size_constant
def sine_position_embedding(
    channels: int, h: int, w: int, device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32, temperature: float = 10000.0,
) -> torch.Tensor:
    """Absolute sine/cosine embedding of an h x w grid -> [1, channels, h, w].

    Half of the channels encode y, half x (DETR's `PositionEmbeddingSine` with normalize=True:
    coordinates 1..h scaled to (0, 2*pi]). channels must be a multiple of 4. Built from Python ints only,
    so it is a constant under ONNX export with static shapes.
    """
    if channels % 4:
        raise ValueError(f"sine position embedding needs channels % 4 == 0, got {channels}")
    npf = channels // 2
    eps = 1e-6
    y = torch.arange(1, h + 1, device=device, dtype=torch.float32) / (h + eps) * 2 * math.pi
    x = torch.arange(1, w + 1, device=device, dtype=torch.float32) / (w + eps) * 2 * math.pi
    dim_t = torch.arange(npf, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)  # [npf]
    pos_y = y[:, None] / dim_t  # [h, npf]
    pos_x = x[:, None] / dim_t  # [w, npf]
    # Interleave sin (even dims) and cos (odd dims) as DETR does.
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat([pos_y[:, None, :].expand(h, w, npf),
                     pos_x[None, :, :].expand(h, w, npf)], dim=2)  # [h, w, channels]
    return pos.permute(2, 0, 1)[None].to(dtype)  # [1, channels, h, w]
