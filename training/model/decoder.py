"""Monodepth2 depth decoder (Godard et al., ICCV 2019), fed by the four DMCF outputs.

Level i works at 1/2^i of the input: levels 4..2 take skips from the DMCF maps at 1/16, 1/8 and
1/4, levels 1 and 0 upsample to 1/2 and full resolution without skips (Monodepth2's last two
stages, whose ResNet skip at 1/2 does not exist for a Swin encoder). One head at full resolution:
3x3 conv + sigmoid, scaled to metres. Optionally a second head on the same features predicts
the per-pixel uncertainty sigma (see `DepthDecoder`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvELU(nn.Module):
    """Monodepth2 `ConvBlock`: reflection-padded 3x3 conv + ELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.pad(x)))


def decoder_channels(skip_channels: Sequence[int]) -> list[int]:
    """Decoder widths per level 0..4 from the skip widths at 1/4..1/32.

    As in Monodepth2 (ResNet skips 64,128,256 -> decoder 64,128,256 at 1/4..1/16; 32 and 16 at
    1/2 and 1/1), the decoder width at 1/4..1/16 equals the skip width there, then halves.
    """
    c4 = skip_channels[0]
    return [max(16, c4 // 4), max(16, c4 // 2), *skip_channels[:3]]


# Floor of the predicted uncertainty: keeps the Laplacian NLL's 1/sigma bounded.
MIN_SIGMA = 0.01


class DepthDecoder(nn.Module):
    """skips [N, C_s, H/s, W/s] for s = 4, 8, 16, 32 -> depth [N, 1, H, W] in metres.

    uncertainty=True adds `uncertainty_head`: sigma [N, 1, H, W] = softplus(head) + MIN_SIGMA,
    the scale of a Laplacian over log-depth, i.e. the expected |log(depth / true depth)| of the
    pixel (trained by `training.losses.log_laplace_nll`). Read it with `decode`. The head reads
    the decoder's features detached, so learning the uncertainty never changes the depth.
    """

    def __init__(self, skip_channels: Sequence[int], max_depth_m: float,
                 uncertainty: bool = False) -> None:
        super().__init__()
        if len(skip_channels) != 4:
            raise ValueError(f"DepthDecoder expects 4 skip widths (1/4..1/32), got {skip_channels}")
        self.skip_channels = list(skip_channels)
        self.num_ch_dec = decoder_channels(skip_channels)
        self.max_depth_m = float(max_depth_m)
        # Monodepth2's ("upconv", i, 0/1) convs, keyed "upconv{i}_{0|1}".
        self.convs = nn.ModuleDict()
        for i in range(4, -1, -1):
            in0 = self.skip_channels[-1] if i == 4 else self.num_ch_dec[i + 1]
            self.convs[f"upconv{i}_0"] = ConvELU(in0, self.num_ch_dec[i])
            in1 = self.num_ch_dec[i] + (self.skip_channels[i - 2] if i >= 2 else 0)
            self.convs[f"upconv{i}_1"] = ConvELU(in1, self.num_ch_dec[i])
        self.head = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(self.num_ch_dec[0], 1, 3))
        c0 = self.num_ch_dec[0]
        self.uncertainty_head = (nn.Sequential(ConvELU(c0, c0), nn.ReflectionPad2d(1),
                                               nn.Conv2d(c0, 1, 3))
                                 if uncertainty else None)

    def decode(self, skips: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(depth [N,1,H,W] metres, sigma [N,1,H,W] or None without the uncertainty head)."""
        x = self.features(skips)
        depth = torch.sigmoid(self.head(x)) * self.max_depth_m
        if self.uncertainty_head is None:
            return depth, None
        return depth, F.softplus(self.uncertainty_head(x.detach())) + MIN_SIGMA

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.decode(skips)[0]  # [N, 1, H, W]

    def features(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        """Full-resolution decoder features [N, C_dec0, H, W] before the heads."""
        x = skips[-1]  # [N, C_32, H/32, W/32]
        for i in range(4, -1, -1):
            x = self.convs[f"upconv{i}_0"](x)
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # [N, C, H/2^i, W/2^i]
            if i >= 2:
                x = torch.cat([x, skips[i - 2]], dim=1)
            x = self.convs[f"upconv{i}_1"](x)
        return x
