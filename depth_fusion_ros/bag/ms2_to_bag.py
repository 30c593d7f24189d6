"""`ms2_to_bag`: one MS2 sequence (image folders) -> a rosbag2 that ROS 2 Jazzy plays.

MS2 (Shin et al., CVPR 2023) ships PNG folders, not bags, so this project converts them. Usage:

    ms2_to_bag --ms2-root /data/MS2 --sequence _2021-08-06-11-23-45 --out seq.bag \
        [--storage mcap|sqlite3] [--max-frames N] [--no-gt] [--force]

Topics (all stamps are the camera's own stamp; the bag's receive time equals the header stamp):

| topic | type | notes |
|---|---|---|
| /thermal/image_raw | sensor_msgs/Image | mono16 raw counts, 640x256, frame `thermal_optical_frame` |
| /thermal/camera_info | sensor_msgs/CameraInfo | K_thrL, P = [K 0], plumb_bob with 5 zeros (rectified) |
| /rgb/image_raw | sensor_msgs/Image | rgb8, 1224x384, frame `rgb_optical_frame` |
| /rgb/camera_info | sensor_msgs/CameraInfo | K_rgbL, as above |
| /gt/thermal/depth, /gt/rgb/depth | sensor_msgs/Image | 32FC1 metres (depth_filtered / 256), NaN = no LiDAR |
| /tf_static | tf2_msgs/TFMessage | one message, transient-local offered QoS (replayed latched) |

Frames (REP 103 / 105):
- `base_link`: the body frame of the left NIR camera, MS2's calibration hub (x forward, y left,
  z up, origin at the NIR camera centre). MS2 gives no vehicle frame, so this is the rig frame.
- `thermal_optical_frame`, `rgb_optical_frame`: the rectified left thermal / RGB cameras
  (z forward, x right, y down). Their poses come from `R/T_nir2thr`, `R/T_nir2rgb` of calib.npy.

Pairing: every frame must have both a thermal and an RGB image (`thr/img_left/F.png` and
`rgb/img_left/F.png`); a frame present in only one modality is an error naming the missing file.

Stamps: from `{thr,rgb}/img_left_timestamp.txt`. A `<frame> <seconds>` file is keyed by its frame
column (frame F gets the stamp on F's line, wherever the line is; a frame with no line is an
error); a plain `<seconds>` file is positional (line i = the i-th frame in name order). Both files
or neither: with neither, both streams are stamped frame index / 15 Hz from zero; with only one,
the streams could never pair (epoch stamps against stamps from zero), so that is an error.

Output: the bag is written under a hidden `.<name>.partial-<pid>` folder next to `--out` and
renamed at the end, so an interrupted conversion never leaves a complete-looking bag at `--out`.
Leftover `.<name>.partial-<pid>` / `.<name>.old-<pid>` folders of a killed run (SIGKILL, OOM),
whose PID is no longer alive, are removed by the next run for the same `--out`. mcap files get
their CRCs (chunks, data section, summary) written after the fact, since rosbags writes none, so
`depth_fusion_bag_player` can detect damage. `--force` replaces only what is recognisably a
rosbag2 bag: a folder with metadata.yaml and nothing but .mcap/.db3/.yaml files; anything else at
`--out` is refused (remove it yourself or choose another `--out`).

Exit codes: 0 written, 2 bad input or arguments (one line naming the file), 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from depth_fusion_ros import ms2
from depth_fusion_ros.bag import ros_types as rt
from depth_fusion_ros.bag.integrity import seal_mcap
from depth_fusion_ros.fileio import remove_stale_temporaries

BASE_FRAME = "base_link"
OPTICAL_FRAMES = {"thermal": "thermal_optical_frame", "rgb": "rgb_optical_frame"}
MS2_VIEW = {"thermal": "thr", "rgb": "rgb"}  # our view name -> MS2 folder name
CAMERA_RATE_HZ = 15.0
BAG_VERSION = 9  # rosbag2 metadata version written by ROS 2 Jazzy
BAG_FILE_SUFFIXES = (".mcap", ".db3", ".yaml")  # all a folder may hold for --force to replace it
# Pose of a camera optical frame (z fwd, x right, y down) in its body frame (x fwd, y left, z up).
BODY_FROM_OPTICAL = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]],
                             dtype=np.float64)


@dataclass(frozen=True)
class ConvertConfig:
    """What to convert and where."""

    ms2_root: Path
    sequence: str
    out: Path
    storage: str = "mcap"  # "mcap" | "sqlite3"
    max_frames: int | None = None
    with_gt: bool = True
    force: bool = False
    depth_kind: str = "depth_filtered"
    progress: bool = True


@dataclass(frozen=True)
class ConvertResult:
    bag_path: Path
    frames: int
    messages: int
    seconds: float
    size_bytes: int


def frame_stamps_ns(root: Path, seq: str, frames: list[str]) -> dict[str, np.ndarray]:
    """[N] int64 header stamps of each view for these frames (the stamp rule of the module doc)."""
    tables = {v: ms2.read_stamp_file(root, seq, MS2_VIEW[v]) for v in OPTICAL_FRAMES}
    if all(t is None for t in tables.values()):
        fallback = np.arange(len(frames), dtype=np.int64) * round(1e9 / CAMERA_RATE_HZ)
        return {v: fallback.copy() for v in OPTICAL_FRAMES}
    if any(t is None for t in tables.values()):
        have, lack = sorted(OPTICAL_FRAMES, key=lambda v: tables[v] is None)
        raise ms2.MS2FormatError(
            f"{ms2.timestamp_path(root, seq, MS2_VIEW[have])} exists but "
            f"{ms2.timestamp_path(root, seq, MS2_VIEW[lack])} does not: {lack} stamps would start "
            f"at 0 while {have} stamps are the file's, so the bag could never pair them; restore "
            f"the missing file, or remove both for 15 Hz stamps from zero")
    return {v: tables[v].for_frames(frames) for v in OPTICAL_FRAMES}


def paired_frames(root: Path, seq: str) -> list[str]:
    """Sorted frame names with both a thermal and an RGB image; a frame in only one modality is
    an MS2FormatError naming the missing file(s)."""
    rgb_dir = Path(root) / "sync_data" / seq / "rgb" / "img_left"
    frames = {"thr": set(ms2.list_frames(root, seq)),  # names the folder if it has no frames
              "rgb": {p.stem for p in rgb_dir.glob("*.png")}}
    missing = sorted((f, view) for view, other in (("thr", "rgb"), ("rgb", "thr"))
                     for f in frames[other] - frames[view])
    if missing:
        paths = [str(ms2.image_path(root, seq, view, f)) for f, view in missing[:3]]
        raise ms2.MS2FormatError(
            f"{len(missing)} frame(s) have an image in only one modality; missing: "
            f"{', '.join(paths)}{' ...' if len(missing) > 3 else ''}; restore the file(s) or "
            f"remove the frame from both thr/img_left and rgb/img_left")
    return sorted(frames["thr"])


def camera_poses_in_base(calib: dict) -> dict[str, np.ndarray]:
    """4x4 poses (metres) of the thermal and RGB optical frames in `base_link`.

    MS2's `R/T_nir2X` map NIR-camera points into camera X (X = R * p_nir + T, as in the MS2
    loader), so the pose of X in the NIR optical frame is T_X2nir = inv(T_nir2X).
    """
    ext = ms2.camera_extrinsics(calib)
    return {view: BODY_FROM_OPTICAL @ ext[f"T_{MS2_VIEW[view]}2nir"] for view in ("thermal", "rgb")}


def static_tf_message(calib: dict, stamp_ns: int):
    """tf2_msgs/TFMessage: base_link -> thermal_optical_frame, base_link -> rgb_optical_frame."""
    poses = camera_poses_in_base(calib)
    return rt.tf_message([rt.transform_stamped(poses[v], BASE_FRAME, OPTICAL_FRAMES[v], stamp_ns)
                          for v in ("thermal", "rgb")])


def _check_replaceable(out: Path) -> None:
    """FileExistsError unless `out` is recognisably a rosbag2 bag that --force may replace."""
    if out.is_symlink() or not out.is_dir():
        reason = "is a symbolic link" if out.is_symlink() else "is a file, not a bag folder"
    elif not (out / "metadata.yaml").is_file():
        reason = "has no metadata.yaml"
    else:
        others = sorted(p.name for p in out.iterdir() if p.is_symlink() or not p.is_file()
                        or p.suffix not in BAG_FILE_SUFFIXES)
        reason = f"also holds {others[:5]}" if others else None
    if reason:
        raise FileExistsError(f"--out {out} exists and {reason}; --force only replaces a rosbag2 "
                              f"bag (a folder with metadata.yaml and only .mcap/.db3/.yaml "
                              f"files): remove it yourself or choose another --out")


def _check_inputs(cfg: ConvertConfig) -> list[str]:
    seq_dir = Path(cfg.ms2_root) / "sync_data" / cfg.sequence
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"MS2 sequence folder {seq_dir} does not exist; check --ms2-root "
                                f"(the folder holding sync_data/) and --sequence")
    if cfg.out.exists() or cfg.out.is_symlink():
        if not cfg.force:
            raise FileExistsError(f"{cfg.out} exists; pass --force to overwrite it")
        _check_replaceable(cfg.out)
    return paired_frames(cfg.ms2_root, cfg.sequence)


class _BagTopics:
    """The writer's connections, one per topic."""

    def __init__(self, writer: Writer, with_gt: bool) -> None:
        def add(topic, msgtype, qos=rt.SENSOR_QOS):
            return writer.add_connection(topic, msgtype, typestore=rt.TYPESTORE,
                                         offered_qos_profiles=[qos])
        self.tf_static = add("/tf_static", rt.TF_MESSAGE, rt.TF_STATIC_QOS)
        self.image = {v: add(f"/{v}/image_raw", rt.IMAGE) for v in OPTICAL_FRAMES}
        self.info = {v: add(f"/{v}/camera_info", rt.CAMERA_INFO) for v in OPTICAL_FRAMES}
        self.gt = {v: add(f"/gt/{v}/depth", rt.IMAGE) for v in OPTICAL_FRAMES} if with_gt else {}


