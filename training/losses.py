"""Scale-invariant log (SILog) loss, per view, summed over the views (DMCF-SIDE's multi-objective).

SILog in the NeWCRFs convention (Yuan et al., CVPR 2022, `silog_loss` in newcrfs/networks):
    d = log(pred) - log(gt) over valid GT pixels (0 < gt <= max_depth) of the whole batch,
    loss = alpha * sqrt(mean(d^2) - lambda * mean(d)^2), lambda = 0.85, alpha = 10.
DMCF-SIDE (Kwon & Kim 2024) applies it to both the thermal-view and RGB-view outputs and sums them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

VIEWS = ("thermal", "rgb")
# Floors that keep the loss finite: log of a collapsed sigmoid output, and sqrt of a variance
# that rounding made slightly negative (its gradient at exactly 0 would be infinite).
_MIN_PRED_M = 1e-3
_MIN_VARIANCE = 1e-8


@dataclass
class LossConfig:
    """SILog hyper-parameters (NeWCRFs defaults), the weight of the uncertainty NLL (used
    only by models with `model.uncertainty_head`) and each view's weight in the sum (1, 1 is
    DMCF-SIDE's plain sum; the fusion ablation's `fused_thermal_weighted` arm lowers the RGB
    view's share of the shared weights' gradient)."""

    silog_lambda: float = 0.85
    alpha: float = 10.0
    uncertainty_weight: float = 1.0
    thermal_weight: float = 1.0
    rgb_weight: float = 1.0
    # modality_dropout_mode duplicate: null = one SILog over the whole samples and the blanked
    # copies together; a number w = SILog of the whole samples (the full-input objective as
    # without dropout) + w * SILog of the copies (single-camera mode as an auxiliary objective).
    blanked_weight: float | None = None

    def __post_init__(self) -> None:
        if self.blanked_weight is not None and not 0 <= self.blanked_weight < float("inf"):
            raise ValueError(f"loss.blanked_weight={self.blanked_weight}: must be null or a "
                             "finite number >= 0")
        for view in VIEWS:
            weight = getattr(self, f"{view}_weight")
            if not weight >= 0 or weight == float("inf"):
                raise ValueError(f"loss.{view}_weight={weight}: must be a finite number >= 0")
        if self.thermal_weight + self.rgb_weight == 0:
            raise ValueError("loss.thermal_weight and loss.rgb_weight are both 0: nothing to "
                             "train")


def log_laplace_nll(pred_m: torch.Tensor, sigma: torch.Tensor, gt_m: torch.Tensor,
                    valid: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of a Laplacian over log-depth: |log d - log d*| / sigma + log sigma.

    The depth is detached: the uncertainty head learns how wrong the depth is without pulling
    the depth towards easy pixels (the NLL's known pitfall; Seitzer et al., ICLR 2022). A
    Laplacian on log-depth makes sigma the expected relative error |log(d/d*)|, the quantity
    abs_rel and SILog measure, and its L1 form is robust to the sparse GT's outliers.

    Args:
        pred_m, sigma, gt_m: [B, 1, H, W]; valid: [B, 1, H, W] bool (at least one True).
    """
    residual = (torch.log(pred_m.detach().float()[valid].clamp_min(_MIN_PRED_M))
                - torch.log(gt_m.float()[valid])).abs()
    s = sigma.float()[valid]
    return (residual / s + torch.log(s)).mean()


