"""MS2 reader and training loader against a hand-made 2-frame MS2 folder with known pixels."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from depth_fusion_ros import ms2
from depth_fusion_ros.preprocess import NORM_MEAN, NORM_STD, preprocess_rgb, preprocess_thermal
from training.data import AugmentConfig, MS2Dataset, collate
from training.data.augment import scale_crop

cv2 = pytest.importorskip("cv2")

SEQ = "_2021-08-06-11-23-45"
NO_JITTER = dict(brightness=0.0, contrast=0.0, saturation=0.0, thermal_gain=0.0,
                 thermal_offset_counts=0.0, thermal_gamma=0.0)


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _calib() -> dict:
    return {"K_rgbL": np.array([[1000, 0, 612], [0, 1000, 192], [0, 0, 1.0]]),
            "K_nirL": np.eye(3), "K_thrL": np.array([[400, 0, 320], [0, 400, 128], [0, 0, 1.0]]),
            "R_nir2thr": _rot_z(10.0), "T_nir2thr": np.array([[100.0], [-400.0], [300.0]]),
            "R_nir2rgb": _rot_z(-5.0), "T_nir2rgb": np.array([120.0, 0.0, -50.0]),
            "R_rgbR": np.eye(3), "T_rgbR": np.array([-300.0, 0, 0])}


@pytest.fixture()
def ms2_root(tmp_path):
    """Two frames: thermal ramp 3000 + column (+100 in frame 1); RGB with R=10, G=20+frame,
    B=200; depth 2560 (10 m) in a left block, 0 elsewhere, 30000 (117 m, beyond 80) in one pixel."""
    sync, proj = tmp_path / "sync_data" / SEQ, tmp_path / "proj_depth" / SEQ
    for view in ("rgb", "thr"):
        (sync / view / "img_left").mkdir(parents=True)
        (proj / view / "depth_filtered").mkdir(parents=True)
    for i in range(2):
        thermal = (3000 + np.tile(np.arange(640), (256, 1)) + 100 * i).astype(np.uint16)
        cv2.imwrite(str(sync / "thr" / "img_left" / f"{i:06d}.png"), thermal)
        bgr = np.zeros((384, 1224, 3), np.uint8)
        bgr[..., 0], bgr[..., 1], bgr[..., 2] = 200, 20 + i, 10  # cv2 writes BGR
        cv2.imwrite(str(sync / "rgb" / "img_left" / f"{i:06d}.png"), bgr)
        for view, (h, w) in (("thr", (256, 640)), ("rgb", (384, 1224))):
            depth = np.zeros((h, w), np.uint16)
            depth[:, : w // 4] = 2560
            depth[5, w - 3] = 30000
            cv2.imwrite(str(proj / view / "depth_filtered" / f"{i:06d}.png"), depth)
    np.save(sync / "calib.npy", _calib(), allow_pickle=True)
    (sync / "thr" / "img_left_timestamp.txt").write_text(
        "000000 1628237025.000000001\n000001 1628237025.066666667\n")
    (sync / "rgb" / "img_left_timestamp.txt").write_text("1628237025.5\n1628237026\n")
    (tmp_path / "train_list.txt").write_text(f"{SEQ}\n")
    (tmp_path / "test_day_list.txt").write_text(f"{SEQ}\n")
    (tmp_path / "test_night_list.txt").write_text("")
    return tmp_path


def test_reader_values(ms2_root):
    assert ms2.read_split(ms2_root, "train") == [SEQ]
    assert ms2.read_split(ms2_root, "test") == [SEQ]  # day + (empty) night
    assert ms2.list_frames(ms2_root, SEQ) == ["000000", "000001"]
    thermal = ms2.read_thermal(ms2_root, SEQ, "000001")
    assert thermal.dtype == np.uint16 and thermal.shape == (256, 640)
    assert thermal[7, 0] == 3100 and thermal[7, 639] == 3739
    rgb = ms2.read_rgb(ms2_root, SEQ, "000001")
    assert rgb.shape == (384, 1224, 3) and tuple(rgb[0, 0]) == (10, 21, 200)  # RGB order
    depth = ms2.read_depth(ms2_root, SEQ, "rgb", "000000")
    assert depth.dtype == np.float32 and depth[0, 0] == 10.0 and depth[0, 1000] == 0.0
    assert depth[5, 1221] == pytest.approx(30000 / 256)
    thr_ns = ms2.read_timestamps(ms2_root, SEQ, "thr")
    assert thr_ns.dtype == np.int64 and thr_ns.tolist() == [1628237025000000001, 1628237025066666667]
    assert ms2.read_timestamps(ms2_root, SEQ, "rgb").tolist() == [1628237025500000000, 1628237026000000000]


def test_calib_and_extrinsics(ms2_root):
    calib = ms2.load_calib(ms2_root, SEQ)
    assert calib["T_nir2thr"].shape == (3,) and calib["T_nir2thr"][1] == -400.0
    ext = ms2.camera_extrinsics(calib)
    nir2thr = ext["T_nir2thr"]
    assert nir2thr[:3, 3] == pytest.approx([0.1, -0.4, 0.3])  # mm -> m
    expected = ext["T_nir2rgb"] @ np.linalg.inv(nir2thr)
    np.testing.assert_allclose(ext["T_thr2rgb"], expected, atol=1e-12)
    point_nir = np.array([1.0, 2.0, 10.0, 1.0])  # thr -> rgb == via the NIR hub
    np.testing.assert_allclose(ext["T_thr2rgb"] @ (nir2thr @ point_nir), ext["T_nir2rgb"] @ point_nir)
    np.testing.assert_allclose(ext["T_rgb2thr"] @ ext["T_thr2rgb"], np.eye(4), atol=1e-12)
    assert ext["T_rgbL2rgbR"][0, 3] == pytest.approx(-0.3)


def test_missing_files_name_path_and_list(ms2_root):
    (ms2_root / "sync_data" / SEQ / "thr" / "img_left" / "000001.png").unlink()
    (ms2_root / "sync_data" / SEQ / "thr" / "img_left" / "000001.png").write_bytes(b"")
    ds = MS2Dataset(ms2_root, "train")
    with pytest.raises(ms2.MS2FormatError, match=r"000001\.png.*train_list\.txt"):
        ds[1]
    (ms2_root / "val_list.txt").write_text("_no_such_seq\n")
    with pytest.raises(ms2.MS2FormatError, match=r"_no_such_seq/thr/img_left.*val_list\.txt"):
        MS2Dataset(ms2_root, "val")
    with pytest.raises(ms2.MS2FormatError, match=r"test_rainy_list\.txt"):
        ms2.read_split(ms2_root, "test_rainy")
    (ms2_root / "sync_data" / SEQ / "calib.npy").unlink()
    with pytest.raises(ms2.MS2FormatError, match=r"calib\.npy"):
        ms2.load_calib(ms2_root, SEQ)
    np.save(ms2_root / "sync_data" / SEQ / "calib.npy", {"K_rgbL": np.eye(3)}, allow_pickle=True)
    with pytest.raises(ms2.MS2FormatError, match=r"calib\.npy lacks keys .*K_thrL"):
        ms2.load_calib(ms2_root, SEQ)


def test_eval_item_values(ms2_root):
    item = MS2Dataset(ms2_root, "test")[1]
    raw = ms2.read_thermal(ms2_root, SEQ, "000001")
    np.testing.assert_array_equal(item["thermal"].numpy(), preprocess_thermal(raw, (256, 640)))
    rgb = item["rgb"].numpy()
    np.testing.assert_array_equal(rgb, preprocess_rgb(ms2.read_rgb(ms2_root, SEQ, "000001"), (256, 640)))
    for c, value in enumerate((10, 21, 200)):
        assert rgb[c, 3, 3] == pytest.approx((value / 255 - NORM_MEAN) / NORM_STD, abs=1e-6)
    assert item["gt_rgb"].shape == (1, 384, 1224) and item["gt_thermal"].shape == (1, 256, 640)
    assert item["gt_rgb"][0, 0, 0] == 10.0 and item["gt_rgb"][0, 5, 1221] == 0.0  # > 80 m dropped
    assert item["seq"] == SEQ and item["frame"] == "000001" and bool(item["has_rgb"])


def test_train_gt_nearest_and_batches(ms2_root):
    ds = MS2Dataset(ms2_root, "train", height=128, width=320, train=True)
    item = ds[0]
    assert item["thermal"].shape == (1, 128, 320) and item["gt_rgb"].shape == (1, 128, 320)
    assert set(np.unique(item["gt_rgb"].numpy()).tolist()) <= {0.0, 10.0}  # never interpolated
    assert (item["gt_rgb"][0, :, :80] == 10.0).all() and (item["gt_rgb"][0, :, 80:] == 0).all()
    loader = torch.utils.data.DataLoader(MS2Dataset(ms2_root, "test_day"), batch_size=2,
                                         collate_fn=collate)
    batch = next(iter(loader))
    assert batch["gt_rgb"].shape == (2, 1, 384, 1224) and batch["frame"] == ["000000", "000001"]
    assert len(MS2Dataset(ms2_root, "train", step=2)) == 1


def test_flip_keeps_modalities_and_gt_together(ms2_root):
    plain_ds = MS2Dataset(ms2_root, "train", train=True)  # thermal at network size: exact flip
    plain = plain_ds[0]
    cfg = AugmentConfig(flip_p=1.0, crop_p=0.0, **NO_JITTER)
    flipped = MS2Dataset(ms2_root, "train", train=True, augment=cfg)[0]
    for key in ("thermal", "rgb", "gt_thermal"):
        torch.testing.assert_close(flipped[key], plain[key].flip(-1), rtol=0, atol=1e-6)
    assert (flipped["gt_thermal"][0, :, -160:] == 10.0).all()  # the GT block moved right
    raw_rgb_gt = plain_ds.load_raw(0)["gt_rgb"][:, ::-1]  # RGB GT: flipped, then nearest-resized
    expected = cv2.resize(np.ascontiguousarray(raw_rgb_gt), (640, 256), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(flipped["gt_rgb"][0].numpy(), expected)
    assert (flipped["gt_rgb"][0, :, -150:] == 10.0).all() and (flipped["gt_rgb"][0, :, :450] == 0).all()


def test_scale_crop_same_relative_window():
    thermal = np.zeros((256, 640), np.uint16)
    rgb = np.zeros((384, 1224, 3), np.uint8)
    thermal[128, 480], rgb[192, 918] = 1, 255  # the same relative spot (0.5, 0.75)
    gt_t, gt_r = thermal.astype(np.float32) * 7, rgb[..., 0].astype(np.float32) / 255 * 7
    out = scale_crop({"thermal": thermal, "rgb": rgb, "gt_thermal": gt_t, "gt_rgb": gt_r},
                     1.25, 0.5, 0.5)
    assert out["thermal"].shape == (205, 512) and out["rgb"].shape == (307, 979, 3)
    ty, tx = np.argwhere(out["thermal"])[0] / out["thermal"].shape
    ry, rx = np.argwhere(out["rgb"][..., 0])[0] / out["rgb"].shape[:2]
    assert abs(ty - ry) < 0.01 and abs(tx - rx) < 0.01
    # zoom by 1.25 under fixed intrinsics: depth / 1.25, holes stay 0
    assert out["gt_thermal"].max() == np.float32(7.0 / 1.25) and out["gt_rgb"].max() == np.float32(7.0 / 1.25)
    assert out["gt_thermal"].dtype == np.float32 and (out["gt_thermal"] == 0).sum() == 205 * 512 - 1


def test_augmentation_seeded_and_dropout(ms2_root):
    ds = MS2Dataset(ms2_root, "train", height=128, width=320, train=True,
                    augment=AugmentConfig(), modality_dropout_p=1.0)
    torch.manual_seed(5)
    a = ds[0]
    torch.manual_seed(5)
    b = ds[0]
    for key in ("thermal", "rgb", "gt_rgb"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert bool(a["has_thermal"]) != bool(a["has_rgb"])  # exactly one blanked
    blanked = "thermal" if not a["has_thermal"] else "rgb"
    from depth_fusion_ros.preprocess import missing_input

    assert torch.equal(a[blanked], torch.from_numpy(missing_input(blanked, (128, 320))))
    assert a[blanked].shape == ((1,) if blanked == "thermal" else (3,)) + (128, 320)


def test_dropout_of_one_modality(ms2_root):
    """modality_dropout_of=("rgb",) with p = 1 blanks the RGB input of every training sample
    (the ablation's control arm); an unknown modality is refused."""
    ds = MS2Dataset(ms2_root, "train", height=128, width=320, train=True,
                    modality_dropout_p=1.0, modality_dropout_of=("rgb",))
    for seed in range(4):
        torch.manual_seed(seed)
        item = ds[0]
        assert bool(item["has_thermal"]) and not bool(item["has_rgb"])
        assert not item["rgb"].any() and item["thermal"].any()
    with pytest.raises(ValueError, match="modality_dropout_of"):
        MS2Dataset(ms2_root, "train", train=True, modality_dropout_of=("lidar",))


def test_duplicate_dropout_appends_a_blanked_copy(ms2_root):
    """modality_dropout_mode "duplicate": the drawn sample keeps both cameras (flagged), and
    add_blanked_copies appends a copy with that camera replaced by missing_input and its view
    unsupervised; the same draws as "replace" under the same seed."""
    from depth_fusion_ros.preprocess import missing_input
    from training.data import add_blanked_copies, collate

    kwargs = {"height": 64, "width": 128, "train": True, "modality_dropout_p": 0.5}
    dup = MS2Dataset(ms2_root, "train", modality_dropout_mode="duplicate", **kwargs)
    rep = MS2Dataset(ms2_root, "train", **kwargs)
    items = []
    for seed in range(8):
        torch.manual_seed(seed)
        item = dup[0]
        torch.manual_seed(seed)
        replaced = rep[0]
        assert bool(item["has_thermal"]) and bool(item["has_rgb"])  # the sample stays whole
        for modality in ("thermal", "rgb"):
            assert bool(item[f"drop_{modality}"]) == (not bool(replaced[f"has_{modality}"]))
        items.append(item)
    # copies follow the batch: the thermal-blanked ones first, then the RGB-blanked ones
    flagged = ([i for i, it in enumerate(items) if it["drop_thermal"]]
               + [i for i, it in enumerate(items) if it["drop_rgb"]])
    assert 0 < len(flagged) < len(items)  # p = 0.5 over 8 draws: some of each here
    batch = add_blanked_copies(collate(items))
    assert "drop_rgb" not in batch and batch["rgb"].shape[0] == len(items) + len(flagged)
    assert batch["seq"][len(items):] == [items[i]["seq"] for i in flagged]
    assert batch["blanked"].tolist() == [False] * len(items) + [True] * len(flagged)
    for row, source in enumerate(flagged, start=len(items)):
        lost = "thermal" if items[source]["drop_thermal"] else "rgb"
        kept = "rgb" if lost == "thermal" else "thermal"
        assert torch.equal(batch[lost][row], torch.from_numpy(missing_input(lost, (64, 128))))
        assert torch.equal(batch[kept][row], items[source][kept])
        assert torch.equal(batch["gt_thermal"][row], items[source]["gt_thermal"])
        assert not bool(batch[f"has_{lost}"][row]) and bool(batch[f"has_{kept}"][row])
    torch.testing.assert_close(batch["thermal"][:len(items)],
                               torch.stack([it["thermal"] for it in items]), rtol=0, atol=0)


def test_duplicate_dropout_edge_cases(ms2_root):
    from training.data import add_blanked_copies, collate

    ds = MS2Dataset(ms2_root, "train", height=64, width=128, train=True,
                    modality_dropout_mode="duplicate")  # p = 0: no flags at all
    item = ds[0]
    assert "drop_rgb" not in item
    batch = collate([item, ds[1]])
    assert add_blanked_copies(batch)["rgb"].shape[0] == 2  # nothing flagged: unchanged
    assert "blanked" not in add_blanked_copies(batch)  # no flags at all (p = 0)
    with pytest.raises(ValueError, match="modality_dropout_mode"):
        MS2Dataset(ms2_root, "train", train=True, modality_dropout_mode="drop")


def _add_sequence(root, name: str, from_seq: str = SEQ) -> None:
    """Copy the fixture sequence under another name (hard links keep it cheap)."""
    import shutil

    for top in ("sync_data", "proj_depth"):
        shutil.copytree(root / top / from_seq, root / top / name, copy_function=os.link)


def _write_speeds(root, seq: str, speeds_mps: list[float]) -> None:
    folder = root / "sync_data" / seq / "gps_imu" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for i, speed in enumerate(speeds_mps):
        # velocity along a diagonal, so only its norm is the speed
        (folder / f"{i:06d}.txt").write_text(ms2.format_gps_imu(np.array([0.6, 0.0, 0.8]) * speed))


def test_conditions_filter_drops_rainy_sequences(ms2_root):
    _add_sequence(ms2_root, "rainy_seq")
    _add_sequence(ms2_root, "night_seq")
    (ms2_root / "train_list.txt").write_text(f"{SEQ}\nrainy_seq\nnight_seq\n")
    (ms2_root / "conditions.txt").write_text("rainy_seq rain\n# comment\nnight_seq night\n")
    # SEQ is known from test_day_list.txt (day), the others from conditions.txt
    assert ms2.read_conditions(ms2_root) == {SEQ: "day", "rainy_seq": "rain", "night_seq": "night"}
    everything = MS2Dataset(ms2_root, "train", height=64, width=128)
    assert len(everything) == 6 and everything.skipped == {"condition": 0, "static": 0}
    paper = MS2Dataset(ms2_root, "train", height=64, width=128, conditions=("day", "night"))
    assert {seq for seq, _ in paper.samples} == {SEQ, "night_seq"}
    assert paper.skipped == {"condition": 2, "static": 0}
    only_night = MS2Dataset(ms2_root, "train", height=64, width=128, conditions=("night",))
    assert [seq for seq, _ in only_night.samples] == ["night_seq", "night_seq"]


def test_conditions_filter_errors(ms2_root):
    _add_sequence(ms2_root, "unknown_seq")
    (ms2_root / "train_list.txt").write_text(f"{SEQ}\nunknown_seq\n")
    with pytest.raises(ms2.MS2FormatError, match=r"'unknown_seq'.*train_list.txt.*conditions.txt"):
        MS2Dataset(ms2_root, "train", conditions=("day",))
    (ms2_root / "conditions.txt").write_text("unknown_seq foggy\n")
    with pytest.raises(ms2.MS2FormatError, match=r"conditions.txt line 1.*'unknown_seq foggy'"):
        ms2.read_conditions(ms2_root)
    with pytest.raises(ValueError, match="choose from"):
        MS2Dataset(ms2_root, "train", conditions=("snow",))
    with pytest.raises(ValueError, match=r"no frames.*'condition': 2"):
        (ms2_root / "conditions.txt").write_text("unknown_seq rain\n")
        (ms2_root / "train_list.txt").write_text("unknown_seq\n")
        MS2Dataset(ms2_root, "train", conditions=("day",))


def test_static_frames_dropped_by_gps_speed(ms2_root):
    _write_speeds(ms2_root, SEQ, [0.4, 5.0])
    assert ms2.read_speed_mps(ms2_root, SEQ, "000000") == pytest.approx(0.4)
    moving = MS2Dataset(ms2_root, "train", height=64, width=128, min_speed_mps=1.0)
    assert moving.samples == [(SEQ, "000001")] and moving.skipped["static"] == 1
    assert len(MS2Dataset(ms2_root, "train", height=64, width=128)) == 2  # filter off by default
    (ms2_root / "sync_data" / SEQ / "gps_imu" / "data" / "000001.txt").write_text("1\n2\n")
    with pytest.raises(ms2.MS2FormatError, match=r"000001.txt has no finite velocity"):
        MS2Dataset(ms2_root, "train", min_speed_mps=1.0)
    (ms2_root / "sync_data" / SEQ / "gps_imu" / "data" / "000001.txt").unlink()
    with pytest.raises(ms2.MS2FormatError, match=r"gps_imu/data/000001.txt does not exist.*"
                                                 r"min_speed_mps"):
        MS2Dataset(ms2_root, "train", min_speed_mps=1.0)


def test_train_config_validates_protocol_keys(tmp_path):
    from training.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text("data:\n  conditions: [day, night]\n  min_speed_mps: 1.0\n")
    cfg = load_config(path)
    assert cfg.data.conditions == ("day", "night") and cfg.data.min_speed_mps == 1.0
    with pytest.raises(ConfigError, match="data.conditions"):
        load_config(path, ["data.conditions=[day, fog]"])
    with pytest.raises(ConfigError, match="min_speed_mps"):
        load_config(path, ["data.min_speed_mps=-1"])


def test_stamps_keyed_by_frame_column(ms2_root):
    """`<frame> <seconds>` lines give each frame the stamp on its own line, in any line order;
    `<seconds>` lines are positional; problems name the file and line."""
    path = ms2.timestamp_path(ms2_root, SEQ, "thr")
    path.write_text("# frame seconds\n000002 12.5\n0 10.0\n000001 11.25\n")
    table = ms2.read_stamp_file(ms2_root, SEQ, "thr")
    assert table.path == path and table.frames == ("000002", "0", "000001")
    assert table.for_frames(["000000", "000001", "000002"]).tolist() == [
        10_000_000_000, 11_250_000_000, 12_500_000_000]
    assert table.for_frames(["000001"]).tolist() == [11_250_000_000]  # a gap keeps its stamp
    assert ms2.read_timestamps(ms2_root, SEQ, "thr").tolist() == [  # line order, as before
        12_500_000_000, 10_000_000_000, 11_250_000_000]
    with pytest.raises(ms2.MS2FormatError, match=r"thr/img_left_timestamp\.txt.*000007"):
        table.for_frames(["000000", "000007"])
    rgb = ms2.read_stamp_file(ms2_root, SEQ, "rgb")
    assert rgb.frames is None
    assert rgb.for_frames(["000005"]).tolist() == [1628237025500000000]  # positional
    with pytest.raises(ms2.MS2FormatError, match=r"rgb/img_left_timestamp\.txt has 2 stamps"):
        rgb.for_frames(["a", "b", "c"])
    for text, message in (("000000 1.0\n2.0\n", r"line 2: '2\.0' mixes"),
                          ("000000 1.0\n0 2.0\n", r"line 2: frame 0 appears twice"),
                          ("000000 1.0 7\n", r"line 1: cannot parse")):
        path.write_text(text)
        with pytest.raises(ms2.MS2FormatError, match=rf"{path}.*{message}"):
            ms2.read_stamp_file(ms2_root, SEQ, "thr")
    path.unlink()
    assert ms2.read_stamp_file(ms2_root, SEQ, "thr") is None


def test_damaged_calib_named(ms2_root):
    """A truncated pickle, a NaN in K or a non-positive focal length: MS2FormatError naming the
    file (and the key), never a pickle traceback or a bag with NaN intrinsics."""
    path = ms2_root / "sync_data" / SEQ / "calib.npy"
    good = path.read_bytes()
    for cut in (10, 200, len(good) - 20):
        path.write_bytes(good[:cut])
        with pytest.raises(ms2.MS2FormatError, match=rf"calibration file {path} cannot be read"):
            ms2.load_calib(ms2_root, SEQ)
    for key, row, col, value, message in (("K_thrL", 1, 2, np.nan, "non-finite"),
                                          ("K_rgbL", 0, 0, 0.0, "fx = 0.0"),
                                          ("K_thrL", 1, 1, -400.0, "fy = -400.0"),
                                          ("R_nir2rgb", 0, 0, np.inf, "non-finite")):
        calib = _calib()
        calib[key] = np.array(calib[key], dtype=np.float64)
        calib[key][row, col] = value
        np.save(path, calib, allow_pickle=True)
        with pytest.raises(ms2.MS2FormatError, match=rf"{path}: {key} .*{message}"):
            ms2.load_calib(ms2_root, SEQ)


def test_rgb_noise_augmentation_is_fresh_seeded_and_off_by_default():
    from training.data.augment import jitter_rgb

    rgb = np.full((48, 64, 3), 120, np.uint8)
    off = AugmentConfig(**NO_JITTER)
    assert off.rgb_noise_std == 0.0
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(jitter_rgb(rgb, off, rng), rgb)
    reference = np.random.default_rng(3)
    reference.uniform(size=3)  # brightness, contrast, saturation: nothing else is drawn when off
    assert rng.random() == reference.random()
    noisy_cfg = AugmentConfig(**NO_JITTER, rgb_noise_std=12.0)
    first = jitter_rgb(rgb, noisy_cfg, np.random.default_rng(5))
    np.testing.assert_array_equal(first, jitter_rgb(rgb, noisy_cfg, np.random.default_rng(5)))
    second = jitter_rgb(rgb, noisy_cfg, np.random.default_rng(6))
    assert not np.array_equal(first, second)  # another draw, another pattern
    residual = first.astype(np.float32) - 120.0
    assert abs(residual.mean()) < 1.0 and 0.0 < residual.std() <= 12.5
    # Independent per channel: the three planes differ.
    assert not np.array_equal(first[..., 0], first[..., 1])


@pytest.mark.parametrize("std", [-1.0, 256.0, float("nan")])
def test_bad_rgb_noise_setting_is_refused_by_name(std):
    with pytest.raises(ValueError, match="rgb_noise_std"):
        AugmentConfig(rgb_noise_std=std)
