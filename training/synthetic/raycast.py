"""Vectorised numpy ray casting of a `Scene` for one camera: depth, object id and face normal.

Every pixel is handled at once: analytic ray-plane tests for the road, kerbs, sidewalks and
facades, then the ray-AABB slab test (Kay & Kajiya 1986) for each box, restricted to the box's
projected screen rectangle so that far, small objects cost little. The rig only translates, so
the world-frame rays and their reciprocals are computed once per camera (`CameraRays`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rig import Camera
from .scene import FIRST_BOX_ID, KERB, ROAD, SIDEWALK, WALL_BIN_M, WALL_LEFT, WALL_RIGHT, Scene

# Normal codes of the per-pixel normal buffer: axis * 2 + (1 if the normal points to +axis).
NORMAL_NEG_X, NORMAL_POS_X, NORMAL_NEG_Y, NORMAL_POS_Y, NORMAL_NEG_Z, NORMAL_POS_Z = range(6)


@dataclass
class CameraRays:
    """World-frame rays of one camera, [H, W] per component (float32), with z_cam = t."""

    camera: Camera
    R_world_cam: np.ndarray  # [3, 3]
    d: tuple[np.ndarray, np.ndarray, np.ndarray]     # direction components, each [H, W]
    inv: tuple[np.ndarray, np.ndarray, np.ndarray]   # 1 / direction, each [H, W]


@dataclass
class Hits:
    """Ray-cast result of one camera; `t_m` is the optical depth z (inf = sky)."""

    t_m: np.ndarray       # [H, W] float32
    obj: np.ndarray       # [H, W] int32 object id (scene.SKY, ..., FIRST_BOX_ID + i)
    normal: np.ndarray    # [H, W] int8 normal code
    origin_m: np.ndarray  # (3,) camera centre in the world


def make_rays(camera: Camera, R_world_hub: np.ndarray) -> CameraRays:
    """Precompute world rays of `camera`; the hub's orientation in the world is fixed."""
    R = R_world_hub @ camera.R_hub_cam
    d = camera.rays_cam() @ R.T  # [H, W, 3]
    comps = tuple(np.ascontiguousarray(d[..., i], dtype=np.float32) for i in range(3))
    safe = tuple(np.where(np.abs(c) < 1e-9, np.float32(1e-9), c) for c in comps)
    return CameraRays(camera=camera, R_world_cam=R, d=comps,
                      inv=tuple((1.0 / c).astype(np.float32) for c in safe))


@dataclass
class StaticLayer:
    """Ray cast of the static street for one camera at a fixed lateral position and height.

    The rig only moves along z, so the road / kerb / sidewalk hits never change and the facade
    planes are hit at fixed ray parameters; only which facade bin (height) is hit depends on the
    camera's z. Caching this makes the per-frame static cast a few small gathers.
    """

    t_m: np.ndarray        # [H, W] ground-level hits (road, kerb, sidewalk), inf = none
    obj: np.ndarray        # [H, W] int32
    normal: np.ndarray     # [H, W] int8
    walls: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    # per side: (object id, flat pixel indices, t_wall, dz, y_hit) of pixels where the facade
    # plane is nearer than the ground


def static_layer(rays: CameraRays, scene: Scene, origin: np.ndarray) -> StaticLayer:
    """Road / sidewalk / kerb planes plus the facade candidates (see `StaticLayer`)."""
    dx, dy, dz = rays.d
    ox, oy = float(origin[0]), float(origin[1])
    rh, kerb = scene.road_half_m, scene.kerb_m
    down = dy > 1e-6
    inv_dy = np.where(down, rays.inv[1], np.float32(np.inf))
    t_road = -oy * inv_dy                     # plane y = 0
    t_top = (-kerb - oy) * inv_dy             # plane y = -kerb (sidewalk tops)
    x_road = ox + t_road * dx
    x_top = ox + t_top * dx
    on_top = np.abs(x_top) >= rh
    on_road = ~on_top & (np.abs(x_road) < rh)
    t_kerb = (np.sign(x_road) * rh - ox) * rays.inv[0]
    t = np.where(on_top, t_top, np.where(on_road, t_road, t_kerb)).astype(np.float32)
    t[~down] = np.inf
    obj = np.where(on_top, SIDEWALK, np.where(on_road, ROAD, KERB)).astype(np.int32)
    normal = np.where(on_road | on_top, NORMAL_NEG_Y,
                      np.where(x_road > 0, NORMAL_NEG_X, NORMAL_POS_X)).astype(np.int8)
    walls = []
    for wall_x in scene.wall_x_m:
        facing = dx > 1e-6 if wall_x > 0 else dx < -1e-6
        t_wall = (wall_x - ox) * rays.inv[0]
        idx = np.flatnonzero(facing & (t_wall < t))
        tw = t_wall.ravel()[idx]
        walls.append((WALL_RIGHT if wall_x > 0 else WALL_LEFT, idx, tw, dz.ravel()[idx],
                      oy + tw * dy.ravel()[idx]))
    return StaticLayer(t_m=t, obj=obj, normal=normal, walls=walls)


