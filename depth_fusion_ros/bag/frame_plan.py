"""Which frames `bag_to_ms2` writes, decided from the pass-1 index alone (pure numpy, no I/O).

Rules, in order, each skipped frame counted under its reason:
1. Clock segments: where the thermal camera's header stamps stop advancing with the bag's log
   time (they differ by more than `clock_jump_ns`: a driver or simulation clock reset), a new
   segment starts; messages belong to a segment by log time, and nothing is paired, matched or
   interpolated across segments. Each segment becomes its own MS2 sequence.
2. Pairing: every thermal image with the RGB image nearest in stamp within `pair_slop_ns`, one
   to one (closest pairs first). Duplicate thermal stamps keep the first message.
3. Selection: `time_ranges_s` (seconds after the bag's first message, log time), then every
   `stride`-th remaining pair, then `min_speed_mps` (DMCF and MS2 drop frames where the vehicle
   stands still; the speed comes from odometry).
4. LiDAR: per topic, the scan whose centre time (stamp + half a period for `lidar_stamp` =
   "start") is nearest to the thermal stamp within `lidar_slop_ns`.
5. Transforms: with motion compensation the odom -> base transform must cover the images' stamps
   and the scans' sweeps.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from depth_fusion_ros.bag.bag_index import BagIndex, BagInputError
from depth_fusion_ros.bag.tf_buffer import TfBuffer, TfError

NS = 1_000_000_000


@dataclass(frozen=True)
class PlanConfig:
    pair_slop_ns: int = 20_000_000
    lidar_slop_ns: int = 60_000_000
    lidar_stamp: str = "start"  # what a scan's header stamp marks: start | middle | end
    clock_jump_ns: int = NS
    time_ranges_s: tuple[tuple[float, float], ...] = ()
    stride: int = 1
    min_speed_mps: float = 0.0
    base_frame: str = "base_link"
    odom_frame: str = "odom"
    motion_compensation: bool = True


@dataclass
class PlannedFrame:
    index: int                       # position in the segment's frame list (the MS2 frame name)
    ordinals: dict[str, int]         # "thr" / "rgb" / LiDAR topic -> message ordinal
    stamps_ns: dict[str, int]        # same keys -> header stamp
    velocity_mps: np.ndarray | None  # (3,) in the odom frame, None without odometry

    @property
    def name(self) -> str:
        return f"{self.index:06d}"


@dataclass
class SegmentPlan:
    segment: int
    tf: TfBuffer
    motion: bool                      # odom -> base available: LiDAR points motion-compensated
    frames: list[PlannedFrame] = field(default_factory=list)
    period_ns: dict[str, int] = field(default_factory=dict)  # LiDAR topic -> scan period


@dataclass
class Plan:
    segments: list[SegmentPlan]
    skipped: Counter
    jumps: int


def clock_boundaries(stamp_ns: np.ndarray, log_ns: np.ndarray, jump_ns: int) -> np.ndarray:
    """Log times where a new clock segment starts (see rule 1)."""
    ok = stamp_ns >= 0
    stamp, log = stamp_ns[ok], log_ns[ok]
    jump = np.abs(np.diff(stamp) - np.diff(log)) > jump_ns
    return log[1:][jump]


def pair_nearest(a_ns: np.ndarray, b_ns: np.ndarray, slop_ns: int) -> np.ndarray:
    """For each a, the index of its b partner (nearest stamp within slop, one to one) or -1."""
    out = np.full(a_ns.size, -1, np.int64)
    if a_ns.size == 0 or b_ns.size == 0:
        return out
    order = np.argsort(b_ns, kind="stable")
    sorted_b = b_ns[order]
    pos = np.searchsorted(sorted_b, a_ns)
    candidates = []
    for i, p in enumerate(pos):
        for j in (p - 1, p):
            if 0 <= j < sorted_b.size and abs(int(sorted_b[j]) - int(a_ns[i])) <= slop_ns:
                candidates.append((abs(int(sorted_b[j]) - int(a_ns[i])), i, int(order[j])))
    used = set()
    for _, i, j in sorted(candidates):
        if out[i] < 0 and j not in used:
            out[i] = j
            used.add(j)
    return out


def segment_tf(index: BagIndex, seg_of, segment: int, cfg: PlanConfig,
               odometry_child: str | None) -> TfBuffer:
    """The transforms of one clock segment (static ones in all); BagInputError on a bad tree."""
    tf = TfBuffer()
    try:
        for parent, child, t, q in index.tf_static:
            tf.add(parent, child, 0, t, q, static=True)
        for log_ns, parent, child, stamp, t, q in index.tf:
            if seg_of(log_ns) == segment and child.lstrip("/") != odometry_child:
                tf.add(parent, child, stamp, t, q, static=False)
        for log_ns, parent, child, stamp, t, q, _ in index.odometry:
            if seg_of(log_ns) == segment:
                tf.add(parent, child, stamp, t, q, static=False)
        return tf.finalize()
    except TfError as err:
        raise BagInputError(f"{index.path}: {err}") from err


def _velocities(index: BagIndex, seg: SegmentPlan, seg_of, stamps_ns: np.ndarray,
                cfg: PlanConfig) -> np.ndarray | None:
    """[N, 3] vehicle velocity in the odom frame at the stamps (NaN where unknown), or None."""
    if index.odometry:  # the odometry's own twist (child frame), turned into the odom frame
        rows = [o for o in index.odometry if seg_of(o[0]) == seg.segment]
        if not rows:
            return np.full((stamps_ns.size, 3), np.nan)
        t = np.array([r[3] for r in rows], np.int64)
        v = np.array([r[6] for r in rows], np.float64)
        nearest = np.clip(np.searchsorted(t, stamps_ns), 0, t.size - 1)
        ok = np.abs(t[nearest] - stamps_ns) < NS // 5
        out = np.full((stamps_ns.size, 3), np.nan)
        for i in np.flatnonzero(ok):
            try:
                out[i] = seg.tf.lookup(cfg.odom_frame, rows[nearest[i]][2], int(stamps_ns[i]))[:3, :3] \
                    @ v[nearest[i]]
            except TfError:
                pass
        return out
    if not seg.motion:
        return None
    out = np.full((stamps_ns.size, 3), np.nan)
    half = NS // 20  # central difference over +-50 ms
    for i, s in enumerate(stamps_ns):
        try:
            ahead = seg.tf.lookup(cfg.odom_frame, cfg.base_frame, int(s) + half)[:3, 3]
            behind = seg.tf.lookup(cfg.odom_frame, cfg.base_frame, int(s) - half)[:3, 3]
            out[i] = (ahead - behind) / (2 * half / NS)
        except TfError:
            pass
    return out


def _scan_centres(index: BagIndex, topic: str, mask: np.ndarray, cfg: PlanConfig) -> tuple:
    stamps = index.lidars[topic].stamp_ns
    ordinals = np.flatnonzero(mask & (stamps >= 0))
    diffs = np.diff(np.sort(stamps[ordinals]))
    period = int(np.median(diffs)) if diffs.size else NS // 10
    shift = {"start": period // 2, "middle": 0, "end": -period // 2}[cfg.lidar_stamp]
    return ordinals, stamps[ordinals] + shift, period


def _in_ranges(log_ns: np.ndarray, start_ns: int, ranges: tuple) -> np.ndarray:
    if not ranges:
        return np.ones(log_ns.size, bool)
    t = (log_ns - start_ns) / NS
    return np.any([(t >= a) & (t <= b) for a, b in ranges], axis=0)


def _pairs(index: BagIndex, seg_of, segment: int, cfg: PlanConfig, skipped: Counter):
    """(thermal ordinals, rgb ordinals) paired in this segment, in thermal stamp order."""
    thr, rgb = index.images["thr"], index.images["rgb"]
    t_ord = np.flatnonzero((seg_of(thr.log_ns) == segment) & (thr.stamp_ns >= 0))
    r_ord = np.flatnonzero((seg_of(rgb.log_ns) == segment) & (rgb.stamp_ns >= 0))
    t_ord = t_ord[np.argsort(thr.stamp_ns[t_ord], kind="stable")]
    unique = np.ones(t_ord.size, bool)
    unique[1:] = np.diff(thr.stamp_ns[t_ord]) != 0
    skipped["duplicate thermal stamp"] += int((~unique).sum())
    t_ord = t_ord[unique]
    partner = pair_nearest(thr.stamp_ns[t_ord], rgb.stamp_ns[r_ord], cfg.pair_slop_ns)
    skipped[f"no RGB image within {cfg.pair_slop_ns / 1e6:g} ms"] += int((partner < 0).sum())
    return t_ord[partner >= 0], r_ord[partner[partner >= 0]]


def _select(index: BagIndex, t_ord, r_ord, cfg: PlanConfig, skipped: Counter):
    thr = index.images["thr"]
    keep = _in_ranges(thr.log_ns[t_ord], index.start_ns, cfg.time_ranges_s)
    skipped["outside --time-range"] += int((~keep).sum())
    t_ord, r_ord = t_ord[keep], r_ord[keep]
    skipped[f"--stride {cfg.stride}"] += int(t_ord.size - t_ord[::cfg.stride].size)
    return t_ord[::cfg.stride], r_ord[::cfg.stride]


def _match_lidars(index: BagIndex, seg: SegmentPlan, seg_of, stamps_ns: np.ndarray,
                  cfg: PlanConfig, skipped: Counter) -> tuple[dict, np.ndarray]:
    """Per LiDAR topic the matched scan ordinal per frame, and which frames have all scans."""
    matched, ok = {}, np.ones(stamps_ns.size, bool)
    for topic, entry in index.lidars.items():
        ordinals, centres, period = _scan_centres(index, topic, seg_of(entry.log_ns) == seg.segment,
                                                  cfg)
        seg.period_ns[topic] = period
        partner = np.full(stamps_ns.size, -1)
        if ordinals.size:
            order = np.argsort(centres, kind="stable")
            centres, ordinals = centres[order], ordinals[order]
            pos = np.searchsorted(centres, stamps_ns)
            left, right = np.clip(pos - 1, 0, centres.size - 1), np.clip(pos, 0, centres.size - 1)
            near = np.where(np.abs(centres[left] - stamps_ns) <= np.abs(centres[right] - stamps_ns),
                            left, right)
            good = np.abs(centres[near] - stamps_ns) <= cfg.lidar_slop_ns
            partner[good] = ordinals[near[good]]
        missing = ok & (partner < 0)
        skipped[f"no {topic} scan within {cfg.lidar_slop_ns / 1e6:g} ms"] += int(missing.sum())
        ok &= partner >= 0
        matched[topic] = partner
    return matched, ok


def _tf_covers(seg: SegmentPlan, stamps: dict[str, int], cfg: PlanConfig) -> bool:
    """With motion compensation: odom -> base known at the images and over the sweeps."""
    if not seg.motion:
        return True
    times = [stamps["thr"], stamps["rgb"]]
    for topic, period in seg.period_ns.items():
        times += [stamps[topic], stamps[topic] + period]
    try:
        seg.tf.lookup(cfg.odom_frame, cfg.base_frame, np.asarray(times, np.int64))
        return True
    except TfError:
        return False


def _plan_segment(index: BagIndex, seg: SegmentPlan, seg_of, cfg: PlanConfig,
                  skipped: Counter) -> None:
    t_ord, r_ord = _select(index, *_pairs(index, seg_of, seg.segment, cfg, skipped), cfg, skipped)
    thr_ns = index.images["thr"].stamp_ns[t_ord]
    velocity = _velocities(index, seg, seg_of, thr_ns, cfg)
    if cfg.min_speed_mps > 0:
        if velocity is None:
            raise BagInputError(f"--min-speed-mps needs odometry and {index.path} has none: "
                                f"record /tf {cfg.odom_frame} -> {cfg.base_frame} or pass "
                                "--odom-topic, or drop --min-speed-mps")
        speed = np.linalg.norm(velocity, axis=1)
        moving = speed >= cfg.min_speed_mps  # NaN (unknown speed) is not moving
        skipped[f"static (< {cfg.min_speed_mps:g} m/s) or speed unknown"] += int((~moving).sum())
        t_ord, r_ord, thr_ns, velocity = t_ord[moving], r_ord[moving], thr_ns[moving], velocity[moving]
    scans, ok = _match_lidars(index, seg, seg_of, thr_ns, cfg, skipped)
    for k in np.flatnonzero(ok):
        ordinals = {"thr": int(t_ord[k]), "rgb": int(r_ord[k]),
                    **{t: int(scans[t][k]) for t in scans}}
        stamps = {"thr": int(thr_ns[k]), "rgb": int(index.images["rgb"].stamp_ns[r_ord[k]]),
                  **{t: int(index.lidars[t].stamp_ns[scans[t][k]]) for t in scans}}
        if not _tf_covers(seg, stamps, cfg):
            skipped[f"no {cfg.odom_frame} -> {cfg.base_frame} transform at the frame's time"] += 1
            continue
        v = None if velocity is None or not np.isfinite(velocity[k]).all() else velocity[k]
        seg.frames.append(PlannedFrame(len(seg.frames), ordinals, stamps, v))


def _has_odometry(tf: TfBuffer, cfg: PlanConfig) -> bool:
    """True if odom -> base is a moving transform (a fixed frame for motion compensation)."""
    try:
        return not tf.is_static(cfg.odom_frame, cfg.base_frame)
    except TfError:
        return False


def plan_frames(index: BagIndex, cfg: PlanConfig) -> Plan:
    """The frames to write, per clock segment, and why the others are skipped. An odometry
    topic's poses replace /tf's transforms of the same child frame."""
    thr = index.images["thr"]
    odometry_child = index.odometry[0][2].lstrip("/") if index.odometry else None
    boundaries = clock_boundaries(thr.stamp_ns, thr.log_ns, cfg.clock_jump_ns)

    def seg_of(log_ns):
        return np.searchsorted(boundaries, log_ns, side="right")

    skipped: Counter = Counter()
    for (topic, reason), count in index.bad.items():
        skipped[f"unreadable {topic} message ({reason})"] += count
    segments = []
    for segment in range(boundaries.size + 1):
        tf = segment_tf(index, seg_of, segment, cfg, odometry_child)
        seg = SegmentPlan(segment, tf, cfg.motion_compensation and _has_odometry(tf, cfg))
        _plan_segment(index, seg, seg_of, cfg, skipped)
        segments.append(seg)
    return Plan(segments, skipped, int(boundaries.size))