def _write_frame(writer: Writer, topics: _BagTopics, cfg: ConvertConfig, calib: dict,
                 frame: str, stamps_ns: dict[str, int]) -> int:
    """Write one frame's images, camera infos and GT in stamp order; returns messages written."""
    root, seq = cfg.ms2_root, cfg.sequence
    images = {"thermal": (ms2.read_thermal(root, seq, frame), "mono16"),
              "rgb": (ms2.read_rgb(root, seq, frame), "rgb8")}
    written = 0
    for view in sorted(OPTICAL_FRAMES, key=lambda v: stamps_ns[v]):
        stamp_ns, frame_id = stamps_ns[view], OPTICAL_FRAMES[view]
        array, encoding = images[view]
        height, width = array.shape[:2]
        # camera_info first: a consumer that needs intrinsics can use the image it pairs with.
        msgs = [(topics.info[view], rt.camera_info(calib[f"K_{MS2_VIEW[view]}L"], width, height,
                                                   stamp_ns, frame_id)),
                (topics.image[view], rt.image(array, encoding, stamp_ns, frame_id))]
        if cfg.with_gt:
            depth_m = ms2.read_depth(root, seq, MS2_VIEW[view], frame, kind=cfg.depth_kind)
            depth_m = np.where(depth_m > 0, depth_m, np.nan).astype(np.float32)  # REP 118 invalid
            msgs.append((topics.gt[view], rt.image(depth_m, "32FC1", stamp_ns, frame_id)))
        for conn, msg in msgs:
            writer.write(conn, stamp_ns, rt.serialize(msg))
            written += 1
    return written


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _publish(tmp_bag: Path, out: Path) -> None:
    """Move the finished bag into place (replacing an old one only now, after success)."""
    trash = None
    if out.exists():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(trash)
    tmp_bag.rename(out)
    if trash is not None:
        shutil.rmtree(trash) if trash.is_dir() else trash.unlink()