def silog_loss(pred_m: torch.Tensor, gt_m: torch.Tensor, *, max_depth_m: float,
               silog_lambda: float = 0.85, alpha: float = 10.0,
               sample_mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """SILog over the valid GT pixels of a batch.

    Args:
        pred_m: [B, 1, H, W] predicted depth in metres (> 0).
        gt_m: [B, 1, H, W] ground truth in metres; valid where 0 < gt <= max_depth_m.
        sample_mask: [B] bool, samples to include (e.g. whose input is present), or None for all.
    Returns:
        scalar loss (float32), or None when no pixel is valid (the caller skips the view).
    """
    if pred_m.shape != gt_m.shape:
        raise ValueError(f"silog_loss: prediction {tuple(pred_m.shape)} and ground truth "
                         f"{tuple(gt_m.shape)} differ; resize the GT to the network size")
    valid = (gt_m > 0) & (gt_m <= max_depth_m)  # [B, 1, H, W]
    if sample_mask is not None:
        valid = valid & sample_mask.to(valid.device).view(-1, 1, 1, 1).bool()
    if not bool(valid.any()):
        return None
    pred = pred_m.float()[valid].clamp_min(_MIN_PRED_M)
    diff = torch.log(pred) - torch.log(gt_m.float()[valid])  # [N]
    variance = (diff**2).mean() - silog_lambda * diff.mean() ** 2
    return alpha * torch.sqrt(variance.clamp_min(_MIN_VARIANCE))


def _sample_groups(batch: dict, mask: torch.Tensor | None, size: int,
                   cfg: LossConfig) -> list[tuple[torch.Tensor | None, float, str]]:
    """(sample mask, weight, part name) of each SILog term of a view: one term over every
    sample, or with `cfg.blanked_weight` set and blanked copies in the batch, the whole samples
    and (weighted) the copies apart."""
    blanked = batch.get("blanked")
    if cfg.blanked_weight is None or blanked is None or not bool(torch.as_tensor(blanked).any()):
        return [(mask, 1.0, "")]
    blanked = torch.as_tensor(blanked).bool()
    present = torch.ones(size, dtype=torch.bool) if mask is None else mask.bool().cpu()
    return [(present & ~blanked, 1.0, "whole"), (present & blanked, cfg.blanked_weight, "blanked")]


def multi_view_silog(outputs: dict[str, torch.Tensor], batch: dict, *, max_depth_m: float,
                     cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum (`cfg.<view>_weight`) of SILog over the views the model produced, that have
    GT, and whose input is present.

    Args:
        outputs: {"depth_thermal": [B,1,H,W], "depth_rgb": [B,1,H,W]} (either may be absent),
            and "uncertainty_<view>" [B,1,H,W] sigma for models with an uncertainty head (its
            Laplacian NLL, times `cfg.uncertainty_weight`, is added to that view's loss).
        batch: {"gt_thermal", "gt_rgb": [B,1,H,W], "has_thermal", "has_rgb": [B] bool}.
    Returns:
        (total loss scalar, {"loss_thermal": float, "loss_rgb": float, "nll_<view>": ...} for
        the views used).
        The total is a zero that still depends on the outputs when no view had valid GT, so a
        backward pass is always possible.
    """
    total = None
    parts: dict[str, float] = {}
    for view in VIEWS:
        pred = outputs.get(f"depth_{view}")
        gt = batch.get(f"gt_{view}")
        if pred is None or gt is None:
            continue
        has_input = batch.get(f"has_{view}")
        mask = None if has_input is None else torch.as_tensor(has_input)
        gt = gt.to(pred.device)
        loss = None
        for group_mask, weight, name in _sample_groups(batch, mask, pred.shape[0], cfg):
            term = silog_loss(pred, gt, max_depth_m=max_depth_m, silog_lambda=cfg.silog_lambda,
                              alpha=cfg.alpha, sample_mask=group_mask)
            if term is None:
                continue
            if name:
                parts[f"{name}_{view}"] = float(term.detach())
            loss = weight * term if loss is None else loss + weight * term
        if loss is None:
            continue
        parts[f"loss_{view}"] = float(loss.detach())
        sigma = outputs.get(f"uncertainty_{view}")
        if sigma is not None and cfg.uncertainty_weight > 0:
            valid = (gt > 0) & (gt <= max_depth_m)
            if mask is not None:
                valid = valid & mask.to(valid.device).view(-1, 1, 1, 1).bool()
            nll = log_laplace_nll(pred, sigma, gt, valid)
            parts[f"nll_{view}"] = float(nll.detach())
            loss = loss + cfg.uncertainty_weight * nll
        loss = getattr(cfg, f"{view}_weight") * loss
        total = loss if total is None else total + loss
    if total is None:
        total = sum(out.sum() * 0.0 for out in outputs.values())
    return total, parts
