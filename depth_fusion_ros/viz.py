"""Visualisation helpers (numpy/OpenCV only): depth colour maps, error maps, contact sheets, PLY.

Used by training (validation PNGs), offline evaluation, and the demo. Colours are on a *fixed*
metric range (not per-image min-max) so two images, or two models, are comparable by eye; every
depth image carries a scale bar in metres. All images here are RGB uint8 `[H, W, 3]`;
`save_png` converts to OpenCV's BGR order on write.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from depth_fusion_ros.metrics import resize_prediction
from depth_fusion_ros.preprocess import NORM_MEAN, NORM_STD

DEPTH_COLORMAP = cv2.COLORMAP_TURBO
ERROR_COLORMAP = cv2.COLORMAP_INFERNO
SCALE_BAR_WIDTH_PX = 64
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _apply_colormap(unit: np.ndarray, valid: np.ndarray, colormap: int) -> np.ndarray:
    """[H, W] values in [0, 1] -> [H, W, 3] RGB uint8; invalid pixels black."""
    grey = np.clip(np.nan_to_num(unit) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(grey, colormap), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def _scale_bar(height: int, low: float, high: float, colormap: int, unit: str,
               ticks: int = 5) -> np.ndarray:
    """A vertical colour bar [height, SCALE_BAR_WIDTH_PX, 3] RGB, `high` at the top, labelled."""
    bar = np.zeros((height, SCALE_BAR_WIDTH_PX, 3), np.uint8)
    ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None]  # [H, 1], top = high
    strip = _apply_colormap(np.repeat(ramp, 14, axis=1), np.ones((height, 14), bool), colormap)
    bar[:, 2:16] = strip
    font_scale = max(0.3, min(0.45, height / 600.0))
    for i in range(ticks):
        frac = i / (ticks - 1)
        y = int(round((1.0 - frac) * (height - 1)))
        value = low + frac * (high - low)
        label = f"{value:g}" if value == int(value) else f"{value:.2f}"
        if i == ticks - 1:
            label += f" {unit}"
        cv2.line(bar, (16, y), (20, y), (255, 255, 255), 1)
        text_y = min(max(y + 4, 10), height - 2)
        cv2.putText(bar, label, (22, text_y), _FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def _dilate(image: np.ndarray, valid: np.ndarray, radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow sparse pixels (projected LiDAR) so they are visible; keeps each point's own colour."""
    if radius_px <= 0:
        return image, valid
    kernel = np.ones((2 * radius_px + 1, 2 * radius_px + 1), np.uint8)
    grown = cv2.dilate(image, kernel)
    grown_valid = cv2.dilate(valid.astype(np.uint8), kernel).astype(bool)
    return np.where(valid[..., None], image, grown), grown_valid


