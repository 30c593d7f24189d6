"""ms2_to_bag and depth_fusion_bag_player on a generated MS2-format sequence, read back with rosbags.

The last test is the replay path end to end, all real processes over DDS: the player publishes
the bag into depth_fusion_node (tiny ONNX model) and depth_fusion_evaluator.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rosbags.rosbag2 import Reader
from test_evaluator import ros_env, script_cmd

from depth_fusion_ros import ms2
from depth_fusion_ros.bag import ros_types as rt
from depth_fusion_ros.bag.ms2_to_bag import OPTICAL_FRAMES, ConvertConfig, convert, main

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 3
IMAGE_TOPICS = {"/thermal/image_raw": ("mono16", 640, 256), "/rgb/image_raw": ("rgb8", 1224, 384),
                "/gt/thermal/depth": ("32FC1", 640, 256), "/gt/rgb/depth": ("32FC1", 1224, 384)}


@pytest.fixture(scope="session")
def ms2_seq(tmp_path_factory) -> tuple[Path, str]:
    """A generated MS2-format dataset (1 sequence, N_FRAMES frames): (root, sequence)."""
    root = tmp_path_factory.mktemp("ms2")
    subprocess.run([sys.executable, "-m", "training.synthetic", "--out", str(root),
                    "--sequences", "1", "--frames", str(N_FRAMES), "--seed", "0"],
                   check=True, cwd=REPO, env=ros_env(), capture_output=True, timeout=120)
    (seq,) = sorted(p.name for p in (root / "sync_data").iterdir())
    return root, seq


@pytest.fixture(scope="session")
def mcap_bag(ms2_seq, tmp_path_factory) -> Path:
    root, seq = ms2_seq
    out = tmp_path_factory.mktemp("bags") / "seq.bag"
    convert(ConvertConfig(ms2_root=root, sequence=seq, out=out, storage="mcap", progress=False))
    return out


def _expected_stamps(root: Path, seq: str, view: str) -> np.ndarray:
    stamps = ms2.read_timestamps(root, seq, view)
    if stamps is None:
        return np.arange(N_FRAMES, dtype=np.int64) * 66_666_667
    return np.asarray(stamps[:N_FRAMES], dtype=np.int64)


def _read_all(bag: Path) -> dict[str, list]:
    out = {}
    with Reader(bag) as reader:
        for conn, stamp_ns, raw in reader.messages():
            msg = rt.TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            out.setdefault(conn.topic, []).append((stamp_ns, msg))
    return out


def _pixels(msg) -> np.ndarray:
    dtype = {"mono16": "<u2", "rgb8": "u1", "32FC1": "<f4"}[msg.encoding]
    shape = (msg.height, msg.width, 3) if msg.encoding == "rgb8" else (msg.height, msg.width)
    return np.frombuffer(msg.data.tobytes(), dtype=dtype).reshape(shape)


def _pose(transform) -> np.ndarray:
    q = transform.rotation
    x, y, z, w = q.x, q.y, q.z, q.w
    pose = np.eye(4)
    pose[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    pose[:3, 3] = [transform.translation.x, transform.translation.y, transform.translation.z]
    return pose


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_convert_and_read_back(ms2_seq, mcap_bag, tmp_path, storage):
    root, seq = ms2_seq
    bag = mcap_bag
    if storage == "sqlite3":
        bag = tmp_path / "seq_sqlite.bag"
        assert main(["--ms2-root", str(root), "--sequence", seq, "--out", str(bag),
                     "--storage", "sqlite3", "--quiet"]) == 0
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == storage and meta["version"] == 9
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in meta["topics_with_message_count"]}
    assert qos["/tf_static"][0]["durability"] == "transient_local"  # replayed latched
    msgs = _read_all(bag)
    assert set(msgs) == {"/tf_static", "/thermal/camera_info", "/rgb/camera_info", *IMAGE_TOPICS}
    assert len(msgs["/tf_static"]) == 1
    calib = ms2.load_calib(root, seq)
    frames = ms2.list_frames(root, seq)
    for topic, (encoding, width, height) in IMAGE_TOPICS.items():
        view = topic.split("/")[-2] if topic.startswith("/gt") else topic.split("/")[1]
        ms2_view = {"thermal": "thr", "rgb": "rgb"}[view]
        assert len(msgs[topic]) == N_FRAMES
        stamps = _expected_stamps(root, seq, ms2_view)
        for i, (stamp_ns, msg) in enumerate(msgs[topic]):
            header_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            assert stamp_ns == header_ns == stamps[i]
            assert msg.header.frame_id == OPTICAL_FRAMES[view]
            assert (msg.encoding, msg.width, msg.height) == (encoding, width, height)
            pixels = _pixels(msg)
            if topic.startswith("/gt"):
                png = cv2.imread(str(ms2.depth_path(root, seq, ms2_view, frames[i])),
                                 cv2.IMREAD_UNCHANGED)
                assert np.array_equal(np.isnan(pixels), png == 0)
                np.testing.assert_array_equal(pixels[png > 0], png[png > 0] / np.float32(256))
            elif view == "thermal":
                np.testing.assert_array_equal(pixels, ms2.read_thermal(root, seq, frames[i]))
            else:
                np.testing.assert_array_equal(pixels, ms2.read_rgb(root, seq, frames[i]))
        infos = msgs[f"/{view}/camera_info"]
        assert [s for s, _ in infos] == [s for s, _ in msgs[topic]]
        info = infos[0][1]
        k = calib[f"K_{ms2_view}L"]
        np.testing.assert_allclose(info.k.reshape(3, 3), k)
        np.testing.assert_allclose(info.p.reshape(3, 4), np.hstack([k, np.zeros((3, 1))]))
        assert (info.width, info.height, info.distortion_model) == (width, height, "plumb_bob")
        assert np.array_equal(info.d, np.zeros(5))
    (tf_stamp, tf_msg), = msgs["/tf_static"]
    poses = {t.child_frame_id: _pose(t.transform) for t in tf_msg.transforms}
    assert {t.header.frame_id for t in tf_msg.transforms} == {"base_link"}
    assert set(poses) == {"thermal_optical_frame", "rgb_optical_frame"}
    # Independent of the converter's maths: thermal -> RGB straight from calib.npy (mm -> m).
    def nir2(cam):
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = calib[f"R_nir2{cam}"], calib[f"T_nir2{cam}"] / 1000.0
        return m
    thr2rgb = nir2("rgb") @ np.linalg.inv(nir2("thr"))
    np.testing.assert_allclose(np.linalg.inv(poses["rgb_optical_frame"])
                               @ poses["thermal_optical_frame"], thr2rgb, atol=1e-9)
    # base_link is x forward: each camera's optical z axis points roughly along it.
    for pose in poses.values():
        assert pose[0, 2] > 0.9


def test_refuses_overwrite_without_force(ms2_seq, tmp_path, capsys):
    root, seq = ms2_seq
    out = tmp_path / "exists.bag"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["--ms2-root", str(root), "--sequence", seq, "--out", str(out), "--quiet",
            "--max-frames", "1", "--no-gt"]
    assert main(args) == 2
    assert str(out) in capsys.readouterr().err and (out / "keep.txt").exists()
    # --force replaces only a rosbag2 bag: this folder of someone's files is refused, untouched.
    assert main(args + ["--force"]) == 2
    assert "only replaces a rosbag2 bag" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    out.rmdir()
    assert main(args) == 0 and main(args + ["--force"]) == 0  # a bag is replaced
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == 1 + 4  # tf_static + 2 images + 2 camera infos, no GT
    assert main(["--ms2-root", str(tmp_path / "nowhere"), "--sequence", seq, "--out",
                 str(tmp_path / "x.bag")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


def test_bad_frame_leaves_no_bag(ms2_seq, tmp_path):
    root, seq = ms2_seq
    broken = tmp_path / "ms2"
    shutil.copytree(root, broken)
    bad = ms2.image_path(broken, seq, "rgb", ms2.list_frames(broken, seq)[1])
    bad.write_bytes(bad.read_bytes()[:100])  # truncated PNG mid-sequence
    out = tmp_path / "out.bag"
    with pytest.raises(ms2.MS2FormatError, match=str(bad)):
        convert(ConvertConfig(ms2_root=broken, sequence=seq, out=out, progress=False))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [broken]  # partial folder removed too


def test_sigterm_mid_conversion_leaves_no_bag(ms2_seq, tmp_path):
    root, seq = ms2_seq
    out = tmp_path / "out.bag"
    slow = ("import sys, time; from depth_fusion_ros import ms2; read = ms2.read_rgb\n"
            "def slow(*a, **k):\n    time.sleep(0.5)\n    return read(*a, **k)\n"
            "ms2.read_rgb = slow\nfrom depth_fusion_ros.bag.ms2_to_bag import main\n"
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", slow, "--ms2-root", str(root), "--sequence",
                             seq, "--out", str(out), "--quiet"], env=ros_env(),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not list(tmp_path.glob(".out.bag.partial-*/out.bag/*.mcap")):
        assert time.monotonic() < deadline and proc.poll() is None, "never started writing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_player_topics_timing_and_clock(ms2_seq, mcap_bag, tmp_path):
    """Recorded messages and stamps come out unchanged, only --topics, and /clock = bag time."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image

    root, seq = ms2_seq
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("player_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    infos, gts, clocks = [], [], []
    node.create_subscription(CameraInfo, "/thermal/camera_info", infos.append, 10)
    node.create_subscription(Image, "/gt/thermal/depth", gts.append, 10)
    node.create_subscription(Clock, "/clock", clocks.append, 50)
    try:
        player = subprocess.Popen(
            script_cmd("depth_fusion_bag_player", "depth_fusion_ros.bag.player")
            + [str(mcap_bag), "--topics", "/thermal/camera_info", "/gt/thermal/depth", "--clock",
               "--rate", "0.5", "--wait-for-subscribers", "1", "--start-delay", "1",
               "--quiet"],
            env=ros_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (player.poll() is None or len(gts) < N_FRAMES):
            executor.spin_once(timeout_sec=0.05)
        out = _stop(player)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert player.returncode == 0, out
    expected = list(_expected_stamps(root, seq, "thr"))
    assert [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in infos] == expected
    np.testing.assert_allclose(infos[0].k.reshape(3, 3), ms2.load_calib(root, seq)["K_thrL"])
    assert len(gts) == N_FRAMES and gts[0].encoding == "32FC1"
    clock_ns = [c.clock.sec * 1_000_000_000 + c.clock.nanosec for c in clocks]
    assert clock_ns and clock_ns == sorted(clock_ns)  # bag time, never backwards
    assert expected[0] <= clock_ns[0] and clock_ns[-1] <= expected[-1]
    bad = subprocess.run(script_cmd("depth_fusion_bag_player", "depth_fusion_ros.bag.player")
                         + [str(tmp_path / "missing.bag")], env=ros_env(), capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "missing.bag" in bad.stderr


def test_player_into_node_and_evaluator(mcap_bag, tiny_onnx_model, tmp_path):
    """Player -> depth_fusion_node (tiny ONNX, CPU) + evaluator; depth, clouds and metrics arrive."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    params = tmp_path / "node.yaml"
    params.write_text(yaml.safe_dump({"depth_fusion": {"ros__parameters": {
        "model_path": str(tiny_onnx_model), "device": "cpu", "backend": "onnxruntime",
        "input_qos": "reliable", "sync_queue_size": 30, "warmup_iterations": 1}}}))
    summary = tmp_path / "summary.md"
    env = ros_env()
    procs = [subprocess.Popen(script_cmd("depth_fusion_node", "depth_fusion_ros.node")
                              + ["--ros-args", "--params-file", str(params)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
             subprocess.Popen(script_cmd("depth_fusion_evaluator", "depth_fusion_ros.evaluator")
                              + ["--ros-args", "-p", f"summary_path:={summary}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bag_replay_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    got = {"depth": [], "points": [], "rgb_points": [], "metrics": []}
    node.create_subscription(Image, "/thermal/depth/image", got["depth"].append, 10)
    node.create_subscription(PointCloud2, "/thermal/depth/points", got["points"].append, 10)
    node.create_subscription(PointCloud2, "/rgb/depth/points", got["rgb_points"].append, 10)
    node.create_subscription(DiagnosticArray, "/depth_fusion_evaluator/metrics",
                             got["metrics"].append, 10)
    try:
        # The node's 4 inputs and the evaluator's 2 GT topics, each waited for; --rate 0.5 gives
        # the CPU node time per pair.
        player = subprocess.Popen(
            script_cmd("depth_fusion_bag_player", "depth_fusion_ros.bag.player")
            + [str(mcap_bag), "--rate", "0.5", "--clock", "--wait-for-subscribers", "1",
               "--wait-timeout", "60", "--start-delay", "1", "--quiet", "--topics", *IMAGE_TOPICS,
               "/thermal/camera_info", "/rgb/camera_info"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline, finished_at = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if finished_at is None and player.poll() is not None:
                finished_at = time.monotonic()
            outputs_seen = all(got[k] for k in ("depth", "points", "rgb_points"))
            if finished_at is not None and (outputs_seen and len(got["metrics"]) >= 2
                                            or time.monotonic() - finished_at > 20):
                break  # bag done and outputs drained (or given up on)
        player_out = player.communicate(timeout=10)[0]
        assert player.returncode == 0, player_out
    finally:
        outs = _stop_all(procs, executor, node, context)
    assert got["depth"], f"no depth image; node said:\n{outs[0][-3000:]}\nplayer:{player_out}"
    depth = got["depth"][0]
    assert (depth.encoding, depth.header.frame_id) == ("32FC1", "thermal_optical_frame")
    stamps = {m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in got["depth"]}
    assert stamps <= set(_read_stamps(mcap_bag, "/thermal/image_raw"))
    assert got["points"] and got["points"][0].header.frame_id == "thermal_optical_frame"
    assert [f.name for f in got["points"][0].fields] == ["x", "y", "z", "intensity"]
    assert got["rgb_points"] and [f.name for f in got["rgb_points"][0].fields][-1] == "rgb"
    assert len(got["metrics"]) >= 2, f"evaluator said:\n{outs[1][-3000:]}"
    for msg in got["metrics"]:
        values = {kv.key: float(kv.value) for kv in msg.status[0].values}
        assert values["frame/valid_px"] > 100
        assert 0.0 < values["frame/metric/abs_rel"] < 100.0
        assert 0.0 <= values["frame/median/d1"] <= 1.0
    assert "| thermal / metric |" in summary.read_text()


def _stop(proc: subprocess.Popen) -> str:
    """Output of a process after SIGINT (killed if it does not exit within 20 s)."""
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0] + "\n[killed: no exit 20 s after SIGINT]"


def _stop_all(procs: list[subprocess.Popen], executor, node, context) -> list[str]:
    """SIGINT every process and collect its output (_stop), then end the test's rclpy side."""
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    outs = [_stop(proc) for proc in procs]
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    return outs


def _read_stamps(bag: Path, topic: str) -> list[int]:
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [stamp for _, stamp, _ in reader.messages(connections=conns)]


# --- Tools that never lie about their data: bad inputs are errors that name the file (exit 2) ---

def _copy_dataset(ms2_seq, tmp_path) -> tuple[Path, str]:
    root, seq = ms2_seq
    copy = tmp_path / "ms2"
    shutil.copytree(root, copy)
    return copy, seq


def _args(root: Path, seq: str, out: Path, *extra: str) -> list[str]:
    return ["--ms2-root", str(root), "--sequence", seq, "--out", str(out), "--quiet", "--no-gt",
            *extra]


def _one_line_error(err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(("ms2_to_bag: error: ",
                                                    "depth_fusion_bag_player: error: ")), err
    assert "Traceback" not in err and all(name in err for name in names), err


@pytest.mark.parametrize("view", ["thr", "rgb"])
def test_frame_in_one_modality_is_an_error(ms2_seq, tmp_path, capsys, view):
    """A thermal (or RGB) PNG missing mid-sequence: exit 2 naming it, not a bag with shifted
    thermal stamps and a silently dropped RGB frame."""
    root, seq = _copy_dataset(ms2_seq, tmp_path)
    missing = ms2.image_path(root, seq, view, "000001")
    missing.unlink()
    out = tmp_path / "out.bag"
    assert main(_args(root, seq, out)) == 2
    _one_line_error(capsys.readouterr().err, str(missing))
    assert not out.exists()


def test_stamps_keyed_by_frame_column(ms2_seq, tmp_path):
    """`<frame> <seconds>` lines in any order give each frame its own stamp; `<seconds>` lines
    stay positional."""
    root, seq = _copy_dataset(ms2_seq, tmp_path)
    thr_file = ms2.timestamp_path(root, seq, "thr")
    lines = thr_file.read_text().splitlines()
    by_frame = {line.split()[0]: ms2._seconds_to_ns(line.split()[1]) for line in lines}
    thr_file.write_text("\n".join(reversed(lines)) + "\n")  # same pairs, lines reversed
    rgb_file = ms2.timestamp_path(root, seq, "rgb")
    rgb_seconds = ["1628237025.5", "1628237026", "1628237026.25"]
    rgb_file.write_text("".join(f"{s}\n" for s in rgb_seconds))  # no frame column
    out = tmp_path / "out.bag"
    convert(ConvertConfig(ms2_root=root, sequence=seq, out=out, with_gt=False, progress=False))
    msgs = _read_all(out)
    thermal = [(stamp, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, msg)
               for stamp, msg in msgs["/thermal/image_raw"]]
    frames = ms2.list_frames(root, seq)
    assert [t[0] for t in thermal] == [t[1] for t in thermal] == [by_frame[f] for f in frames]
    for (_, _, msg), frame in zip(thermal, frames, strict=True):  # the pixels of that frame
        np.testing.assert_array_equal(_pixels(msg), ms2.read_thermal(root, seq, frame))
    assert [s for s, _ in msgs["/rgb/image_raw"]] == [1628237025_500000000, 1628237026_000000000,
                                                      1628237026_250000000]


def test_stamp_file_problems_are_errors(ms2_seq, tmp_path, capsys):
    root, seq = _copy_dataset(ms2_seq, tmp_path)
    thr_file, rgb_file = (ms2.timestamp_path(root, seq, v) for v in ("thr", "rgb"))
    thr_text = thr_file.read_text()
    thr_file.write_text("".join(thr_text.splitlines(keepends=True)[:2]))  # no line for 000002
    assert main(_args(root, seq, tmp_path / "a.bag")) == 2
    _one_line_error(capsys.readouterr().err, str(thr_file), "000002")
    thr_file.unlink()  # RGB stamps are 2021 epoch times, thermal would start at 0: never pairs
    assert main(_args(root, seq, tmp_path / "b.bag")) == 2
    _one_line_error(capsys.readouterr().err, str(thr_file), str(rgb_file))
    rgb_file.unlink()  # neither: both streams 15 Hz from zero
    assert main(_args(root, seq, tmp_path / "c.bag")) == 0
    msgs = _read_all(tmp_path / "c.bag")
    for topic in ("/thermal/image_raw", "/rgb/image_raw"):
        assert [s for s, _ in msgs[topic]] == [0, 66_666_667, 133_333_334]
    assert not (tmp_path / "a.bag").exists() and not (tmp_path / "b.bag").exists()


def test_bad_calib_and_max_frames_are_errors(ms2_seq, tmp_path, capsys):
    root, seq = _copy_dataset(ms2_seq, tmp_path)
    calib_path = root / "sync_data" / seq / "calib.npy"
    good = ms2.load_calib(root, seq)
    out = tmp_path / "out.bag"
    for argv in (["--max-frames", "0"], ["--max-frames", "-2"]):
        with pytest.raises(SystemExit) as exit_info:
            main(_args(root, seq, out, *argv))
        assert exit_info.value.code == 2 and "--max-frames" in capsys.readouterr().err
    calib_path.write_bytes(calib_path.read_bytes()[:200])  # truncated pickle
    assert main(_args(root, seq, out)) == 2
    _one_line_error(capsys.readouterr().err, str(calib_path))
    for key, bad in (("K_thrL", np.nan), ("K_rgbL", 0.0)):
        calib = {k: v.copy() for k, v in good.items()}
        calib[key][0, 0] = bad
        np.save(calib_path, calib, allow_pickle=True)
        assert main(_args(root, seq, out)) == 2
        _one_line_error(capsys.readouterr().err, str(calib_path), key)
    assert not out.exists()


def test_force_replaces_only_a_bag(ms2_seq, tmp_path, capsys):
    root, seq = ms2_seq
    out = tmp_path / "out.bag"
    out.mkdir()
    (out / "metadata.yaml").write_text("mine: true\n")
    (out / "thesis.tex").write_text("years of work")
    assert main(_args(root, seq, out, "--max-frames", "1", "--force")) == 2
    _one_line_error(capsys.readouterr().err, str(out), "thesis.tex")
    assert sorted(p.name for p in out.iterdir()) == ["metadata.yaml", "thesis.tex"]
    a_file = tmp_path / "notes.bag"
    a_file.write_text("not a bag")
    assert main(_args(root, seq, a_file, "--max-frames", "1", "--force")) == 2
    assert a_file.read_text() == "not a bag"
    bag = tmp_path / "real.bag"
    assert main(_args(root, seq, bag, "--max-frames", "1")) == 0
    assert main(_args(root, seq, bag, "--max-frames", "2", "--force")) == 0
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["message_count"] == 1 + 2 * 4


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sigkill_leftovers_removed_by_next_run(ms2_seq, tmp_path):
    """A SIGKILLed conversion leaves `.out.bag.partial-PID/`; the next run removes it (dead PID)
    and nothing else: a live writer's folder and other names stay."""
    root, seq = ms2_seq
    out = tmp_path / "out.bag"
    slow = ("import sys, time; from depth_fusion_ros import ms2; read = ms2.read_rgb\n"
            "def slow(*a, **k):\n    time.sleep(0.5)\n    return read(*a, **k)\n"
            "ms2.read_rgb = slow\nfrom depth_fusion_ros.bag.ms2_to_bag import main\n"
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", slow] + _args(root, seq, out), env=ros_env())
    deadline = time.monotonic() + 20
    while not list(tmp_path.glob(".out.bag.partial-*/out.bag/*.mcap")):
        assert time.monotonic() < deadline and proc.poll() is None, "never started writing"
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=20)
    killed = tmp_path / f".out.bag.partial-{proc.pid}"
    assert killed.is_dir()  # SIGKILL: no cleanup ran
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [tmp_path / f".out.bag.partial-{live.pid}", tmp_path / ".out.bag.partial-x1",
                tmp_path / f".other.bag.partial-{_dead_pid()}", tmp_path / f".out.bag.old-{live.pid}"]
        for path in keep:
            path.mkdir()
        trash = tmp_path / f".out.bag.old-{_dead_pid()}"  # killed between the two renames
        trash.mkdir()
        convert(ConvertConfig(ms2_root=root, sequence=seq, out=out, with_gt=False,
                              max_frames=1, progress=False))
        assert not killed.exists() and not trash.exists()
        assert all(path.is_dir() for path in keep)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [out.name] + [p.name for p in keep])
    finally:
        live.kill()
        live.wait()


def _damage(bag: Path, how: str) -> Path:
    """The file `how` damages in a copy of `bag` (the copy is the bag folder's parent)."""
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    if how == "truncated":
        mcap.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        mcap.write_bytes(b"")
    elif how == "bad_magic":
        mcap.write_bytes(b"PK\x03\x04" + data[4:])
    elif how == "missing":
        mcap.unlink()
    elif how == "random_bytes":
        noise = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
        middle = len(data) // 2
        mcap.write_bytes(data[:middle] + noise + data[middle + 64:])
    else:
        meta = bag / "metadata.yaml"
        meta.write_text({"bad_yaml": "rosbag2_bagfile_information: [unclosed\n  - x: {",
                         "not_a_bag_yaml": "just: a mapping\n"}[how])
        return meta
    return mcap


@pytest.mark.parametrize("how", ["truncated", "empty", "bad_magic", "missing", "bad_yaml",
                                 "not_a_bag_yaml"])
def test_player_rejects_damaged_bag(mcap_bag, tmp_path, capsys, how):
    from depth_fusion_ros.bag import player

    bag = tmp_path / mcap_bag.name
    shutil.copytree(mcap_bag, bag)
    damaged = _damage(bag, how)
    assert player.main([str(bag), "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, str(damaged))


def test_player_detects_random_bytes_by_crc(mcap_bag, tmp_path):
    """64 random bytes mid-file: the converter's CRCs make the player refuse it (exit 2) before
    publishing anything; the intact bag passes the same check."""
    bag = tmp_path / mcap_bag.name
    shutil.copytree(mcap_bag, bag)
    damaged = _damage(bag, "random_bytes")
    run = subprocess.run(script_cmd("depth_fusion_bag_player", "depth_fusion_ros.bag.player")
                         + [str(bag), "--quiet"], env=ros_env(), capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    _one_line_error(run.stderr, str(damaged), "fails its CRC")
    from depth_fusion_ros.bag.integrity import check_bag

    check_bag(mcap_bag)  # the intact bag passes


def test_bag_image_refuses_mismatched_dtype():
    """The converter's Image builder casts nothing either (float64 as mono16 would wrap)."""
    with pytest.raises(ValueError, match="mono16 needs uint16 pixels, got float64"):
        rt.image(np.array([[70000.0, np.nan]]), "mono16", 0, "thermal_optical_frame")
    with pytest.raises(ValueError, match="32FC1 needs float32 pixels, got float64"):
        rt.image(np.zeros((2, 2)), "32FC1", 0, "thermal_optical_frame")
    msg = rt.image(np.array([[1, 65535]], ">u2"), "mono16", 0, "thermal_optical_frame")
    assert bytes(msg.data) == np.array([[1, 65535]], "<u2").tobytes()


# --- Lossless replay: every bag frame reaches the node; what is not evaluated is the node's drop --

LONG_FRAMES = 12


@pytest.fixture(scope="session")
def long_bag(tmp_path_factory) -> Path:
    """A 12-frame (0.8 s at 15 fps) MS2-format sequence as a bag, as ms2_to_bag writes it."""
    root = tmp_path_factory.mktemp("ms2_long")
    subprocess.run([sys.executable, "-m", "training.synthetic", "--out", str(root),
                    "--sequences", "1", "--frames", str(LONG_FRAMES), "--seed", "1"],
                   check=True, cwd=REPO, env=ros_env(), capture_output=True, timeout=180)
    (seq,) = sorted(p.name for p in (root / "sync_data").iterdir())
    out = tmp_path_factory.mktemp("long_bag") / "long.bag"
    convert(ConvertConfig(ms2_root=root, sequence=seq, out=out, storage="mcap", progress=False))
    return out


def test_bag_records_reliable_camera_qos_and_player_offers_reliable(long_bag):
    """ms2_to_bag records the camera topics reliable (so `ros2 bag play` offers reliable and the
    node's input_qos auto subscribes reliable); /tf_static stays latched."""
    meta = yaml.safe_load((long_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in meta["topics_with_message_count"]}
    if isinstance(qos["/rgb/image_raw"], str):  # rosbag2 < Jazzy wrote a YAML string
        qos = {k: yaml.safe_load(v) for k, v in qos.items()}
    for topic in (*IMAGE_TOPICS, "/thermal/camera_info", "/rgb/camera_info"):
        assert qos[topic][0]["reliability"] == "reliable", (topic, qos[topic])
    assert qos["/tf_static"][0]["durability"] == "transient_local"


def _node_status(msgs: list) -> dict[str, str]:
    for msg in reversed(msgs):
        for status in msg.status:
            if status.name.endswith(": depth fusion"):
                return {kv.key: kv.value for kv in status.values}
    return {}


def _play_until_scored(bag: Path, executor, diagnostics: list, env: dict) -> None:
    """Play the whole bag (every topic, /tf_static included: latched topics are not waited for),
    then spin until the node has handled every pair and the evaluator has scored its outputs."""
    player = subprocess.Popen(
        script_cmd("depth_fusion_bag_player", "depth_fusion_ros.bag.player")
        + [str(bag), "--wait-for-subscribers", "1", "--wait-timeout", "90", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 150
    while player.poll() is None and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    player_out = player.communicate(timeout=10)[0]
    assert player.returncode == 0, player_out

    def drained() -> bool:
        status = _node_status(diagnostics)
        return bool(status) and int(status["pairs_processed"]) + int(
            status["pairs_dropped"]) >= LONG_FRAMES

    def scored() -> bool:  # the evaluator has scored every pair the node processed
        done = _node_status(diagnostics).get("pairs_processed")
        views = {s.name: {kv.key: kv.value for kv in s.values}
                 for d in diagnostics for s in d.status}
        return all(views.get(f"depth_fusion_evaluator: {v}", {}).get("frames") == done
                   for v in ("thermal", "rgb"))
    for condition in (drained, scored):
        end = time.monotonic() + 30
        while not condition() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)


def test_replay_at_rate_one_loses_no_frame_in_transport(long_bag, tiny_onnx_model, tmp_path):
    """Player (all topics, rate 1.0) -> node (default parameters: input_qos auto) -> evaluator.

    Every bag frame reaches the node and the evaluator; a frame that is not evaluated is one the
    node dropped itself (the tiny 256x640 model is slower than 15 fps on a small CPU), counted in
    pairs_dropped: evaluated + dropped = bag frames.
    """
    from diagnostic_msgs.msg import DiagnosticArray

    params = tmp_path / "node.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model_path": str(tiny_onnx_model), "device": "cpu", "backend": "onnxruntime",
        "warmup_iterations": 1, "diagnostics_period_s": 0.25}}}))
    summary = tmp_path / "summary.md"
    env = ros_env()
    procs = [subprocess.Popen(script_cmd(name, module) + ["--ros-args", *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, module, args in (
                 ("depth_fusion_node", "depth_fusion_ros.node", ["--params-file", str(params)]),
                 ("depth_fusion_evaluator", "depth_fusion_ros.evaluator",
                  ["-p", f"summary_path:={summary}"]))]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("lossless_replay_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    diagnostics: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    try:
        _play_until_scored(long_bag, executor, diagnostics, env)
    finally:
        outs = _stop_all(procs, executor, node, context)
    status = _node_status(diagnostics)
    assert status, f"no node diagnostics; node said:\n{outs[0][-3000:]}"
    # nothing lost before the node: every frame of the bag formed a pair
    assert status["pairs_matched"] == str(LONG_FRAMES), (status, outs[0][-3000:])
    assert (status["unmatched_thermal"], status["unmatched_rgb"]) == ("0", "0"), status
    processed, dropped = int(status["pairs_processed"]), int(status["pairs_dropped"])
    assert processed + dropped == LONG_FRAMES and processed >= 1, str(sorted(status.items()))
    assert status["bad_messages"] == "0", str(sorted(status.items()))
    assert "subscribed reliable, volatile" in outs[0]  # input_qos auto matched the player
    text = summary.read_text()
    for view in ("thermal", "rgb"):  # the evaluator saw every GT frame and scored each output
        assert f"{view}: {processed} of {LONG_FRAMES} ground-truth frames evaluated" in text, (
            text, status)
