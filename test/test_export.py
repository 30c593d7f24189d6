"""ONNX / pt2 export of the real tiny network: graph contents, parity, CLI, failure atomicity."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from depth_fusion_ros.backends import create_backend
from depth_fusion_ros.metadata import load_metadata, sidecar_path
from training import export as export_mod


def _torch_reference(ckpt_path, height=None, width=None):
    """Eager PyTorch depth for the export's seeded sample input: {view: [H, W]}."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    model, cfg = model_from_checkpoint(load_checkpoint(ckpt_path), height, width)
    feeds = export_mod.sample_inputs(cfg.height, cfg.width)
    with torch.inference_mode():
        out = model(torch.from_numpy(feeds["thermal"]), torch.from_numpy(feeds["rgb"]))
    return feeds, {v: out[f"depth_{v}"][0, 0].numpy() for v in cfg.output_views}


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    """The tiny network at 64x128: the same code paths as 256x640, several times faster."""
    from model_fixtures import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("small"), height=64, width=128)


def test_onnx_graph_is_plain_standard_onnx(tiny_onnx_model):
    model = onnx.load(str(tiny_onnx_model))
    onnx.checker.check_model(model)
    domains = {node.domain for node in model.graph.node}
    ops = {node.op_type for node in model.graph.node}
    assert domains <= {"", "ai.onnx"}, domains
    assert not ops & export_mod.FORBIDDEN_OPS, ops & export_mod.FORBIDDEN_OPS
    assert "BatchNormalization" not in ops  # folded into the convolutions in eval mode
    assert len(model.functions) == 0
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    static = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert static == [[1, 1, 256, 640], [1, 3, 256, 640]]
    assert [o.name for o in model.graph.output] == ["depth_thermal", "depth_rgb"]


def test_onnxruntime_matches_pytorch(tiny_onnx_model, record_property):
    feeds, reference = _torch_reference(tiny_onnx_model.parent / "tiny_fusion.pt")
    backend = create_backend(tiny_onnx_model, device="cpu")
    depth = backend.infer(feeds["thermal"], feeds["rgb"])
    diffs = {v: float(np.max(np.abs(depth[v] - reference[v]))) for v in ("thermal", "rgb")}
    record_property("ort_vs_torch_max_abs_diff_m", max(diffs.values()))
    print(f"ORT vs PyTorch max |diff| (m): {diffs}")
    assert max(diffs.values()) < 1e-3
    assert 0.0 < float(reference["thermal"].min()) and float(reference["thermal"].max()) < 80.0
    recorded = load_metadata(tiny_onnx_model).extra["parity_max_abs_diff_m"]
    assert recorded == pytest.approx(max(diffs.values()), abs=1e-6)


def test_two_tower_model_exports_and_runs_in_onnxruntime(tmp_path):
    """`swin_b_two_towers.yaml`'s sharing (separate encoder, DMCF weights and decoder per
    modality, detached cross-attention) exports to plain ONNX and runs in the node's backend
    with PyTorch's depth."""
    from model_fixtures import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path, height=64, width=128, shared_encoder=False,
                                shared_decoder=False, shared_dmcf=False, detach_cross_modal=True)
    path = export_mod.export_checkpoint(ckpt, tmp_path / "towers.onnx", fmt="onnx")
    assert not export_mod.FORBIDDEN_OPS & {n.op_type for n in onnx.load(str(path)).graph.node}
    feeds, reference = _torch_reference(ckpt)
    depth = create_backend(path, device="cpu").infer(feeds["thermal"], feeds["rgb"])
    for view in ("thermal", "rgb"):
        assert np.max(np.abs(depth[view] - reference[view])) < 1e-3, view
    assert load_metadata(path).extra["parity_max_abs_diff_m"] < 1e-3


def test_pt2_export_runs_in_torch_backend(small_ckpt, tmp_path):
    out = export_mod.export_checkpoint(small_ckpt, tmp_path / "tiny.pt2", fmt="pt2")
    md = load_metadata(out)
    assert md.format == "pt2" and md.model_file == "tiny.pt2" and md.views == ["thermal", "rgb"]
    assert md.extra["parity_checked_with"] == "torch.export"
    # size-only tensors (window permutations, masks) are constants, not operators: the program
    # holds no operators that rebuild them at every forward
    assert 100 < md.extra["graph_nodes"] < 1000  # 761 today; 1428 with the operators
    backend = create_backend(out, device="cpu")
    assert backend.name == "torch" and backend.device == "cpu" and backend.precision == "fp32"
    feeds, reference = _torch_reference(small_ckpt)
    depth = backend.infer(feeds["thermal"], feeds["rgb"])
    for view in ("thermal", "rgb"):
        assert depth[view].shape == (64, 128) and depth[view].dtype == np.float32
        assert float(np.max(np.abs(depth[view] - reference[view]))) < 1e-4


