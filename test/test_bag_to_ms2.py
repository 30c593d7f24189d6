"""bag_to_ms2 on bags recorded from the synthetic rig (training/synthetic/rig_bag.py): layout,
GT accuracy against the simulation's exact depth, occlusion filtering, selection options, clock
jumps, damaged messages, missing topics / tf, interruption and resume. Units: small pure ones."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from depth_fusion_ros import ms2
from depth_fusion_ros.bag import bag_to_ms2, ms2_sequence
from depth_fusion_ros.bag.bag_to_ms2 import info_topic_for, main
from depth_fusion_ros.bag.frame_plan import clock_boundaries, pair_nearest
from depth_fusion_ros.bag.sensor_decode import header_from_cdr
from depth_fusion_ros.bag.tf_buffer import TfBuffer, TfError
from depth_fusion_ros.lidar_projection import LidarView, ProjectionConfig, lidar_depth
from depth_fusion_ros.ms2_writer import SequenceWriter, depth_to_png, format_stamp_line
from training.synthetic.rig_bag import Faults, write_rig_bag
from training.synthetic.rig_check import check_sequence, read_provenance
from training.synthetic.rig_drive import DriveSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = DriveSpec(seconds=1.0, scale=0.5, seed=0)
LIDAR = ["--lidar-topic", "/lidar/points", "--quiet"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """(bag, drive) of one second of the synthetic rig, MCAP, raw bgr8 RGB, odom on /tf."""
    bag = tmp_path_factory.mktemp("bags") / "drive"
    return bag, write_rig_bag(bag, SPEC)


@pytest.fixture(scope="module")
def converted(rig, tmp_path_factory):
    out = tmp_path_factory.mktemp("ms2") / "data"
    assert main([str(rig[0]), "--out", str(out), *LIDAR]) == 0
    return out


def test_layout_calib_stamps_and_speed(rig, converted):
    bag, drive = rig
    assert ms2.read_split(converted, "train") == ["drive"]
    assert ms2.read_split(converted, "val") == [] and ms2.read_conditions(converted) == {"drive": "day"}
    frames = ms2.list_frames(converted, "drive")
    assert len(frames) >= 12  # 15 camera frames, the first and last lack a LiDAR scan in 60 ms
    assert ms2.read_thermal(converted, "drive", frames[0]).shape == (240, 320)
    assert ms2.read_rgb(converted, "drive", frames[0]).shape == (288, 512, 3)
    assert ms2.read_depth(converted, "drive", "rgb", frames[0]).shape == (288, 512)
    calib = ms2.load_calib(converted, "drive")
    np.testing.assert_allclose(calib["K_thrL"], drive.rig.thr.K)  # the rectified camera (P)
    np.testing.assert_allclose(calib["R_nir2thr"], np.eye(3))  # thermal = hub
    truth = np.linalg.inv(drive.T_base("rgb")) @ drive.T_base("thr")  # thermal -> RGB, metres
    np.testing.assert_allclose(ms2.camera_extrinsics(calib)["T_thr2rgb"], truth, atol=1e-9)
    rows = read_provenance(converted, "drive")
    stamps = ms2.read_stamp_file(converted, "drive", "thr").for_frames(frames)
    assert stamps.tolist() == [r["thr"] for r in rows] and np.all(np.diff(stamps) > 0)
    rgb = ms2.read_stamp_file(converted, "drive", "rgb").for_frames(frames)
    assert np.all(np.abs(stamps - rgb) < 20_000_000)
    assert ms2.read_speed_mps(converted, "drive", frames[3]) == pytest.approx(
        drive.scene.speed_mps, rel=1e-3)


def test_gt_matches_exact_depth_and_hidden_points_are_removed(rig, converted):
    figures = check_sequence(rig[1], converted, "drive")
    for view in ("thr", "rgb"):
        assert figures["abs_rel_median"][view] < 0.01, figures
        assert figures["hidden"][view] > 100, figures  # the rig really has hidden points
        assert figures["hidden_removed"][view] >= 0.95, figures
        assert figures["visible_kept"][view] > 0.85, figures  # and the filter keeps the rest


def test_rectified_images_match_the_render(rig, converted):
    drive = rig[1]
    row = read_provenance(converted, "drive")[2]
    exact, _ = drive.render("thr", row["thr"])
    image = ms2.read_thermal(converted, "drive", row["frame"]).astype(float)
    inner = drive.rectified_coverage("thr")
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
    diff = np.abs(image - exact)[inner]
    assert np.median(diff) < 0.02 * np.ptp(exact[inner]), np.median(diff)  # interpolation only


def test_sqlite_compressed_odometry_selection_and_test_split(tmp_path):
    bag = tmp_path / "stop"
    spec = DriveSpec(seconds=1.4, scale=0.5, seed=2, stop=(0.4, 0.5))
    # Odometry only from nav_msgs/Odometry (no /tf): still a fixed frame for motion compensation.
    drive = write_rig_bag(bag, spec, storage="sqlite3", rgb_compressed=True, odom=True,
                          faults=Faults(omit_topics=("/tf",)))
    out = tmp_path / "data"
    args = [str(bag), "--out", str(out), *LIDAR, "--rgb-topic", "/rgb/image_raw/compressed",
            "--odom-topic", "/odom", "--min-speed-mps", "1", "--time-range", "0:1.3",
            "--stride", "2", "--split", "test"]
    assert main(args) == 0
    assert ms2.read_split(out, "test_day") == ["stop_t0-1.3"]
    frames = ms2.list_frames(out, "stop_t0-1.3")
    assert 3 <= len(frames) <= 6  # every 2nd of ~19 in range, minus ~4 standing still
    for frame in frames:
        assert ms2.read_speed_mps(out, "stop_t0-1.3", frame) == pytest.approx(drive.scene.speed_mps)
    record = (out / "sync_data" / "stop_t0-1.3" / "bag_to_ms2.json").read_text()
    assert "static (< 1 m/s)" in record and "--stride 2" in record
    assert '"motion_compensated": true' in record
    assert check_sequence(drive, out, "stop_t0-1.3")["abs_rel_median"]["rgb"] < 0.01


def test_several_bags_in_one_command_and_the_day_night_rule(tmp_path):
    day, night = tmp_path / "day_drive", tmp_path / "night_drive"
    write_rig_bag(day, DriveSpec(seconds=0.6, scale=0.5, seed=6))
    write_rig_bag(night, DriveSpec(seconds=0.6, scale=0.5, seed=7, kind="night"))
    out = tmp_path / "data"
    # one command, two bags: one sequence each, filed by the brightness rule
    assert main([str(day), str(night), "--out", str(out), *LIDAR, "--split", "test"]) == 0
    assert ms2.read_split(out, "test_day") == ["day_drive"]
    assert ms2.read_split(out, "test_night") == ["night_drive"]
    # rain is never guessed: only by hand; the lists are merged, not replaced
    assert main([str(day), "--out", str(out), *LIDAR, "--split", "test", "--condition", "rain",
                 "--sequence", "day_as_rain"]) == 0
    assert ms2.read_split(out, "test_rainy") == ["day_as_rain"]
    assert ms2.read_split(out, "test_day") == ["day_drive"]
    assert ms2.read_split(out, "test_night") == ["night_drive"]
    assert ms2.read_conditions(out) == {"day_drive": "day", "night_drive": "night",
                                        "day_as_rain": "rain"}
    for seq in ("day_drive", "night_drive", "day_as_rain"):
        assert ms2.list_frames(out, seq)  # each a complete sequence


def test_two_lidar_topics_are_merged(rig, converted, tmp_path, capsys):
    # the same drive as `rig`, its sweep split column-wise over two topics (two LiDARs)
    bag = tmp_path / "two_lidars"
    drive = write_rig_bag(bag, SPEC, lidar_halves=True)
    outs, summary = {"both": tmp_path / "both", "one": tmp_path / "one"}, {}
    for name, topics in (("both", ["/lidar/points", "/lidar/points_b"]), ("one", ["/lidar/points_b"])):
        args = [arg for topic in topics for arg in ("--lidar-topic", topic)]
        assert main([str(bag), "--out", str(outs[name]), *args, "--quiet"]) == 0
        summary[name] = capsys.readouterr().out
    # the summary's LiDAR points per frame and GT density: two topics carry twice the points
    points = {name: int(re.search(r"LiDAR points/frame mean (\d+)", text)[1])
              for name, text in summary.items()}
    assert points["both"] == pytest.approx(2 * points["one"], rel=0.02), summary
    density = {name: [float(x) for x in re.search(r"GT density thr ([\d.]+) %, rgb ([\d.]+) %",
                                                   text).groups()] for name, text in summary.items()}
    assert all(b > o > 0 for b, o in zip(density["both"], density["one"], strict=True)), density
    figures = {name: check_sequence(drive, root, "two_lidars") for name, root in outs.items()}
    whole = check_sequence(rig[1], converted, "drive")  # one topic with the whole sweep
    for view in ("thr", "rgb"):
        assert figures["both"]["abs_rel_median"][view] < 0.01
        # both topics: about the whole sweep's ground truth; one of them: about half of it
        assert figures["both"]["gt_pixels"][view] >= 0.9 * whole["gt_pixels"][view]
        assert 0.3 < figures["one"]["gt_pixels"][view] / whole["gt_pixels"][view] < 0.7
    record = (outs["both"] / "sync_data" / "two_lidars" / "bag_to_ms2.json").read_text()
    assert "/lidar/points_b" in record


def test_without_odometry_points_are_not_compensated_and_say_so(rig, converted, tmp_path,
                                                                capsys):
    bag = tmp_path / "noodom"
    drive = write_rig_bag(bag, SPEC, faults=Faults(omit_topics=("/tf",)))
    out = tmp_path / "data"
    assert main([str(bag), "--out", str(out), *LIDAR, "--min-speed-mps", "1"]) == 2
    assert "--min-speed-mps needs odometry" in capsys.readouterr().err
    assert main([str(bag), "--out", str(out), *LIDAR]) == 0
    summary = capsys.readouterr().out
    assert "NOT motion-compensated (no odometry), largest point-to-image offset" in summary
    assert not (out / "sync_data" / "noodom" / "gps_imu").exists()  # no speed to record
    # The same drive as `rig`: without compensation each point is off by speed x its time
    # offset (up to ~0.9 m here), which doubles the mean error of the compensated conversion.
    plain = check_sequence(drive, out, "noodom")["abs_rel_mean"]
    compensated = check_sequence(rig[1], converted, "drive")["abs_rel_mean"]
    for view in ("thr", "rgb"):
        assert plain[view] > 1.5 * compensated[view], (plain, compensated)


@pytest.mark.parametrize("faults, args, message", [
    (Faults(), ["--lidar-topic", "/velodyne_points"], "LiDAR topic /velodyne_points is not in"),
    (Faults(omit_topics=("/rgb/camera_info",)), [], "RGB camera_info topic /rgb/camera_info"),
    (Faults(omit_static=("lidar_link",)), [], "'base_link' and the LiDAR (/lidar/points) frame "
                                              "'lidar_link'"),
    (Faults(omit_topics=("/tf", "/tf_static")), [], "neither /tf_static nor /tf"),
    (Faults(bad=tuple(("/thermal/camera_info", i) for i in range(5))), [],  # all uncalibrated
     "no usable camera_info on /thermal/camera_info"),
])
def test_missing_topics_and_tf_exit_2(tmp_path, capsys, faults, args, message):
    bag = tmp_path / "bad"
    spec = DriveSpec(seconds=0.3, scale=0.25, seed=1)
    write_rig_bag(bag, spec, faults=faults)
    lidar = args or ["--lidar-topic", "/lidar/points"]
    assert main([str(bag), "--out", str(tmp_path / "out"), "--quiet", *lidar]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "train_list.txt").exists()
    assert not list((tmp_path / "out").glob("*/*"))  # no sequence or partial folder left


def test_clock_jump_splits_the_recording(tmp_path):
    bag = tmp_path / "jump"
    write_rig_bag(bag, SPEC, faults=Faults(clock_jump=(0.5, -100.0)))
    out = tmp_path / "data"
    assert main([str(bag), "--out", str(out), *LIDAR]) == 0
    assert ms2.read_split(out, "train") == ["jump_seg0", "jump_seg1"]
    first, second = (ms2.read_timestamps(out, f"jump_seg{k}", "thr") for k in (0, 1))
    assert len(first) >= 5 and len(second) >= 4
    assert 99.0 < (first[-1] - second[0]) / 1e9 < 100.0  # the second clock runs 100 s behind
    for k in (0, 1):  # poses interpolated within each segment only: GT as dense as without jump
        depth = ms2.read_depth(out, f"jump_seg{k}", "thr", ms2.list_frames(out, f"jump_seg{k}")[1])
        assert np.count_nonzero(depth) / depth.size > 0.05


def test_damaged_messages_skip_only_their_frames(tmp_path):
    bag = tmp_path / "damaged"
    bad = (("/thermal/image_raw", 4), ("/lidar/points", 6), ("/rgb/camera_info", 0))
    write_rig_bag(bag, SPEC, faults=Faults(bad=bad))
    out = tmp_path / "data"
    assert main([str(bag), "--out", str(out), *LIDAR]) == 0
    record = (out / "sync_data" / "damaged" / "bag_to_ms2.json").read_text()
    assert "bad thr message (bad_data_length)" in record
    assert "bad /lidar/points message (bad_data_length)" in record
    assert 8 <= len(ms2.list_frames(out, "damaged")) <= 11  # 13 minus the 1 + 1-2 affected


def test_interrupted_conversion_resumes_to_the_same_result(rig, converted, tmp_path, monkeypatch,
                                                          capsys):
    bag, _ = rig
    out = tmp_path / "data"
    original = ms2_sequence.SequenceJob.process
    calls = {"n": 0}

    def interrupt_after_five(self, frame, parts):
        if calls["n"] == 5:
            raise KeyboardInterrupt("test")
        calls["n"] += 1
        original(self, frame, parts)

    monkeypatch.setattr(ms2_sequence.SequenceJob, "process", interrupt_after_five)
    assert main([str(bag), "--out", str(out), *LIDAR]) == 130
    assert not (out / "sync_data" / "drive").exists() and not (out / "train_list.txt").exists()
    assert (out / "sync_data" / "drive.partial").is_dir()  # kept for the rerun
    monkeypatch.setattr(ms2_sequence.SequenceJob, "process", original)
    assert main([str(bag), "--out", str(out), *LIDAR]) == 0
    assert "(+5 kept from an interrupted run)" in capsys.readouterr().out
    for frame in ms2.list_frames(converted, "drive"):
        for view in ("thr", "rgb"):
            assert ms2.depth_path(out, "drive", view, frame).read_bytes() == \
                ms2.depth_path(converted, "drive", view, frame).read_bytes()
    assert main([str(bag), "--out", str(out), *LIDAR]) == 0
    assert "already converted" in capsys.readouterr().out
    assert main([str(bag), "--out", str(out), *LIDAR, "--stride", "2"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main([str(bag), "--out", str(out), *LIDAR, "--stride", "2", "--force"]) == 0
    # every 2nd of the 15 paired frames, less the first and last that have no scan in 60 ms
    assert len(ms2.list_frames(out, "drive")) in (6, 7)


def test_sigkill_mid_sequence_then_rerun_resumes(tmp_path):
    """A real process killed while writing: no sequence appears; the rerun finishes it."""
    bag, out = tmp_path / "long", tmp_path / "data"
    write_rig_bag(bag, DriveSpec(seconds=2.0, scale=1.0, seed=4))
    cmd = [sys.executable, "-m", "depth_fusion_ros.bag.bag_to_ms2", str(bag), "--out", str(out),
           *LIDAR]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = out / "sync_data" / "long.partial" / "frames.journal"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not (out / "sync_data" / "long").exists() and not (out / "train_list.txt").exists()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "kept from an interrupted run" in done.stdout
    frames = ms2.list_frames(out, "long")
    assert len(frames) >= 25 and ms2.read_split(out, "train") == ["long"]
    assert len(ms2.read_timestamps(out, "long", "thr")) == len(frames)


def test_bad_arguments_exit_2(rig, tmp_path, capsys):
    assert main([str(rig[0]), "--out", str(tmp_path), *LIDAR, "--time-range", "5"]) == 2
    assert "--time-range '5'" in capsys.readouterr().err
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path), *LIDAR]) == 2
    assert "do not exist" in capsys.readouterr().err
    assert bag_to_ms2.parse_args([str(rig[0]), "--out", "x", *LIDAR]).topics.infos == {
        "thr": "/thermal/camera_info", "rgb": "/rgb/camera_info"}


# ------------------------------------------------------------------ units
def test_info_topic_pairing_and_clock_boundaries():
    assert info_topic_for("/cam/rgb/image_raw/compressed") == "/cam/rgb/camera_info"
    assert info_topic_for("image_raw") == "/camera_info"
    a = np.array([0, 100, 200, 300]) * 1_000_000
    b = np.array([5, 98, 102, 290, 500]) * 1_000_000
    assert pair_nearest(a, b, 20_000_000).tolist() == [0, 1, -1, 3]  # one to one, in slop
    assert pair_nearest(np.array([100, 101]) * 1_000_000, np.array([100]) * 1_000_000,
                        5_000_000).tolist() == [0, -1]
    stamps = np.array([100, 101, 102, 3, 4]) * 1_000_000_000
    logs = np.array([0, 1, 2, 3, 4]) * 1_000_000_000
    assert clock_boundaries(stamps, logs, 1_000_000_000).tolist() == [3_000_000_000]


def test_tf_buffer_interpolates_and_names_missing_frames():
    tf = TfBuffer(max_gap_ns=2_000_000_000)
    tf.add("base_link", "lidar", 0, (1.0, 0.0, 2.0), (0.0, 0.0, 0.0, 1.0), static=True)
    for stamp, x in ((0, 0.0), (1_000_000_000, 10.0)):
        tf.add("odom", "base_link", stamp, (x, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), static=False)
    tf.finalize()
    assert tf.lookup("odom", "lidar", 250_000_000)[:3, 3].tolist() == [3.5, 0.0, 2.0]
    moved = tf.lookup_moving("lidar", 500_000_000, "lidar", np.array([0, 1_000_000_000]), "odom")
    assert moved[:, 0, 3].tolist() == [-5.0, 5.0]  # a point seen 0.5 s earlier / later
    with pytest.raises(TfError, match="'camera' is not in"):
        tf.lookup("base_link", "camera")
    with pytest.raises(TfError, match="does not extrapolate"):
        tf.lookup("odom", "base_link", 2_000_000_000)
    with pytest.raises(TfError, match="two parents"):
        tf.add("map", "lidar", 0, (0, 0, 0), (0, 0, 0, 1), static=True)


def test_occlusion_filter_removes_see_through_points():
    """A wall 10 m ahead with a sparse grid of points; points 30 m ahead between its points."""
    K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    ys, xs = np.mgrid[-0.45:0.46:0.05, -0.45:0.46:0.05]
    wall = np.stack([xs.ravel() * 10, ys.ravel() * 10, np.full(xs.size, 10.0)], axis=1)
    behind = wall[:, :] * 3 + np.array([0.75, 0.75, 0.0])  # between the wall's points
    view = LidarView(np.vstack([wall, behind]), np.array([0.0, -0.5]), (0.05, 0.05))
    cfg = ProjectionConfig()
    depth, stats = lidar_depth([view], K, (100, 100), cfg)
    # The wall's points span pixels 5..95. The far points within one LiDAR column of them (its
    # footprint) go, so do those up to one scan line above them (the LiDAR sits above: hidden
    # points lie above their occluders); only the row below the wall stays.
    far = np.argwhere(depth > 20)
    assert len(far) == 19 and np.all(far[:, 0] == 98), far
    assert np.count_nonzero(depth == 10.0) == len(wall) and stats.occluded == 361 - 19
    depth, _ = lidar_depth([view], K, (100, 100), ProjectionConfig(occlusion=False))
    assert np.count_nonzero(depth > 20) == 361  # the z-buffer alone keeps them all


def test_writer_units_round_trip(tmp_path):
    assert depth_to_png(np.array([[0.0, np.nan, 1.0, 300.0, -1.0]])).tolist() == [[0, 0, 256, 0, 0]]
    assert format_stamp_line("000007", 1_628_000_000_000_000_001) == \
        "000007 1628000000.000000001\n"
    raw = bytes([0, 1, 0, 0]) + (5).to_bytes(4, "little") + (7).to_bytes(4, "little") \
        + (4).to_bytes(4, "little") + b"cam\x00"
    assert header_from_cdr(raw) == (5_000_000_007, "cam")


def _one_frame_sequence(root: Path, seq: str, value: int) -> SequenceWriter:
    writer = SequenceWriter(root, seq)
    writer.write_frame("000000", thermal=np.full((4, 6), value, np.uint16),
                       rgb=np.full((4, 6, 3), value, np.uint8),
                       depth={v: np.full((4, 6), value, np.uint16) for v in ms2.VIEWS},
                       stamps_ns={"thr": value, "rgb": value})
    return writer


def test_replacing_a_sequence_never_shows_old_images_with_new_depth(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _one_frame_sequence(root, "seq", 1).commit()
    _one_frame_sequence(root, "seq", 2).commit()  # --force: replaced whole
    assert ms2.read_depth(root, "seq", "thr", "000000").max() == pytest.approx(2 / 256)
    assert int(ms2.read_thermal(root, "seq", "000000").max()) == 2
    assert sorted(p.name for p in (root / "sync_data").iterdir()) == ["seq"]
    # killed right after the new depth maps moved in, before anything else
    writer = _one_frame_sequence(root, "seq", 3)
    real_rename = Path.rename

    def rename(self, target):
        done = real_rename(self, target)
        if self == writer.depth_tmp:
            raise KeyboardInterrupt  # stands in for the kill
        return done

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        writer.commit()
    monkeypatch.undo()
    # the old images are out of view: the sequence is missing (a rerun converts it), never
    # value-2 images beside value-3 depth maps
    assert not (root / "sync_data" / "seq").exists()
    assert ms2.read_depth(root, "seq", "thr", "000000").max() == pytest.approx(3 / 256)
    _one_frame_sequence(root, "seq", 4).commit()  # the rerun
    assert int(ms2.read_thermal(root, "seq", "000000").max()) == 4
    assert sorted(p.name for p in (root / "sync_data").iterdir()) == ["seq"]

