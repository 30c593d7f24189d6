"""depth_fusion_ros.viz: fixed colour maps with scale bars, error maps, contact sheets, PLY files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_fusion_ros import viz


def test_colorize_depth_fixed_scale_with_bar():
    depth = np.zeros((120, 100), np.float32)
    depth[:, 50:] = 80.0  # far end of the fixed range
    depth[:, 10:20] = 0.0 + 1e-3
    depth[0, 0] = np.nan
    image = viz.colorize_depth(depth, 80.0)
    assert image.dtype == np.uint8 and image.shape == (120, 100 + viz.SCALE_BAR_WIDTH_PX, 3)
    assert (image[5, 0] == 0).all() and (image[0, 0] == 0).all()  # invalid (0, NaN) -> black
    turbo = cv2.cvtColor(cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_TURBO),
                         cv2.COLOR_BGR2RGB)[0]
    np.testing.assert_array_equal(image[5, 60], turbo[1])  # 80 m -> top of the map
    np.testing.assert_array_equal(image[5, 15], turbo[0])  # ~0 m -> bottom of the map
    # The same depth gets the same colour in another image (fixed, not per-image, range).
    other = viz.colorize_depth(np.full((120, 100), 80.0, np.float32), 80.0, scale_bar=False)
    assert other.shape == (120, 100, 3)
    np.testing.assert_array_equal(other[5, 60], image[5, 60])
    # The scale bar has the colour ramp (top = far) and white tick labels.
    bar = image[:, 100:]
    np.testing.assert_array_equal(bar[0, 8], turbo[1])
    assert (bar[:, 22:] > 128).all(axis=2).sum() > 30


def test_colorize_error_and_dilation():
    gt = np.zeros((30, 60), np.float32)
    gt[10, 10] = 10.0
    gt[20, 40] = 10.0
    pred = np.full((15, 30), 10.0, np.float32)  # half size: resized bilinearly to the GT size
    pred_full = cv2.resize(pred, (60, 30))
    image = viz.colorize_error(pred, gt, max_abs_rel=0.5, dilate_px=1, scale_bar=False)
    assert image.shape == (30, 60, 3)
    inferno_zero = cv2.cvtColor(cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_INFERNO),
                                cv2.COLOR_BGR2RGB)[0, 0]
    assert np.allclose(pred_full[10, 10], 10.0)
    np.testing.assert_array_equal(image[10, 10], inferno_zero)  # zero error
    np.testing.assert_array_equal(image[11, 11], inferno_zero)  # grown neighbour
    assert (image[0, 0] == 0).all() and (image[13, 10] == 0).all()  # no GT -> black


def test_input_to_rgb_undoes_normalisation():
    unit = np.array([0.0, 0.45, 1.0], np.float32).reshape(1, 1, 3)
    image = viz.input_to_rgb((unit - 0.45) / 0.225)
    assert image.shape == (1, 3, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, :, 0], [0, 115, 255])
    with pytest.raises(ValueError, match=r"\[1, H, W\]"):
        viz.input_to_rgb(np.zeros((2, 4, 4), np.float32))


def test_contact_sheet_layout(tmp_path):
    a = np.full((20, 40, 3), 200, np.uint8)
    b = np.full((40, 40), 50, np.uint8)
    sheet = viz.contact_sheet([[("a", a), ("b", b)], [("a again", a)]], tile_height=32)
    # Row 1: 64 + 32 wide; row 2: 64 wide; each row 32 px + an 18 px title strip.
    assert sheet.shape == (2 * (32 + 18), 96, 3)
    assert sheet[18 + 5, 5].tolist() == [200, 200, 200] and sheet[18 + 5, 70].tolist() == [50] * 3
    assert (sheet[50 + 18:, 64:] == 0).all()
    path = viz.save_png(tmp_path / "sub" / "sheet.png", sheet)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, sheet)


def _read_ply(path):
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode("ascii").splitlines(), data[end:]


def test_write_ply_intensity_binary(tmp_path):
    xyz = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)  # organised [H, W, 3]
    xyz[0, 1] = np.nan  # invalid depth -> dropped
    intensity = np.arange(6, dtype=np.float32).reshape(2, 3)
    count = viz.write_ply(tmp_path / "t.ply", xyz, intensity=intensity)
    header, body = _read_ply(tmp_path / "t.ply")
    assert count == 5
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    assert "element vertex 5" in header and header[-2:] == ["property float intensity",
                                                             "end_header"]
    table = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("i", "<f4")])
    assert len(table) == 5
    np.testing.assert_array_equal(table["i"], [0, 2, 3, 4, 5])
    np.testing.assert_array_equal(table["z"], [2, 8, 11, 14, 17])


def test_write_ply_rgb_ascii(tmp_path):
    xyz = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, np.inf]], np.float32)
    rgb = np.array([[255, 0, 10], [1, 2, 3]], np.uint8)
    assert viz.write_ply(tmp_path / "c.ply", xyz, rgb=rgb, binary=False) == 1
    header, body = _read_ply(tmp_path / "c.ply")
    assert "element vertex 1" in header and "property uchar red" in header
    assert body.decode().split() == ["1", "2", "3", "255", "0", "10"]
    with pytest.raises(ValueError, match="not both"):
        viz.write_ply(tmp_path / "x.ply", xyz, rgb=rgb, intensity=np.zeros(2))
