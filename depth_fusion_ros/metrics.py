"""Depth metrics of DESIGN.md section 6, shared by offline evaluation, the evaluator node and the demo.

Per image over valid ground-truth pixels (min_depth < gt < max_depth), then averaged over images
(`MetricAccumulator`). Median scaling follows the MS2 / Monodepth2 benchmark code:
pred *= median(gt) / median(pred) on the valid pixels, then the prediction is clipped to the range.
"""
from __future__ import annotations

import cv2
import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3")
EVAL_MIN_DEPTH_M = 1e-3
EVAL_MAX_DEPTH_M = 80.0


def resize_prediction(pred_m: np.ndarray, gt_shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a [H, W] prediction to the ground-truth size [Hg, Wg]."""
    if pred_m.shape == tuple(gt_shape):
        return pred_m
    return cv2.resize(pred_m.astype(np.float32), (gt_shape[1], gt_shape[0]),
                      interpolation=cv2.INTER_LINEAR)


def compute_depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray, *, median_scaling: bool = False,
                          min_depth_m: float = EVAL_MIN_DEPTH_M,
                          max_depth_m: float = EVAL_MAX_DEPTH_M) -> dict[str, float] | None:
    """The seven metrics for one image.

    Args:
        pred_m: [H, W] predicted depth in metres (resized to the GT size if it differs).
        gt_m: [Hg, Wg] ground truth in metres; 0, NaN or out-of-range pixels are ignored.
        median_scaling: scale the prediction by median(gt)/median(pred) first.
    Returns:
        dict of METRIC_NAMES (plus "scale" and "valid_px"), or None if no valid GT pixel.
    """
    pred_m = resize_prediction(np.asarray(pred_m, dtype=np.float32), gt_m.shape)
    gt = np.asarray(gt_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth_m) & (gt < max_depth_m) & np.isfinite(pred_m)
    if not valid.any():
        return None
    gt = gt[valid]
    pred = pred_m[valid].astype(np.float64)
    scale = 1.0
    if median_scaling:
        scale = float(np.median(gt) / max(np.median(pred), 1e-9))
        pred = pred * scale
    pred = np.clip(pred, min_depth_m, max_depth_m)
    ratio = np.maximum(pred / gt, gt / pred)
    out = {
        "abs_rel": float(np.mean(np.abs(pred - gt) / gt)),
        "sq_rel": float(np.mean((pred - gt) ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean((pred - gt) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2))),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25**2)),
        "d3": float(np.mean(ratio < 1.25**3)),
    }
    out["scale"] = scale
    out["valid_px"] = int(valid.sum())
    return out


class MetricAccumulator:
    """Running mean of per-image metrics (images with no valid GT are counted but not averaged)."""

    def __init__(self) -> None:
        self._sums = dict.fromkeys(METRIC_NAMES, 0.0)
        self.count = 0
        self.skipped = 0

    def add(self, metrics: dict[str, float] | None) -> None:
        if metrics is None:
            self.skipped += 1
            return
        for name in METRIC_NAMES:
            self._sums[name] += metrics[name]
        self.count += 1

    def mean(self) -> dict[str, float]:
        """Mean of each metric over the images added so far (NaN before the first)."""
        if self.count == 0:
            return dict.fromkeys(METRIC_NAMES, float("nan"))
        return {name: total / self.count for name, total in self._sums.items()}


def format_metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table, one row per label (e.g. 'thermal / metric'), one column per metric."""
    header = "| | " + " | ".join(METRIC_NAMES) + " |"
    lines = [header, "|---" * (len(METRIC_NAMES) + 1) + "|"]
    for label, values in rows.items():
        cells = " | ".join(f"{values[name]:.4f}" for name in METRIC_NAMES)
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines)
