"""`DMCFSide`: Swin encoder -> DMCF per scale -> Monodepth2 decoder, and `build_model(cfg)`.

Fusion (DMCF-SIDE, Kwon & Kim 2024): both modalities go through the shared Swin stages as one
[2B, ...] batch ordered [thermal; rgb], are fused per scale by `DMCF`, and one shared decoder
predicts a depth map per view. The single-modality baselines (`thermal_only`, `rgb_only`) keep
the same encoder and decoder and replace DMCF by its ConvBlock (no attention, no other input).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .alignment import ViewAlignment
from .config import ModelConfig
from .decoder import DepthDecoder
from .dmcf import DMCF
from .swin import IMAGE_CHANNELS, SwinEncoder

STAGE_STRIDES = (4, 8, 16, 32)


def required_multiple(attn_splits: Sequence[int] | None) -> int:
    """Smallest m such that H, W multiples of m give exact 1/4..1/32 maps that the K x K window
    splits divide (stride * K at every scale; 32 without attention)."""
    m = 32
    for stride, k in zip(STAGE_STRIDES, attn_splits or (), strict=False):
        m = math.lcm(m, stride * k)
    return m


def check_input_size(height: int, width: int, attn_splits: Sequence[int] | None) -> None:
    """Raise ValueError naming the bad size and the nearest valid one."""
    m = required_multiple(attn_splits)
    bad = [(name, v) for name, v in (("height", height), ("width", width)) if v % m or v <= 0]
    if bad:
        nearest = {name: max(m, round(v / m) * m) for name, v in (("height", height),
                                                                  ("width", width))}
        what = ", ".join(f"{name} {v}" for name, v in bad)
        raise ValueError(
            f"DMCF-SIDE input size {height}x{width} (HxW) is not usable: {what} is not a "
            f"multiple of {m} (needed by the 1/32 encoder and attn_splits={tuple(attn_splits or ())}"
            f"); nearest valid size: {nearest['height']}x{nearest['width']}")


class DMCFSide(nn.Module):
    """thermal [B,1,H,W], rgb [B,3,H,W] (normalised) -> {"depth_<view>": [B,1,H,W] metres}
    (plus "uncertainty_<view>": [B,1,H,W] sigma with `uncertainty_head`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fuse = cfg.modality == "fusion"
        self.output_views: tuple[str, ...] = cfg.output_views
        self.attn_splits = tuple(cfg.attn_splits) if self.fuse else None
        check_input_size(cfg.height, cfg.width, self.attn_splits)
        for key in ("align_views", "align_inputs"):
            if getattr(cfg, key) and cfg.view_homography is None:
                raise ValueError(f"model.{key} needs model.view_homography (training.train "
                                 "fills it in from the data set's calibration)")
        # align_inputs: the input images are resampled (alignment.ViewAlignment.images).
        self.input_alignment = ViewAlignment(cfg.view_homography) if cfg.align_inputs else None
        spec = cfg.spec
        enc_args = dict(embed_dim=spec.embed_dim, depths=spec.depths, num_heads=spec.num_heads,
                        window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio,
                        drop_path_rate=cfg.drop_path_rate,
                        use_checkpointing=cfg.use_checkpointing)
        self.separate_encoders = self.fuse and not cfg.shared_encoder
        if self.separate_encoders:
            self.encoder_thermal = SwinEncoder(modalities=("thermal",), **enc_args)
            self.encoder_rgb = SwinEncoder(modalities=("rgb",), **enc_args)
        else:
            self.encoder = SwinEncoder(modalities=self.output_views, **enc_args)
        channels = self.encoders()[self.output_views[0]].channels
        # Fusion concatenates the image into one ConvBlock shared by both modalities, so the
        # thermal image is repeated to 3 channels; a baseline uses its own image as is.
        image_channels = 0
        if cfg.image_concat:
            image_channels = 3 if self.fuse else IMAGE_CHANNELS[self.output_views[0]]
        splits = self.attn_splits or (1, 1, 1, 1)
        self.dmcf = nn.ModuleList(
            DMCF(c, image_channels, stride, k, fuse=self.fuse, ffn_expansion=cfg.ffn_expansion,
                 attn_pairs_per_block=cfg.attn_pairs_per_block,
                 zero_init_attention=cfg.zero_init_attention,
                 gated_cross_attention=cfg.gated_cross_attention,
                 modality_batchnorm=cfg.modality_batchnorm,
                 detach_cross_modal=cfg.detach_cross_modal,
                 image_gated_cross_attention=cfg.image_gated_cross_attention,
                 view_homography=cfg.view_homography if cfg.align_views else None,
                 separate_weights=not cfg.shared_dmcf)
            for c, stride, k in zip(channels, STAGE_STRIDES, splits, strict=True))
        skips = [c // 2 for c in channels]
        unc = cfg.uncertainty_head
        if cfg.shared_decoder or not self.fuse:
            self.decoder = DepthDecoder(skips, cfg.max_depth_m, unc)
        else:
            self.decoder_thermal = DepthDecoder(skips, cfg.max_depth_m, unc)
            self.decoder_rgb = DepthDecoder(skips, cfg.max_depth_m, unc)

    def encoders(self) -> dict[str, SwinEncoder]:
        """Encoder used for each input modality (one shared object unless shared_encoder=False)."""
        if self.separate_encoders:
            return {"thermal": self.encoder_thermal, "rgb": self.encoder_rgb}
        return {m: self.encoder for m in self.output_views}

    def _decoder(self, view: str) -> DepthDecoder:
        return getattr(self, "decoder" if hasattr(self, "decoder") else f"decoder_{view}")

    def _inputs(self, thermal: torch.Tensor | None, rgb: torch.Tensor | None):
        """Validate the inputs this model reads; returns {modality: [B, C, H, W]}."""
        given = {"thermal": thermal, "rgb": rgb}
        inputs = {}
        for m in ("thermal", "rgb") if self.fuse else self.output_views:
            x = given[m]
            ch = IMAGE_CHANNELS[m]
            if x is None or x.dim() != 4 or x.shape[1] != ch:
                got = None if x is None else tuple(x.shape)
                raise ValueError(f"DMCFSide.forward: {m} must be a [B,{ch},H,W] tensor, got {got}")
            inputs[m] = x
        if self.fuse and (thermal.shape[0] != rgb.shape[0] or thermal.shape[2:] != rgb.shape[2:]):
            raise ValueError(f"DMCFSide.forward: thermal {tuple(thermal.shape)} and rgb "
                             f"{tuple(rgb.shape)} must share batch size and H, W (resize RGB to "
                             "the thermal size first)")
        return inputs

    def _aligned_pairs(self, inputs: dict[str, torch.Tensor],
                       views: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """align_inputs: per wanted view, its own image with the other camera's image on its
        rays; {"thermal": [n*B, 1, H, W], "rgb": [n*B, 3, H, W]}, pair j = item block j."""
        thermal, rgb = inputs["thermal"], inputs["rgb"]
        rgb_on_thermal, thermal_on_rgb = self.input_alignment.images(thermal, rgb)
        pairs = {"thermal": (thermal, rgb_on_thermal), "rgb": (thermal_on_rgb, rgb)}
        return {"thermal": torch.cat([pairs[v][0] for v in views]),
                "rgb": torch.cat([pairs[v][1] for v in views])}

    def _select_views(self, views: Sequence[str] | None) -> tuple[str, ...]:
        if views is None:
            return self.output_views
        views = tuple(views)
        bad = [v for v in views if v not in self.output_views]
        if bad or not views:
            raise ValueError(f"views={views} invalid: this model outputs {self.output_views}")
        return tuple(v for v in self.output_views if v in views)  # canonical order

    def encode(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Stage features for all modalities, batch-concatenated in `inputs` order."""
        mods = list(inputs)
        if not self.separate_encoders:
            return self.encoder([inputs[m] for m in mods], mods)
        per_mod = [self.encoders()[m]([inputs[m]], [m]) for m in mods]
        return [torch.cat(level, dim=0) for level in zip(*per_mod, strict=True)]

    def forward(self, thermal: torch.Tensor | None, rgb: torch.Tensor | None,
                views: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """thermal [B,1,H,W] and rgb [B,3,H,W], normalised, same H, W (a baseline may get None
        for the other modality) -> {"depth_thermal", "depth_rgb"}: [B,1,H,W] metres, only for
        `views` (default: all of `output_views`). The fused views still read both inputs."""
        views = self._select_views(views)
        inputs = self._inputs(thermal, rgb)
        first = next(iter(inputs.values()))
        b, _, h, w = first.shape
        check_input_size(h, w, self.attn_splits)
        if self.input_alignment is not None:
            inputs = self._aligned_pairs(inputs, views)  # a [thermal; rgb] pair per view
        feats = self.encode(inputs)  # 4 x [M*B', C_i, H/s, W/s], M modalities
        images = None
        if self.cfg.image_concat:
            images = torch.cat([x.expand(-1, 3, -1, -1) if self.fuse else x
                                for x in inputs.values()], dim=0)  # [M*B', 3 or Cin, H, W]
        fused = [blk(f, images) for blk, f in zip(self.dmcf, feats, strict=True)]
        order = list(inputs)
        if self.input_alignment is not None:
            # View j's pair is item block j of each modality's half; keep its own modality's
            # features: thermal from the thermal half, RGB from the RGB half.
            n = len(views)
            keep = [(0 if v == "thermal" else n) + j for j, v in enumerate(views)]
            fused = [torch.cat([f[k * b:(k + 1) * b] for k in keep]) for f in fused]
            order = list(views)
        out = {}
        if hasattr(self, "decoder") and views == tuple(order):
            # Shared decoder and every view wanted: one pass over the whole [M*B] batch.
            depth, sigma = self.decoder.decode(fused)  # [M*B, 1, H, W]
            for i, v in enumerate(order):
                out[f"depth_{v}"] = depth[i * b:(i + 1) * b]
                if sigma is not None:
                    out[f"uncertainty_{v}"] = sigma[i * b:(i + 1) * b]
            return out
        for v in views:
            i = order.index(v)
            depth, sigma = self._decoder(v).decode([f[i * b:(i + 1) * b] for f in fused])
            out[f"depth_{v}"] = depth
            if sigma is not None:
                out[f"uncertainty_{v}"] = sigma
        return out


def build_model(cfg: ModelConfig | dict[str, Any] | None = None) -> DMCFSide:
    """Build a `DMCFSide` from a `ModelConfig` (or its dict form; None = defaults)."""
    if not isinstance(cfg, ModelConfig):
        cfg = ModelConfig.from_dict(cfg)
    return DMCFSide(cfg)
