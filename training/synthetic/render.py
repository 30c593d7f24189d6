"""One synthetic sequence: scene, rig motion, per-frame rendering of both cameras and their GT."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lidar import lidar_depth_png
from .raycast import cast, make_rays, static_layer
from .rig import CAMERA_RATE_HZ, Rig, make_rig
from .scene import make_scene
from .sensors import KINDS, LIGHTING, render_rgb, rgb_fixed, surface_points
from .thermal import DEFAULT_ATTENUATION_M, render_thermal, thermal_fixed

EPOCH_NS = 1_628_000_000_000_000_000  # Aug 2021, around when MS2 was recorded


@dataclass(frozen=True)
class SequenceSpec:
    """What to generate: name, split, kind ("day" | "night" | "rain"), frames and seed, and the
    thermal camera's clear-air attenuation length (thermal.render_thermal), and whether the
    cameras are the aligned or matched-field-of-view control rig (rig.make_rig)."""

    name: str
    split: str
    kind: str
    frames: int
    seed: int
    thermal_attenuation_m: float = DEFAULT_ATTENUATION_M
    aligned_cameras: bool = False
    matched_fov: bool = False


class SequenceRenderer:
    """Renders frames of one sequence deterministically (frame i depends only on seed and i)."""

    def __init__(self, spec: SequenceSpec, rig: Rig | None = None):
        if spec.kind not in KINDS:
            raise ValueError(f"sequence kind must be one of {KINDS}, got {spec.kind!r}")
        self.spec = spec
        self.rig = rig or make_rig(aligned=spec.aligned_cameras, matched_fov=spec.matched_fov)
        rng = np.random.default_rng([spec.seed, 0])
        duration_s = spec.frames / CAMERA_RATE_HZ + 1.0
        self.scene = make_scene(rng, duration_s, day=spec.kind != "night")
        self.light = LIGHTING[spec.kind]
        world_hub = np.eye(3)  # the rig only translates, so rays are computed once per camera
        self.rays = {cam.name: make_rays(cam, world_hub) for cam in (self.rig.rgb, self.rig.thr)}
        self.fixed = {"rgb": rgb_fixed(self.rays["rgb"], self.light, rng),
                      "thr": thermal_fixed(self.rays["thr"], rng)}
        # Cameras only move along z, so the static street is cast once per camera.
        self.layers = {name: static_layer(rays, self.scene, self.camera_origin(name, 0.0))
                       for name, rays in self.rays.items()}
        self.start_ns = EPOCH_NS + int(rng.integers(0, 10**6)) * 10**9
        # The cameras are not hardware-synchronised in stamp: the thermal lags by a few ms.
        self.thr_offset_ns = int(rng.integers(2, 9)) * 1_000_000

    def stamps_ns(self) -> dict[str, np.ndarray]:
        """Per-frame stamps of each view, int64 ns."""
        index = np.arange(self.spec.frames, dtype=np.int64)
        rgb = self.start_ns + np.round(index * (1e9 / CAMERA_RATE_HZ)).astype(np.int64)
        jitter = np.random.default_rng([self.spec.seed, 1]).integers(-500_000, 500_000, index.size)
        return {"rgb": rgb, "thr": rgb + self.thr_offset_ns + jitter}

    def camera_origin(self, name: str, time_s: float) -> np.ndarray:
        cam = getattr(self.rig, name)
        return (self.scene.vehicle_position(time_s) + self.rig.hub_on_vehicle_m
                + cam.t_hub_cam_m)

    def render(self, index: int, stamps: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Frame `index`: {"rgb": [384,1224,3] u8 RGB, "thr": [256,640] u16 counts,
        "depth_rgb", "depth_thr": uint16 metres*256 (0 = none)}."""
        stamps = stamps if stamps is not None else self.stamps_ns()
        rng = np.random.default_rng([self.spec.seed, 2, index])
        out = {}
        for name in ("rgb", "thr"):
            time_s = (int(stamps[name][index]) - self.start_ns) * 1e-9
            rays = self.rays[name]
            origin = self.camera_origin(name, time_s)
            hits = cast(rays, self.layers[name], self.scene, origin, time_s)
            pts = surface_points(hits, rays)
            if name == "rgb":
                out["rgb"] = render_rgb(self.scene, hits, rays, pts, self.light, rng,
                                        self.fixed["rgb"])
            else:
                out["thr"] = render_thermal(self.scene, hits, pts, self.light, rng,
                                            self.fixed["thr"], self.spec.thermal_attenuation_m)
            lidar = self.scene.vehicle_position(time_s) + self.rig.lidar_on_vehicle_m
            out[f"depth_{name}"] = lidar_depth_png(hits, rays, pts, lidar, rng)
        return out