def colorize_depth(depth_m: np.ndarray, max_depth_m: float = 80.0, *, min_depth_m: float = 0.0,
                   scale_bar: bool = True, dilate_px: int = 0) -> np.ndarray:
    """Depth in metres on a fixed colour scale, with a metres scale bar on the right.

    Args:
        depth_m: [H, W] depth in metres; 0, negative and NaN pixels are drawn black.
        max_depth_m, min_depth_m: the fixed colour range (near = blue end of turbo is `min`).
        scale_bar: append a [H, 64] bar labelled in metres.
        dilate_px: grow valid pixels by this radius (for sparse GT).
    Returns:
        [H, W (+64), 3] uint8 RGB.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"colorize_depth needs a [H, W] depth map, got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    span = max(max_depth_m - min_depth_m, 1e-6)
    image = _apply_colormap((depth - min_depth_m) / span, valid, DEPTH_COLORMAP)
    image, _ = _dilate(image, valid, dilate_px)
    if not scale_bar:
        return image
    bar = _scale_bar(depth.shape[0], min_depth_m, max_depth_m, DEPTH_COLORMAP, "m")
    return np.concatenate([image, bar], axis=1)


CONFIDENCE_COLORMAP = cv2.COLORMAP_VIRIDIS


def colorize_confidence(confidence: np.ndarray, *, scale_bar: bool = True) -> np.ndarray:
    """Confidence in [0, 1] (exp(-sigma), 1 = sure) on a fixed scale; NaN drawn black.

    Returns:
        [H, W (+64), 3] uint8 RGB.
    """
    conf = np.asarray(confidence, dtype=np.float32)
    valid = np.isfinite(conf)
    image = _apply_colormap(conf, valid, CONFIDENCE_COLORMAP)
    if not scale_bar:
        return image
    return np.concatenate([image, _scale_bar(conf.shape[0], 0.0, 1.0, CONFIDENCE_COLORMAP, "")],
                          axis=1)


def colorize_error(pred_m: np.ndarray, gt_m: np.ndarray, *, max_abs_rel: float = 0.5,
                   scale_bar: bool = True, dilate_px: int = 0) -> np.ndarray:
    """Per-pixel absolute relative error |pred - gt| / gt where gt is valid, black elsewhere.

    Args:
        pred_m: [H, W] prediction (resized bilinearly to the GT size if different).
        gt_m: [Hg, Wg] ground truth in metres (0 = none).
        max_abs_rel: the error mapped to the top of the colour scale.
    Returns:
        [Hg, Wg (+64), 3] uint8 RGB.
    """
    gt = np.asarray(gt_m, dtype=np.float32)
    pred = np.asarray(pred_m, dtype=np.float32)
    pred = resize_prediction(pred, gt.shape)  # the evaluation's own bilinear resize
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    err = np.zeros_like(gt)
    err[valid] = np.abs(pred[valid] - gt[valid]) / gt[valid]
    image = _apply_colormap(err / max_abs_rel, valid, ERROR_COLORMAP)
    image, _ = _dilate(image, valid, dilate_px)
    if not scale_bar:
        return image
    bar = _scale_bar(gt.shape[0], 0.0, max_abs_rel, ERROR_COLORMAP, "rel")
    return np.concatenate([image, bar], axis=1)


def input_to_rgb(normalised: np.ndarray) -> np.ndarray:
    """Undo the network normalisation (mean 0.45, std 0.225) of a [1|3, H, W] input -> RGB uint8."""
    array = np.asarray(normalised, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"input_to_rgb needs [1, H, W] or [3, H, W], got {array.shape}")
    unit = np.clip(array * NORM_STD + NORM_MEAN, 0.0, 1.0)
    image = (unit.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)  # [H, W, C]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _label(image: np.ndarray, title: str) -> np.ndarray:
    """Put a title strip above an image."""
    strip = np.zeros((18, image.shape[1], 3), np.uint8)
    cv2.putText(strip, title, (4, 13), _FONT, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, image], axis=0)


def contact_sheet(rows: list[list[tuple[str, np.ndarray]]], tile_height: int = 160) -> np.ndarray:
    """Lay titled images out in a grid (one list per row), each resized to `tile_height`.

    Args:
        rows: rows of (title, [H, W, 3] uint8 RGB or [H, W] uint8) tiles; rows may differ in length.
        tile_height: the height every tile is scaled to (aspect kept).
    Returns:
        [R * (tile_height + 18), max row width, 3] uint8 RGB, black padding.
    """
    if not rows or not any(rows):
        raise ValueError("contact_sheet needs at least one image")
    rendered = []
    for row in rows:
        tiles = []
        for title, image in row:
            image = np.asarray(image)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            width = max(1, int(round(image.shape[1] * tile_height / image.shape[0])))
            resized = cv2.resize(image, (width, tile_height), interpolation=cv2.INTER_AREA)
            tiles.append(_label(resized.astype(np.uint8), title))
        rendered.append(np.concatenate(tiles, axis=1) if tiles else None)
    width = max(r.shape[1] for r in rendered if r is not None)
    height = tile_height + 18
    sheet = np.zeros((height * len(rendered), width, 3), np.uint8)
    for i, row_image in enumerate(rendered):
        if row_image is not None:
            sheet[i * height:(i + 1) * height, :row_image.shape[1]] = row_image
    return sheet


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (creating parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(rgb)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write PNG {path}: check the folder is writable")
    return path


def write_ply(path: str | Path, xyz: np.ndarray, *, intensity: np.ndarray | None = None,
              rgb: np.ndarray | None = None, binary: bool = True) -> int:
    """Write a point cloud as PLY (xyz + optional intensity or rgb), dropping non-finite points.

    Args:
        xyz: [N, 3] or organised [H, W, 3] float metres (optical frame).
        intensity: [N] / [H, W] float per point (e.g. thermal), or None.
        rgb: [N, 3] / [H, W, 3] uint8 colours, or None. At most one of intensity / rgb.
        binary: binary little-endian (compact) or ASCII (diffable).
    Returns:
        the number of vertices written.
    """
    if intensity is not None and rgb is not None:
        raise ValueError("write_ply takes intensity or rgb, not both")
    points = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)  # [N, 3]
    keep = np.isfinite(points).all(axis=1)
    fields = [("x", "f4", "float"), ("y", "f4", "float"), ("z", "f4", "float")]
    columns = [points[:, 0], points[:, 1], points[:, 2]]
    if intensity is not None:
        values = np.asarray(intensity, dtype=np.float32).reshape(-1)  # [N]
        if values.shape[0] != points.shape[0]:
            raise ValueError(f"intensity has {values.shape[0]} values for {points.shape[0]} points")
        fields.append(("intensity", "f4", "float"))
        columns.append(values)
    if rgb is not None:
        colours = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)  # [N, 3]
        if colours.shape[0] != points.shape[0]:
            raise ValueError(f"rgb has {colours.shape[0]} colours for {points.shape[0]} points")
        for i, name in enumerate(("red", "green", "blue")):
            fields.append((name, "u1", "uchar"))
            columns.append(colours[:, i])
    table = np.empty(int(keep.sum()), dtype=[(name, "<" + code) for name, code, _ in fields])
    for (name, _, _), column in zip(fields, columns, strict=True):
        table[name] = column[keep]
    fmt = "binary_little_endian" if binary else "ascii"
    header = ["ply", f"format {fmt} 1.0", "comment depth_fusion_ros", f"element vertex {len(table)}"]
    header += [f"property {ply_type} {name}" for name, _, ply_type in fields]
    header.append("end_header")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            handle.write(table.tobytes())
        else:
            rows = [" ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in record)
                    for record in table.tolist()]
            handle.write(("\n".join(rows) + ("\n" if rows else "")).encode("ascii"))
    return len(table)