def test_cli_view_subset_and_size_override(small_ckpt, tmp_path, capsys):
    out = tmp_path / "thermal_only.onnx"
    code = export_mod.main(["--checkpoint", str(small_ckpt), "--out", str(out), "--views",
                            "thermal", "--height", "128", "--width", "128"])
    assert code == 0
    assert "max |diff|" in capsys.readouterr().out
    md = load_metadata(out)
    assert md.views == ["thermal"] and md.input_size == {"height": 128, "width": 128}
    assert [s.shape for s in md.inputs] == [[1, 1, 128, 128], [1, 3, 128, 128]]
    feeds, reference = _torch_reference(small_ckpt, 128, 128)
    depth = create_backend(out, device="cpu").infer(feeds["thermal"], feeds["rgb"])
    assert list(depth) == ["thermal"]
    assert float(np.max(np.abs(depth["thermal"] - reference["thermal"]))) < 1e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thermal_only.onnx",
                                                          "thermal_only.onnx.json"]


def test_bad_arguments_fail_with_clear_message(tiny_onnx_model, tmp_path, capsys):
    ckpt = tiny_onnx_model.parent / "tiny_fusion.pt"
    assert export_mod.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"),
                            "--views", "nir"]) == 2  # bad input: 2
    assert "--views nir: this model outputs thermal,rgb" in capsys.readouterr().err
    assert export_mod.main(["--checkpoint", str(tmp_path / "nope.pt"),
                            "--out", str(tmp_path / "m.onnx")]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failed_parity_leaves_no_files(small_ckpt, tmp_path, monkeypatch):
    ckpt = small_ckpt
    out = tmp_path / "strict.onnx"
    out.write_bytes(b"old model")  # an earlier export that must not gain a sidecar
    monkeypatch.setattr(export_mod, "PARITY_TOLERANCE_M", 0.0)
    with pytest.raises(export_mod.ExportError, match="differs from PyTorch"):
        export_mod.export_checkpoint(ckpt, out, views="thermal")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strict.onnx"]
    assert out.read_bytes() == b"old model" and not sidecar_path(out).exists()
    # from the command line: the export itself failed, exit 1 (bad input would be 2)
    assert export_mod.main(["--checkpoint", str(ckpt), "--out", str(out), "--views",
                            "thermal"]) == 1
    assert out.read_bytes() == b"old model" and not sidecar_path(out).exists()


def test_sidecar_embeds_training_config(tiny_onnx_model):
    raw = json.loads(sidecar_path(tiny_onnx_model).read_text())
    assert raw["training_config"]["name"] == "tiny_test"
    assert raw["training_config"]["model"]["attn_splits"] == [4, 4, 2, 2]
    assert raw["extra"]["opset"] == 17 and "Conv" in raw["extra"]["ops"]


def test_aoti_package_is_fp32_pt2_only(small_ckpt, tmp_path, capsys):
    """An AOTInductor package runs the fp32 kernels it was compiled with: an fp16 sidecar would
    misreport it, so the combination is refused (before any CUDA is needed)."""
    assert export_mod.main(["--checkpoint", str(small_ckpt), "--out", str(tmp_path / "m.pt2"),
                            "--aoti", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "--aoti with --precision fp16 is not supported" in err
    assert "plain .pt2 with --precision fp16" in err
    assert export_mod.main(["--checkpoint", str(small_ckpt), "--out", str(tmp_path / "m.onnx"),
                            "--aoti"]) == 2
    assert "--aoti packages a .pt2" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_git_commit_says_when_the_code_is_not_a_commit(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    assert export_mod.git_commit(tmp_path) == "unknown"  # not a checkout
    git("init", "-q")
    (tmp_path / "net.py").write_text("a = 1\n")
    git("add", "net.py")
    git("commit", "-q", "-m", "first")
    head = export_mod.git_commit(tmp_path)
    assert len(head) == 40 and int(head, 16) >= 0
    (tmp_path / "scratch.txt").write_text("untracked files do not change the code")
    assert export_mod.git_commit(tmp_path) == head
    (tmp_path / "net.py").write_text("a = 2\n")
    assert export_mod.git_commit(tmp_path) == head + "-dirty"
