"""Swin Transformer encoder (Liu et al., ICCV 2021), written here because timm/torchvision are
not available on the target machines.

Parameter names follow the official implementation (microsoft/Swin-Transformer) so ImageNet
checkpoints load through `pretrained.checkpoint_filter_fn`; padding to window multiples follows
the official detection backbone (Swin-Transformer-Object-Detection), so any H, W works
(256x640 gives 64x160 tokens at 1/4). Per-stage output norms `norm0..norm3` as in that backbone.
Each modality has its own patch embedding (`patch_embed` for RGB, `patch_embed_thermal`), the
stages are shared: both modalities run as one [2B, ...] batch (GMFlow's trick).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .attention import generate_shift_window_attn_mask, window_token_index

PATCH_SIZE = 4
IMAGE_CHANNELS = {"thermal": 1, "rgb": 3}
EMBED_NAMES = {"rgb": "patch_embed", "thermal": "patch_embed_thermal"}


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016), as timm's `DropPath`."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def relative_position_index(window_size: int) -> torch.Tensor:
    """[ws*ws, ws*ws] index into the (2ws-1)^2 bias table (official Swin construction)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                        indexing="ij"))  # [2, ws, ws]
    coords = coords.flatten(1)  # [2, ws*ws]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [N, N, 2]
    rel = rel + (window_size - 1)
    return rel[:, :, 0] * (2 * window_size - 1) + rel[:, :, 1]  # [N, N]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Not persistent: derived from window_size, and checkpoints with another window size
        # must not overwrite it (the filter drops it from official checkpoints too).
        self.register_buffer("relative_position_index", relative_position_index(window_size),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B*nW, N, C] window tokens; mask: [nW, N, N] additive or None -> [B*nW, N, C]."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B*nW, heads, N, C/heads]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B*nW, heads, N, N]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)  # [B*nW, N, C]
        return self.proj(x)


class SwinBlock(nn.Module):
    """One Swin block: (shifted) window attention + MLP, pre-norm residuals."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: bool,
                 mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, attn_mask: torch.Tensor | None,
                index: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x: [B, H*W, C] -> [B, H*W, C]; attn_mask for the padded, shifted map; index: this
        block's `window_token_index` (gather, scatter), made here when not given."""
        b, _, c = x.shape
        ws, s = self.window_size, self.shift_size
        if index is None:
            index = window_token_index(h, w, ws, ws, s, s, x.device)
        gather, scatter = index
        y = self.norm1(x)  # [B, H*W, C]
        if gather.shape[0] != h * w:  # padded to window multiples: index h*w is a zero token
            y = torch.cat([y, y.new_zeros(b, 1, c)], dim=1)
        # Official Swin pads, rolls by -s, partitions, attends, reverses, rolls back and crops;
        # the two token permutations do the same moves (window_token_index).
        y = y.index_select(1, gather).view(-1, ws * ws, c)  # [B*nW, N, C]
        y = self.attn(y, attn_mask if s > 0 else None)
        y = y.view(b, -1, c).index_select(1, scatter)  # [B, H*W, C]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (order x0,x1,x2,x3 as official Swin) -> LayerNorm -> 4C->2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, ceil(H/2)*ceil(W/2), 2C]."""
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      dim=-1)  # [B, H/2, W/2, 4C]
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """Official `BasicLayer`: blocks (alternating shift) then an optional PatchMerging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 drop_path: Sequence[float], downsample: bool, use_checkpointing: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.use_checkpointing = use_checkpointing
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, i % 2 == 1, mlp_ratio, drop_path[i])
            for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, H*W, C] -> [B, H*W, C] (before downsampling; see `SwinEncoder`)."""
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        mask = generate_shift_window_attn_mask(hp, wp, ws, ws, ws // 2, ws // 2, x.device)
        mask = mask.to(x.dtype)  # [nW, ws*ws, ws*ws]
        index = {s: window_token_index(h, w, ws, ws, s, s, x.device)
                 for s in {blk.shift_size for blk in self.blocks}}
        for blk in self.blocks:
            if self.use_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(blk, x, h, w, mask, index[blk.shift_size],
                                                      use_reentrant=False)
            else:
                x = blk(x, h, w, mask, index[blk.shift_size])
        return x


class PatchEmbed(nn.Module):
    """4x4 patches -> C channels (conv stride 4) + LayerNorm; pads H, W up to multiples of 4."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, PATCH_SIZE, stride=PATCH_SIZE)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, Cin, H, W] -> [B, C, ceil(H/4), ceil(W/4)]."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % PATCH_SIZE, 0, (-h) % PATCH_SIZE))
        x = self.proj(x)  # [B, C, H/4, W/4]
        b, c, hh, ww = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))  # [B, H/4*W/4, C]
        return x.transpose(1, 2).reshape(b, c, hh, ww)


class SwinEncoder(nn.Module):
    """Swin backbone returning the four stage outputs [N, C*2^i, H/2^(i+2), W/2^(i+2)].

    modalities: which patch embeddings to hold ("thermal": 1 channel, "rgb": 3 channels).
    `channels` / `feature_info` expose the per-stage widths (used to build DMCF and decoder).
    """

    def __init__(self, embed_dim: int, depths: Sequence[int], num_heads: Sequence[int],
                 window_size: int = 7, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 modalities: Sequence[str] = ("thermal", "rgb"),
                 use_checkpointing: bool = False) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.window_size = window_size
        for m in self.modalities:
            self.add_module(EMBED_NAMES[m], PatchEmbed(IMAGE_CHANNELS[m], embed_dim))
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(SwinStage(
                embed_dim * 2**i, depth, num_heads[i], window_size, mlp_ratio,
                rates[start:start + depth], i < len(depths) - 1, use_checkpointing))
        self.channels = [embed_dim * 2**i for i in range(len(depths))]
        for i, ch in enumerate(self.channels):
            self.add_module(f"norm{i}", nn.LayerNorm(ch))
        self.feature_info = [dict(num_chs=ch, reduction=PATCH_SIZE * 2**i, module=f"layers.{i}")
                             for i, ch in enumerate(self.channels)]
        self.apply(_init_weights)

    def embed(self, image: torch.Tensor, modality: str) -> torch.Tensor:
        """[B, Cin, H, W] -> [B, C, H/4, W/4] with the modality's own patch embedding."""
        if modality not in self.modalities:
            raise ValueError(f"this encoder has no patch embedding for {modality!r}")
        return getattr(self, EMBED_NAMES[modality])(image)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[N, C, h, w] embedded patches -> 4 normalised stage outputs [N, C_i, h_i, w_i]."""
        n, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [N, h*w, C]
        feats = []
        for i, stage in enumerate(self.layers):
            x = stage(x, h, w)
            out = getattr(self, f"norm{i}")(x)  # [N, h*w, C_i]
            feats.append(out.transpose(1, 2).reshape(n, -1, h, w))  # [N, C_i, h, w]
            if stage.downsample is not None:
                x = stage.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        return feats

    def forward(self, images: Sequence[torch.Tensor], modalities: Sequence[str]):
        """Embed each modality, run all of them as one batch: list of 4 [sum(B), C_i, h_i, w_i]."""
        x = torch.cat([self.embed(img, m) for img, m in zip(images, modalities, strict=True)])
        return self.forward_stages(x)


def _init_weights(m: nn.Module) -> None:
    """Official Swin init: truncated normal linears, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
