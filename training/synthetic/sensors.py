"""RGB camera model on top of the ray-cast buffers (thermal: thermal.py, GT: lidar.py).

RGB: per-object albedo with procedural texture (road grain, lane marks, facade windows, sidewalk
tiles), Lambertian sun lighting, sky gradient and haze; night = dark exposure, headlights, lit
windows and strong sensor noise; rain = darker, hazier, rain streaks and blur.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .raycast import CameraRays, Hits
from .scene import ROAD, SIDEWALK, WALL_BIN_M, WALL_LEFT, WALL_RIGHT, Scene

KINDS = ("day", "night", "rain")
# Night realism (calibrated against MS2, see LIGHTING): windows whose hash is above this are lit.
LIT_WINDOW_ABOVE = 0.8
# Unit normals per normal code (see raycast.NORMAL_*).
_NORMALS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], np.float32)


@dataclass(frozen=True)
class Lighting:
    """Per-kind appearance parameters."""

    exposure: float
    ambient: float
    sun: float
    noise_sigma: float        # RGB noise, 0..1 units
    headlights: float
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    haze_m: float
    thermal_ground_counts: float  # road temperature as counts (sun-heated by day)
    rain: bool = False


# Night is calibrated against MS2: there the RGB-only depth error is ~1.4x worse at night than by
# day while thermal barely changes (night/day abs_rel: RGB 1.44, thermal 1.07, same network;
# Qin et al., arXiv 2411.03638, Table II; thermal 0.93 for NeWCRFs in Shin et al., CVPR 2023).
# With ambient 0.25 and 45 % lit windows the synthetic night RGB was nearly as informative as day
# (RGB-only baseline night/day 1.04), which left fusion nothing to add; ambient 0.08 and 20 % lit
# windows give 1.40 (RGB) and 1.04 (thermal) for the 64x128 baselines of bench/ablation.py.
LIGHTING = {
    "day": Lighting(1.0, 0.45, 0.75, 0.012, 0.0, (0.35, 0.55, 0.9), (0.8, 0.85, 0.92), 450.0, 4400.0),
    "night": Lighting(0.07, 0.08, 0.0, 0.06, 8.0, (0.01, 0.01, 0.03), (0.05, 0.04, 0.05), 300.0, 3950.0),
    "rain": Lighting(0.55, 0.6, 0.25, 0.02, 0.3, (0.5, 0.52, 0.55), (0.62, 0.63, 0.65), 140.0, 4050.0, True),
}


def hash_noise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cheap deterministic value noise in [0, 1) from two coordinates (the classic shader hash)."""
    v = np.sin(a * np.float32(12.9898) + b * np.float32(78.233)) * np.float32(43758.547)
    return v - np.floor(v)