def _partial_pattern(out: Path) -> re.Pattern[str]:
    """Names of this tool's temporaries for `out`: `.<name>.partial-<pid>`, `.<name>.old-<pid>`."""
    return re.compile(rf"\.{re.escape(out.name)}\.(?:partial|old)-(?P<pid>\d+)")


def _validate(cfg: ConvertConfig) -> ConvertConfig:
    cfg = ConvertConfig(**{**cfg.__dict__, "ms2_root": Path(cfg.ms2_root), "out": Path(cfg.out)})
    if cfg.storage not in ("mcap", "sqlite3"):
        raise ValueError(f"--storage must be mcap or sqlite3, got {cfg.storage!r}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {cfg.max_frames} (omit it for all frames)")
    return cfg


def convert(cfg: ConvertConfig) -> ConvertResult:
    """Convert one MS2 sequence to a rosbag2 at `cfg.out` (see the module docstring)."""
    cfg = _validate(cfg)
    remove_stale_temporaries(cfg.out.parent, _partial_pattern(cfg.out))  # killed runs' leftovers
    frames = _check_inputs(cfg)
    calib = ms2.load_calib(cfg.ms2_root, cfg.sequence)
    stamps = frame_stamps_ns(cfg.ms2_root, cfg.sequence, frames)
    frames = frames[:cfg.max_frames]
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = cfg.out.parent / f".{cfg.out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    tmp_bag = tmp_dir / cfg.out.name  # same leaf name, so the storage file is named as in the end
    start_s = time.perf_counter()
    writer = Writer(tmp_bag, version=BAG_VERSION, storage_plugin=StoragePlugin[cfg.storage.upper()])
    try:
        writer.open()
        topics = _BagTopics(writer, cfg.with_gt)
        first_ns = int(min(stamps["thermal"][0], stamps["rgb"][0]))
        writer.write(topics.tf_static, first_ns, rt.serialize(static_tf_message(calib, first_ns)))
        messages = 1
        for i, frame in enumerate(tqdm(frames, desc=f"ms2_to_bag {cfg.sequence}", unit="frame",
                                       disable=not cfg.progress)):
            messages += _write_frame(writer, topics, cfg, calib, frame,
                                     {v: int(stamps[v][i]) for v in OPTICAL_FRAMES})
        writer.close()
        for mcap in tmp_bag.glob("*.mcap"):
            seal_mcap(mcap)  # rosbags writes no CRCs; the player checks them
        _publish(tmp_bag, cfg.out)
    except BaseException:
        writer.abort()
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return ConvertResult(cfg.out, len(frames), messages, time.perf_counter() - start_s,
                         _dir_size(cfg.out))


