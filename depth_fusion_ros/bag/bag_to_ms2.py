"""`bag_to_ms2`: your own rig's rosbag2 recordings -> training data in the MS2 layout.

    bag_to_ms2 BAG [BAG ...] --out DATA --lidar-topic /lidar/points [--thermal-topic T]
        [--rgb-topic T] [--odom-topic T] [--split train|val|test|test_day|...]
        [--condition auto|day|night|rain] [--time-range A:B ...] [--stride N]
        [--min-speed-mps V] [--force] [--quiet]     (all options: bag_to_ms2 --help)

Each bag (MCAP or sqlite3) becomes one MS2 sequence named after its folder (`--sequence` for a
single bag), or one per clock segment when its stamps jump (`<name>_seg<k>`), written exactly as
`training.train` / `training.evaluate` read MS2 (ms2.py, ms2_writer.py): rectified left images
(thermal 16-bit, RGB as cv2 writes it), `calib.npy` with the real MS2 keys from tf (the
rectified thermal camera stands in for MS2's NIR hub: R_nir2thr = I), `<frame> <seconds>` stamp
files, `proj_depth/<seq>/{thr,rgb}/depth_filtered` from the LiDAR (metres x 256, uint16, 0 =
none, occlusion-filtered: depth_fusion_ros/lidar_projection.py), `gps_imu` velocity records when
odometry is recorded (so `data.min_speed_mps` works), the split lists and `conditions.txt`
(merged with what DATA already holds). Pairing and selection rules: bag/frame_plan.py.

Frames: image headers' frame_id are the cameras' optical frames, the PointCloud2 frame_id the
LiDAR's; tf must connect them to `--base-frame`. With `--odom-frame` -> `--base-frame` on /tf
(or `--odom-topic`), LiDAR points are motion-compensated to each image's stamp using per-point
times when the cloud has them (`t`, `time`, `timestamp`, ...); without, the summary states the
largest point-to-image time offset (error <= speed x offset, bag/rig_geometry.py).

Crash safety: a sequence is written under `<seq>.partial` folders and appears complete or not at
all; rerunning the same command resumes an interrupted sequence frame by frame and skips the
finished ones (`sync_data/<seq>/bag_to_ms2.json` records the inputs and options). A sequence
converted with other options is refused unless `--force`. One conversion per DATA at a time.

Exit codes: 0 written, 2 bad input (one line naming the topic, frame pair or file), 130 interrupted.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import ReaderError
from tqdm import tqdm

from depth_fusion_ros import ms2
from depth_fusion_ros.bag.bag_index import BagIndex, BagInputError, Topics, build_index
from depth_fusion_ros.bag.frame_plan import PlanConfig, plan_frames
from depth_fusion_ros.bag.ms2_sequence import SequenceJob, summary_record, write_frames
from depth_fusion_ros.bag.rig_geometry import calib_dict, camera_setup, sensor_pose
from depth_fusion_ros.lidar_projection import ProjectionConfig
from depth_fusion_ros.ms2_writer import SequenceWriter, write_conditions, write_split_lists

MARKER = "bag_to_ms2.json"
TEST_SPLIT = {"day": "test_day", "night": "test_night", "rain": "test_rainy"}
LUMA_SAMPLES = 30  # frames read back to label a sequence day or night


@dataclass(frozen=True)
class ConvertConfig:
    bags: tuple[Path, ...]
    out: Path
    topics: Topics
    plan: PlanConfig = field(default_factory=PlanConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    lidar_time_field: str = "auto"
    split: str = "train"
    condition: str = "auto"
    night_luma: float = 50.0
    sequence: str | None = None
    force: bool = False
    progress: bool = True


@dataclass
class SequenceResult:
    name: str
    split: str
    condition: str
    frames: int
    job: SequenceJob | None  # None: finished by an earlier run, nothing to do


def _digest(cfg: ConvertConfig, bag: Path, segment: int) -> str:
    """Identity of a sequence's inputs and every option that changes its files."""
    meta = bag / "metadata.yaml"
    content = meta.read_bytes() if meta.is_file() else b""
    options = {k: v for k, v in asdict(cfg).items()
               if k not in ("bags", "out", "split", "condition", "night_luma", "force", "progress")}
    text = repr((str(bag.resolve()), hashlib.sha256(content).hexdigest(), segment, options))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sequence_name(cfg: ConvertConfig, bag: Path, segment: int, segments: int) -> str:
    base = cfg.sequence or re.sub(r"[^A-Za-z0-9_.-]+", "_", bag.resolve().name)
    for start, end in cfg.plan.time_ranges_s:
        base += f"_t{start:g}-{end:g}"
    return f"{base}_seg{segment}" if segments > 1 else base