def surface_points(hits: Hits, rays: CameraRays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World hit points (x, y, z), each [H, W] float32; sky pixels get the camera centre."""
    t = np.where(np.isfinite(hits.t_m), hits.t_m, np.float32(0.0))
    return tuple((np.float32(o) + t * d) for o, d in zip(hits.origin_m, rays.d, strict=True))


def wall_segments(scene: Scene, obj: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Facade segment index of wall pixels given their object ids and hit z (flat arrays)."""
    side = (obj != WALL_LEFT).astype(np.int64)
    bins = ((pz - scene.wall_z0_m) / WALL_BIN_M).astype(np.int64)
    return scene.wall_segment[side, np.clip(bins, 0, scene.wall_segment.shape[1] - 1)]


def lane_marks(scene: Scene, px: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Dashed centre line and solid edge lines on road points (flat arrays)."""
    centre = (np.abs(px) < 0.08) & ((pz % 9.0) < 4.0)
    edge = np.abs(np.abs(px) - (scene.road_half_m - 0.35)) < 0.08
    return centre | edge


def window_mask(py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Facade windows on a 3.2 m x 3.0 m grid (flat arrays of wall points)."""
    fz, fy = pz % 3.2, py % 3.0
    return (fz > 1.0) & (fz < 2.4) & (fy > 1.0) & (fy < 2.2)


def class_pixels(obj: np.ndarray) -> dict[str, np.ndarray]:
    """Flat pixel indices of the road, sidewalk and facade classes (shading works on subsets)."""
    flat = obj.ravel()
    return {"road": np.flatnonzero(flat == ROAD), "sidewalk": np.flatnonzero(flat == SIDEWALK),
            "wall": np.flatnonzero((flat == WALL_LEFT) | (flat == WALL_RIGHT))}


def albedo(scene: Scene, hits: Hits, pts, cls) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel albedo [H*W, 3] (flat, before grain) and the flat indices of lit windows."""
    px, py, pz = (p.ravel() for p in pts)
    table = np.concatenate([np.array([[0, 0, 0], [0.3, 0.3, 0.32], [0.55, 0.53, 0.5],
                                      [0.7, 0.7, 0.68], [0, 0, 0], [0, 0, 0]], np.float32),
                            scene.boxes.colour]).astype(np.float32)
    alb = np.take(table, hits.obj.ravel(), axis=0)  # [H*W, 3]; np.take: ~4x faster than []
    road = cls["road"]
    alb[road[lane_marks(scene, px[road], pz[road])]] = (0.92, 0.92, 0.88)
    side = cls["sidewalk"]
    tiles = ((px[side] % 0.6) < 0.04) | ((pz[side] % 0.6) < 0.04)
    alb[side[tiles]] *= 0.6
    wall = cls["wall"]
    lit = wall[:0]
    if wall.size:
        alb[wall] = scene.wall_colour[wall_segments(scene, hits.obj.ravel()[wall], pz[wall])]
        win = wall[window_mask(py[wall], pz[wall])]
        alb[win] = (0.08, 0.1, 0.14)
        lit = win[hash_noise(np.floor(pz[win] / 3.2), np.floor(py[win] / 3.0)) > LIT_WINDOW_ABOVE]
    return alb, lit


def sky_rgb(rays: CameraRays, light: Lighting) -> np.ndarray:
    """Sky gradient [H, W, 3] from the ray elevation (constant per camera and kind)."""
    up = -rays.d[1] / np.sqrt(rays.d[0] ** 2 + rays.d[1] ** 2 + rays.d[2] ** 2)
    w = np.clip(up * 3.0, 0.0, 1.0)[..., None]
    return (np.float32(1) - w) * np.array(light.sky_horizon, np.float32) + w * np.array(light.sky_top, np.float32)


def render_rgb(scene: Scene, hits: Hits, rays: CameraRays, pts, light: Lighting,
               rng: np.random.Generator, fixed: dict[str, np.ndarray]) -> np.ndarray:
    """[H, W, 3] uint8 RGB image. `fixed`: per-sequence "sky" [H,W,3], "noise" bank
    [2H, W+64], "headlight_cone" [H,W], and "streaks" [2H, W] for rain (see `rgb_fixed`)."""
    height, width = hits.t_m.shape
    alb, lit = albedo(scene, hits, pts, class_pixels(hits.obj))
    sun_dir = np.array([0.4, 0.8, 0.45], np.float32)  # light travels down-right-forward
    shade_table = light.ambient + light.sun * np.maximum(0.0, -_NORMALS @ sun_dir)
    shade = np.take(shade_table.astype(np.float32), hits.normal)
    px, py, pz = pts  # world-anchored grain, applied to the 1-channel shade (cheaper than RGB)
    shade *= np.float32(0.8) + np.float32(0.4) * hash_noise(np.floor((px + py) * 8), np.floor(pz * 8))
    t = np.where(np.isfinite(hits.t_m), hits.t_m, np.float32(1e4))
    if light.headlights > 0:  # a forward cone falling off with distance
        shade += fixed["headlight_cone"] * np.exp(-t / np.float32(18.0))
    # Haze toward the sky colour (sky pixels: t = 1e4, haze = 1), folded into the 1-channel
    # gain so the 3-channel image is touched only twice.
    haze = np.float32(1) - np.exp(-t / np.float32(light.haze_m))
    gain = shade * np.float32(light.exposure) * (np.float32(1) - haze)
    colour = alb.reshape(height, width, 3) * gain[..., None]
    colour += fixed["sky"] * haze[..., None]
    if lit.size and light.exposure < 0.2:  # lit windows glow at night
        colour.reshape(-1, 3)[lit] = (0.8, 0.68, 0.36)
    if light.rain:
        colour = cv2.GaussianBlur(colour, (5, 5), 1.2)
        offset = int(rng.integers(0, height))
        colour += fixed["streaks"][offset:offset + height, :, None]
    # Sensor noise from a per-sequence bank at a random offset: as random per frame as needed
    # here and much cheaper than drawing H*W normals every frame.
    dv, du = int(rng.integers(0, height)), int(rng.integers(0, 64))
    colour += (fixed["noise"][dv:dv + height, du:du + width] * np.float32(light.noise_sigma))[..., None]
    np.maximum(colour, 0.0, out=colour)
    return cv2.convertScaleAbs(colour, alpha=255.0)


def rgb_fixed(rays: CameraRays, light: Lighting, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-camera, per-sequence fixed layers for `render_rgb`."""
    cam = rays.camera
    x_n = rays.d[0] / rays.d[2]
    fixed = {"sky": sky_rgb(rays, light),
             "noise": rng.standard_normal((2 * cam.height, cam.width + 64), dtype=np.float32),
             "headlight_cone": (light.headlights * np.exp(-(x_n * 2.5) ** 2)).astype(np.float32)}
    if light.rain:
        fixed["streaks"] = rain_streaks(rng, cam.height, cam.width)
    return fixed


def rain_streaks(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A [2H, W] float32 layer of slanted bright streaks, scrolled per frame."""
    layer = np.zeros((2 * height, width), np.float32)
    n = int(0.004 * height * width)
    x0 = rng.integers(0, width, n)
    y0 = rng.integers(0, 2 * height, n)
    length = rng.integers(height // 20, height // 7, n)
    for x, y, n_px, val in zip(x0, y0, length, rng.uniform(0.08, 0.25, n), strict=True):
        cv2.line(layer, (int(x), int(y)), (int(x + n_px * 0.25), int(y + n_px)), float(val), 1)
    return cv2.GaussianBlur(layer, (3, 3), 0.8)
