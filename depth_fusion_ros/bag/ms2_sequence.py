"""Pass 2 of `bag_to_ms2`: decode the planned messages and write each clock segment's frames as
one MS2 sequence (through `ms2_writer.SequenceWriter`: atomic per sequence, resumable per frame).

The bag is read once, in log order, with the same connections as pass 1 (so ordinals agree). A
message that a planned frame needs is decoded when it arrives (a scan shared by two frames once)
and the frame is written as soon as its images and scans are all there; nothing else is kept.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from depth_fusion_ros import ms2
from depth_fusion_ros.bag import ros_types as rt
from depth_fusion_ros.bag.bag_index import BagIndex, Topics, connections
from depth_fusion_ros.bag.frame_plan import PlannedFrame, SegmentPlan
from depth_fusion_ros.bag.rig_geometry import CameraSetup, points_in_camera
from depth_fusion_ros.bag.sensor_decode import (
    Cloud,
    DecodeError,
    angular_resolution,
    decode_cloud,
    decode_image,
)
from depth_fusion_ros.camera_model import Rectifier
from depth_fusion_ros.lidar_projection import LidarView, ProjectionConfig, lidar_depth
from depth_fusion_ros.ms2_writer import SequenceWriter

PROVENANCE = "bag_to_ms2_frames.csv"  # one row per written frame: stamps, scans, points, density


@dataclass
class SequenceStats:
    """What one sequence's conversion did (for the summary and bag_to_ms2.json)."""

    written: int = 0
    resumed: int = 0
    skipped: Counter = field(default_factory=Counter)
    points: list = field(default_factory=list)            # valid LiDAR points per frame
    density: dict = field(default_factory=lambda: {"thr": [], "rgb": []})  # GT pixel fraction
    occluded: dict = field(default_factory=lambda: {"thr": [], "rgb": []})  # removed / projected
    max_dt_ns: int = 0                                    # largest point-to-image time offset


@dataclass
class SequenceJob:
    """One clock segment being written as one sequence."""

    name: str
    seg: SegmentPlan
    writer: SequenceWriter
    cameras: dict[str, CameraSetup]
    lidar_frames: dict[str, str]
    resolution: dict[str, tuple[float, float] | None]
    projection: ProjectionConfig
    odom_frame: str
    stats: SequenceStats = field(default_factory=SequenceStats)
    pending: dict = field(default_factory=dict)           # frame index -> {role: data}
    rectifier: Rectifier = field(default_factory=Rectifier)

    def process(self, frame: PlannedFrame, parts: dict) -> None:
        """Write one frame whose images and scans have all arrived (or count why not)."""
        bad = next(((role, d) for role, d in parts.items() if isinstance(d, DecodeError)), None)
        if bad is not None:
            self.stats.skipped[f"bad {bad[0]} message ({bad[1].reason})"] += 1
            return
        images = {}
        for view, cam in self.cameras.items():
            if parts[view].shape[:2] != cam.hw:
                self.stats.skipped[f"{view} image size {parts[view].shape[1]}x"
                                   f"{parts[view].shape[0]} differs from its camera_info"] += 1
                return
            images[view] = (self.rectifier.rectify(view, parts[view], cam.model)
                            if cam.model.needs_rectification else parts[view])
        clouds = {t: parts[t] for t in self.lidar_frames}
        depth = {view: self._depth(view, frame, clouds) for view in self.cameras}
        velocity = frame.velocity_mps
        self.writer.append_text(PROVENANCE, self._provenance(frame, clouds, depth))
        self.writer.write_frame(frame.name, thermal=images["thr"], rgb=images["rgb"], depth=depth,
                                stamps_ns={v: frame.stamps_ns[v] for v in ms2.VIEWS},
                                velocity_mps=velocity)
        self.stats.written += 1
        self.stats.points.append(sum(c.xyz.shape[0] for c in clouds.values()))

    def _depth(self, view: str, frame: PlannedFrame, clouds: dict[str, Cloud]) -> np.ndarray:
        cam = self.cameras[view]
        fixed = self.odom_frame if self.seg.motion else None
        views = []
        for topic, cloud in clouds.items():
            pts, centre, dt = points_in_camera(self.seg.tf, cam, frame.stamps_ns[view],
                                               self.lidar_frames[topic], cloud, fixed)
            self.stats.max_dt_ns = max(self.stats.max_dt_ns, dt)
            views.append(LidarView(pts, centre[:2], self.resolution[topic]))
        depth, stats = lidar_depth(views, cam.K, cam.hw, self.projection)
        if cam.model.needs_rectification:  # no image behind these pixels: no supervision there
            depth[self.rectifier.invalid_mask(view, cam.model, cam.hw)] = 0.0
        self.stats.density[view].append(float(np.count_nonzero(depth)) / depth.size)
        self.stats.occluded[view].append(stats.occluded / max(stats.pixels, 1))
        return depth

    def _provenance(self, frame: PlannedFrame, clouds: dict, depth: dict) -> str:
        scans = ";".join(f"{t}@{frame.stamps_ns[t]}" for t in clouds)
        points = sum(c.xyz.shape[0] for c in clouds.values())
        density = " ".join(f"{np.count_nonzero(depth[v]) / depth[v].size:.5f}" for v in ms2.VIEWS)
        return (f"{frame.name} {frame.stamps_ns['thr']} {frame.stamps_ns['rgb']} {scans} "
                f"{points} {density}\n")


