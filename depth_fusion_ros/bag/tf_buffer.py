"""A tf2-like transform buffer over recorded /tf and /tf_static (numpy, no rclpy).

The frame graph is a tree, as tf2 requires: every frame has at most one parent. Static edges
(`/tf_static`) hold one pose; dynamic edges (`/tf`, or poses from a nav_msgs/Odometry topic) hold
a time series, interpolated like tf2 (linear translation, quaternion slerp) and never
extrapolated beyond `max_extrapolation_ns`, nor across a gap longer than `max_gap_ns`.
A pose `T_a_b` (4x4, metres) maps points in frame b into frame a: x_a = T_a_b @ x_b.

`lookup_moving` is tf2's "time travel" lookup: the pose of `source` at times t_s in `target` at
time t_t through a `fixed` frame (odom), which is how LiDAR points measured at their own firing
times are moved into a camera frame at the image's stamp (motion compensation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class TfError(LookupError):
    """A transform is missing, disconnected or not available at the requested time; the
    message names the frames."""


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """[..., 4] quaternions (x, y, z, w; normalised here) -> [..., 3, 3] rotation matrices."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    rows = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Spherical interpolation of [N, 4] quaternion pairs at [N] fractions (shortest arc)."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64).copy()
    dot = np.sum(q0 * q1, axis=-1)
    q1[dot < 0] *= -1.0
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    theta = np.arccos(dot)
    small = theta < 1e-6
    sin = np.where(small, 1.0, np.sin(theta))
    w0 = np.where(small, 1.0 - alpha, np.sin((1.0 - alpha) * theta) / sin)
    w1 = np.where(small, alpha, np.sin(alpha * theta) / sin)
    out = w0[:, None] * q0 + w1[:, None] * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def pose_matrix(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """[..., 4, 4] from [..., 3] translations and [..., 4] quaternions (x, y, z, w)."""
    translation = np.asarray(translation, np.float64)
    out = np.zeros(translation.shape[:-1] + (4, 4))
    out[..., :3, :3] = quat_to_matrix(quaternion)
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1.0
    return out


@dataclass
class _Series:
    """Samples of one dynamic edge; sorted by `finalize`."""

    stamps_ns: list | np.ndarray = field(default_factory=list)
    translations: list | np.ndarray = field(default_factory=list)
    quaternions: list | np.ndarray = field(default_factory=list)


class TfBuffer:
    """Static and dynamic transforms of one recording (one clock segment of it)."""

    def __init__(self, max_extrapolation_ns: int = 0, max_gap_ns: int = 500_000_000) -> None:
        self.parent: dict[str, str] = {}
        self.static: dict[str, np.ndarray] = {}   # child -> T_parent_child
        self.dynamic: dict[str, _Series] = {}      # child -> samples of T_parent_child
        self.max_extrapolation_ns, self.max_gap_ns = max_extrapolation_ns, max_gap_ns

    def add(self, parent: str, child: str, stamp_ns: int, translation, quaternion, *,
            static: bool) -> None:
        """One transform (pose of `child` in `parent`). A child with two parents is a TfError."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if parent == child:
            raise TfError(f"transform {parent!r} -> {child!r} has the same parent and child frame")
        if self.parent.setdefault(child, parent) != parent:
            raise TfError(f"frame {child!r} has two parents ({self.parent[child]!r} and "
                          f"{parent!r}); tf needs a tree: fix the publishers of /tf and /tf_static")
        if static:
            self.static[child] = pose_matrix(translation, quaternion)
            return
        series = self.dynamic.setdefault(child, _Series())
        series.stamps_ns.append(int(stamp_ns))
        series.translations.append(np.asarray(translation, np.float64))
        series.quaternions.append(np.asarray(quaternion, np.float64))

    def finalize(self) -> TfBuffer:
        """Sort each dynamic edge by stamp (duplicate stamps keep the last sample)."""
        for child, s in self.dynamic.items():
            if child in self.static:
                raise TfError(f"frame {child!r} is published on both /tf and /tf_static")
            stamps = np.asarray(s.stamps_ns, np.int64)
            order = np.argsort(stamps, kind="stable")
            keep = np.append(stamps[order][1:] != stamps[order][:-1], True)
            order = order[keep]
            s.stamps_ns = stamps[order]
            s.translations = np.asarray(s.translations, np.float64).reshape(-1, 3)[order]
            s.quaternions = np.asarray(s.quaternions, np.float64).reshape(-1, 4)[order]
        return self

    def frames(self) -> set[str]:
        return set(self.parent) | set(self.parent.values())

    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while path[-1] in self.parent:
            path.append(self.parent[path[-1]])
            if len(path) > 1000:
                raise TfError(f"tf has a loop above frame {frame!r}")
        return path

    def edge_poses(self, child: str, stamps_ns: np.ndarray) -> np.ndarray:
        """[N, 4, 4] poses of `child` in its parent at `stamps_ns` (TfError when unavailable)."""
        stamps_ns = np.atleast_1d(np.asarray(stamps_ns, np.int64))
        if child in self.static:
            return np.broadcast_to(self.static[child], (stamps_ns.size, 4, 4))
        s = self.dynamic[child]
        first, last = int(s.stamps_ns[0]), int(s.stamps_ns[-1])
        lo, hi = int(stamps_ns.min()), int(stamps_ns.max())
        if lo < first - self.max_extrapolation_ns or hi > last + self.max_extrapolation_ns:
            raise TfError(f"transform {self.parent[child]!r} -> {child!r} is recorded from "
                          f"{first / 1e9:.3f} to {last / 1e9:.3f} s; {lo / 1e9:.3f}..{hi / 1e9:.3f} "
                          f"s is outside (tf does not extrapolate)")
        if s.stamps_ns.size == 1:
            return np.broadcast_to(pose_matrix(s.translations[0], s.quaternions[0]),
                                   (stamps_ns.size, 4, 4))
        right = np.clip(np.searchsorted(s.stamps_ns, stamps_ns), 1, s.stamps_ns.size - 1)
        left = right - 1
        span = s.stamps_ns[right] - s.stamps_ns[left]
        if span.max() > self.max_gap_ns:
            raise TfError(f"transform {self.parent[child]!r} -> {child!r} has a gap of "
                          f"{span.max() / 1e9:.3f} s around the requested time (more than "
                          f"{self.max_gap_ns / 1e9:.3f} s): not interpolated")
        alpha = np.clip((stamps_ns - s.stamps_ns[left]) / span, 0.0, 1.0)  # clamp = extrapolation
        trans = s.translations[left] + alpha[:, None] * (s.translations[right] - s.translations[left])
        quat = slerp(s.quaternions[left], s.quaternions[right], alpha)
        return pose_matrix(trans, quat)

    def _chain(self, frame: str, root: str, stamps_ns: np.ndarray) -> np.ndarray:
        """[N, 4, 4] poses of `frame` in its ancestor `root`."""
        out = np.broadcast_to(np.eye(4), (np.size(stamps_ns), 4, 4))
        while frame != root:
            out = self.edge_poses(frame, stamps_ns) @ out
            frame = self.parent[frame]
        return out

    def _common_root(self, target: str, source: str) -> str:
        for frame in (target, source):
            if frame not in self.frames():
                raise TfError(f"frame {frame!r} is not in /tf or /tf_static (known frames: "
                              f"{sorted(self.frames())[:12]})")
        up_target = self._path_to_root(target)
        common = next((f for f in self._path_to_root(source) if f in up_target), None)
        if common is None:
            raise TfError(f"frames {target!r} and {source!r} are not connected in tf (their "
                          f"roots are {up_target[-1]!r} and {self._path_to_root(source)[-1]!r})")
        return common

    def is_static(self, target: str, source: str) -> bool:
        """True if the path between the frames has no dynamic edge."""
        common = self._common_root(target, source)
        path = [f for start in (target, source) for f in self._path_to_root(start)
                [:self._path_to_root(start).index(common)]]
        return not any(f in self.dynamic for f in path)

    def lookup(self, target: str, source: str, stamps_ns=0) -> np.ndarray:
        """T_target_source at `stamps_ns` ([4, 4] for a scalar, else [N, 4, 4])."""
        scalar = np.ndim(stamps_ns) == 0
        stamps = np.atleast_1d(np.asarray(stamps_ns, np.int64))
        root = self._common_root(target, source)
        out = np.linalg.inv(self._chain(target, root, stamps)) @ self._chain(source, root, stamps)
        return out[0] if scalar else out

    def lookup_moving(self, target: str, target_ns: int, source: str, source_ns: np.ndarray,
                      fixed: str) -> np.ndarray:
        """[N, 4, 4] T_target(target_ns)_source(source_ns) through the `fixed` frame."""
        world_target = self.lookup(fixed, target, int(target_ns))
        return np.linalg.inv(world_target) @ self.lookup(fixed, source, source_ns)
