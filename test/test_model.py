"""DMCF-SIDE network (training/model): shapes, fusion, shift mask, pretrained loading, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.model import (
    DMCFSide,
    ModelConfig,
    build_model,
    checkpoint_filter_fn,
    load_pretrained_encoder,
)
from training.model.attention import (
    generate_shift_window_attn_mask,
    shift_mask_for,
    split_window_index,
    window_attention,
    window_attention_weights,
    window_token_index,
)
from training.model.pretrained import resize_bias_table

# One thread: the CI box has 2 shared cores and OpenMP spin-waits badly when oversubscribed.
torch.set_num_threads(1)


def _tiny(**kw) -> DMCFSide:
    torch.manual_seed(0)
    return build_model(ModelConfig(variant="tiny", **kw)).eval()


def _inputs(b: int, h: int, w: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, h, w, generator=g), torch.randn(b, 3, h, w, generator=g)


def test_config_round_trip_and_unknown_keys():
    cfg = ModelConfig.from_dict({"variant": "swin_b", "attn_splits": [4, 4, 2, 2]})
    assert cfg.drop_path_rate == 0.3 and cfg.output_views == ("thermal", "rgb")
    d = cfg.to_dict()
    assert d["attn_splits"] == [4, 4, 2, 2] and ModelConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown key.*'depth_max'"):
        ModelConfig.from_dict({"depth_max": 80})
    with pytest.raises(ValueError, match="variant"):
        ModelConfig(variant="swin_xl")


@pytest.mark.parametrize("hw", [(256, 640), (192, 320)])
def test_tiny_output_shapes_and_range(hw):
    model = _tiny()
    assert model.output_views == ("thermal", "rgb")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    b = 1 if hw[0] * hw[1] > 100_000 else 2
    thermal, rgb = _inputs(b, *hw)
    with torch.no_grad():
        out = model(thermal, rgb)
    assert set(out) == {"depth_thermal", "depth_rgb"}
    for depth in out.values():
        assert depth.shape == (b, 1, *hw)
        assert torch.isfinite(depth).all() and 0 < depth.min() and depth.max() < 80.0


def test_swin_t_forward_256x640():
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="swin_t")).eval()
    assert 30e6 < sum(p.numel() for p in model.parameters()) < 60e6
    assert model.encoder.channels == [96, 192, 384, 768]
    with torch.no_grad():
        out = model(*_inputs(1, 256, 640))
    assert out["depth_thermal"].shape == out["depth_rgb"].shape == (1, 1, 256, 640)
    assert torch.isfinite(out["depth_rgb"]).all()


def test_views_subset_matches_full_forward():
    model = _tiny()
    thermal, rgb = _inputs(1, 128, 256)
    with torch.no_grad():
        full = model(thermal, rgb)
        only = model(thermal, rgb, views=["rgb"])
    assert list(only) == ["depth_rgb"]
    torch.testing.assert_close(only["depth_rgb"], full["depth_rgb"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="views"):
        model(thermal, rgb, views=["nir"])


@pytest.mark.parametrize("view", ["thermal", "rgb"])
def test_gradients_reach_encoder_from_each_head(view):
    model = _tiny().train()
    thermal, rgb = _inputs(2, 64, 128)
    model(thermal, rgb, views=[view])[f"depth_{view}"].mean().backward()
    enc = model.encoder
    for name in ("patch_embed_thermal.proj.weight", "patch_embed.proj.weight",
                 "layers.0.blocks.0.attn.qkv.weight", "layers.3.blocks.0.mlp.fc2.weight"):
        grad = enc.get_parameter(name).grad
        # Fusion: each head also reaches the other modality's embedding through DMCF.
        assert grad is not None and grad.abs().sum() > 0, name


def test_fusion_mixes_modalities_and_baseline_does_not():
    thermal, rgb = _inputs(1, 128, 256)
    rgb2 = rgb + 1.0
    fused = _tiny()
    with torch.no_grad():
        a = fused(thermal, rgb)["depth_thermal"]
        b = fused(thermal, rgb2)["depth_thermal"]
    assert (a - b).abs().max() > 1e-4

    baseline = _tiny(modality="thermal_only")
    assert baseline.output_views == ("thermal",)
    with torch.no_grad():
        c = baseline(thermal, rgb)
        d = baseline(thermal, None)
    assert list(c) == ["depth_thermal"]
    assert torch.equal(c["depth_thermal"], d["depth_thermal"])
    with pytest.raises(ValueError, match="rgb must be"):
        _tiny(modality="rgb_only")(thermal, None)


def test_ablation_switches_build_and_run():
    base = sum(p.numel() for p in _tiny().parameters())
    for kw in ({"shared_encoder": False}, {"shared_decoder": False}, {"image_concat": False}):
        model = _tiny(**kw)
        with torch.no_grad():
            out = model(*_inputs(1, 64, 128))
        assert out["depth_thermal"].shape == (1, 1, 64, 128), kw
        n = sum(p.numel() for p in model.parameters())
        assert (n < base) if "image_concat" in kw else (n > base), kw
    assert set(_tiny(shared_encoder=False).encoders()) == {"thermal", "rgb"}


def test_zero_init_attention_starts_as_identity_and_still_learns():
    """A zero-initialised DMCF is ConvBlock + position embedding; the other modality has no
    effect until training moves the gains, and the gains do receive gradients."""
    from training.model.dmcf import DMCF
    from training.model.position import sine_position_embedding

    torch.manual_seed(0)
    block = DMCF(32, 3, stride=8, num_splits=4, fuse=True, zero_init_attention=True).eval()
    feats, images = torch.randn(2, 32, 16, 32), torch.randn(2, 3, 128, 256)
    with torch.no_grad():
        out = block(feats, images)
        pooled = torch.nn.functional.avg_pool2d(images, 8)
        expected = block.conv(torch.cat([feats, pooled], 1)) + sine_position_embedding(16, 16, 32)
    torch.testing.assert_close(out, expected)
    model = _tiny(zero_init_attention=True)
    thermal, rgb = _inputs(1, 128, 256)
    with torch.no_grad():
        a = model(thermal, rgb)["depth_thermal"]
        b = model(thermal, rgb + 1.0)["depth_thermal"]
    assert torch.equal(a, b)  # the RGB image cannot reach the thermal view yet
    model.train()
    model(thermal, rgb)["depth_thermal"].mean().backward()
    gain = model.dmcf[0].blocks[0].cross_attn_ffn.norm2.weight
    assert gain.grad is not None and gain.grad.abs().max() > 0


def test_four_attention_pairs_per_block():
    two = _tiny()
    four = _tiny(attn_pairs_per_block=2)
    names = {n for n, _ in four.named_parameters()}
    assert {"dmcf.0.blocks.0.self_attn_shifted.q_proj.weight",
            "dmcf.3.blocks.1.cross_attn_ffn_shifted.norm2.weight"} <= names
    n_two = sum(p.numel() for p in two.dmcf.parameters())
    n_four = sum(p.numel() for p in four.dmcf.parameters())
    conv = sum(p.numel() for blk in two.dmcf for p in blk.conv.parameters())
    assert n_four - conv == 2 * (n_two - conv)  # twice the attention layers, same ConvBlocks
    with torch.no_grad():
        out = four(*_inputs(1, 128, 256))
    assert out["depth_rgb"].shape == (1, 1, 128, 256) and torch.isfinite(out["depth_rgb"]).all()
    with pytest.raises(ValueError, match="attn_pairs_per_block"):
        ModelConfig(attn_pairs_per_block=3)


@pytest.mark.parametrize("layer_flag, gate_name, model_flag, cross_param", [
    ("gated", "gate", "gated_cross_attention", "dmcf.0.blocks.1.cross_attn_ffn.gate.weight"),
    ("image_gated", "image_gate", "image_gated_cross_attention",
     "dmcf.1.blocks.0.cross_attn_ffn.image_gate.weight"),
])
def test_cross_attention_gates_scale_the_message(layer_flag, gate_name, model_flag, cross_param):
    """The per-token gate and the per-image gate multiply the cross-attention message: closed
    (large negative bias) the layer is the identity, open it equals the ungated layer. Only the
    cross-modal message gets a gate."""
    from training.model.dmcf import AttentionLayer

    torch.manual_seed(0)
    gated = AttentionLayer(16, with_ffn=True, **{layer_flag: True})
    plain = AttentionLayer(16, with_ffn=True)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items()
                           if not k.startswith(f"{gate_name}.")})
    source, target = torch.randn(2, 8 * 16, 16), torch.randn(2, 8 * 16, 16)
    args = (8, 16, 1, False, None)
    gate = getattr(gated, gate_name)
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.fill_(-50.0)
        torch.testing.assert_close(gated(source, target, *args), source)
        gate.bias.fill_(50.0)
        torch.testing.assert_close(gated(source, target, *args), plain(source, target, *args))
    model = _tiny(**{model_flag: True})
    names = {n for n, _ in model.named_parameters()}
    assert cross_param in names
    assert not any(f".self_attn.{gate_name}" in n for n in names)  # only the cross-modal message
    with torch.no_grad():
        out = model(*_inputs(1, 128, 256))
    assert torch.isfinite(out["depth_thermal"]).all()


def test_modality_batchnorm_keeps_thermal_statistics_apart():
    """In training mode one BatchNorm over [thermal; rgb] normalises the thermal half with the
    RGB half's statistics; with modality_batchnorm the thermal half's output does not depend on
    the RGB images in the batch."""
    from training.model.dmcf import ConvBlock

    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 10)
    other = x.clone()
    other[2:] = 3.0 * torch.randn(2, 8, 6, 10) + 2.0  # different RGB half, same thermal half
    for per_modality, equal in ((True, True), (False, False)):
        block = ConvBlock(8, 4, per_modality_norm=per_modality).train()
        a, b = block(x)[:2], block(other)[:2]
        assert torch.allclose(a, b) == equal
    model = _tiny(modality_batchnorm=True)
    names = {n for n, _ in model.named_parameters()}
    assert {"dmcf.0.conv.block.1.thermal.weight", "dmcf.0.conv.block.4.rgb.bias"} <= names
    assert not any(n.startswith("dmcf.0.conv.block.1.weight") for n in names)
    with torch.no_grad():
        out = model(*_inputs(2, 128, 256))
    assert torch.isfinite(out["depth_thermal"]).all() and out["depth_rgb"].shape == (2, 1, 128, 256)


def test_detach_cross_modal_stops_gradients_into_the_other_modality():
    """With detach_cross_modal the thermal view's loss sends no gradient into the RGB input
    (eval-mode BatchNorm, so the batch does not couple them); without it, it does. The forward
    pass is the same."""
    outs = {}
    for detach in (False, True):
        model = _tiny(detach_cross_modal=detach)
        thermal, rgb = _inputs(1, 128, 256)
        rgb.requires_grad_(True)
        out = model(thermal, rgb)
        out["depth_thermal"].sum().backward()
        outs[detach] = out["depth_thermal"].detach()
        grad = rgb.grad.abs().sum().item()
        assert (grad == 0.0) if detach else (grad > 0.0)
    torch.testing.assert_close(outs[True], outs[False])


def test_separate_dmcf_weights_train_each_view_by_its_own_loss():
    """shared_dmcf=false gives every DMCF layer a thermal and an RGB copy. With separate
    encoders, decoders and detach_cross_modal, the thermal view's loss then reaches only
    thermal-side parameters (train mode, so BatchNorm statistics are per-modality too), while
    its depth still depends on the RGB image."""
    from training.model.dmcf import PerModality

    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="tiny", height=64, width=128, shared_dmcf=False,
                                    shared_encoder=False, shared_decoder=False,
                                    detach_cross_modal=True)).train()
    assert isinstance(model.dmcf[0].conv, PerModality)
    assert isinstance(model.dmcf[0].blocks[0].cross_attn_ffn, PerModality)
    names = {n for n, _ in model.named_parameters()}
    assert {"dmcf.0.conv.thermal.block.0.weight",
            "dmcf.3.blocks.1.cross_attn_ffn.rgb.q_proj.weight"} <= names
    shared = sum(p.numel() for p in _tiny().dmcf.parameters())
    assert sum(p.numel() for p in model.dmcf.parameters()) == 2 * shared
    thermal, rgb = _inputs(2, 64, 128)
    model(thermal, rgb)["depth_thermal"].sum().backward()
    touched = {n for n, p in model.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0}
    rgb_side = {n for n in names if ".rgb." in n or n.startswith(("encoder_rgb", "decoder_rgb"))}
    assert touched and not touched & rgb_side
    assert any(".thermal." in n for n in touched if n.startswith("dmcf"))
    model.eval()
    with torch.no_grad():
        a = model(thermal, rgb)["depth_thermal"]
        b = model(thermal, torch.zeros_like(rgb))["depth_thermal"]
    assert (a - b).abs().max() > 1e-6  # still fused: the RGB image changes the thermal view
    with pytest.raises(ValueError, match="shared_dmcf"):
        ModelConfig(modality="thermal_only", shared_dmcf=False)


def test_shift_mask_blocks_attention_across_shifted_regions():
    torch.manual_seed(0)
    h = w = 16
    k = 2  # 8x8 windows, shifted by 4
    q, kk = torch.randn(2, h * w, 8), torch.randn(2, h * w, 8)
    mask = shift_mask_for(h, w, k)
    attn = window_attention_weights(q, kk, k, True, h, w, mask)  # [B*K*K, 64, 64]
    assert attn.shape == (2 * k * k, 64, 64)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2 * k * k, 64))
    # Independent reference: in rolled window (wy, wx), token (i, j) came from original pixel
    # ((wy*8 + i + 4) % 16, (wx*8 + j + 4) % 16); two tokens may interact only if they were
    # neighbours before the roll (closer than a window in both directions).
    ii, jj = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    ii, jj = ii.flatten(), jj.flatten()
    n_blocked = 0
    for win in range(k * k):
        wy, wx = divmod(win, k)
        oy, ox = (wy * 8 + ii + 4) % h, (wx * 8 + jj + 4) % w
        near = ((oy[:, None] - oy[None]).abs() < 8) & ((ox[:, None] - ox[None]).abs() < 8)
        for b in range(2):
            weights = attn[b * k * k + win]
            assert torch.all(weights[~near] == 0.0)
            assert torch.all(weights[near] > 0.0)
        n_blocked += int((~near).sum())
    # Window (0,0) never wraps; (0,1) and (1,0) hold 2 regions of 32 tokens; (1,1) 4 of 16.
    assert n_blocked == 2 * (2 * 32 * 32) + (64 * 64 - 4 * 16 * 16)
    # Without shift every weight inside a window is positive; output matches a dense reference.
    v = torch.randn(2, h * w, 8)
    out = window_attention(q, kk, v, 1, False, h, w)
    ref = torch.softmax(q @ kk.transpose(1, 2) / 8**0.5, -1) @ v
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _official_windows(x: torch.Tensor, h: int, w: int, ws_h: int, ws_w: int, shift_h: int,
                      shift_w: int) -> torch.Tensor:
    """Official Swin order of operations: [B, h*w, C] -> pad, roll, partition -> [B, nW*N, C]."""
    b, _, c = x.shape
    hp, wp = -(-h // ws_h) * ws_h, -(-w // ws_w) * ws_w
    y = F.pad(x.view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
    y = torch.roll(y, (-shift_h, -shift_w), (1, 2))
    y = y.view(b, hp // ws_h, ws_h, wp // ws_w, ws_w, c).permute(0, 1, 3, 2, 4, 5)
    return y.reshape(b, -1, c)


def _official_back(windows: torch.Tensor, h: int, w: int, ws_h: int, ws_w: int, shift_h: int,
                   shift_w: int) -> torch.Tensor:
    """Official window_reverse, roll back and crop: [B, nW*N, C] -> [B, h*w, C]."""
    b, _, c = windows.shape
    hp, wp = -(-h // ws_h) * ws_h, -(-w // ws_w) * ws_w
    y = windows.view(b, hp // ws_h, wp // ws_w, ws_h, ws_w, c).permute(0, 1, 3, 2, 4, 5)
    y = torch.roll(y.reshape(b, hp, wp, c), (shift_h, shift_w), (1, 2))
    return y[:, :h, :w].reshape(b, h * w, c)


@pytest.mark.parametrize("h, w, ws_h, ws_w, shift", [
    (32, 64, 7, 7, 3),   # padded to 35x70 (the demo size's 1/4 map, Swin window 7)
    (32, 64, 7, 7, 0),
    (64, 160, 7, 7, 3),  # MS2 256x640 at 1/4
    (16, 32, 8, 16, 4),  # DMCF split windows: not square, no padding
    (9, 10, 4, 4, 2),
])
def test_window_token_index_matches_official_pad_roll_partition(h, w, ws_h, ws_w, shift):
    torch.manual_seed(0)
    x = torch.randn(2, h * w, 5)
    shift_w = shift * ws_w // ws_h
    gather, scatter = window_token_index(h, w, ws_h, ws_w, shift, shift_w)
    padded = torch.cat([x, x.new_zeros(2, 1, 5)], dim=1)  # index h*w: the zero padding token
    windows = padded.index_select(1, gather)
    assert torch.equal(windows, _official_windows(x, h, w, ws_h, ws_w, shift, shift_w))
    assert torch.equal(windows.index_select(1, scatter), x)
    changed = windows * 2.0 + 1.0  # any per-window result goes back where the official one does
    assert torch.equal(changed.index_select(1, scatter),
                       _official_back(changed, h, w, ws_h, ws_w, shift, shift_w))


def test_window_attention_equals_gmflow_roll_split_merge():
    """GMFlow's single_head_split_window_attention order of operations, shifted windows."""
    from training.model.attention import merge_splits, roll_2d, split_feature

    torch.manual_seed(0)
    b, h, w, c, k = 2, 8, 12, 4, 2
    q, kk, v = (torch.randn(b, h * w, c) for _ in range(3))
    mask = shift_mask_for(h, w, k)
    sh, sw = h // k // 2, w // k // 2

    def windows(t):
        t = roll_2d(t.view(b, h, w, c), -sh, -sw)
        return split_feature(t, k).reshape(b * k * k, -1, c)

    scores = windows(q) @ windows(kk).transpose(1, 2) / c**0.5
    scores = (scores.view(b, k * k, *scores.shape[1:]) + mask[None]).flatten(0, 1)
    out = torch.softmax(scores, -1) @ windows(v)
    out = roll_2d(merge_splits(out.view(b * k * k, h // k, w // k, c), k), sh, sw)
    torch.testing.assert_close(window_attention(q, kk, v, k, True, h, w, mask),
                               out.reshape(b, h * w, c), rtol=1e-6, atol=1e-6)


def test_dmcf_builds_window_index_once_per_scale_and_shift(monkeypatch):
    """DMCF hands one split_window_index per (scale, shift) to all its attention layers; the
    numbers equal those of layers that build their own."""
    import training.model.dmcf as dmcf_module

    torch.manual_seed(0)
    model = _tiny(shared_dmcf=False).eval()  # two blocks per scale, two layer copies each
    thermal, rgb = torch.randn(1, 1, 64, 128), torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        shared = model(thermal, rgb)
    calls = []

    def counted(h, w, k, shift, device):
        calls.append((h, w, k, shift))
        return split_window_index(h, w, k, shift, device)

    import training.model.attention as attention_module

    layer_calls = []  # a layer that ignored the shared index would build its own here

    def built_by_a_layer(*args):
        layer_calls.append(args)
        return split_window_index(*args)

    monkeypatch.setattr(dmcf_module, "split_window_index", counted)
    monkeypatch.setattr(attention_module, "split_window_index", built_by_a_layer)
    with torch.no_grad():
        model(thermal, rgb)
    scales = [m for m in model.modules() if isinstance(m, dmcf_module.DMCF) and len(m.blocks)]
    expected = sum(2 if m.num_splits > 1 else 1 for m in scales)
    assert len(calls) == len(set(calls)) == expected > 0
    assert layer_calls == []
    monkeypatch.setattr(dmcf_module, "split_window_index", lambda *a: None)  # layers build it
    with torch.no_grad():
        alone = model(thermal, rgb)
    assert len(layer_calls) > expected  # every attention layer built its own this time
    for key in shared:
        torch.testing.assert_close(alone[key], shared[key], rtol=0, atol=0)


def test_swin_block_equals_official_formulation():
    """The gathered windows of SwinBlock give the official block's numbers and gradients."""
    from training.model.swin import SwinBlock

    torch.manual_seed(0)
    h, w, ws, dim = 9, 20, 4, 8  # padded to 12x20, shifted by 2
    block = SwinBlock(dim, 2, ws, shift=True, mlp_ratio=2.0, drop_path=0.0)
    torch.nn.init.normal_(block.attn.relative_position_bias_table)
    mask = generate_shift_window_attn_mask(12, 20, ws, ws, 2, 2)
    x = torch.randn(2, h * w, dim, requires_grad=True)
    ours = block(x, h, w, mask)
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), x)

    y = _official_windows(block.norm1(x), h, w, ws, ws, 2, 2).view(-1, ws * ws, dim)
    y = _official_back(block.attn(y, mask).view(2, -1, dim), h, w, ws, ws, 2, 2)
    official = x + y
    official = official + block.mlp(block.norm2(official))
    (grad_official,) = torch.autograd.grad(official.square().sum(), x)
    torch.testing.assert_close(ours, official, rtol=0, atol=0)
    torch.testing.assert_close(grad_ours, grad_official, rtol=1e-6, atol=1e-6)


def _official_state_dict(encoder) -> dict[str, torch.Tensor]:
    """What an official Swin ImageNet checkpoint holds: our names minus the per-stage norms
    and the thermal embedding, plus index buffers, a final `norm` and a classifier head."""
    sd = {k: v.clone() for k, v in encoder.state_dict().items()
          if not k.startswith(("norm", "patch_embed_thermal"))}
    sd["norm.weight"], sd["norm.bias"] = encoder.norm3.weight.clone(), encoder.norm3.bias.clone()
    for name, module in encoder.named_modules():
        if name.endswith(".attn"):
            sd[f"{name}.relative_position_index"] = module.relative_position_index.clone()
    sd["layers.1.blocks.1.attn_mask"] = torch.zeros(4, 49, 49)
    sd["head.weight"], sd["head.bias"] = torch.randn(1000, 128), torch.randn(1000)
    return sd


def test_load_pretrained_encoder_round_trip(tmp_path):
    source = _tiny().encoder  # window 7
    official = _official_state_dict(source)
    torch.save({"model": official}, tmp_path / "swin.pth")
    target = _tiny(window_size=8)
    report = load_pretrained_encoder(target, tmp_path / "swin.pth")
    enc = target.encoder
    stage_keys = [k for k in enc.state_dict() if k.startswith("layers.")]
    assert set(stage_keys) <= set(report["encoder"]["loaded"])
    for k in stage_keys:
        if k.endswith("relative_position_bias_table"):
            heads = official[k].shape[1]
            assert official[k].shape == (13 * 13, heads) and enc.state_dict()[k].shape == (15 * 15, heads)
        else:
            assert torch.equal(enc.state_dict()[k], official[k]), k
    torch.testing.assert_close(enc.patch_embed_thermal.proj.weight,
                               official["patch_embed.proj.weight"].mean(1, keepdim=True))
    assert torch.equal(enc.norm3.weight, official["norm.weight"])
    assert set(report["encoder"]["missing"]) == {f"norm{i}.{p}" for i in range(3)
                                                 for p in ("weight", "bias")}
    # Truncated checkpoint: a stage weight missing -> error naming it.
    truncated = dict(official)
    del truncated["layers.2.blocks.1.mlp.fc1.weight"]
    fresh = _tiny()
    with pytest.raises(RuntimeError, match=r"layers\.2\.blocks\.1\.mlp\.fc1\.weight"):
        load_pretrained_encoder(fresh, truncated)
    assert torch.equal(fresh.encoder.layers[0].blocks[0].attn.qkv.weight,
                       _tiny().encoder.layers[0].blocks[0].attn.qkv.weight)  # left untouched
    # Wrong variant: an error naming both sizes.
    with pytest.raises(ValueError, match=r"checkpoint is tiny \(C=16, depths \(1, 1, 2, 1\)\).*"
                                         r"swin_t \(C=96, depths \(2, 2, 6, 2\)\): wrong variant"):
        load_pretrained_encoder(build_model(ModelConfig(variant="swin_t")), official)


def test_swin_s_checkpoint_refused_by_swin_t():
    """Same widths, more stage-3 blocks: shapes match key by key, so only the block count tells."""
    swin_s = build_model(ModelConfig(variant="swin_s", height=64, width=64)).encoder
    official = _official_state_dict(swin_s)
    target = build_model(ModelConfig(variant="swin_t", height=64, width=64))
    before = target.encoder.layers[0].blocks[0].attn.qkv.weight.clone()
    with pytest.raises(ValueError, match=r"checkpoint is swin_s \(C=96, depths \(2, 2, 18, 2\)\) "
                                         r"but the model's encoder is swin_t"):
        load_pretrained_encoder(target, official)
    assert torch.equal(target.encoder.layers[0].blocks[0].attn.qkv.weight, before)


def test_timm_layout_loads():
    source = _tiny().encoder
    official = _official_state_dict(source)
    timm = {}
    for k, v in official.items():
        if k.startswith("layers.") and ".downsample." in k:
            i = int(k.split(".")[1])
            k = k.replace(f"layers.{i}.downsample", f"layers.{i + 1}.downsample")
        timm[k.replace("head.", "head.fc.")] = v
    assert "layers.3.downsample.reduction.weight" in timm
    filtered = checkpoint_filter_fn(timm, source)
    for i in range(3):
        key = f"layers.{i}.downsample.reduction.weight"
        assert torch.equal(filtered[key], official[key])
    target = _tiny(shared_encoder=False)
    report = load_pretrained_encoder(target, {"model": timm})
    assert set(report) == {"encoder_thermal", "encoder_rgb"}
    assert torch.equal(target.encoder_rgb.layers[0].downsample.norm.weight,
                       official["layers.0.downsample.norm.weight"])
    assert "patch_embed.proj.weight" in report["encoder_thermal"]["unexpected"]


def test_resize_bias_table():
    table = torch.full((13 * 13, 3), 0.25)
    assert torch.equal(resize_bias_table(table, 7), table)
    torch.testing.assert_close(resize_bias_table(table, 12), torch.full((23 * 23, 3), 0.25))


def test_invalid_size_names_nearest_valid():
    model = _tiny()
    with pytest.raises(ValueError, match=r"250x640.*height 250.*multiple of 64.*256x640"):
        model(*_inputs(1, 250, 640))
    with pytest.raises(ValueError, match=r"nearest valid size: 192x384"):
        build_model(ModelConfig(variant="tiny", height=200, width=400))
    with pytest.raises(ValueError, match="thermal must be"):
        model(torch.zeros(1, 3, 128, 256), torch.zeros(1, 3, 128, 256))
    with pytest.raises(ValueError, match="share batch size"):
        model(torch.zeros(1, 1, 128, 256), torch.zeros(1, 3, 128, 320))
    # Baselines have no window splits: multiples of 32 suffice.
    with torch.no_grad():
        out = _tiny(modality="rgb_only", height=96, width=160)(None, torch.zeros(1, 3, 96, 160))
    assert out["depth_rgb"].shape == (1, 1, 96, 160)


def test_deterministic_with_seed():
    thermal, rgb = _inputs(1, 64, 128)
    a, b = _tiny(), _tiny()
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na
    with torch.no_grad():
        oa, ob = a(thermal, rgb), b(thermal, rgb)
    assert torch.equal(oa["depth_thermal"], ob["depth_thermal"])
    assert torch.equal(oa["depth_rgb"], ob["depth_rgb"])


def test_checkpointing_gives_same_gradients():
    thermal, rgb = _inputs(1, 64, 128)
    grads = []
    for ckpt in (False, True):
        model = _tiny(use_checkpointing=ckpt).train()
        model(thermal, rgb)["depth_rgb"].mean().backward()
        grads.append(model.encoder.layers[2].blocks[1].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    assert grads[0].abs().sum() > 0


class _ShiftedWindowAttention(torch.nn.Module):
    def forward(self, q, k, v):
        return window_attention(q, k, v, 2, True, 8, 12, shift_mask_for(8, 12, 2))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # shape ints frozen: intended
def test_shifted_window_attention_exports_to_onnx_opset17(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 8 * 12, 4) for _ in range(3))
    path = tmp_path / "attn.onnx"
    with pytest.warns(DeprecationWarning):  # the TorchScript exporter: fast, fixed shapes
        torch.onnx.export(_ShiftedWindowAttention(), (q, k, v), str(path), opset_version=17,
                          input_names=["q", "k", "v"], dynamo=False)
    assert onnx.load(str(path)).opset_import[0].version == 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})
    expected = _ShiftedWindowAttention()(q, k, v)
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-5, atol=1e-5)
