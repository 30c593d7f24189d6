"""Depth metrics of DESIGN.md section 6, shared by offline evaluation, the evaluator node and the demo.

The rules are those of the MS2 reference code (SupDepth4Thermal `compute_depth_errors`, which
follows Monodepth2's `compute_errors`), applied per image and then averaged over images
(`MetricAccumulator`):

1. Valid pixels are decided by the ground truth alone: min_depth < gt < max_depth (1e-3 and 80 m
   for MS2). Every valid GT pixel is scored.
2. An invalid prediction (NaN / inf, e.g. where the node masked its depth) is *not* skipped: it
   is read as "no depth", stored as 0 the way a depth map stores a missing value (-inf as 0,
   +inf as max_depth), and the reference's clamp below turns a 0 into min_depth. So a pixel the
   model or node left empty scores like a prediction of 1e-3 m, and `coverage` (the fraction of
   valid GT pixels with a finite, positive prediction) is reported beside the metrics.
3. Median scaling (optional): pred *= median(gt) / median(pred) over the valid pixels, with the
   *lower* middle value as the median for an even count (torch.median's convention). If
   median(pred) is 0 the scale is undefined; the prediction then stays unscaled (scale = 1.0)
   instead of turning into inf/NaN.
4. The prediction is clamped to [min_depth, max_depth], then the nine metrics are computed.
"""
from __future__ import annotations

import cv2
import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3", "abs_diff", "log10")
# Per-image values averaged beside the metrics (coverage) or reported per frame only.
MEAN_EXTRAS = ("coverage",)
EVAL_MIN_DEPTH_M = 1e-3
EVAL_MAX_DEPTH_M = 80.0


def resize_prediction(pred_m: np.ndarray, gt_shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a [H, W] prediction to the ground-truth size [Hg, Wg]."""
    if pred_m.shape == tuple(gt_shape):
        return pred_m
    return cv2.resize(pred_m.astype(np.float32), (gt_shape[1], gt_shape[0]),
                      interpolation=cv2.INTER_LINEAR)


def lower_median(values: np.ndarray) -> float:
    """Median of a 1-D array taking the lower of the two middle values for an even count
    (torch.median, used by the MS2 reference code; numpy would average the two)."""
    k = (values.size - 1) // 2
    return float(np.partition(values, k)[k])


def fill_invalid_prediction(pred: np.ndarray, max_depth_m: float) -> np.ndarray:
    """Rule 2 of the module docstring: NaN and -inf -> 0 (no depth), +inf -> max_depth_m."""
    return np.nan_to_num(pred, nan=0.0, posinf=max_depth_m, neginf=0.0)


def compute_depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray, *, median_scaling: bool = False,
                          min_depth_m: float = EVAL_MIN_DEPTH_M,
                          max_depth_m: float = EVAL_MAX_DEPTH_M) -> dict[str, float] | None:
    """The nine metrics of one image (rules in the module docstring).

    Args:
        pred_m: [H, W] predicted depth in metres (bilinearly resized to the GT size if it
            differs); NaN/inf pixels are scored as missing predictions, never skipped.
        gt_m: [Hg, Wg] ground truth in metres; 0, NaN or out-of-range pixels are ignored.
        median_scaling: scale the prediction by median(gt)/median(pred) first.
    Returns:
        dict of METRIC_NAMES plus "coverage", "scale" and "valid_px", or None if the image has
        no valid GT pixel.
    """
    pred_m = resize_prediction(np.asarray(pred_m, dtype=np.float32), gt_m.shape)
    gt = np.asarray(gt_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth_m) & (gt < max_depth_m)
    if not valid.any():
        return None
    gt = gt[valid]
    raw = pred_m[valid].astype(np.float64)
    with np.errstate(invalid="ignore"):
        coverage = float(np.mean(np.isfinite(raw) & (raw > 0)))
    pred = fill_invalid_prediction(raw, max_depth_m)
    scale = 1.0
    if median_scaling:
        pred_median = lower_median(pred)
        if pred_median > 0:
            scale = lower_median(gt) / pred_median
            pred = pred * scale
    pred = np.clip(pred, min_depth_m, max_depth_m)
    diff = pred - gt
    ratio = np.maximum(pred / gt, gt / pred)
    out = {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2))),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25**2)),
        "d3": float(np.mean(ratio < 1.25**3)),
        "abs_diff": float(np.mean(np.abs(diff))),
        "log10": float(np.mean(np.abs(np.log10(pred) - np.log10(gt)))),
    }
    out["coverage"] = coverage
    out["scale"] = float(scale)
    out["valid_px"] = int(valid.sum())
    return out


class MetricAccumulator:
    """Running mean of per-image metrics and coverage (images with no valid GT are counted as
    skipped, not averaged)."""

    KEYS = METRIC_NAMES + MEAN_EXTRAS

    def __init__(self) -> None:
        self._sums = dict.fromkeys(self.KEYS, 0.0)
        self.count = 0
        self.skipped = 0

    def add(self, metrics: dict[str, float] | None) -> None:
        if metrics is None:
            self.skipped += 1
            return
        for name in self.KEYS:
            self._sums[name] += metrics[name]
        self.count += 1

    def mean(self) -> dict[str, float]:
        """Mean of each metric (and coverage) over the images added so far (NaN before the first)."""
        if self.count == 0:
            return dict.fromkeys(self.KEYS, float("nan"))
        return {name: total / self.count for name, total in self._sums.items()}


def format_metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table, one row per label (e.g. 'thermal / metric'), one column per metric,
    plus prediction coverage when the rows carry it."""
    names = METRIC_NAMES + tuple(k for k in MEAN_EXTRAS
                                 if all(k in values for values in rows.values()) and rows)
    header = "| | " + " | ".join(names) + " |"
    lines = [header, "|---" * (len(names) + 1) + "|"]
    for label, values in rows.items():
        cells = " | ".join(f"{values[name]:.4f}" for name in names)
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines)
