"""Window attention kernels as plain functions (GMFlow style, Xu et al., CVPR 2022).

Used by the DMCF Cross-Relation blocks (`dmcf.py`) and, for the shift mask and the window
token permutations, by the Swin encoder.
Everything here is written for ONNX opset 17 export with static shapes: sizes are Python ints
taken from tensor shapes, never from tensor values, and only reshape/permute/slice/concat/gather/
matmul/softmax are used. Window partitions are token permutations (`window_token_index`) whose
indices depend on sizes only, so the exporter folds them into constants.
"""
from __future__ import annotations

import torch

from .memo import size_constant

# Added to the scores of query/key pairs from different shifted regions. Large enough that the
# softmax weight is exactly 0 in float32, small enough to stay finite in float16 (max 65504).
MASK_VALUE = -1.0e4


def split_feature(feature: torch.Tensor, num_splits: int) -> torch.Tensor:
    """Cut a channel-last map into K x K windows: [B, H, W, C] -> [B*K*K, H/K, W/K, C].

    Windows are ordered batch-major, then row-major over the K x K grid (GMFlow's order).
    """
    b, h, w, c = feature.shape
    k = num_splits
    feature = feature.view(b, k, h // k, k, w // k, c)  # [B, K, H/K, K, W/K, C]
    return feature.permute(0, 1, 3, 2, 4, 5).reshape(b * k * k, h // k, w // k, c)


def merge_splits(splits: torch.Tensor, num_splits: int) -> torch.Tensor:
    """Inverse of `split_feature`: [B*K*K, H/K, W/K, C] -> [B, H, W, C]."""
    bkk, hk, wk, c = splits.shape
    k = num_splits
    b = bkk // (k * k)
    splits = splits.view(b, k, k, hk, wk, c)  # [B, K, K, H/K, W/K, C]
    return splits.permute(0, 1, 3, 2, 4, 5).reshape(b, k * hk, k * wk, c)


def roll_2d(x: torch.Tensor, shift_h: int, shift_w: int) -> torch.Tensor:
    """`torch.roll(x, (shift_h, shift_w), dims=(1, 2))` on [B, H, W, C] written as slices and
    concats, so that the legacy (traced) ONNX exporter also accepts shape-derived shifts."""
    h, w = x.shape[1], x.shape[2]
    sh, sw = shift_h % h, shift_w % w
    if sh:
        x = torch.cat([x[:, h - sh:], x[:, :h - sh]], dim=1)
    if sw:
        x = torch.cat([x[:, :, w - sw:], x[:, :, :w - sw]], dim=2)
    return x


@size_constant
def window_token_index(h: int, w: int, window_h: int, window_w: int, shift_h: int = 0,
                       shift_w: int = 0,
                       device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Permutations that turn pad + roll + window partition (and back) into one gather each.

    The map is [B, h*w, C] row-major tokens, zero-padded at the bottom and right to multiples of
    the window, rolled by (-shift_h, -shift_w) (Swin's / GMFlow's shifted windows), then cut into
    window_h x window_w windows (row-major windows, row-major tokens inside: `split_feature`'s and
    Swin's `window_partition`'s order). Returns:
        gather: [nW*N] long, the token each windowed position takes; index h*w stands for a
            padding token (a zero row the caller appends, only when the map is padded).
        scatter: [h*w] long, the windowed position each map token comes back from (the inverse
            roll and crop included).
    Both depend on sizes only, so ONNX export folds them into constants: each partition becomes
    one Gather instead of a Pad, two rolls of slices and concats, and reshape/transpose pairs.
    """
    h, w, window_h, window_w = int(h), int(w), int(window_h), int(window_w)
    hp, wp = -(-h // window_h) * window_h, -(-w // window_w) * window_w
    ids = torch.arange(h * w, device=device).view(1, 1, h, w)
    ids = torch.nn.functional.pad(ids, (0, wp - w, 0, hp - h), value=h * w)[0, :, :, :, None]
    kh, kw = hp // window_h, wp // window_w

    def to_windows(grid: torch.Tensor) -> torch.Tensor:  # [1, hp, wp, 1] -> [nW*N]
        grid = grid.view(kh, window_h, kw, window_w).permute(0, 2, 1, 3)
        return grid.reshape(-1)

    gather = to_windows(roll_2d(ids, -int(shift_h), -int(shift_w)))
    pos = torch.arange(hp * wp, device=device).view(kh, kw, window_h, window_w)
    pos = pos.permute(0, 2, 1, 3).reshape(1, hp, wp, 1)  # windowed position of each map cell
    scatter = roll_2d(pos, int(shift_h), int(shift_w))[0, :h, :w, 0].reshape(-1)
    return gather, scatter


def _region_ids(size: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Region label per row (or column) after a cyclic shift: 0 = untouched, 1 and 2 = the
    strips that `torch.roll` wrapped around (Swin's three slices; shift 0 gives only 0 and 1,
    which never share a window)."""
    idx = torch.arange(size, device=device)
    return (idx >= size - window).long() + (idx >= size - shift).long()  # [size]


@size_constant
def generate_shift_window_attn_mask(
    h: int, w: int, window_h: int, window_w: int, shift_h: int, shift_w: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Additive mask for shifted-window attention (Swin / GMFlow).

    h, w: map size (a multiple of the window size); the map is assumed rolled by
    (-shift_h, -shift_w). Returns [nW, window_h*window_w, window_h*window_w] with 0 where query
    and key come from the same pre-shift region and `MASK_VALUE` elsewhere; nW = (h/wh)*(w/ww),
    windows in row-major order (the order of `split_feature` / Swin's `window_partition`).
    """
    device = torch.device(device)
    # int(): under legacy ONNX tracing the sizes arrive as traced values; the mask is a
    # constant of the (static) input size, so freeze them.
    h, w, window_h, window_w = int(h), int(w), int(window_h), int(window_w)
    shift_h, shift_w = int(shift_h), int(shift_w)
    rows = _region_ids(h, window_h, shift_h, device)
    cols = _region_ids(w, window_w, shift_w, device)
    region = (rows[:, None] * 3 + cols[None, :]).float()  # [H, W]
    kh, kw = h // window_h, w // window_w
    region = region.view(kh, window_h, kw, window_w).permute(0, 2, 1, 3)  # [kh, kw, wh, ww]
    region = region.reshape(kh * kw, window_h * window_w)  # [nW, N]
    different = region[:, :, None] != region[:, None, :]  # [nW, N, N]
    return different.float() * MASK_VALUE


def split_window_index(h: int, w: int, num_splits: int, with_shift: bool,
                       device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`window_token_index` for K x K splits of an h x w map, shifted by half a window or not.

    Depends on sizes only: a caller running several window attentions on one map builds it once
    and passes it as their `index` (DMCF does, per scale), instead of each layer rebuilding it
    (about a dozen small tensor operations each: CPU time in eager mode, kernel launches on a
    GPU; an exported graph folds it to a constant either way)."""
    wh, ww = h // num_splits, w // num_splits
    shift_h, shift_w = (wh // 2, ww // 2) if with_shift else (0, 0)
    return window_token_index(h, w, wh, ww, shift_h, shift_w, device)


def _to_windows(x: torch.Tensor, gather: torch.Tensor, windows: int) -> torch.Tensor:
    """[B, H*W, C] row-major tokens -> [B*nW, N, C] window tokens (one gather)."""
    b, _, c = x.shape
    return x.index_select(1, gather).view(b * windows, -1, c)


def window_attention_weights(
    q: torch.Tensor, k: torch.Tensor, num_splits: int, with_shift: bool, h: int, w: int,
    attn_mask: torch.Tensor | None = None,
    index: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Softmax weights of single-head K x K window attention.

    q, k: [B, H*W, C] tokens in row-major order. Returns [B*K*K, N, N] with N = (H/K)*(W/K),
    windows in `split_feature` order; with_shift rolls the map by half a window first and
    applies `attn_mask` ([K*K, N, N], from `generate_shift_window_attn_mask`). index: this
    map's `split_window_index` (made here when not given).
    """
    gather, _ = index or split_window_index(h, w, num_splits, with_shift, q.device)
    return _weights(q, k, gather, num_splits, with_shift, attn_mask)


def _weights(q: torch.Tensor, k: torch.Tensor, gather: torch.Tensor, num_splits: int,
             with_shift: bool, attn_mask: torch.Tensor | None) -> torch.Tensor:
    b, _, c = q.shape
    kk = num_splits * num_splits
    q, k = _to_windows(q, gather, kk), _to_windows(k, gather, kk)  # [B*K*K, N, C]
    # Scale the queries, not the N x N scores: same result, N/C times fewer multiplications.
    scores = torch.matmul(q * (c**-0.5), k.transpose(1, 2))  # [B*K*K, N, N]
    if with_shift:
        if attn_mask is None:
            raise ValueError("window attention with_shift=True needs the shift attn_mask")
        n = scores.shape[-1]
        scores = (scores.view(b, kk, n, n) + attn_mask[None]).view(b * kk, n, n)
    return torch.softmax(scores, dim=-1)


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_splits: int, with_shift: bool,
    h: int, w: int, attn_mask: torch.Tensor | None = None,
    index: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Single-head attention inside K x K windows (GMFlow's `single_head_split_window_attention`).

    q, k, v: [B, H*W, C]; H and W must be divisible by num_splits. Returns [B, H*W, C].
    GMFlow's roll / split / merge / roll back are done as two token permutations
    (`window_token_index`): the same numbers, fewer and cheaper exported operations.
    index: `split_window_index(h, w, num_splits, with_shift)`, made here when not given.
    """
    b, _, c = q.shape
    gather, scatter = index or split_window_index(h, w, num_splits, with_shift, q.device)
    attn = _weights(q, k, gather, num_splits, with_shift, attn_mask)  # [B*K*K, N, N]
    out = torch.matmul(attn, _to_windows(v, gather, num_splits * num_splits))  # [B*K*K, N, C]
    return out.view(b, h * w, c).index_select(1, scatter)  # [B, H*W, C]


@size_constant
def shift_mask_for(h: int, w: int, num_splits: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32):
    """The mask `window_attention(..., with_shift=True)` needs for an h x w map and K splits,
    in `dtype` (kept per dtype: mixed precision does not convert it at every forward)."""
    wh, ww = h // num_splits, w // num_splits
    return generate_shift_window_attn_mask(h, w, wh, ww, wh // 2, ww // 2, device).to(dtype)