def _decode(raw, msgtype: str, role: str, time_field: str):
    """Decoded payload of one needed message, or the DecodeError that stops its frames."""
    try:
        msg = rt.TYPESTORE.deserialize_cdr(raw, msgtype)
    except Exception as exc:  # noqa: BLE001 - a damaged CDR raises almost anything
        return DecodeError("undecodable", f"{type(exc).__name__}: {exc}")
    try:
        if role in ms2.VIEWS:
            return decode_image(msg, msgtype, role)
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        return decode_cloud(msg, stamp_ns, time_field)
    except DecodeError as err:
        return err


def _needed(jobs: list[SequenceJob], topics: Topics) -> dict:
    """(topic, ordinal) -> [(job, frame, role)] for every part of every frame still to write."""
    topic_of = {"thr": topics.images["thr"], "rgb": topics.images["rgb"]}
    needed: dict = {}
    for job in jobs:
        for frame in job.seg.frames:
            if job.writer.has_frame(frame.name):
                job.stats.resumed += 1
                continue
            for role, ordinal in frame.ordinals.items():
                needed.setdefault((topic_of.get(role, role), ordinal), []).append((job, frame, role))
    return needed


def write_frames(path: Path, index: BagIndex, topics: Topics, jobs: list[SequenceJob],
                 time_field: str, progress=None) -> None:
    """Read the bag once and write every job's pending frames (pass 2)."""
    needed = _needed(jobs, topics)
    parts_left = Counter((id(job), frame.index) for entries in needed.values()
                         for job, frame, _ in entries)
    role_of = {topics.images["thr"]: "thr", topics.images["rgb"]: "rgb"}
    counters: Counter = Counter()
    with Reader(path) as reader:
        for conn, _, raw in reader.messages(connections=connections(reader, topics)):
            key = (conn.topic, counters[conn.topic])
            counters[conn.topic] += 1
            if key not in needed:
                continue
            data = _decode(raw, conn.msgtype, role_of.get(conn.topic, conn.topic), time_field)
            for job, frame, role in needed.pop(key):
                if isinstance(data, Cloud) and job.resolution.get(role) is None:
                    job.resolution[role] = angular_resolution(data) or DEFAULT_RESOLUTION_RAD
                parts = job.pending.setdefault(frame.index, {})
                parts[role] = data
                parts_left[(id(job), frame.index)] -= 1
                if parts_left[(id(job), frame.index)] == 0:
                    job.process(frame, job.pending.pop(frame.index))
                    if progress is not None:
                        progress(1)
    for job in jobs:
        job.stats.skipped["message missing on the second read"] += len(job.pending)


DEFAULT_RESOLUTION_RAD = (np.deg2rad(0.4), np.deg2rad(0.2))  # an unorganised cloud without `ring`


def summary_record(job: SequenceJob, source: Path, digest: str, extra: dict) -> str:
    """The sequence's bag_to_ms2.json (provenance and summary) as text."""
    s = job.stats
    record = {"tool": "bag_to_ms2", "digest": digest, "source": str(source),
              "clock_segment": job.seg.segment, "frames": len(job.writer.frames),
              "hub_frame": job.cameras["thr"].frame_id + " (rectified; stands in for MS2's NIR)",
              "motion_compensated": job.seg.motion, "max_point_to_image_ms": s.max_dt_ns / 1e6,
              "skipped": {k: v for k, v in s.skipped.items() if v}, **extra}
    if s.points:
        record["lidar_points_per_frame"] = {"mean": float(np.mean(s.points)),
                                            "min": int(np.min(s.points)),
                                            "max": int(np.max(s.points))}
        record["gt_density"] = {v: float(np.mean(d)) for v, d in s.density.items() if d}
        record["occluded_fraction"] = {v: float(np.mean(d)) for v, d in s.occluded.items() if d}
    return json.dumps(record, indent=2) + "\n"
