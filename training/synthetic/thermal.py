"""Thermal camera model: per-object temperatures as raw 16-bit counts in the MS2 range.

MS2's thermal camera (FLIR A65-class, 14-bit radiometric) gives raw counts of roughly 3000-6000.
Here people are warm (~5500), engine fronts and exhaust faces of moving cars warm, sky cold
(~3000), road medium (sun-heated by day); then distance attenuation toward an ambient level,
radial vignetting, a fixed column pattern (typical of microbolometers), temporal noise and mild
optical blur. Night changes absolute levels but keeps the image informative, unlike RGB.
"""
from __future__ import annotations

import cv2
import numpy as np

from .raycast import NORMAL_NEG_Z, NORMAL_POS_Z, CameraRays, Hits
from .scene import FIRST_BOX_ID, PERSON, SKY, Scene
from .sensors import Lighting, class_pixels, hash_noise, lane_marks, wall_segments, window_mask

# Distance over which emitted counts fade by 1/e toward the ambient level (clear air; rain
# shortens it by RAIN_ATTENUATION_FACTOR). 260 m is the generator's default and a strong
# monocular depth cue; real 8-14 um transmission in clear air is far weaker (extinction about
# 0.1-0.4 per km: several km), which `--thermal-attenuation-m 3000` approximates.
DEFAULT_ATTENUATION_M = 260.0
RAIN_ATTENUATION_FACTOR = 120.0 / 260.0


def thermal_fixed(rays: CameraRays, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-camera, per-sequence layers: sky counts, vignetting + column pattern, noise bank."""
    up = -rays.d[1] / np.sqrt(rays.d[0] ** 2 + rays.d[1] ** 2 + rays.d[2] ** 2)
    cam = rays.camera
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
    r2 = ((u - cam.width / 2) / (cam.width / 2)) ** 2 + ((v - cam.height / 2) / (cam.width / 2)) ** 2
    columns = rng.normal(0.0, 6.0, cam.width).astype(np.float32)
    return {
        "sky": (3250.0 - 500.0 * np.clip(up * 2.5, 0.0, 1.0)).astype(np.float32),
        "pattern": (-260.0 * r2 + columns[None, :]).astype(np.float32),
        "noise": rng.normal(0.0, 12.0, (2 * cam.height, cam.width + 64)).astype(np.float32),
    }


def _surface_counts(scene: Scene, hits: Hits, pts, light: Lighting) -> np.ndarray:
    """Emitted counts per pixel before attenuation and sensor effects, flat [H*W]."""
    px, py, pz = (p.ravel() for p in pts)
    obj = hits.obj.ravel()
    ground = light.thermal_ground_counts
    table = np.concatenate([np.array([0.0, ground, ground + 60, ground - 120, 0.0, 0.0], np.float32),
                            scene.boxes.temp_counts]).astype(np.float32)
    counts = np.take(table, obj)
    cls = class_pixels(hits.obj)
    wall, road = cls["wall"], cls["road"]
    if wall.size:
        counts[wall] = scene.wall_temp_counts[wall_segments(scene, obj[wall], pz[wall])]
        counts[wall[window_mask(py[wall], pz[wall])]] -= 350.0  # glass reflects the cold sky
    counts[road[lane_marks(scene, px[road], pz[road])]] -= 90.0  # paint: lower emissivity
    boxes = np.flatnonzero(obj >= FIRST_BOX_ID)
    box = obj[boxes] - FIRST_BOX_ID
    normal = hits.normal.ravel()[boxes]
    faces = (normal == NORMAL_NEG_Z) | (normal == NORMAL_POS_Z)  # engine fronts, exhaust rears
    counts[boxes[faces]] += scene.boxes.face_z_counts[box[faces]]
    heads = (scene.boxes.kind[box] == PERSON) & (py[boxes] < -1.4)  # bare faces are hottest
    counts[boxes[heads]] += 250.0
    texture = hash_noise(np.floor(px * 4) + np.floor(py * 4), np.floor(pz * 4))
    counts += np.float32(50.0) * (texture - np.float32(0.5))
    return counts


def render_thermal(scene: Scene, hits: Hits, pts, light: Lighting, rng: np.random.Generator,
                   fixed: dict[str, np.ndarray],
                   attenuation_m: float = DEFAULT_ATTENUATION_M) -> np.ndarray:
    """[H, W] uint16 raw counts (`fixed` from `thermal_fixed`; `attenuation_m`: clear-air 1/e
    distance of the atmospheric fade)."""
    height, width = hits.t_m.shape
    counts = _surface_counts(scene, hits, pts, light).reshape(height, width)
    t = np.where(np.isfinite(hits.t_m), hits.t_m, np.float32(1e4))
    length = attenuation_m * (RAIN_ATTENUATION_FACTOR if light.rain else 1.0)
    fade = np.exp(-t / np.float32(length))  # atmospheric absorption
    counts = counts * fade + np.float32(3600.0) * (np.float32(1.0) - fade)
    counts = np.where(hits.obj == SKY, fixed["sky"], counts)
    counts = cv2.GaussianBlur(counts, (3, 3), 0.7)
    counts += fixed["pattern"]
    dv, du = int(rng.integers(0, height)), int(rng.integers(0, 64))
    counts += fixed["noise"][dv:dv + height, du:du + width]
    return np.clip(counts, 0, 65535).astype(np.uint16)
