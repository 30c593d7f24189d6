"""Uncertainty head: model outputs, Laplacian NLL, export with confidence outputs and sidecar
kinds, backend outputs, sparsification curves / AUSE against hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.losses import LossConfig, log_laplace_nll, multi_view_silog
from training.model import ModelConfig, build_model
from training.sparsification import FRACTIONS, SparsificationAccumulator, image_curves


def _model(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(variant="tiny", height=64, width=128, uncertainty_head=True,
                                   **kw)).eval()


@pytest.mark.parametrize("kw", [{}, {"shared_decoder": False}, {"modality": "rgb_only"}])
def test_model_outputs_sigma_per_view(kw):
    model = _model(**kw)
    thermal, rgb = torch.randn(2, 1, 64, 128), torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        out = model(thermal, rgb)
    for view in model.output_views:
        sigma = out[f"uncertainty_{view}"]
        assert sigma.shape == (2, 1, 64, 128) and float(sigma.min()) >= 0.01
    assert not any(k.startswith("uncertainty") for k in build_model(
        ModelConfig(variant="tiny", height=64, width=128))(thermal, rgb))


def test_laplace_nll_hand_computed_and_depth_detached():
    pred = torch.full((1, 1, 1, 2), 2.0, requires_grad=True)
    gt = torch.tensor([[[[1.0, 2.0]]]])
    sigma = torch.tensor([[[[0.5, 0.25]]]], requires_grad=True)
    valid = gt > 0
    nll = log_laplace_nll(pred, sigma, gt, valid)
    expected = ((math.log(2.0) / 0.5 + math.log(0.5)) + (0.0 / 0.25 + math.log(0.25))) / 2
    assert nll.item() == pytest.approx(expected, rel=1e-6)
    nll.backward()
    assert pred.grad is None and sigma.grad is not None  # the depth is not pulled by the NLL
    # the optimum sigma for a residual r is r (d/ds (r/s + log s) = 0)
    s = torch.tensor([[[[0.3]]]], requires_grad=True)
    log_laplace_nll(torch.tensor([[[[math.exp(0.3)]]]]), s, torch.ones(1, 1, 1, 1),
                    torch.ones(1, 1, 1, 1, dtype=torch.bool)).backward()
    assert abs(float(s.grad)) < 1e-5


def test_multi_view_loss_adds_weighted_nll():
    model = _model()
    thermal, rgb = torch.randn(2, 1, 64, 128), torch.randn(2, 3, 64, 128)
    out = model(thermal, rgb)
    batch = {"gt_thermal": torch.rand(2, 1, 64, 128) * 50 + 1, "gt_rgb": torch.rand(2, 1, 64, 128) * 50 + 1}
    with_nll, parts = multi_view_silog(out, batch, max_depth_m=80.0, cfg=LossConfig())
    without, _ = multi_view_silog(out, batch, max_depth_m=80.0, cfg=LossConfig(uncertainty_weight=0))
    assert {"nll_thermal", "nll_rgb"} <= set(parts)
    assert float(with_nll) == pytest.approx(float(without) + parts["nll_thermal"] + parts["nll_rgb"],
                                            rel=1e-5)


def test_sparsification_perfect_random_and_inverted():
    rng = np.random.default_rng(0)
    gt = rng.uniform(2, 60, (40, 50))
    pred = np.clip(gt * (1 + rng.normal(0, 0.2, gt.shape)), 1e-3, 80).astype(np.float32)
    err = np.abs(pred - gt) / gt
    perfect = image_curves(pred, err, gt)
    # sigma is compared in float32 as the network emits it: ties may reorder, nothing more
    assert perfect["abs_rel"] == pytest.approx(perfect["abs_rel_oracle"], rel=1e-4)
    assert perfect["abs_rel"][0] == pytest.approx(err.mean())
    assert np.all(np.diff(perfect["abs_rel_oracle"]) <= 1e-12)  # removing the worst only helps
    acc = SparsificationAccumulator()
    acc.add(perfect)
    assert acc.summary()["ause_abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert acc.summary()["aurg_abs_rel"] > 0.05
    inverted = SparsificationAccumulator()
    inverted.add(image_curves(pred, -err, gt))  # most confident where most wrong
    assert inverted.summary()["aurg_abs_rel"] < 0 < inverted.summary()["ause_abs_rel"]
    noise = SparsificationAccumulator()
    noise.add(image_curves(pred, rng.random(gt.shape), gt))
    assert abs(noise.summary()["aurg_abs_rel"]) < 0.01
    assert len(acc.curves()["abs_rel"]) == len(FRACTIONS) == 50
    assert image_curves(pred, err, np.zeros_like(gt)) is None


def test_export_writes_confidence_outputs_and_backend_returns_them(tmp_path):
    from depth_fusion_ros.backends import create_backend
    from depth_fusion_ros.metadata import load_metadata
    from training.checkpoint import save_checkpoint
    from training.export import export_checkpoint

    model = _model()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model=model, config={"model": model.cfg.to_dict()}, step=0)
    onnx_path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, onnx_path)
    md = load_metadata(onnx_path)
    assert md.views == ["thermal", "rgb"] and md.confidence_views == ["thermal", "rgb"]
    kinds = {spec.name: (spec.kind, spec.unit) for spec in md.outputs}
    assert kinds["confidence_rgb"] == ("confidence", "1") and kinds["depth_rgb"] == ("depth", "m")
    backend = create_backend(onnx_path, "onnxruntime", "cpu")
    thermal = np.random.default_rng(0).normal(size=(1, 1, 64, 128)).astype(np.float32)
    rgb = np.random.default_rng(1).normal(size=(1, 3, 64, 128)).astype(np.float32)
    outs = backend.infer_outputs(thermal, rgb)
    assert set(backend.infer(thermal, rgb)) == {"thermal", "rgb"}
    with torch.no_grad():
        ref = model(torch.from_numpy(thermal), torch.from_numpy(rgb))
    for view in ("thermal", "rgb"):
        conf = outs["confidence"][view]
        assert conf.shape == (64, 128) and 0 < conf.min() and conf.max() <= 1
        np.testing.assert_allclose(conf, np.exp(-ref[f"uncertainty_{view}"][0, 0].numpy()),
                                   atol=1e-4)
        np.testing.assert_allclose(outs["depth"][view], ref[f"depth_{view}"][0, 0].numpy(),
                                   atol=1e-3)


def test_training_and_evaluation_with_uncertainty(tmp_path):
    """A few real training steps with the head, then training.evaluate: AUSE/AURG and the plot."""
    from training import train
    from training.evaluate import evaluate_checkpoint
    from training.synthetic.__main__ import main as synth_main

    data = tmp_path / "data"
    assert synth_main(["--out", str(data), "--sequences", "2", "--frames", "2", "--seed", "4"]) == 0
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {variant: tiny, height: 64, width: 128, uncertainty_head: true}\n"
                   "data: {augment: null, num_workers: 0}\n"
                   "optim: {lr: 1.0e-3, batch_size: 2, max_steps: 3, amp: 'off', "
                   "channels_last: false}\n"
                   "schedule: {val_every: 1000, ckpt_every: 1000, log_every: 1, val_max_frames: 1,"
                   " viz_frames: 0}\n")
    torch.set_num_threads(1)
    assert train.main(["--config", str(cfg), "--data-root", str(data), "--out",
                       str(tmp_path / "run")]) == 0
    scalars = (tmp_path / "run" / "scalars.csv").read_text()
    assert "train/nll_thermal" in scalars and "train/nll_rgb" in scalars
    report = evaluate_checkpoint(tmp_path / "run" / "last.pt", data, "val", device="cpu",
                                 out_dir=tmp_path / "eval", viz_frames=0, progress=False)
    unc = report["splits"]["val"]["uncertainty"]
    for view in ("thermal", "rgb"):
        assert math.isfinite(unc[view]["ause_abs_rel"]) and unc[view]["ause_abs_rel"] >= -1e-9
        assert len(unc[view]["curves"]["abs_rel"]) == len(FRACTIONS)
    assert (tmp_path / "eval" / "val_sparsification.png").stat().st_size > 5000
    assert "AUSE abs_rel" in report["table"]


def test_uncertainty_head_does_not_change_the_depth_gradients():
    """The head reads detached features: the depth's parameters get the same gradients with or
    without the NLL term."""
    model = _model().train()
    thermal, rgb = torch.randn(2, 1, 64, 128), torch.randn(2, 3, 64, 128)
    batch = {"gt_thermal": torch.rand(2, 1, 64, 128) * 50 + 1, "gt_rgb": torch.rand(2, 1, 64, 128) * 50 + 1}
    grads = []
    for weight in (0.0, 1.0):
        model.zero_grad()
        torch.manual_seed(1)
        out = model(thermal, rgb)
        loss, _ = multi_view_silog(out, batch, max_depth_m=80.0,
                                   cfg=LossConfig(uncertainty_weight=weight))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None and "uncertainty_head" not in n})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)
