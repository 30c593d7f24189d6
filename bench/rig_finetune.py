"""Bring your own rig, end to end: fine-tune the demo model on recordings of another rig.

    .venv/bin/python bench/rig_finetune.py [--train-drives 3] [--seconds 4] [--steps 200]
        [--lr 1e-4] [--keep DIR] [--no-record]

Runs the README's "Train on your own rig" commands, as subprocesses, on the synthetic rig
(`training/synthetic/rig_bag.py`: thermal 640x480 + RGB 1024x576 with lens distortion, a
spinning LiDAR, /tf odometry; other sizes, lenses and mounting than the MS2-like rig the demo
model was trained on):
1. record `--train-drives` day drives for training, one for validation and one for testing
   (`python -m training.synthetic.rig_bag`, different seeds, so different streets);
2. convert each with `bag_to_ms2` into one MS2-layout folder (`--split train|val|test`);
3. evaluate `training/models/demo_model.pt` on the rig's test_day split (before);
4. fine-tune it (`python -m training.train ... init.checkpoint=training/models/demo_model.pt`)
   with `training/configs/finetune_own_rig.yaml`'s schedule, its model block replaced by the
   demo model's (a checkpoint's model block must match) and the learning rate a tenth of the
   demo model's own (`--lr`), as the config's comment asks of a model trained from scratch;
5. evaluate best.pt of the fine-tuning (after) and export it to ONNX (the deploy step).
Prints and (unless --no-record) appends to bench/RESULTS.md metric abs_rel, rmse and d1 per
view before and after, with the time of each step.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from common import record  # noqa: E402

DEMO_MODEL = REPO / "training" / "models" / "demo_model.pt"
FINETUNE_CONFIG = REPO / "training" / "configs" / "finetune_own_rig.yaml"
PY = sys.executable


def _run(cmd: list[str], log: Path) -> float:
    """Run one step's command (output to `log`); its wall time in seconds. Raises naming the
    command and the log on failure."""
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(f"step failed (exit {done.returncode}): {' '.join(cmd)}\n"
                         f"log {log}:\n{tail}")
    return time.perf_counter() - start


def finetune_config(checkpoint: Path, data_root: Path, steps: int, lr: float) -> dict:
    """finetune_own_rig.yaml with the checkpoint's model block and a run this CPU can afford."""
    from training.checkpoint import load_checkpoint

    cfg = yaml.safe_load(FINETUNE_CONFIG.read_text())
    cfg["model"] = load_checkpoint(checkpoint)["config"]["model"]
    cfg["data"].update(root=str(data_root), num_workers=0)
    cfg["optim"].update(lr=lr, lr_final=lr / 10, batch_size=4, max_steps=steps,
                        warmup_steps=max(1, steps // 10), amp="off", channels_last=False)
    cfg["schedule"].update(val_every=max(1, steps // 4), ckpt_every=max(1, steps // 4),
                           log_every=max(1, steps // 10), val_max_frames=20, viz_frames=1)
    cfg["init"]["checkpoint"] = str(checkpoint)
    return cfg


def _scores(metrics_json: Path) -> tuple[dict[str, dict[str, float]], int]:
    """(view -> abs_rel, rmse, d1 of metric depth on test_day, frames scored)."""
    split = json.loads(metrics_json.read_text())["splits"]["test_day"]
    return ({view: {k: float(values[k]) for k in ("abs_rel", "rmse", "d1")}
             for view, values in split["metric"].items()}, int(split["frames"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-drives", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each drive")
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps")
    parser.add_argument("--lr", type=float, default=1e-4,
                        help="peak learning rate (a tenth of the demo model's 1e-3)")
    parser.add_argument("--checkpoint", type=Path, default=DEMO_MODEL)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep the files")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.train_drives < 1 or args.steps < 1:
        parser.error("--train-drives and --steps must be >= 1")
    with tempfile.TemporaryDirectory(prefix="rig_finetune_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, logs = work / "own_rig", work / "logs"
        logs.mkdir(exist_ok=True)
        drives = [(f"drive_{i}", 10 + i, "train") for i in range(args.train_drives)]
        drives += [("drive_val", 30, "val"), ("drive_test", 40, "test")]
        seconds = {"record": 0.0, "convert": 0.0}
        for name, seed, split in drives:
            bag = work / "bags" / name
            seconds["record"] += _run(
                [PY, "-m", "training.synthetic.rig_bag", "--out", str(bag), "--seconds",
                 str(args.seconds), "--seed", str(seed), "--kind", "day"], logs / f"{name}_rec.log")
            seconds["convert"] += _run(
                [PY, "-m", "depth_fusion_ros.bag.bag_to_ms2", str(bag), "--out", str(data),
                 "--lidar-topic", "/lidar/points", "--split", split, "--quiet"],
                logs / f"{name}_bag_to_ms2.log")
        evaluate = [PY, "-m", "training.evaluate", "--data-root", str(data), "--split",
                    "test_day", "--device", "cpu"]
        seconds["evaluate before"] = _run(evaluate + ["--checkpoint", str(args.checkpoint),
                                                      "--out", str(work / "eval_before")],
                                          logs / "eval_before.log")
        config = work / "finetune_demo_model.yaml"
        config.write_text(yaml.safe_dump(finetune_config(args.checkpoint, data, args.steps,
                                                         args.lr), sort_keys=False))
        run = work / "runs" / "finetune_own_rig"
        seconds["fine-tune"] = _run(
            [PY, "-m", "training.train", "--config", str(config), "--data-root", str(data),
             "--out", str(run), f"init.checkpoint={args.checkpoint}"], logs / "train.log")
        seconds["evaluate after"] = _run(evaluate + ["--checkpoint", str(run / "best.pt"),
                                                     "--out", str(work / "eval_after")],
                                         logs / "eval_after.log")
        seconds["export"] = _run([PY, "-m", "training.export", "--checkpoint",
                                  str(run / "best.pt"), "--out", str(work / "own_rig.onnx")],
                                 logs / "export.log")
        before, test_frames = _scores(work / "eval_before" / "metrics.json")
        after, _ = _scores(work / "eval_after" / "metrics.json")
    rows = ["| view | abs_rel before | abs_rel after | change | rmse before / after (m) | "
            "d1 before / after |", "|---|---:|---:|---:|---|---|"]
    for view in before:
        b, a = before[view], after[view]
        rows.append(f"| {view} | {b['abs_rel']:.4f} | {a['abs_rel']:.4f} | "
                    f"{100 * (a['abs_rel'] / b['abs_rel'] - 1):+.1f} % | {b['rmse']:.2f} / "
                    f"{a['rmse']:.2f} | {b['d1']:.3f} / {a['d1']:.3f} |")
    table = "\n".join(rows)
    start = args.checkpoint.relative_to(REPO) if args.checkpoint.is_relative_to(REPO) else (
        args.checkpoint)
    notes = (f"{start} fine-tuned {args.steps} steps (peak lr {args.lr:g}, batch 4) on "
             f"{args.train_drives} rig drives of {args.seconds:g} s; metric depth on the rig's "
             f"test_day drive ({test_frames} frames); wall time: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    if args.no_record:
        print(table)
        print(notes)
    else:  # record prints the block too
        record("Fine-tuning the demo model on another rig (synthetic rig bags, bag_to_ms2)",
               table, "bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]), notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
