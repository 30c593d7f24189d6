"""A rotating multi-beam LiDAR ray cast in the synthetic street (for the rig bag, `rig_bag.py`).

Unlike `lidar.py` (which keeps the camera pixels that lie on a beam, for MS2-style GT), this
casts the LiDAR's own rays from its own position with the scene's ray caster (`raycast.py`): 64
beams spaced like an HDL-64 (-24.8..+2 deg), `columns` azimuth steps per turn, spinning at 10 Hz.
The sweep takes a whole scan period while the vehicle drives on, so the columns are cast in
`groups` batches, each from where the LiDAR is at that batch's firing time, and every point
carries that time: the motion distortion of a real spinning LiDAR, which `bag_to_ms2` undoes.

Frames: the LiDAR frame is REP 103 (x forward, y left, z up) turned by `R_base_lidar` on the
vehicle; the generator's world is x right, y down, z forward (`rig.py`), `WORLD_FROM_ROS` maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lidar import BEAM_HIGH_DEG, BEAM_LOW_DEG, N_BEAMS
from .raycast import CameraRays, Hits, _slab, cast_static, static_layer
from .scene import FIRST_BOX_ID, Scene

# ROS body/odom axes (x fwd, y left, z up) -> generator world axes (x right, y down, z fwd).
WORLD_FROM_ROS = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
MAX_RANGE_M = 100.0


@dataclass(frozen=True)
class LidarSpec:
    """The scanner: beams, columns per turn, rate, and the batches the sweep is cast in."""

    beams: int = N_BEAMS
    columns: int = 1024
    rate_hz: float = 10.0
    groups: int = 32
    range_noise_m: float = 0.01
    dropout: float = 0.03

    @property
    def elevations_rad(self) -> np.ndarray:
        return np.deg2rad(np.linspace(BEAM_HIGH_DEG, BEAM_LOW_DEG, self.beams))  # row 0 = top

    @property
    def angular_resolution_rad(self) -> tuple[float, float]:
        """(vertical, horizontal) step between neighbouring beams / columns."""
        return (np.deg2rad(BEAM_HIGH_DEG - BEAM_LOW_DEG) / (self.beams - 1),
                2.0 * np.pi / self.columns)


@dataclass
class Scan:
    """One turn: organised [beams, columns] arrays (NaN = no return)."""

    xyz_lidar: np.ndarray   # [B, C, 3] float32 in the LiDAR frame
    world: np.ndarray       # [B, C, 3] float64 hit points in the generator world
    offset_ns: np.ndarray   # [C] int64 firing time of each column after the scan stamp
    obj: np.ndarray         # [B, C] int32 object id (scene.SKY = no return)
    static: np.ndarray      # [B, C] bool: the hit object does not move


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def lidar_directions(spec: LidarSpec) -> np.ndarray:
    """[B, C, 3] unit ray directions in the LiDAR frame; column 0 looks forward, turning left
    (counter-clockwise seen from above, as azimuth grows in REP 103)."""
    elev = spec.elevations_rad[:, None]
    azim = 2.0 * np.pi * np.arange(spec.columns)[None, :] / spec.columns
    return np.stack([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim),
                     np.sin(elev) * np.ones_like(azim)], axis=-1)


class LidarCaster:
    """Casts scans of one scene; the vehicle only translates, so rays are fixed per batch."""

    def __init__(self, scene: Scene, spec: LidarSpec, R_base_lidar: np.ndarray,
                 origin_xy: np.ndarray) -> None:
        if spec.columns % spec.groups:
            raise ValueError(f"LiDAR columns ({spec.columns}) must be a multiple of groups "
                             f"({spec.groups})")
        self.scene, self.spec = scene, spec
        self.R_world_lidar = WORLD_FROM_ROS @ R_base_lidar
        dirs = lidar_directions(spec) @ self.R_world_lidar.T  # [B, C, 3] world
        origin = np.array([origin_xy[0], origin_xy[1], 0.0])
        width = spec.columns // spec.groups
        self.batches, self.wedges = [], []  # per batch: (rays, static layer), (azimuth, half)
        for g in range(spec.groups):
            d = dirs[:, g * width:(g + 1) * width]
            comps = tuple(np.ascontiguousarray(d[..., i], np.float32) for i in range(3))
            safe = tuple(np.where(np.abs(c) < 1e-9, np.float32(1e-9), c) for c in comps)
            rays = CameraRays(camera=None, R_world_cam=self.R_world_lidar, d=comps,
                              inv=tuple((1.0 / c).astype(np.float32) for c in safe))
            self.batches.append((rays, static_layer(rays, scene, origin)))
            azimuth = np.arctan2(d[..., 0], d[..., 2]).ravel()  # world azimuth (x right, z fwd)
            centre = np.arctan2(np.sin(azimuth).mean(), np.cos(azimuth).mean())
            self.wedges.append((centre, np.abs(_wrap(azimuth - centre)).max()))

    def cast(self, origin_at, time_s: float, rng: np.random.Generator) -> Scan:
        """The scan whose first column fires at `time_s` (seconds since the sequence start);
        `origin_at(t)` gives the LiDAR centre in the world at time t."""
        spec = self.spec
        width = spec.columns // spec.groups
        period_s = 1.0 / spec.rate_hz
        t_hits, objs, worlds, offsets = [], [], [], []
        for g, (rays, layer) in enumerate(self.batches):
            offset_s = (g + 0.5) * width / spec.columns * period_s  # the batch's mid firing time
            origin = np.asarray(origin_at(time_s + offset_s), np.float64)
            hits = cast_static(layer, self.scene, origin)
            self._cast_boxes(rays, hits, time_s + offset_s, self.wedges[g])
            t_hits.append(hits.t_m)
            objs.append(hits.obj)
            worlds.append(origin + np.stack([hits.t_m * c for c in rays.d], axis=-1))
            offsets.append(np.full(width, round(offset_s * 1e9), np.int64))
        return self._finish(np.concatenate(t_hits, 1), np.concatenate(objs, 1),
                            np.concatenate(worlds, 1), np.concatenate(offsets), rng)

    def _cast_boxes(self, rays: CameraRays, hits: Hits, time_s: float,
                    wedge: tuple[float, float]) -> None:
        """Slab-test the boxes whose azimuth interval overlaps the batch's wedge."""
        boxes = self.scene.boxes
        shift = boxes.velocity_mps * time_s
        origin = hits.origin_m
        centre = 0.5 * (boxes.min_m + boxes.max_m).astype(np.float64)
        centre[:, 2] += shift
        dx, dz = centre[:, 0] - origin[0], centre[:, 2] - origin[2]
        dist = np.hypot(dx, dz)
        radius = 0.5 * np.hypot(boxes.max_m[:, 0] - boxes.min_m[:, 0],
                                boxes.max_m[:, 2] - boxes.min_m[:, 2])
        half = np.where(dist > radius, np.arcsin(np.clip(radius / np.maximum(dist, 1e-9), 0, 1)),
                        np.pi)
        seen = np.abs(_wrap(np.arctan2(dx, dz) - wedge[0])) <= wedge[1] + half + 1e-3
        near = np.flatnonzero(seen & (dist - radius < MAX_RANGE_M))
        window = (slice(None), slice(None))
        for i in near:
            offset = np.array([0.0, 0.0, shift[i]], np.float32)
            _slab(rays, hits, FIRST_BOX_ID + int(i), boxes.min_m[i] + offset,
                  boxes.max_m[i] + offset, window)

    def _finish(self, t_m, obj, world, offset_ns, rng) -> Scan:
        spec = self.spec
        valid = np.isfinite(t_m) & (t_m <= MAX_RANGE_M) & (rng.random(t_m.shape) >= spec.dropout)
        rng_m = t_m + rng.normal(0.0, spec.range_noise_m, t_m.shape).astype(np.float32)
        xyz = lidar_directions(spec) * np.where(valid, rng_m, np.nan)[..., None]
        world = np.where(valid[..., None], world, np.nan)
        moving = np.zeros(obj.shape, bool)
        box = obj >= FIRST_BOX_ID
        moving[box] = self.scene.boxes.velocity_mps[obj[box] - FIRST_BOX_ID] != 0.0
        return Scan(xyz_lidar=xyz.astype(np.float32), world=world, offset_ns=offset_ns,
                    obj=np.where(valid, obj, 0).astype(np.int32), static=valid & ~moving)