def _parse_args(argv: list[str] | None) -> ConvertConfig:
    parser = argparse.ArgumentParser(prog="ms2_to_bag", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ms2-root", type=Path, required=True,
                        help="MS2 root folder (holds sync_data/ and proj_depth/)")
    parser.add_argument("--sequence", required=True, help="sequence name under sync_data/")
    parser.add_argument("--out", type=Path, required=True, help="output bag folder")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="convert only the first N (N >= 1)")
    parser.add_argument("--no-gt", action="store_true", help="omit /gt/*/depth")
    parser.add_argument("--depth-kind", default="depth_filtered",
                        help="proj_depth sub-folder for the GT (default depth_filtered)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max-frames must be >= 1, got {args.max_frames} (omit it for all frames)")
    return ConvertConfig(ms2_root=args.ms2_root, sequence=args.sequence, out=args.out,
                         storage=args.storage, max_frames=args.max_frames, with_gt=not args.no_gt,
                         force=args.force, depth_kind=args.depth_kind, progress=not args.quiet)


def _raise_on_sigterm(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through convert()'s cleanup


def main(argv: list[str] | None = None) -> int:
    cfg = _parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        result = convert(cfg)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as err:
        print(f"ms2_to_bag: error: {' '.join(str(err).split())}", file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:
        print(f"ms2_to_bag: interrupted; no bag written at {cfg.out}", file=sys.stderr)
        return 130
    mb = result.size_bytes / 1e6
    print(f"wrote {result.bag_path} ({cfg.storage}): {result.frames} frames, {result.messages} "
          f"messages, {mb:.1f} MB ({mb / max(result.frames, 1):.2f} MB/frame) in "
          f"{result.seconds:.1f} s ({result.frames / max(result.seconds, 1e-9):.1f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