def cast_static(layer: StaticLayer, scene: Scene, origin: np.ndarray) -> Hits:
    """Static street hits for a camera at `origin` (whose x, y must match the layer's)."""
    t, obj, normal = layer.t_m.copy(), layer.obj.copy(), layer.normal.copy()
    n_bins = scene.wall_height_m.shape[1]
    for side, (obj_id, idx, t_wall, dz, y_hit) in enumerate(layer.walls):
        bins = np.floor((origin[2] + t_wall * dz - scene.wall_z0_m) / WALL_BIN_M)
        inside = (bins >= 0) & (bins < n_bins)
        height = scene.wall_height_m[side][np.clip(bins, 0, n_bins - 1).astype(np.int64)]
        hit = idx[inside & (y_hit >= -height)]
        t.ravel()[hit] = t_wall[inside & (y_hit >= -height)]
        obj.ravel()[hit] = obj_id
        normal.ravel()[hit] = NORMAL_NEG_X if obj_id == WALL_RIGHT else NORMAL_POS_X
    return Hits(t_m=t, obj=obj, normal=normal, origin_m=np.asarray(origin, np.float64))


def _screen_rects(rays: CameraRays, origin: np.ndarray, bmin: np.ndarray,
                  bmax: np.ndarray) -> np.ndarray:
    """Pixel rectangles covering the projected boxes, [N, 4] int (v0, v1, u0, u1); empty when
    the box is behind the camera or off-screen; the whole image when it straddles the camera."""
    cam = rays.camera
    # Boxes being passed straddle the camera plane and would cost a full-image slab test. Only
    # their part ahead can be in view (the camera looks along +z within a few degrees, and
    # no box comes within 0.3 m of a lens), so their rectangle comes from that part.
    bmin = bmin.copy()
    bmin[:, 2] = np.minimum(np.maximum(bmin[:, 2], origin[2] + 0.3), bmax[:, 2])
    select = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], bool)  # [8, 3]
    corners = np.where(select[None], bmax[:, None], bmin[:, None])  # [N, 8, 3]
    p = (corners - origin) @ rays.R_world_cam  # [N, 8, 3] in the camera frame
    z = p[..., 2]
    uv = np.einsum("ij,nkj->nki", cam.K[:2, :2], p[..., :2] / np.maximum(z, 0.05)[..., None])
    uv += cam.K[:2, 2]
    lo = np.floor(uv.min(axis=1)).astype(np.int64) - 1  # [N, 2] (u, v)
    hi = np.ceil(uv.max(axis=1)).astype(np.int64) + 2
    rects = np.stack([np.clip(lo[:, 1], 0, cam.height), np.clip(hi[:, 1], 0, cam.height),
                      np.clip(lo[:, 0], 0, cam.width), np.clip(hi[:, 0], 0, cam.width)], axis=1)
    straddle = (z <= 0.05).any(axis=1)
    rects[straddle] = (0, cam.height, 0, cam.width)
    rects[(z <= 0.05).all(axis=1)] = 0
    return rects


def cast_boxes(rays: CameraRays, scene: Scene, hits: Hits, time_s: float,
               max_range_m: float = 110.0) -> None:
    """Slab-test every box near the camera, updating `hits` in place where a box is closer."""
    boxes = scene.boxes
    origin = hits.origin_m
    shift = boxes.velocity_mps * time_s
    zmin, zmax = boxes.min_m[:, 2] + shift, boxes.max_m[:, 2] + shift
    near = np.flatnonzero((zmax > origin[2] - 2.0) & (zmin < origin[2] + max_range_m))
    offset = np.zeros((near.size, 3))
    offset[:, 2] = shift[near]
    bmins, bmaxs = boxes.min_m[near] + offset, boxes.max_m[near] + offset
    rects = _screen_rects(rays, origin, bmins, bmaxs)
    for i, bmin, bmax, (v0, v1, u0, u1) in zip(near, bmins, bmaxs, rects, strict=True):
        if v0 >= v1 or u0 >= u1:
            continue
        _slab(rays, hits, FIRST_BOX_ID + int(i), bmin, bmax, (slice(v0, v1), slice(u0, u1)))


def _slab(rays: CameraRays, hits: Hits, obj_id: int, bmin, bmax, win) -> None:
    """Kay-Kajiya slab test of one box over the pixel window `win`, updating `hits`."""
    origin = hits.origin_m
    tn, tf = [], []
    for axis in range(3):
        inv = rays.inv[axis][win]
        t1 = float(bmin[axis] - origin[axis]) * inv  # python floats keep the arrays float32
        t2 = float(bmax[axis] - origin[axis]) * inv
        tn.append(np.minimum(t1, t2))
        tf.append(np.maximum(t1, t2, out=t2))
    t_near = np.maximum(np.maximum(tn[0], tn[1]), tn[2])
    t_far = np.minimum(np.minimum(tf[0], tf[1], out=tf[0]), tf[2], out=tf[1])
    t_sub = hits.t_m[win]
    hit = (t_near <= t_far) & (t_near > 0) & (t_near < t_sub)
    if not hit.any():
        return
    axis = np.where((tn[0] >= tn[1]) & (tn[0] >= tn[2]), 0, np.where(tn[1] >= tn[2], 1, 2))[hit]
    d_axis = np.choose(axis, [rays.d[a][win][hit] for a in range(3)])
    t_sub[hit] = t_near[hit]
    hits.obj[win][hit] = obj_id
    hits.normal[win][hit] = (axis * 2 + (d_axis < 0)).astype(np.int8)  # faces against the ray


def cast(rays: CameraRays, layer: StaticLayer, scene: Scene, origin: np.ndarray,
         time_s: float) -> Hits:
    """Full ray cast of one camera at `origin` (world, metres) and `time_s` (moving boxes)."""
    hits = cast_static(layer, scene, origin)
    cast_boxes(rays, scene, hits, time_s)
    return hits
