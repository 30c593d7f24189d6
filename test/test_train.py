"""Training pipeline on tiny generated MS2-format data: config, loss goes down, exact resume,
atomic checkpoints, non-finite loss stop, evaluation."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from training import train
from training.checkpoint import atomic_torch_save, load_checkpoint
from training.config import ConfigError, load_config, to_dict

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = textwrap.dedent("""\
    model: {variant: tiny, height: 64, width: 128}
    data: {train_split: train, val_split: val, augment: null, num_workers: 0, val_step: 2}
    optim: {lr: 2.0e-3, lr_final: 1.0e-4, batch_size: 2, max_steps: 20, amp: "off",
            channels_last: false}
    schedule: {val_every: 1000, ckpt_every: 1000, log_every: 1, seed: 0, val_max_frames: 2,
               viz_frames: 1}
    """)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Two generated sequences (1 train, 1 val) of 4 frames each, seed 0."""
    from training.synthetic.__main__ import main as synth_main

    root = tmp_path_factory.mktemp("synth") / "ms2"
    assert synth_main(["--out", str(root), "--sequences", "2", "--frames", "4", "--seed", "0"]) == 0
    return root


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path


def _losses(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "scalars.csv", newline="") as handle:
        return {int(r["step"]): float(r["value"]) for r in csv.DictReader(handle)
                if r["tag"] == "train/loss"}


def _train(config: Path, data: Path, out: Path, *extra: str) -> int:
    torch.set_num_threads(1)  # bitwise-reproducible CPU kernels across the compared runs
    return train.main(["--config", str(config), "--data-root", str(data), "--out", str(out),
                       *extra])


