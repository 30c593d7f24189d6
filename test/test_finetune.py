"""Fine-tuning on your own rig: recordings of the synthetic rig converted with bag_to_ms2
(non-MS2 image sizes), `init.checkpoint` from an earlier run (weights only, fresh optimiser and
step 0, strict about the architecture), then evaluation on the rig's own test split."""
from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import pytest
import torch

from depth_fusion_ros import ms2
from depth_fusion_ros.bag.bag_to_ms2 import main as bag_to_ms2
from training import train
from training.checkpoint import load_checkpoint
from training.config import load_config
from training.synthetic.rig_bag import write_rig_bag
from training.synthetic.rig_drive import DriveSpec

REPO = Path(__file__).resolve().parents[1]
TINY = textwrap.dedent("""\
    model: {variant: tiny, height: 64, width: 128}
    data: {train_split: train, val_split: val, augment: null, num_workers: 0}
    optim: {lr: 2.0e-3, lr_final: 1.0e-4, batch_size: 2, max_steps: 4, amp: "off",
            channels_last: false}
    schedule: {val_every: 1000, ckpt_every: 1000, log_every: 1, seed: 0, val_max_frames: 2,
               viz_frames: 0}
    """)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cfg")
    (folder / "tiny.yaml").write_text(TINY)
    return folder


@pytest.fixture(scope="module")
def rig_data(tmp_path_factory) -> Path:
    """Two recordings of the synthetic rig converted into one data folder: train and test."""
    folder = tmp_path_factory.mktemp("rig")
    root = folder / "data"
    for name, seed, split in (("drive_a", 0, "train"), ("drive_b", 5, "test")):
        write_rig_bag(folder / name, DriveSpec(seconds=0.7, scale=0.5, seed=seed))
        assert bag_to_ms2([str(folder / name), "--out", str(root), "--lidar-topic",
                           "/lidar/points", "--split", split, "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def pretrained(configs, tmp_path_factory) -> Path:
    """last.pt of a 4-step run on generated MS2-format data (the 'MS2 model' to start from)."""
    from training.synthetic.__main__ import main as synth_main

    data = tmp_path_factory.mktemp("synth") / "ms2"
    assert synth_main(["--out", str(data), "--sequences", "2", "--frames", "3", "--seed", "0"]) == 0
    run = tmp_path_factory.mktemp("runs") / "ms2"
    assert _train(configs / "tiny.yaml", data, run) == 0
    return run / "last.pt"


def _train(config: Path, data: Path, out: Path, *overrides: str) -> int:
    torch.set_num_threads(1)
    return train.main(["--config", str(config), "--data-root", str(data), "--out", str(out),
                       *overrides])


def test_loader_resizes_other_rig_sizes(rig_data):
    from training.data import MS2Dataset

    assert ms2.read_thermal(rig_data, "drive_a", "000000").shape == (240, 320)  # not MS2's
    train_item = MS2Dataset(rig_data, "train", height=64, width=128, train=True)[0]
    assert train_item["thermal"].shape == (1, 64, 128) and train_item["rgb"].shape == (3, 64, 128)
    assert train_item["gt_rgb"].shape == (1, 64, 128)  # nearest-neighbour resized for training
    gt = train_item["gt_rgb"][train_item["gt_rgb"] > 0]
    full = ms2.read_depth(rig_data, "drive_a", "rgb", "000000")
    assert set(gt.numpy().round(4)) <= set(full[full > 0].round(4))  # never interpolated
    eval_item = MS2Dataset(rig_data, "test_day", height=64, width=128)[0]
    assert eval_item["gt_thermal"].shape == (1, 240, 320)  # evaluation at the GT's own size


def test_init_checkpoint_loads_weights_only(configs, rig_data, pretrained, tmp_path):
    start = tmp_path / "start"
    overrides = (f"init.checkpoint={pretrained}", "data.val_split=test_day")
    assert _train(configs / "tiny.yaml", rig_data, start, "--max-steps", "0", *overrides) == 0
    source, loaded = load_checkpoint(pretrained), load_checkpoint(start / "last.pt")
    assert loaded["step"] == 0 and source["step"] == 4
    for key, value in source["model"].items():
        assert torch.equal(loaded["model"][key], value), key
    tuned = tmp_path / "tuned"
    assert _train(configs / "tiny.yaml", rig_data, tuned, "--max-steps", "3", *overrides) == 0
    payload = load_checkpoint(tuned / "last.pt")
    assert payload["step"] == 3 and payload["config"]["init"]["checkpoint"] == str(pretrained)
    adam_steps = {int(s["step"]) for s in payload["optimizer"]["state"].values()}
    assert adam_steps == {3}  # a fresh optimiser: not 4 + 3
    with open(tuned / "scalars.csv", newline="") as handle:
        steps = sorted({int(r["step"]) for r in csv.DictReader(handle) if r["tag"] == "train/loss"})
    assert steps == [1, 2, 3]
    assert "weights initialised from" in (tuned / "train.log").read_text()

    from training.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(tuned / "last.pt", rig_data, "test_day", both=True, device="cpu",
                                 viz_frames=0, progress=False)
    metrics = report["splits"]["test_day"]
    assert metrics["frames"] == len(ms2.list_frames(rig_data, "drive_b"))
    for mode in ("metric", "median"):
        for view in ("thermal", "rgb"):
            assert 0.0 < metrics[mode][view]["abs_rel"] < 10.0


def test_architecture_mismatch_and_conflicts_are_refused(configs, rig_data, pretrained, tmp_path):
    run = tmp_path / "other"
    assert _train(configs / "tiny.yaml", rig_data, run, f"init.checkpoint={pretrained}",
                  "model.shared_decoder=false", "data.val_split=test_day") == 2
    log = (run / "train.log").read_text()
    assert "does not fit this model" in log and "model.shared_decoder" in log
    run = tmp_path / "both"
    assert _train(configs / "tiny.yaml", rig_data, run, f"init.checkpoint={pretrained}",
                  f"init.pretrained_encoder={pretrained}", "data.val_split=test_day") == 2
    assert "not both" in (run / "train.log").read_text()
    run = tmp_path / "missing"
    assert _train(configs / "tiny.yaml", rig_data, run, f"init.checkpoint={tmp_path / 'x.pt'}",
                  "data.val_split=test_day") == 2
    assert "does not exist" in (run / "train.log").read_text()


def test_finetune_config_is_a_short_low_lr_schedule():
    cfg = load_config(REPO / "training/configs/finetune_own_rig.yaml", ["init.checkpoint=best.pt"])
    base = load_config(REPO / "training/configs/swin_b_ms2.yaml")
    assert cfg.init.checkpoint == "best.pt" and cfg.init.pretrained_encoder is None
    assert cfg.model == base.model  # the MS2 checkpoint's architecture
    assert cfg.optim.lr <= base.optim.lr / 10 and cfg.optim.max_steps <= base.optim.max_steps / 10
    assert cfg.data.min_speed_mps > 0 and cfg.optim.warmup_steps > 0
