"""Calibrated view alignment (`model.align_views`, training/model/alignment.py): the homography
against projected points, the token warp, the model with it (forward, checkpoint keys, ONNX
Runtime parity) and how training resolves it from a data set's calibration."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_fusion_ros import ms2
from training.config import ConfigError, load_config
from training.model import ModelConfig, build_model
from training.model.alignment import (
    homography_from_dataset,
    sampling_grid,
    view_homography,
    warp_tokens,
)
from training.synthetic.rig import calib_dict, make_rig

THR_SIZE, RGB_SIZE = (640, 256), (1224, 384)


def _rig_homography(aligned: bool = False) -> np.ndarray:
    rig = make_rig(aligned=aligned)
    rotation = ms2.camera_extrinsics(calib_dict(rig))["T_thr2rgb"][:3, :3]
    return view_homography(rig.thr.K, THR_SIZE, rig.rgb.K, RGB_SIZE, rotation)


def _normalised(K: np.ndarray, size: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """[N, 3] camera-frame points -> [N, 2] grid_sample coordinates (align_corners False)."""
    uv = (K @ points.T).T
    uv = uv[:, :2] / uv[:, 2:]
    return (uv + 0.5) / np.array(size, np.float64) * 2 - 1


def test_homography_maps_far_points_to_where_the_rgb_camera_sees_them():
    rig = make_rig()
    ext = ms2.camera_extrinsics(calib_dict(rig))
    rng = np.random.default_rng(0)
    # Far points spread over the RGB view, expressed in the thermal camera's frame.
    rgb_pts = np.stack([rng.uniform(-0.5, 0.5, 50), rng.uniform(-0.15, 0.15, 50),
                        np.ones(50)], axis=1) * 1e5
    thr_pts = (ext["T_rgb2thr"][:3, :3] @ rgb_pts.T + ext["T_rgb2thr"][:3, 3:]).T
    x_thr = _normalised(rig.thr.K, THR_SIZE, thr_pts)
    x_rgb = _normalised(rig.rgb.K, RGB_SIZE, rgb_pts)
    mapped = np.c_[x_thr, np.ones(50)] @ _rig_homography().T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], x_rgb, atol=1e-4)
    # The MS2-like rig is far from pixel-aligned: the RGB field of view is 1.3 x 1.7 narrower.
    assert np.abs(_rig_homography() - np.eye(3)).max() > 0.3


def test_aligned_rig_has_the_identity_homography():
    np.testing.assert_allclose(_rig_homography(aligned=True), np.eye(3), atol=1e-9)


def test_identity_warp_returns_the_tokens_and_a_shift_moves_them():
    tokens = torch.randn(2, 4 * 8, 5)  # [N, h*w, C] on a 4x8 map
    identity = sampling_grid(torch.eye(3), 4, 8)
    torch.testing.assert_close(warp_tokens(tokens, identity, 4, 8), tokens, atol=1e-6, rtol=0)
    # Sample two columns to the right (2 px = 4/8 normalised): column j gets column j + 2.
    shift = torch.tensor([[1.0, 0.0, 4 / 8], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = warp_tokens(tokens, sampling_grid(shift, 4, 8), 4, 8).view(2, 4, 8, 5)
    grid = tokens.view(2, 4, 8, 5)
    torch.testing.assert_close(out[:, :, :6], grid[:, :, 2:], atol=1e-6, rtol=0)
    assert torch.count_nonzero(out[:, :, 6:]) == 0  # outside the other camera's view: zeros


def test_model_with_alignment_keeps_checkpoint_keys_and_reads_the_other_view():
    h = tuple(_rig_homography().ravel())
    torch.manual_seed(0)
    plain = build_model(ModelConfig(variant="tiny", height=64, width=128)).eval()
    aligned = build_model(ModelConfig(variant="tiny", height=64, width=128, align_views=True,
                                      view_homography=h)).eval()
    assert plain.state_dict().keys() == aligned.state_dict().keys()  # H is config, not weights
    aligned.load_state_dict(plain.state_dict())
    thermal, rgb = torch.randn(1, 1, 64, 128), torch.randn(1, 3, 64, 128)
    with torch.inference_mode():
        a, b = plain(thermal, rgb), aligned(thermal, rgb)
        other_rgb = aligned(thermal, torch.randn(1, 3, 64, 128))
    for view in ("thermal", "rgb"):
        assert torch.isfinite(b[f"depth_{view}"]).all()
        assert not torch.allclose(a[f"depth_{view}"], b[f"depth_{view}"])  # the warp is used
    assert not torch.allclose(b["depth_thermal"], other_rgb["depth_thermal"])  # RGB still read


def test_input_alignment_with_aligned_cameras_is_the_plain_model():
    """With the identity homography (pixel-aligned cameras) each view's pair is the plain
    model's pair, so align_inputs must give the plain model's depth, for any view subset."""
    torch.manual_seed(0)
    plain = build_model(ModelConfig(variant="tiny", height=64, width=128)).eval()
    aligned = build_model(ModelConfig(variant="tiny", height=64, width=128, align_inputs=True,
                                      view_homography=tuple(np.eye(3).ravel()))).eval()
    assert plain.state_dict().keys() == aligned.state_dict().keys()
    aligned.load_state_dict(plain.state_dict())
    thermal, rgb = torch.randn(2, 1, 64, 128), torch.randn(2, 3, 64, 128)
    with torch.inference_mode():
        ref = plain(thermal, rgb)
        for views in (None, ("thermal",), ("rgb",)):
            out = aligned(thermal, rgb, views=views)
            assert set(out) == {f"depth_{v}" for v in views or ("thermal", "rgb")}
            for key, value in out.items():
                torch.testing.assert_close(value, ref[key], atol=1e-4, rtol=1e-4)


def test_input_alignment_feeds_each_view_the_other_image_on_its_rays():
    h = tuple(_rig_homography().ravel())
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="tiny", height=64, width=128, align_inputs=True,
                                    view_homography=h)).eval()
    thermal, rgb = torch.randn(2, 1, 64, 128), torch.randn(2, 3, 64, 128)
    rgb_on_thermal, thermal_on_rgb = model.input_alignment.images(thermal, rgb)
    # The RGB camera's narrower field of view covers the middle of the thermal image only.
    assert rgb_on_thermal[..., 32, 64].abs().sum() > 0 and (rgb_on_thermal[..., 0, 0] == 0).all()
    assert (thermal_on_rgb != 0).float().mean() > 0.95  # the thermal view covers the RGB one
    with torch.inference_mode():
        both = model(thermal, rgb)
        alone = {v: model(thermal, rgb, views=(v,))[f"depth_{v}"] for v in ("thermal", "rgb")}
        other_rgb = model(thermal, torch.randn(2, 3, 64, 128))
    for view in ("thermal", "rgb"):
        assert torch.isfinite(both[f"depth_{view}"]).all()
        torch.testing.assert_close(alone[view], both[f"depth_{view}"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both["depth_thermal"], other_rgb["depth_thermal"])  # RGB is read


@pytest.mark.parametrize("option", ["align_views", "align_inputs"])
def test_onnx_export_of_an_aligned_model_matches_torch(tmp_path, option):
    from model_fixtures import make_tiny_checkpoint

    from depth_fusion_ros.backends import create_backend
    from training import export as export_mod
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path, height=64, width=128, **{option: True},
                                view_homography=tuple(_rig_homography().ravel()))
    onnx_path = export_mod.export_checkpoint(ckpt, tmp_path / "aligned.onnx", fmt="onnx")
    assert "GridSample" in export_mod.check_onnx_graph(onnx_path)["ops"]
    model, cfg = model_from_checkpoint(load_checkpoint(ckpt))
    assert getattr(cfg, option) and cfg.view_homography == pytest.approx(
        _rig_homography().ravel())
    feeds = export_mod.sample_inputs(64, 128)
    with torch.inference_mode():
        ref = model(torch.from_numpy(feeds["thermal"]), torch.from_numpy(feeds["rgb"]))
    depth = create_backend(onnx_path, device="cpu").infer(feeds["thermal"], feeds["rgb"])
    for view in ("thermal", "rgb"):
        assert np.abs(depth[view] - ref[f"depth_{view}"][0, 0].numpy()).max() < 1e-3


@pytest.mark.parametrize("options, match", [
    ({"align_views": True, "modality": "thermal_only"}, "needs model.modality=fusion"),
    ({"align_inputs": True, "modality": "rgb_only"}, "align_inputs needs model.modality=fusion"),
    ({"align_inputs": True, "align_views": True}, "choose one"),
    ({"view_homography": (1.0,) * 8}, "9 finite numbers"),
    ({"view_homography": (float("nan"),) + (0.0,) * 8}, "9 finite numbers"),
    ({"view_homography": ("a",) * 9}, "9 finite numbers"),
    ({"view_homography": (1, 0, 0, 0, 1, 0, 0, 0, 0)}, "singular"),
    ({"view_homography": (-1, 0, 0, 0, 1, 0, 0, 0, 1)}, "mirrors"),
])
def test_bad_alignment_settings_are_refused_by_name(options, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(variant="tiny", height=64, width=128, **options)


@pytest.mark.parametrize("option", ["align_views", "align_inputs"])
def test_alignment_without_a_homography_is_refused_when_the_model_is_built(option):
    with pytest.raises(ValueError, match=f"model.{option} needs model.view_homography"):
        build_model(ModelConfig(variant="tiny", height=64, width=128, **{option: True}))


def test_config_file_override_of_a_bad_homography_names_the_key():
    with pytest.raises(ConfigError, match="view_homography"):
        load_config("training/configs/ablation_synthetic.yaml",
                    ["model.view_homography=[1, 2, 3]"])


def test_training_resolves_the_rig_homography_from_the_data_set(tmp_path):
    from training.synthetic.__main__ import main as generate
    from training.train import parse_args, resolve_config

    root = tmp_path / "ds"
    assert generate(["--out", str(root), "--frames", "1", "--seed", "2", "--train", "2",
                     "--val", "0", "--test-day", "0", "--test-night", "0"]) == 0
    expected = _rig_homography()
    np.testing.assert_allclose(np.reshape(homography_from_dataset(root, "train"), (3, 3)),
                               expected, atol=1e-12)
    args = parse_args(["--config", "training/configs/ablation_synthetic.yaml", "--data-root",
                       str(root), "--out", str(tmp_path / "run"), "model.align_views=true"])
    cfg, _ = resolve_config(args)
    np.testing.assert_allclose(np.reshape(cfg.model.view_homography, (3, 3)), expected,
                               atol=1e-12)
    # One model, one rig: a sequence recorded with another calibration is refused by name.
    seq = ms2.read_split(root, "train")[1]
    calib = ms2.load_calib(root, seq)
    calib["K_rgbL"] = calib["K_rgbL"] * np.array([[1.1], [1.1], [1.0]])
    np.save(root / "sync_data" / seq / "calib.npy", calib, allow_pickle=True)
    with pytest.raises(SystemExit, match=f"{seq}.*different camera calibrations"):
        resolve_config(args)
