"""How good a predicted uncertainty is: sparsification curves, AUSE and AURG.

The standard evaluation of depth uncertainty (Ilg et al., ECCV 2018; Poggi et al., CVPR 2020):
sort an image's valid pixels from most to least uncertain, remove the most uncertain fraction f
and measure the error of the rest. Doing the same sorted by the true error gives the oracle (the
best any uncertainty could do); keeping a random subset gives a flat line at the full-image
error. AUSE, the area between the model's and the oracle's curve, is 0 for a perfect
uncertainty; AURG, the area between the random line and the model's curve, is > 0 when the
uncertainty is better than chance. Curves are computed per image and averaged over images, for
abs_rel and rmse, over the fractions 0, 0.02, ..., 0.98 (the area is the mean over them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_fusion_ros.metrics import (
    EVAL_MAX_DEPTH_M,
    EVAL_MIN_DEPTH_M,
    fill_invalid_prediction,
    resize_prediction,
)

FRACTIONS = np.round(np.arange(0.0, 1.0, 0.02), 2)  # removed fraction of the pixels
CURVE_METRICS = ("abs_rel", "rmse")


def _curve(errors_sq_or_abs: np.ndarray, order: np.ndarray, rmse: bool) -> np.ndarray:
    """Metric of the pixels left after removing the first f of `order`, for every f."""
    n = errors_sq_or_abs.size
    kept_first = errors_sq_or_abs[order[::-1]]  # least uncertain first
    sums = np.cumsum(kept_first)  # sums[k-1] = sum of the k most certain pixels
    keep = np.maximum(1, np.round((1.0 - FRACTIONS) * n).astype(np.int64))
    means = sums[keep - 1] / keep
    return np.sqrt(means) if rmse else means


def image_curves(pred_m: np.ndarray, sigma: np.ndarray, gt_m: np.ndarray, *,
                 min_depth_m: float = EVAL_MIN_DEPTH_M,
                 max_depth_m: float = EVAL_MAX_DEPTH_M) -> dict[str, np.ndarray] | None:
    """Sparsification and oracle curves of one image.

    Args:
        pred_m: [H, W] depth (m); sigma: [H, W] uncertainty (larger = less sure); both resized
            bilinearly to the GT size [Hg, Wg] like the metrics do.
        gt_m: [Hg, Wg] metres, 0/NaN/out of range = no GT.
    Returns:
        {"<metric>": model curve, "<metric>_oracle": oracle curve} over FRACTIONS, or None
        without valid GT.
    """
    gt = np.asarray(gt_m, np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth_m) & (gt < max_depth_m)
    if not valid.any():
        return None
    pred = resize_prediction(np.asarray(pred_m, np.float32), gt.shape)[valid].astype(np.float64)
    unc = resize_prediction(np.asarray(sigma, np.float32), gt.shape)[valid].astype(np.float64)
    pred = np.clip(fill_invalid_prediction(pred, max_depth_m), min_depth_m, max_depth_m)
    unc = np.nan_to_num(unc, nan=np.inf, posinf=np.inf, neginf=np.inf)  # unknown = least sure
    gt = gt[valid]
    per_pixel = {"abs_rel": np.abs(pred - gt) / gt, "rmse": (pred - gt) ** 2}
    by_unc = np.argsort(-unc, kind="stable")  # most uncertain first
    out = {}
    for name, err in per_pixel.items():
        rmse = name == "rmse"
        out[name] = _curve(err, by_unc, rmse)
        out[f"{name}_oracle"] = _curve(err, np.argsort(-err, kind="stable"), rmse)
    return out


@dataclass
class SparsificationAccumulator:
    """Mean curves over images, and AUSE / AURG from them."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    count: int = 0

    def add(self, curves: dict[str, np.ndarray] | None) -> None:
        if curves is None:
            return
        for key, curve in curves.items():
            self.sums[key] = self.sums.get(key, 0.0) + curve
        self.count += 1

    def curves(self) -> dict[str, list[float]]:
        """Mean curve per key over the images added (empty before the first)."""
        return {k: (v / self.count).tolist() for k, v in self.sums.items()} if self.count else {}

    def summary(self) -> dict[str, float]:
        """AUSE and AURG per metric (mean over the fractions), NaN before the first image."""
        out = {}
        for name in CURVE_METRICS:
            if not self.count:
                out[f"ause_{name}"] = out[f"aurg_{name}"] = float("nan")
                continue
            model = self.sums[name] / self.count
            oracle = self.sums[f"{name}_oracle"] / self.count
            out[f"ause_{name}"] = float(np.mean(model - oracle))
            out[f"aurg_{name}"] = float(np.mean(model[0] - model))  # random keeps the f=0 error
        return out


def plot_curves(curves: dict[str, dict[str, list[float]]], path, title: str) -> None:
    """abs_rel sparsification vs oracle per view ({view: curves}) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=120)
    for view, c in curves.items():
        if not c:
            continue
        line, = ax.plot(FRACTIONS, c["abs_rel"], label=f"{view}: by predicted uncertainty")
        ax.plot(FRACTIONS, c["abs_rel_oracle"], "--", color=line.get_color(),
                label=f"{view}: oracle (by true error)")
        ax.axhline(c["abs_rel"][0], color=line.get_color(), alpha=0.3, lw=0.8)
    ax.set_xlabel("fraction of pixels removed (most uncertain first)")
    ax.set_ylabel("abs_rel of the rest")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
