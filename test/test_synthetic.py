"""Synthetic MS2-format generator: layout, units, ranges, geometry consistency, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from depth_fusion_ros import ms2
from training.synthetic import SequenceRenderer, SequenceSpec, plan_sequences, split_counts
from training.synthetic.__main__ import main
from training.synthetic.raycast import cast
from training.synthetic.rig import calib_dict, make_rig

cv2 = pytest.importorskip("cv2")

FRAMES = 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One day train sequence and one night test sequence, 2 frames each."""
    root = tmp_path_factory.mktemp("synth") / "ds"
    assert main(["--out", str(root), "--frames", str(FRAMES), "--seed", "3", "--train", "1",
                 "--val", "0", "--test-day", "0", "--test-night", "1"]) == 0
    return root


def test_layout_and_lists(dataset):
    assert ms2.read_split(dataset, "train") == ["syn000_day"]
    assert ms2.read_split(dataset, "test_night") == ["syn001_night"]
    assert ms2.read_split(dataset, "val") == [] and ms2.read_split(dataset, "test") == ["syn001_night"]
    for seq in ("syn000_day", "syn001_night"):
        assert ms2.list_frames(dataset, seq) == ["000000", "000001"]
        for view in ("rgb", "thr"):
            assert ms2.depth_path(dataset, seq, view, "000001").is_file()
            stamps = ms2.read_timestamps(dataset, seq, view)
            assert stamps.dtype == np.int64 and stamps.shape == (FRAMES,)
            assert np.diff(stamps) / 1e6 == pytest.approx([1000 / 15], abs=1.1)  # 15 fps
        lag_ms = (ms2.read_timestamps(dataset, seq, "thr") - ms2.read_timestamps(dataset, seq, "rgb")) / 1e6
        assert np.all((lag_ms > 1) & (lag_ms < 10))  # thermal lags a few ms, as unsynced cameras do
    assert not list(dataset.glob("*/*.partial"))


def test_conditions_and_speed_records(dataset):
    """conditions.txt labels every sequence; each frame has a GNSS/IMU record at the scene's speed."""
    assert ms2.read_conditions(dataset) == {"syn000_day": "day", "syn001_night": "night"}
    for seq in ("syn000_day", "syn001_night"):
        spec = SequenceSpec(seq, "x", seq.split("_")[1], FRAMES, _spec_seed(dataset, seq))
        speed = SequenceRenderer(spec).scene.speed_mps
        for frame in ms2.list_frames(dataset, seq):
            assert ms2.read_speed_mps(dataset, seq, frame) == pytest.approx(speed, abs=1e-5)
            assert 6.0 <= speed <= 12.0


def _spec_seed(root, seq: str) -> int:
    import json

    specs = json.loads((root / "synthetic.json").read_text())["sequence_specs"]
    return next(s["seed"] for s in specs if s["name"] == seq)


def test_calib_keys_and_units(dataset):
    raw = np.load(dataset / "sync_data" / "syn000_day" / "calib.npy", allow_pickle=True).item()
    assert set(raw) == {"K_rgbL", "K_nirL", "K_thrL", "R_rgbR", "T_rgbR", "R_nirR", "T_nirR",
                        "R_thrR", "T_thrR", "R_nir2thr", "T_nir2thr", "R_nir2rgb", "T_nir2rgb"}
    assert raw["K_rgbL"][0, 0] == 1000.0 and raw["K_thrL"][0, 0] == 400.0
    assert 300.0 < np.linalg.norm(raw["T_nir2thr"]) < 1000.0  # roof camera: ~0.6 m away, in mm
    assert 50.0 < np.linalg.norm(raw["T_nir2rgb"]) < 300.0
    for key in ("R_nir2thr", "R_nir2rgb"):
        np.testing.assert_allclose(raw[key] @ raw[key].T, np.eye(3), atol=1e-12)
    angle = np.degrees(np.arccos((np.trace(ms2.camera_extrinsics(raw)["T_thr2rgb"][:3, :3]) - 1) / 2))
    assert 1.0 < angle < 10.0  # genuinely rotated against each other