def test_config_overrides_and_unknown_keys(tiny_config, tmp_path):
    cfg = load_config(tiny_config, ["optim.lr=1e-4", "optim.betas=[0.8, 0.99]", "model.width=256"])
    assert cfg.optim.lr == 1e-4 and cfg.optim.betas == (0.8, 0.99) and cfg.model.width == 256
    assert to_dict(cfg)["optim"]["betas"] == [0.8, 0.99] and cfg.loss.silog_lambda == 0.85
    with pytest.raises(ConfigError, match=r"'optim.lrr'.*tiny.yaml"):
        load_config(tiny_config, ["optim.lrr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {variant: tiny}\nschedule: {val_evry: 3}\n")
    with pytest.raises(ConfigError, match=r"'schedule.val_evry' in .*bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="optim.batch_size='two'"):
        load_config(tiny_config, ["optim.batch_size=two"])


@pytest.mark.parametrize("path", sorted((REPO / "training" / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_configs_load(path):
    """Every config in training/configs parses with its model block validated (a renamed or
    misspelt key in a config nobody ran recently fails here, not after a GPU queue)."""
    cfg = load_config(path)
    assert cfg.model.height % 32 == 0 and cfg.model.width % 32 == 0
    assert cfg.optim.max_steps > 0


def test_two_towers_config_is_swin_b_ms2_with_separate_towers():
    base = load_config(REPO / "training/configs/swin_b_ms2.yaml").model
    towers = load_config(REPO / "training/configs/swin_b_two_towers.yaml").model
    assert (towers.shared_encoder, towers.shared_decoder, towers.shared_dmcf,
            towers.detach_cross_modal) == (False, False, False, True)
    for key in ("variant", "height", "width", "attn_splits", "modality", "max_depth_m"):
        assert getattr(towers, key) == getattr(base, key), key


def test_twenty_steps_lower_the_loss_and_write_run_files(tiny_config, tiny_data, tmp_path):
    run = tmp_path / "run"
    assert _train(tiny_config, tiny_data, run) == 0
    losses = _losses(run)
    assert sorted(losses) == list(range(1, 21))
    first, last = sum(losses[s] for s in range(1, 6)) / 5, sum(losses[s] for s in range(16, 21)) / 5
    assert last < 0.8 * first, (first, last)
    for name in ("last.pt", "best.pt", "config.yaml", "command.txt", "train.log"):
        assert (run / name).is_file(), name
    assert list((run / "val").glob("step_*.png"))
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 20 and ckpt["config"]["model"]["height"] == 64
    assert 0.0 < ckpt["best_abs_rel"] < 1.0
    assert "--data-root" in (run / "command.txt").read_text()
    # Without --resume an existing run folder is refused, not overwritten.
    with pytest.raises(SystemExit, match="--resume"):
        _train(tiny_config, tiny_data, run)

    from training.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(run / "last.pt", tiny_data, "val", both=True, max_frames=2,
                                 out_dir=tmp_path / "eval", device="cpu", progress=False)
    metrics = report["splits"]["val"]
    assert metrics["frames"] == 2 and set(metrics) == {"metric", "median", "frames"}
    for mode in ("metric", "median"):
        for view in ("thermal", "rgb"):
            assert 0.0 < metrics[mode][view]["abs_rel"] < 1.0
    # Median scaling can only help a per-image scale error's abs_rel on average here.
    assert "| val / rgb / median |" in report["table"]
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert list((tmp_path / "eval").glob("val_*.png"))
    # The MS2 reference protocol: median-scaled only, frames[0:-1:10] -> frame 0 of 4.
    ms2 = evaluate_checkpoint(run / "last.pt", tiny_data, "val", protocol="ms2", device="cpu",
                              viz_frames=0, progress=False)
    first = evaluate_checkpoint(run / "last.pt", tiny_data, "val", median_scaling=True,
                                max_frames=1, device="cpu", viz_frames=0, progress=False)
    assert ms2["protocol"] == "ms2" and set(ms2["splits"]["val"]) == {"median", "frames"}
    assert ms2["splits"]["val"]["frames"] == 1
    assert ms2["splits"]["val"]["median"] == first["splits"]["val"]["median"]
    with pytest.raises(ValueError, match="protocol"):
        evaluate_checkpoint(run / "last.pt", tiny_data, "val", protocol="kitti")


def test_ms2_protocol_frame_selection():
    from training.evaluate import ms2_protocol_indices

    assert ms2_protocol_indices(40) == [0, 10, 20, 30]
    assert ms2_protocol_indices(41) == [0, 10, 20, 30]  # the reference never uses the last frame
    assert ms2_protocol_indices(42) == [0, 10, 20, 30, 40]
    assert ms2_protocol_indices(1) == [] and ms2_protocol_indices(3, step=1) == [0, 1]


def test_duplicate_dropout_trains_on_the_blanked_copies(tiny_config, tiny_data, tmp_path,
                                                       monkeypatch):
    """data.modality_dropout_mode=duplicate with p = 1: every step's batch reaches the model
    with one RGB-blanked copy per sample; a mode that does not exist is refused by name."""
    sizes = []
    real = train.add_blanked_copies

    def spy(batch):
        out = real(batch)
        sizes.append((batch["rgb"].shape[0], out["rgb"].shape[0], int((~out["has_rgb"]).sum())))
        return out

    monkeypatch.setattr(train, "add_blanked_copies", spy)
    assert _train(tiny_config, tiny_data, tmp_path / "dup", "--max-steps", "3",
                  "data.modality_dropout_p=1.0", "data.modality_dropout_of=[rgb]",
                  "data.modality_dropout_mode=duplicate") == 0
    assert sizes == [(2, 4, 2)] * 3
    with pytest.raises(ConfigError, match="data.modality_dropout_mode='both'"):
        load_config(tiny_config, ["data.modality_dropout_mode=both"])


def test_late_dropout_adds_the_copies_after_its_step(tiny_config, tiny_data, tmp_path,
                                                    monkeypatch):
    """data.modality_dropout_from_step: whole samples alone for that many steps, then the
    blanked copies join; replace mode and negative steps are refused by name."""
    sizes = []
    real = train.add_blanked_copies

    def spy(batch):
        out = real(batch)
        sizes.append(out["rgb"].shape[0])
        return out

    monkeypatch.setattr(train, "add_blanked_copies", spy)
    assert _train(tiny_config, tiny_data, tmp_path / "late", "--max-steps", "4",
                  "data.modality_dropout_p=1.0", "data.modality_dropout_of=[rgb]",
                  "data.modality_dropout_mode=duplicate",
                  "data.modality_dropout_from_step=2") == 0
    assert sizes == [2, 2, 4, 4]
    with pytest.raises(ConfigError, match="modality_dropout_from_step needs.*duplicate"):
        load_config(tiny_config, ["data.modality_dropout_p=0.3",
                                  "data.modality_dropout_from_step=10"])
    with pytest.raises(ConfigError, match="modality_dropout_from_step must be >= 0"):
        load_config(tiny_config, ["data.modality_dropout_from_step=-1"])


def test_resume_is_exact(tiny_config, tiny_data, tmp_path):
    steps = ["--max-steps", "6", "schedule.ckpt_every=2"]
    assert _train(tiny_config, tiny_data, tmp_path / "straight", *steps) == 0
    assert _train(tiny_config, tiny_data, tmp_path / "split", *steps, "--stop-at-step", "3") == 0
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 3
    assert _train(tiny_config, tiny_data, tmp_path / "split", *steps, "--resume") == 0
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "split" / "last.pt")
    assert straight["step"] == resumed["step"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "split")


def test_failed_resume_keeps_the_run_resumable_and_a_finished_run_is_left_alone(
        tiny_config, tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    # overrides may sit between options (argparse intermixed parsing)
    assert train.main(["--config", str(tiny_config), "schedule.ckpt_every=2", "--data-root",
                       str(tiny_data), "--max-steps", "4", "--out", str(run),
                       "--stop-at-step", "2"]) == 0
    config = (run / "config.yaml").read_text()
    # another network (--config of another model): a clear error, the run's config.yaml stays
    assert _train(tiny_config, tiny_data, run, "--max-steps", "4", "--resume",
                  "model.uncertainty_head=true") == 2
    log = (run / "train.log").read_text()
    assert "holds another network than this config builds (model.* keys that differ: " \
           "uncertainty_head)" in log
    assert (run / "config.yaml").read_text() == config
    # a mistyped data root: rc 2, one line, config.yaml unchanged
    assert train.main(["--out", str(run), "--resume", "--data-root",
                       str(tmp_path / "nope")]) == 2
    assert "cannot start: " in (run / "train.log").read_text().splitlines()[-1]
    assert (run / "config.yaml").read_text() == config
    # the plain resume the README gives still works, from the run's own config.yaml
    torch.set_num_threads(1)
    assert train.main(["--out", str(run), "--resume"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4
    finished = (run / "last.pt").read_bytes()
    scalars = (run / "scalars.csv").read_text()
    # what a run SIGKILLed mid-save leaves (its PID gone); a live writer's is left alone
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = run / f".last.pt.{int(gone.stdout)}.k1ll3d_x.tmp"
    live = run / f".best.pt.{os.getppid()}.l1v3_abc.tmp"
    for path in (stale, live):
        path.write_bytes(finished[:100])
    assert train.main(["--out", str(run), "--resume"]) == 0  # finished: nothing to do
    assert not stale.exists() and live.exists()  # removed by the run, not only by a save
    live.unlink()
    assert (run / "last.pt").read_bytes() == finished
    assert (run / "scalars.csv").read_text() == scalars
    assert "finished at step 4 of 4: nothing to do" in (run / "train.log").read_text()
    # a config key typo: one line on stderr, rc 2, no traceback
    assert train.main(["--config", str(tiny_config), "--out", str(tmp_path / "typo"),
                       "optim.lrr=1"]) == 2
    assert "training.train: error: " in capsys.readouterr().err
    # training.evaluate: a wrong data root or a damaged checkpoint is one line and rc 2
    from training import evaluate

    assert evaluate.main(["--checkpoint", str(run / "last.pt"), "--data-root",
                          str(tmp_path / "nope"), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("training.evaluate: error: ") and str(tmp_path / "nope") in err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(finished[:1000])
    assert evaluate.main(["--checkpoint", str(broken), "--data-root", str(tiny_data)]) == 2
    assert str(broken) in capsys.readouterr().err


def test_non_finite_loss_stops_without_checkpoint(tiny_config, tiny_data, tmp_path):
    run = tmp_path / "nan"
    code = _train(tiny_config, tiny_data, run, "--max-steps", "6", "optim.lr=1e30",
                  "optim.grad_clip=0")
    assert code == 2
    assert not (run / "last.pt").exists()
    assert "stopping without writing a checkpoint" in (run / "train.log").read_text()


def test_atomic_save_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"step": 1, "w": torch.ones(4)}, path)

    def broken_save(obj, stream):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_sigkill_during_saves_never_leaves_a_truncated_file(tmp_path):
    path = tmp_path / "last.pt"
    script = textwrap.dedent(f"""\
        import sys, torch
        sys.path.insert(0, {str(REPO)!r})
        from training.checkpoint import atomic_torch_save
        step = 0
        while True:
            step += 1
            atomic_torch_save({{"step": step, "w": torch.full((1 << 20,), float(step))}}, {str(path)!r})
            if step == 1:
                print("saved", flush=True)
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"saved"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    payload = torch.load(path)
    assert payload["step"] >= 1 and torch.all(payload["w"] == payload["step"])