def _stored_digest(folder: Path) -> str | None:
    import json

    try:
        return json.loads((folder / MARKER).read_text()).get("digest")
    except (OSError, ValueError):
        return None


def _prepare(cfg: ConvertConfig, index: BagIndex, seg, name: str, digest: str):
    """A SequenceJob for a segment, or None if an earlier run finished it."""
    final = cfg.out / "sync_data" / name
    if final.exists():
        stored = _stored_digest(final)
        if stored == digest:
            return None
        if not cfg.force:
            why = "with other inputs or options" if stored else "not by bag_to_ms2"
            raise FileExistsError(f"sequence {final} exists, written {why}; pass --force to "
                                  f"replace it or --sequence to choose another name")
    views = {"thr": "thermal", "rgb": "RGB"}
    cameras = {}
    for view in ("thr", "rgb"):
        cameras[view], _ = camera_setup(view, cfg.topics.infos[view], index.infos[view],
                                        index.images[view].frame_id)
    first_ns = seg.frames[0].stamps_ns["thr"]
    poses = {v: sensor_pose(seg.tf, cfg.plan.base_frame, c.frame_id, first_ns, f"{views[v]} camera")
             for v, c in cameras.items()}
    lidar_frames = {t: index.lidars[t].frame_id.lstrip("/") for t in cfg.topics.lidars}
    for topic, frame in lidar_frames.items():
        sensor_pose(seg.tf, cfg.plan.base_frame, frame, first_ns, f"LiDAR ({topic})")
    partial = cfg.out / "sync_data" / f"{name}.partial"  # only now: the inputs are usable
    writer = SequenceWriter(cfg.out, name, resume=_stored_digest(partial) == digest)
    writer.write_calib(calib_dict(cameras["thr"], cameras["rgb"],
                                  np.linalg.inv(poses["thr"]) @ poses["rgb"]))
    writer.write_text(MARKER, f'{{"digest": "{digest}", "status": "partial"}}\n')
    return SequenceJob(name, seg, writer, cameras, lidar_frames, dict.fromkeys(lidar_frames),
                       cfg.projection, cfg.plan.odom_frame)