def test_image_and_depth_units(dataset):
    thermal = ms2.read_thermal(dataset, "syn000_day", "000000")
    rgb = ms2.read_rgb(dataset, "syn000_day", "000000")
    assert thermal.shape == (256, 640) and rgb.shape == (384, 1224, 3)
    low, high = np.percentile(thermal, [1, 99])
    assert 2500 < low < high < 6500 and high - low > 800  # MS2-like counts with real contrast
    for view, shape in (("thr", (256, 640)), ("rgb", (384, 1224))):
        png = cv2.imread(str(ms2.depth_path(dataset, "syn000_day", view, "000000")), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == shape
        depth_m = png / 256.0
        valid = depth_m > 0
        assert 0.02 < valid.mean() < 0.4  # sparse like projected LiDAR
        assert depth_m.max() <= 80.0 and np.median(depth_m[valid]) > 4.0
        assert not valid[:10].any()  # the top rows see sky / above the beams: no return
    night = ms2.read_rgb(dataset, "syn001_night", "000000")
    assert night.mean() < 0.4 * rgb.mean()  # dark RGB at night ...
    night_thermal = ms2.read_thermal(dataset, "syn001_night", "000000")
    assert np.percentile(night_thermal, 99) - np.percentile(night_thermal, 1) > 800  # ... thermal not


def test_files_match_deterministic_render(dataset):
    spec = plan_sequences({"train": 1}, FRAMES, 3)[0]
    frame = SequenceRenderer(spec).render(1)
    again = SequenceRenderer(spec).render(1)
    for key in frame:
        np.testing.assert_array_equal(frame[key], again[key])
    np.testing.assert_array_equal(ms2.read_rgb(dataset, spec.name, "000001"), frame["rgb"])
    np.testing.assert_array_equal(ms2.read_thermal(dataset, spec.name, "000001"), frame["thr"])
    other = SequenceRenderer(plan_sequences({"train": 1}, FRAMES, 4)[0]).render(1)
    assert np.abs(other["thr"].astype(int) - frame["thr"]).mean() > 50  # another seed, another street


def test_gt_consistent_across_cameras_through_calib():
    """RGB GT points mapped with the calib (T_rgb2thr) land on the thermal camera's surface."""
    renderer = SequenceRenderer(SequenceSpec("x", "train", "day", 3, seed=11))
    stamps = renderer.stamps_ns()
    stamps["thr"] = stamps["rgb"].copy()  # same instant, so moving cars do not count
    depth_rgb = renderer.render(0, stamps)["depth_rgb"] / 256.0
    ext = ms2.camera_extrinsics(calib_dict(renderer.rig))
    v, u = np.nonzero(depth_rgb)
    z = depth_rgb[v, u]
    pts = np.linalg.inv(renderer.rig.rgb.K) @ np.stack([u * z, v * z, z])  # [3, N] RGB frame
    thr = ext["T_rgb2thr"][:3, :3] @ pts + ext["T_rgb2thr"][:3, 3:]
    uv = renderer.rig.thr.K @ (thr / thr[2])
    ui, vi = np.round(uv[0]).astype(int), np.round(uv[1]).astype(int)
    inside = (ui >= 0) & (ui < 640) & (vi >= 0) & (vi < 256)
    time_s = (stamps["thr"][0] - renderer.start_ns) * 1e-9
    hits = cast(renderer.rays["thr"], renderer.layers["thr"], renderer.scene,
                renderer.camera_origin("thr", time_s), time_s)
    rel = np.abs(hits.t_m[vi[inside], ui[inside]] - thr[2, inside]) / thr[2, inside]
    assert inside.sum() > 5000
    assert np.median(rel) < 0.01 and np.mean(rel < 0.05) > 0.85  # edges/occlusions differ a little


def test_split_planning_and_errors(tmp_path):
    assert split_counts(None, dict.fromkeys(("train", "val", "test_day", "test_night", "test_rainy"))) == {
        "train": 6, "val": 1, "test_day": 1, "test_night": 1, "test_rainy": 0}
    assert split_counts(9, dict.fromkeys(("train", "val", "test_day", "test_night", "test_rainy")))["train"] == 6
    specs = plan_sequences({"train": 4, "test_night": 1}, 5, 0)
    assert [s.kind for s in specs] == ["day", "night", "rain", "day", "night"]
    with pytest.raises(ValueError, match="--sequences 3 does not match"):
        split_counts(3, {"train": 5, "val": None, "test_day": None, "test_night": None, "test_rainy": None})
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("data")
    assert main(["--out", str(tmp_path / "x"), "--sequences", "1", "--frames", "1"]) == 2
    with pytest.raises(ms2.MS2FormatError, match="half-written"):
        ms2.read_split(tmp_path / "x", "train")


def test_thermal_attenuation_option():
    """--thermal-attenuation-m sets how far thermal counts fade toward ambient: a longer length
    keeps distant surfaces further from the ambient level; RGB and GT are unchanged."""
    import dataclasses

    spec = plan_sequences({"train": 1}, FRAMES, 3)[0]
    assert spec.thermal_attenuation_m == 260.0  # the default, which earlier datasets used
    clear = dataclasses.replace(spec, thermal_attenuation_m=3000.0)
    strong, weak = SequenceRenderer(spec).render(0), SequenceRenderer(clear).render(0)
    np.testing.assert_array_equal(strong["rgb"], weak["rgb"])
    np.testing.assert_array_equal(strong["depth_thr"], weak["depth_thr"])
    far = (strong["depth_thr"] / 256.0 > 40.0)
    assert far.sum() > 100
    ambient = 3600.0  # the level counts fade toward
    assert (np.abs(weak["thr"][far] - ambient).mean()
            > 1.1 * np.abs(strong["thr"][far].astype(float) - ambient).mean())
    assert plan_sequences({"train": 1}, 1, 0, thermal_attenuation_m=3000.0)[0] \
        .thermal_attenuation_m == 3000.0
    with pytest.raises(ValueError, match="thermal-attenuation-m"):
        plan_sequences({"train": 1}, 1, 0, thermal_attenuation_m=0.0)


def test_aligned_cameras_option_puts_the_rgb_pixels_on_the_thermal_rays():
    """--aligned-cameras (the fusion ablation's control rig): the RGB camera has the thermal
    camera's pose and field of view, so the RGB image resized to the thermal size (pixel centres)
    sees what the thermal pixel sees; the default MS2-like rig does not."""
    def surface_depths(aligned: bool):
        spec = plan_sequences({"train": 1}, FRAMES, 3, aligned_cameras=aligned)[0]
        assert spec.aligned_cameras is aligned
        renderer = SequenceRenderer(spec)
        hits = {name: cast(renderer.rays[name], renderer.layers[name], renderer.scene,
                           renderer.camera_origin(name, 0.0), 0.0).t_m
                for name in ("thr", "rgb")}  # z-depth per pixel, one instant
        rgb_small = cv2.resize(hits["rgb"].astype(np.float32), (640, 256),
                               interpolation=cv2.INTER_LINEAR)
        surface = np.isfinite(hits["thr"]) & np.isfinite(rgb_small)  # not the sky
        assert surface.mean() > 0.3
        return renderer, np.abs(rgb_small - hits["thr"])[surface] / hits["thr"][surface]

    renderer, rel = surface_depths(aligned=True)
    ext = ms2.camera_extrinsics(calib_dict(renderer.rig))
    np.testing.assert_allclose(ext["T_rgb2thr"], np.eye(4), atol=1e-9)  # one place, one pose
    assert np.median(rel) < 1e-3 and np.mean(rel < 0.01) > 0.95  # only edges interpolate
    _, rel_default = surface_depths(aligned=False)
    assert np.mean(rel_default < 0.01) < 0.5


def test_matched_fov_option_gives_the_rgb_camera_the_thermal_intrinsics_not_its_pose():
    """--matched-fov: RGB intrinsics scaled from the thermal camera's (one field of view), RGB
    pose unchanged (so the images still differ by the cameras' pose)."""
    default = make_rig()
    spec = plan_sequences({"train": 1}, FRAMES, 3, matched_fov=True)[0]
    rig = SequenceRenderer(spec).rig
    assert spec.matched_fov and not spec.aligned_cameras
    np.testing.assert_allclose(rig.rgb.R_hub_cam, default.rgb.R_hub_cam)
    np.testing.assert_allclose(rig.rgb.t_hub_cam_m, default.rgb.t_hub_cam_m)
    # Same angle of view per axis: the normalised focal lengths f / size agree.
    np.testing.assert_allclose([rig.rgb.K[0, 0] / 1224, rig.rgb.K[1, 1] / 384],
                               [rig.thr.K[0, 0] / 640, rig.thr.K[1, 1] / 256])
    assert not np.allclose(default.rgb.K, rig.rgb.K)
