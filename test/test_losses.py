"""SILog loss (training/losses.py) against hand-computed values, masks and edge cases."""
from __future__ import annotations

import math

import pytest
import torch

from training.losses import LossConfig, multi_view_silog, silog_loss


def _map(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)  # [1, 1, 1, N]


def test_silog_matches_hand_computation():
    # Valid pixels: d = log(1/1) = 0 and log(e/1) = 1 -> mean(d^2) = 0.5, mean(d) = 0.5,
    # 10 * sqrt(0.5 - 0.85 * 0.25) = 10 * sqrt(0.2875) = 5.36190...
    # gt 0 (no return) and gt 90 > max depth are ignored whatever the prediction.
    pred = _map([1.0, math.e, 5.0, 3.0])
    gt = _map([1.0, 1.0, 0.0, 90.0])
    loss = silog_loss(pred, gt, max_depth_m=80.0)
    assert loss.item() == pytest.approx(10.0 * math.sqrt(0.2875), rel=1e-6)
    assert loss.item() == pytest.approx(5.361903, rel=1e-6)


def test_silog_is_scale_invariant_up_to_lambda():
    # A global scale s gives d = log s everywhere: loss = 10 * |log s| * sqrt(1 - 0.85).
    gt = _map([2.0, 5.0, 10.0, 40.0])
    loss = silog_loss(gt * 2.0, gt, max_depth_m=80.0)
    assert loss.item() == pytest.approx(10.0 * math.log(2.0) * math.sqrt(0.15), rel=1e-5)


def test_empty_mask_returns_none_and_perfect_prediction_has_finite_gradient():
    pred = _map([3.0, 4.0]).requires_grad_(True)
    assert silog_loss(pred, _map([0.0, 0.0]), max_depth_m=80.0) is None
    loss = silog_loss(pred, _map([3.0, 4.0]), max_depth_m=80.0)
    loss.backward()
    assert loss.item() == pytest.approx(10.0 * math.sqrt(1e-8), abs=1e-6)  # variance floor
    assert torch.isfinite(pred.grad).all()


def test_multi_view_sums_views_and_respects_has_flags():
    gt = torch.cat([_map([1.0, 1.0]), _map([2.0, 2.0])])  # [2, 1, 1, 2]
    pred_thermal = torch.cat([_map([1.0, math.e]), _map([20.0, 20.0])])
    pred_rgb = gt * 2.0
    batch = {"gt_thermal": gt, "gt_rgb": gt,
             "has_thermal": torch.tensor([True, False]), "has_rgb": torch.tensor([True, True])}
    total, parts = multi_view_silog({"depth_thermal": pred_thermal, "depth_rgb": pred_rgb}, batch,
                                    max_depth_m=80.0, cfg=LossConfig())
    # Thermal: only sample 0 counts (sample 1's input is absent) -> 5.3619; RGB: scale 2 everywhere.
    assert parts["loss_thermal"] == pytest.approx(5.361903, rel=1e-5)
    assert parts["loss_rgb"] == pytest.approx(10.0 * math.log(2.0) * math.sqrt(0.15), rel=1e-5)
    assert total.item() == pytest.approx(parts["loss_thermal"] + parts["loss_rgb"], rel=1e-6)

    weighted, weighted_parts = multi_view_silog(
        {"depth_thermal": pred_thermal, "depth_rgb": pred_rgb}, batch, max_depth_m=80.0,
        cfg=LossConfig(thermal_weight=2.0, rgb_weight=0.5))
    assert weighted_parts == pytest.approx(parts)  # the parts stay the unweighted SILog
    assert weighted.item() == pytest.approx(2.0 * parts["loss_thermal"] + 0.5 * parts["loss_rgb"],
                                            rel=1e-6)


def test_blanked_copies_get_their_own_weighted_silog_term():
    """loss.blanked_weight: the whole samples' SILog as without dropout, plus w times the SILog
    of the blanked copies; null keeps one SILog over all samples."""
    gt = torch.cat([_map([1.0, 2.0]), _map([4.0, 8.0]), _map([1.0, 2.0])])  # [3, 1, 1, 2]
    pred = torch.cat([_map([1.0, 2.5]), _map([4.0, 9.0]), _map([3.0, 1.0])])  # copy: far off
    batch = {"gt_rgb": gt, "has_rgb": torch.tensor([True, True, True]),
             "blanked": torch.tensor([False, False, True])}
    whole = silog_loss(pred[:2], gt[:2], max_depth_m=80.0).item()
    copy = silog_loss(pred[2:], gt[2:], max_depth_m=80.0).item()
    pooled = silog_loss(pred, gt, max_depth_m=80.0).item()
    total, parts = multi_view_silog({"depth_rgb": pred}, batch, max_depth_m=80.0,
                                    cfg=LossConfig(blanked_weight=0.25))
    assert total.item() == pytest.approx(whole + 0.25 * copy, rel=1e-6)
    assert parts["whole_rgb"] == pytest.approx(whole) and parts["blanked_rgb"] == pytest.approx(copy)
    default, _ = multi_view_silog({"depth_rgb": pred}, batch, max_depth_m=80.0, cfg=LossConfig())
    assert default.item() == pytest.approx(pooled, rel=1e-6) and pooled != pytest.approx(whole)
    # A copy whose view is unsupervised (has_rgb False) is left out of both terms.
    batch["has_rgb"] = torch.tensor([True, True, False])
    total, parts = multi_view_silog({"depth_rgb": pred}, batch, max_depth_m=80.0,
                                    cfg=LossConfig(blanked_weight=0.25))
    assert total.item() == pytest.approx(whole, rel=1e-6) and "blanked_rgb" not in parts
    with pytest.raises(ValueError, match="loss.blanked_weight=-1"):
        LossConfig(blanked_weight=-1.0)


@pytest.mark.parametrize("weights, match", [
    ({"rgb_weight": -0.5}, "loss.rgb_weight=-0.5"),
    ({"thermal_weight": float("nan")}, "loss.thermal_weight=nan"),
    ({"thermal_weight": float("inf")}, "loss.thermal_weight=inf"),
    ({"thermal_weight": 0.0, "rgb_weight": 0.0}, "both 0"),
])
def test_bad_view_weights_are_refused_by_name(weights, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**weights)


def test_multi_view_without_any_valid_gt_is_a_differentiable_zero():
    pred = _map([1.0, 2.0]).requires_grad_(True)
    batch = {"gt_rgb": _map([0.0, 0.0]), "has_rgb": torch.tensor([True])}
    total, parts = multi_view_silog({"depth_rgb": pred}, batch, max_depth_m=80.0, cfg=LossConfig())
    assert parts == {} and total.item() == 0.0
    total.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="resize the GT"):
        silog_loss(_map([1.0, 2.0]), _map([1.0, 2.0, 3.0]), max_depth_m=80.0)