def _condition(cfg: ConvertConfig, name: str) -> str:
    """The user's label, or day/night by the median RGB brightness of up to 30 frames."""
    if cfg.condition != "auto":
        return cfg.condition
    import cv2

    frames = ms2.list_frames(cfg.out, name)
    step = max(1, len(frames) // LUMA_SAMPLES)
    luma = [cv2.imread(str(ms2.image_path(cfg.out, name, "rgb", f)), cv2.IMREAD_GRAYSCALE).mean()
            for f in frames[::step]]
    return "day" if float(np.median(luma)) >= cfg.night_luma else "night"


def _finish(cfg: ConvertConfig, job: SequenceJob, bag: Path, digest: str) -> None:
    if not job.writer.frames:
        job.writer.abort()
        return
    options = {"topics": asdict(cfg.topics), "plan": repr(cfg.plan),
               "projection": repr(cfg.projection), "lidar_time_field": cfg.lidar_time_field}
    job.writer.write_text(MARKER, summary_record(job, bag, digest, {"options": options}))
    job.writer.commit()


def convert_bag(cfg: ConvertConfig, bag: Path) -> list[SequenceResult]:
    """Index, plan and write one bag's sequences (see the module docstring)."""
    with tqdm(desc=f"index {bag.name}", unit="msg", disable=not cfg.progress, leave=False) as bar:
        index = build_index(bag, cfg.topics, progress=bar.update)
    plan = plan_frames(index, cfg.plan)
    results, jobs = [], []
    for seg in plan.segments:
        if not seg.frames:
            continue
        name = sequence_name(cfg, bag, seg.segment, len(plan.segments))
        digest = _digest(cfg, bag, seg.segment)
        job = _prepare(cfg, index, seg, name, digest)
        if job is not None:
            jobs.append((job, digest))
        results.append(SequenceResult(name, cfg.split, "", len(seg.frames), job))
    if not results:
        raise BagInputError(f"{bag}: no frame can be converted: {dict(plan.skipped)}")
    if jobs:  # the recording-wide skips (pairing, selection, ...) go with its first sequence
        jobs[0][0].stats.skipped.update(plan.skipped)
    total = sum(len(j.seg.frames) for j, _ in jobs)
    try:
        with tqdm(total=total, desc=f"convert {bag.name}", unit="frame",
                  disable=not cfg.progress) as bar:
            write_frames(bag, index, cfg.topics, [j for j, _ in jobs], cfg.lidar_time_field,
                         progress=bar.update)
    except BaseException:
        for job, _ in jobs:
            job.writer.close()  # keep the partial folders: the next run resumes them
        raise
    for job, digest in jobs:
        _finish(cfg, job, bag, digest)
    return results


@contextlib.contextmanager
def _locked(out: Path):
    """Hold DATA/.bag_to_ms2.lock: two conversions into one folder would mix their lists."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".bag_to_ms2.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise FileExistsError(f"another bag_to_ms2 is writing to {out}; wait for it or "
                                  "choose another --out") from err
        yield


def _split_of(cfg: ConvertConfig, condition: str) -> str:
    return TEST_SPLIT[condition] if cfg.split == "test" else cfg.split


def convert(cfg: ConvertConfig) -> list[SequenceResult]:
    """Convert every bag into `cfg.out`, then merge the split lists and conditions."""
    missing = [str(b) for b in cfg.bags if not Path(b).exists()]
    if missing:
        raise FileNotFoundError(f"bag(s) {missing} do not exist (a bag is the folder holding "
                                "metadata.yaml and the .mcap/.db3 files)")
    if cfg.sequence and len(cfg.bags) > 1:
        raise ValueError("--sequence names one sequence; with several bags each is named after "
                         "its folder")
    results = []
    with _locked(cfg.out):
        for bag in cfg.bags:
            results += convert_bag(cfg, Path(bag))
        for result in results:
            if (cfg.out / "sync_data" / result.name).is_dir():
                result.condition = _condition(cfg, result.name)
                result.split = _split_of(cfg, result.condition)
        done = [r for r in results if (cfg.out / "sync_data" / r.name).is_dir()]
        if not done:
            raise BagInputError("no frame could be written; see the reasons above")
        splits: dict[str, list[str]] = {}
        for r in done:
            splits.setdefault(r.split, []).append(r.name)
        write_split_lists(cfg.out, splits, merge=True)
        write_conditions(cfg.out, {r.name: r.condition for r in done}, merge=True)
    return results


def format_summary(results: list[SequenceResult]) -> str:
    """Human-readable summary: per sequence frames, skips by reason, points and GT density."""
    lines = []
    for r in results:
        if r.job is None:
            lines.append(f"{r.name}: already converted by an earlier run ({r.frames} frames), "
                         f"split {r.split}")
            continue
        s = r.job.stats
        line = (f"{r.name} [{r.split}, {r.condition or '-'}]: {s.written} frames written"
                + (f" (+{s.resumed} kept from an interrupted run)" if s.resumed else ""))
        if s.points:
            density = ", ".join(f"{v} {100 * np.mean(d):.2f} %" for v, d in s.density.items() if d)
            occluded = ", ".join(f"{v} {100 * np.mean(d):.1f} %" for v, d in s.occluded.items()
                                 if d)
            line += (f"; LiDAR points/frame mean {np.mean(s.points):.0f} (min {min(s.points)}, "
                     f"max {max(s.points)}); GT density {density}; occlusion-filtered {occluded}")
        comp = "motion-compensated" if r.job.seg.motion else "NOT motion-compensated (no odometry)"
        line += f"; LiDAR {comp}, largest point-to-image offset {s.max_dt_ns / 1e6:.0f} ms"
        lines.append(line)
        lines += [f"    skipped {n}: {reason}" for reason, n in sorted(s.skipped.items()) if n]
    return "\n".join(lines)


def _time_range(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(start or 0.0), float(end or "inf")
    except ValueError:
        raise ValueError(f"--time-range {text!r}: expected START:END in seconds after the bag's "
                         "first message, e.g. 30:90 (either side may be empty)") from None


def info_topic_for(image_topic: str) -> str:
    """image_transport's convention: `<ns>/image_raw[/compressed]` -> `<ns>/camera_info`."""
    base = image_topic.removesuffix("/compressed").rstrip("/")
    return (base.rsplit("/", 1)[0] if "/" in base.lstrip("/") else "") + "/camera_info"


def _parser():
    import argparse

    p = argparse.ArgumentParser(prog="bag_to_ms2", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("bags", nargs="+", type=Path, help="rosbag2 folders (MCAP or sqlite3)")
    add("--out", type=Path, required=True, help="MS2-layout data folder (created or extended)")
    add("--thermal-topic", default="/thermal/image_raw", help="Image or CompressedImage")
    add("--rgb-topic", default="/rgb/image_raw", help="Image or CompressedImage")
    add("--thermal-info-topic", help="default: <thermal namespace>/camera_info")
    add("--rgb-info-topic", help="default: <rgb namespace>/camera_info")
    add("--lidar-topic", action="append", required=True, help="PointCloud2 (repeat for several)")
    add("--odom-topic", help="nav_msgs/Odometry (default: /tf odom -> base, if recorded)")
    add("--base-frame", default="base_link")
    add("--odom-frame", default="odom")
    add("--no-motion-compensation", action="store_true")
    add("--lidar-stamp", choices=("start", "middle", "end"), default="start",
        help="what a scan's header stamp marks (default start, the ROS driver convention)")
    add("--lidar-time-field", default="auto", help="per-point time field: auto, none or a name")
    add("--pair-slop-ms", type=float, default=20.0, help="thermal-RGB stamp tolerance")
    add("--lidar-slop-ms", type=float, default=60.0, help="scan centre to image tolerance")
    add("--clock-jump-s", type=float, default=1.0, help="stamp vs log time jump = new segment")
    add("--time-range", action="append", default=[], metavar="A:B",
        help="seconds after the bag's first message (repeatable)")
    add("--stride", type=int, default=1, help="keep every N-th frame")
    add("--min-speed-mps", type=float, default=0.0, help="skip slower frames (needs odometry)")
    add("--split", default="train", choices=(*ms2.SPLITS, "test"),
        help="split list for the sequences; test = test_day/night/rainy by condition")
    add("--condition", default="auto", choices=("auto", *ms2.CONDITIONS),
        help="auto: day or night by the RGB brightness (rain only by hand)")
    add("--night-luma", type=float, default=50.0, help="auto: median grey below this = night")
    add("--sequence", help="sequence name (one bag only; default: the bag folder name)")
    add("--min-depth-m", type=float, default=0.5)
    add("--max-depth-m", type=float, default=80.0)
    add("--occlusion-margin", type=float, default=0.05, help="relative depth step = occluder")
    add("--no-occlusion-filter", action="store_true", help="z-buffer only (diagnostics)")
    add("--force", action="store_true", help="replace sequences converted with other options")
    add("--quiet", action="store_true", help="no progress bars")
    return p


def parse_args(argv: list[str] | None) -> ConvertConfig:
    args = _parser().parse_args(argv)
    if args.stride < 1 or args.min_speed_mps < 0 or min(args.pair_slop_ms, args.lidar_slop_ms) < 0:
        raise ValueError("--stride must be >= 1, --min-speed-mps and the slops >= 0")
    topics = Topics(images={"thr": args.thermal_topic, "rgb": args.rgb_topic},
                    infos={"thr": args.thermal_info_topic or info_topic_for(args.thermal_topic),
                           "rgb": args.rgb_info_topic or info_topic_for(args.rgb_topic)},
                    lidars=tuple(args.lidar_topic), odometry=args.odom_topic)
    plan = PlanConfig(pair_slop_ns=int(args.pair_slop_ms * 1e6),
                      lidar_slop_ns=int(args.lidar_slop_ms * 1e6), lidar_stamp=args.lidar_stamp,
                      clock_jump_ns=int(args.clock_jump_s * 1e9),
                      time_ranges_s=tuple(_time_range(t) for t in args.time_range),
                      stride=args.stride, min_speed_mps=args.min_speed_mps,
                      base_frame=args.base_frame, odom_frame=args.odom_frame,
                      motion_compensation=not args.no_motion_compensation)
    projection = ProjectionConfig(min_depth_m=args.min_depth_m, max_depth_m=args.max_depth_m,
                                  margin=args.occlusion_margin,
                                  occlusion=not args.no_occlusion_filter)
    return ConvertConfig(bags=tuple(args.bags), out=args.out, topics=topics, plan=plan,
                         projection=projection, lidar_time_field=args.lidar_time_field,
                         split=args.split, condition=args.condition, night_luma=args.night_luma,
                         sequence=args.sequence, force=args.force, progress=not args.quiet)


def _raise_on_sigterm(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the writers' cleanup


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
    except ValueError as err:
        print(f"bag_to_ms2: error: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        results = convert(cfg)
    except (BagInputError, FileNotFoundError, FileExistsError, ValueError, ReaderError,
            ms2.MS2FormatError) as err:
        print(f"bag_to_ms2: error: {' '.join(str(err).split())}", file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:
        print(f"bag_to_ms2: interrupted; finished sequences in {cfg.out} are complete, the "
              "interrupted one resumes when you rerun the same command", file=sys.stderr)
        return 130
    print(format_summary(results))
    print(f"wrote {cfg.out} (lists: {', '.join(sorted({r.split for r in results}))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
