"""DMCF module (Kwon & Kim 2024, DESIGN.md section 3): per-scale mutual reference and fusion.

F*_m = ConvBlock(concat(F_m, avgpool(I_m))) halves the channels, a sine position embedding is
added, then two Cross-Relation blocks run window self-attention inside each modality followed by
window cross-attention between modalities; the second block uses shifted windows. Both
modalities travel as one [2B, ...] batch ordered [thermal; rgb]; the cross-attention target is
the same batch with its halves swapped (GMFlow's [f0;f1]/[f1;f0] trick), so one set of weights
serves both directions; with `model.shared_dmcf: false` every layer has a copy per modality
(`PerModality`) and each half goes through its own.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .alignment import ViewAlignment
from .attention import shift_mask_for, split_window_index, window_attention
from .position import sine_position_embedding


class ModalityBatchNorm2d(nn.Module):
    """One BatchNorm per modality for a [thermal; rgb] batch: [2B, C, h, w] -> [2B, C, h, w].

    A single BatchNorm over the mixed batch normalises the thermal features with statistics that
    depend on the RGB images beside them in the batch (a dark night frame shifts them) and, at
    inference, with running statistics of the mixture, which fit neither modality. Separate
    statistics and affine parameters per modality (domain-specific BatchNorm, Chang et al.,
    CVPR 2019) keep each modality's normalisation what a single-modality model would learn.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.thermal = nn.BatchNorm2d(channels)
        self.rgb = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        thermal, rgb = x.chunk(2, dim=0)
        return torch.cat([self.thermal(thermal), self.rgb(rgb)], dim=0)


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU: [B, Cin, h, w] -> [B, Cout, h, w].

    per_modality_norm: the input is a [thermal; rgb] batch and each modality gets its own
    BatchNorm (`ModalityBatchNorm2d`); the convolutions stay shared.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 per_modality_norm: bool = False) -> None:
        super().__init__()
        norm = ModalityBatchNorm2d if per_modality_norm else nn.BatchNorm2d
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            norm(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            norm(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class AttentionLayer(nn.Module):
    """GMFlow's `TransformerLayer` (single head): window attention, merge, norm, optional FFN
    on concat(source, message), residual to the source.

    zero_init: start the residual branch at exactly 0 by zeroing the gain of its last LayerNorm
    (the "zero-gamma" trick of Goyal et al. 2017 / LayerScale / ControlNet's zero convolutions),
    so a fresh layer is the identity and the network first learns what each modality gives on
    its own, then how much of the other modality to mix in.
    """

    def __init__(self, dim: int, with_ffn: bool, ffn_expansion: int = 4,
                 zero_init: bool = False, gated: bool = False,
                 image_gated: bool = False) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.merge = nn.Linear(dim, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = None
        if with_ffn:
            self.mlp = nn.Sequential(
                nn.Linear(2 * dim, 2 * dim * ffn_expansion, bias=False), nn.GELU(),
                nn.Linear(2 * dim * ffn_expansion, dim, bias=False))
            self.norm2 = nn.LayerNorm(dim)
        if zero_init:
            nn.init.zeros_((self.norm2 if with_ffn else self.norm1).weight)
        # The message ends in a LayerNorm, so its size does not depend on how informative the
        # attended tokens were: a night RGB frame would push as much into the thermal features
        # as a day frame. A gate computed from (source, message) lets each token take less.
        self.gate = nn.Linear(2 * dim, dim) if gated else None
        # One gate per image and channel from the mean tokens of both modalities (SE-style):
        # a whole frame's message can be shut off when the other camera sees nothing useful
        # (night RGB), which per-token gates on LayerNorm'd messages can hardly tell.
        self.image_gate = nn.Linear(2 * dim, dim) if image_gated else None

    def forward(self, source: torch.Tensor, target: torch.Tensor, h: int, w: int,
                num_splits: int, with_shift: bool, attn_mask: torch.Tensor | None,
                windows: dict | None = None):
        """source (queries), target (keys/values): [N, h*w, C] -> [N, h*w, C]. windows: the
        map's `split_window_index` per with_shift (DMCF builds them once per scale)."""
        q, k, v = self.q_proj(source), self.k_proj(target), self.v_proj(target)
        index = windows.get(with_shift) if windows else None
        message = self.norm1(self.merge(
            window_attention(q, k, v, num_splits, with_shift, h, w, attn_mask, index)))
        if self.mlp is not None:
            message = self.norm2(self.mlp(torch.cat([source, message], dim=-1)))
        if self.gate is not None:
            message = torch.sigmoid(self.gate(torch.cat([source, message], dim=-1))) * message
        if self.image_gate is not None:
            summary = torch.cat([source.mean(dim=1), target.mean(dim=1)], dim=-1)  # [N, 2C]
            message = torch.sigmoid(self.image_gate(summary)).unsqueeze(1) * message
        return source + message


class PerModality(nn.Module):
    """Two copies of a layer, one per modality, for a [thermal; rgb] batch: the first
    `batch_args` positional tensors are split in halves, each half goes through its own
    modality's copy (the other arguments are passed to both), and the outputs are concatenated
    back: [2B, ...] -> [2B, ...]. With it a modality's tokens are transformed only by weights
    that its own view's loss trains (`model.shared_dmcf: false`)."""

    def __init__(self, make: Callable[[], nn.Module], batch_args: int = 1) -> None:
        super().__init__()
        self.thermal = make()
        self.rgb = make()
        self.batch_args = batch_args

    def forward(self, *args, **kwargs) -> torch.Tensor:
        n = self.batch_args
        halves = [a.chunk(2, dim=0) for a in args[:n]]
        rest = args[n:]
        return torch.cat([self.thermal(*(h[0] for h in halves), *rest, **kwargs),
                          self.rgb(*(h[1] for h in halves), *rest, **kwargs)], dim=0)


def per_modality(separate: bool, make: Callable[[], nn.Module], batch_args: int = 1) -> nn.Module:
    """`make()` shared by both modalities, or a `PerModality` pair when `separate`."""
    return PerModality(make, batch_args) if separate else make()


def swap_halves(x: torch.Tensor) -> torch.Tensor:
    """[thermal; rgb] -> [rgb; thermal] along the batch (static split, ONNX friendly)."""
    a, b = x.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


class CrossRelationBlock(nn.Module):
    """Self-attention within each modality, then cross-attention to the other one.

    shifted_pair=False: one (SA, CA) pair whose windows the caller shifts or not (GMFlow's
    alternation across blocks). shifted_pair=True: the paper's text read as four attentions per
    block, (W-SA, W-CA) on regular windows then (SW-SA, SW-CA) on shifted ones.
    """

    def __init__(self, dim: int, ffn_expansion: int, shifted_pair: bool = False,
                 zero_init: bool = False, gated: bool = False,
                 detach_other: bool = False, image_gated: bool = False,
                 separate_weights: bool = False) -> None:
        super().__init__()
        self.detach_other = detach_other
        cross = dict(with_ffn=True, ffn_expansion=ffn_expansion, zero_init=zero_init,
                     gated=gated, image_gated=image_gated)  # both cross-attention layers

        def layer(**kw) -> nn.Module:  # source and target are [2B] batches
            return per_modality(separate_weights, lambda: AttentionLayer(dim, **kw), 2)

        self.self_attn = layer(with_ffn=False, zero_init=zero_init)
        self.cross_attn_ffn = layer(**cross)
        self.shifted_pair = shifted_pair
        if shifted_pair:
            self.self_attn_shifted = layer(with_ffn=False, zero_init=zero_init)
            self.cross_attn_ffn_shifted = layer(**cross)

    def _pair(self, self_attn: nn.Module, cross_attn: nn.Module, x: torch.Tensor,
              h: int, w: int, num_splits: int, with_shift: bool,
              attn_mask: torch.Tensor | None,
              align: Callable[[torch.Tensor], torch.Tensor] | None, windows: dict | None):
        x = self_attn(x, x, h, w, num_splits, with_shift, attn_mask, windows)
        # Unlike GMFlow (which attends to the other view *before* its self-attention), the keys
        # here are the other modality's self-attended tokens: same cost, fresher reference.
        other = swap_halves(x)
        if align is not None:  # the other camera's tokens moved onto this camera's rays
            other = align(other)
        if self.detach_other:  # each view's loss trains only its own modality's tokens
            other = other.detach()
        return cross_attn(x, other, h, w, num_splits, with_shift, attn_mask, windows)

    def forward(self, x: torch.Tensor, h: int, w: int, num_splits: int, with_shift: bool,
                attn_mask: torch.Tensor | None,
                align: Callable[[torch.Tensor], torch.Tensor] | None = None,
                windows: dict | None = None) -> torch.Tensor:
        """x: [2B, h*w, C] ordered [thermal; rgb] -> [2B, h*w, C]; align (`ViewAlignment.at`)
        moves the other modality's tokens onto this one's rays before the cross-attention;
        windows: with_shift -> `split_window_index` of this map (built by the layers if None)."""
        x = self._pair(self.self_attn, self.cross_attn_ffn, x, h, w, num_splits, with_shift,
                       attn_mask, align, windows)
        if self.shifted_pair:
            x = self._pair(self.self_attn_shifted, self.cross_attn_ffn_shifted, x, h, w,
                           num_splits, num_splits > 1, attn_mask, align, windows)
        return x


def pool_image(images: torch.Tensor, stride: int) -> torch.Tensor:
    """Average-pool [N, Ci, H, W] to [N, Ci, H/stride, W/stride]. The stride is a constant of
    the module (not derived from tensor shapes) so that traced ONNX export sees a fixed kernel."""
    return nn.functional.avg_pool2d(images, kernel_size=stride, stride=stride)


class DMCF(nn.Module):
    """One scale of DMCF: [2B, C, h, w] stage features (+ images) -> [2B, C/2, h, w].

    fuse=False gives the single-modality baselines' block (ConvBlock only; any batch size).
    image_channels: channels of the image concatenated in the ConvBlock (0 = no concat).
    stride: this scale's downsampling factor (4, 8, 16 or 32).
    attn_pairs_per_block: 1 = (SA, CA) per Cross-Relation block, every second block shifted
        (GMFlow); 2 = (W-SA, W-CA, SW-SA, SW-CA) in every block.
    zero_init_attention: every attention layer starts as the identity (see AttentionLayer).
    gated_cross_attention: the cross-attention message is scaled by a learned per-token gate.
    modality_batchnorm: the ConvBlock's BatchNorms keep separate statistics per modality
        (fusion only).
    detach_cross_modal: the cross-attention reads the other modality's tokens without passing
        gradients back into them (training only; inference is unchanged).
    image_gated_cross_attention: the cross-attention message is scaled by a per-image,
        per-channel gate from both modalities' mean tokens.
    view_homography: 9 numbers, thermal -> RGB normalised coordinates (`alignment`): the
        cross-attention reads the other modality resampled onto this one's rays; None = the
        paper's pixel-position correspondence.
    separate_weights: (fusion) the ConvBlock and every attention layer have one copy of their
        weights per modality (`PerModality`) instead of one shared by both.
    """

    def __init__(self, in_channels: int, image_channels: int, stride: int, num_splits: int,
                 fuse: bool, num_blocks: int = 2, ffn_expansion: int = 4,
                 attn_pairs_per_block: int = 1, zero_init_attention: bool = False,
                 gated_cross_attention: bool = False, modality_batchnorm: bool = False,
                 detach_cross_modal: bool = False,
                 image_gated_cross_attention: bool = False,
                 view_homography: tuple[float, ...] | None = None,
                 separate_weights: bool = False) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = in_channels // 2
        self.image_channels = image_channels
        self.num_splits = num_splits
        if attn_pairs_per_block not in (1, 2):
            raise ValueError(f"attn_pairs_per_block must be 1 or 2, got {attn_pairs_per_block}")
        self.shifted_pairs = attn_pairs_per_block == 2
        separate = fuse and separate_weights
        self.conv = per_modality(separate, lambda: ConvBlock(
            in_channels + image_channels, self.out_channels,
            per_modality_norm=fuse and modality_batchnorm and not separate))
        self.blocks = nn.ModuleList(
            CrossRelationBlock(self.out_channels, ffn_expansion, self.shifted_pairs,
                               zero_init_attention, gated_cross_attention, detach_cross_modal,
                               image_gated_cross_attention, separate)
            for _ in range(num_blocks)
        ) if fuse else nn.ModuleList()
        self.align = ViewAlignment(view_homography) if fuse and view_homography else None

    def forward(self, feats: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = feats.shape
        if self.image_channels:
            feats = torch.cat([feats, pool_image(images, self.stride)], dim=1)
        x = self.conv(feats)  # [N, C/2, h, w]
        if len(self.blocks) == 0:
            return x
        c = self.out_channels
        x = x + sine_position_embedding(c, h, w, x.device, x.dtype)
        x = x.flatten(2).transpose(1, 2)  # [2B, h*w, C/2]
        k = self.num_splits
        mask = shift_mask_for(h, w, k, x.device, x.dtype) if k > 1 else None
        align = self.align.at(h, w, x.dtype) if self.align is not None else None
        # The window permutations of this map, once for all attention layers of the scale.
        windows = {shift: split_window_index(h, w, k, shift, x.device)
                   for shift in ((False, True) if k > 1 else (False,))}
        for i, block in enumerate(self.blocks):
            # GMFlow: every second block shifts by half a window (only meaningful with splits);
            # with shifted pairs each block shifts its own second pair.
            shift = k > 1 and i % 2 == 1 and not self.shifted_pairs
            x = block(x, h, w, k, with_shift=shift, attn_mask=mask, align=align, windows=windows)
        return x.transpose(1, 2).reshape(n, c, h, w)  # [2B, C/2, h, w]
