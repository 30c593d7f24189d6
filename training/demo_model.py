"""`make demo-model`: train the small fused model that `make demo` ships, from scratch, reproducibly.

The demo has 15 minutes on a 2-core CPU, too little to train a model whose depth shows the scene,
so it starts from this checkpoint (training/models/demo_model.pt, weights only, a few MB). This
script is how that file was made; run it to reproduce or improve it:

  1. synthetic training data: `python -m training.synthetic --seed 1 --frames 40 --train 18
     --val 1 --test-day 3 --test-night 3 --test-rainy 3` (no sequence in common with the demo's
     seed-0 data, so the demo's test sequences stay unseen; the same data as bench/ablation.py)
  2. `python -m training.train --config training/configs/demo_model.yaml` (resumable: rerunning
     after an interruption continues from last.pt)
  3. evaluation of best.pt on the demo's own test sequences (seed-0 data, as `make demo` builds
     it) and on the training data's day/night/rain test sequences, metric and median-scaled
  4. training/models/demo_model.pt (weights, config, step, provenance and metrics) and
     training/models/demo_model.md (the same as a table), written atomically

    python -m training.demo_model [--out demo_model_out] [--max-steps N] [--no-publish]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "training" / "configs" / "demo_model.yaml"
MODEL_PATH = REPO_ROOT / "training" / "models" / "demo_model.pt"
TRAIN_DATA_ARGS = ["--frames", "40", "--seed", "1", "--train", "18", "--val", "1",
                   "--test-day", "3", "--test-night", "3", "--test-rainy", "3"]
DEMO_DATA_ARGS = ["--frames", "40", "--seed", "0"]  # what `make demo` generates


def generate(root: Path, args: list[str]) -> Path:
    """Generate a synthetic data set once (reused when the same arguments and generator code
    made it, as `make demo`'s data)."""
    from training.demo import GENERATOR_SOURCES, source_fingerprint

    stamp = root / "generator_args.json"
    made_by = {"args": args, "code": source_fingerprint(*GENERATOR_SOURCES)}
    if stamp.exists() and json.loads(stamp.read_text()) == made_by:
        print(f"reusing {root} (same generator arguments and code)")
        return root
    cmd = [sys.executable, "-m", "training.synthetic", "--out", str(root), "--workers", "2",
           "--overwrite", *args]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO_ROOT, check=True)
    stamp.write_text(json.dumps(made_by))
    return root


def train(run_dir: Path, data_root: Path, max_steps: int | None) -> list[str]:
    """Train (resuming an interrupted run); returns the training command for the provenance."""
    cmd = [sys.executable, "-m", "training.train", "--config", str(CONFIG.relative_to(REPO_ROOT)),
           "--data-root", str(data_root), "--out", str(run_dir)]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    last = run_dir / "last.pt"
    if last.exists():
        from training.checkpoint import load_checkpoint

        payload = load_checkpoint(last)
        if payload["step"] >= payload["config"]["optim"]["max_steps"]:
            print(f"reusing {last} (step {payload['step']})")
            return cmd
        cmd.append("--resume")
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO_ROOT, check=True)
    return [c for c in cmd if c != "--resume"]


def evaluate(ckpt: Path, demo_data: Path, train_data: Path) -> dict:
    """{"demo": report on the demo's test_day/test_night, "own": on the training data's tests}."""
    from training.evaluate import evaluate_checkpoint

    out = {}
    for label, root in (("demo", demo_data), ("own", train_data)):
        report = evaluate_checkpoint(ckpt, root, "all", both=True, device="cpu", viz_frames=0)
        out[label] = report["splits"]
        print(f"{label} test sequences ({root}):\n{report['table']}\n")
    return out


def metrics_markdown(metrics: dict) -> str:
    """One row per data set / split / view: metric and median-scaled abs_rel, rmse, d1."""
    lines = ["| data / split / view | abs_rel | rmse (m) | d1 | abs_rel median-scaled |",
             "|---|---|---|---|---|"]
    for label, splits in metrics.items():
        for split, result in splits.items():
            for view, m in result["metric"].items():
                med = result["median"][view]
                lines.append(f"| {label} / {split} / {view} | {m['abs_rel']:.4f} | "
                             f"{m['rmse']:.3f} | {m['d1']:.4f} | {med['abs_rel']:.4f} |")
    return "\n".join(lines)


def training_seconds(run_dir: Path) -> tuple[float, int]:
    """(wall-clock seconds of training, sessions) from the run's train.log: each session (a
    start, or a resume after an interruption) runs from its "run folder" line to its last line."""
    from datetime import datetime

    sessions: list[list[datetime]] = []
    for line in (run_dir / "train.log").read_text().splitlines():
        try:
            stamp = datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue  # a continuation line (e.g. a traceback)
        if " INFO run folder " in line or not sessions:
            sessions.append([stamp, stamp])
        sessions[-1][1] = stamp
    return sum((end - begin).total_seconds() for begin, end in sessions), len(sessions)


def _shown(cmd: list[str]) -> str:
    """A command as a person would type it: `python`, paths inside the repository relative."""
    return " ".join(["python"] + [a.replace(f"{REPO_ROOT}/", "") for a in cmd[1:]])


def publish(ckpt: Path, train_cmd: list[str], metrics: dict, seconds: float) -> None:
    """Weights-only checkpoint plus provenance, and its Markdown card, atomically."""
    from depth_fusion_ros.fileio import atomic_write_text
    from training.checkpoint import atomic_torch_save, load_checkpoint
    from training.export import git_commit

    payload = load_checkpoint(ckpt)
    train_s, sessions = training_seconds(ckpt.parent)
    provenance = {"train_command": _shown(train_cmd), "train_data_args": TRAIN_DATA_ARGS,
                  "demo_data_args": DEMO_DATA_ARGS, "source_git_commit": git_commit(),
                  "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "wall_s": round(seconds), "train_wall_s": round(train_s),
                  "train_sessions": sessions, "torch": torch.__version__,
                  "threads": torch.get_num_threads()}
    slim = {"model": payload["model"], "config": payload["config"], "step": payload["step"],
            "best_abs_rel": payload.get("best_abs_rel"), "provenance": provenance,
            "metrics": metrics}
    atomic_torch_save(slim, MODEL_PATH)
    card = (f"# training/models/demo_model.pt\n\nMade by `make demo-model` "
            f"(`python -m training.demo_model`) on {provenance['created']}, source commit "
            f"{provenance['source_git_commit']}. Training took {train_s / 60:.0f} min of wall "
            f"clock on this machine ({torch.get_num_threads()} torch thread(s)"
            f"{f', {sessions} sessions: resumed from last.pt' if sessions > 1 else ''}); this "
            f"command {seconds / 60:.0f} min.\n\n"
            f"- training data: `python -m training.synthetic {' '.join(TRAIN_DATA_ARGS)}`\n"
            f"- training: `{provenance['train_command']}` (config "
            f"`{CONFIG.relative_to(REPO_ROOT)}`, step {payload['step']}, best.pt by validation)\n"
            f"- evaluated on the demo's test sequences (`python -m training.synthetic "
            f"{' '.join(DEMO_DATA_ARGS)}`, what `make demo` generates) and on the training "
            f"data's own test sequences; every valid GT pixel, 1e-3..80 m\n\n"
            f"{metrics_markdown(metrics)}\n")
    atomic_write_text(MODEL_PATH.with_suffix(".md"), card)
    print(f"wrote {MODEL_PATH} ({MODEL_PATH.stat().st_size / 1e6:.1f} MB) and "
          f"{MODEL_PATH.with_suffix('.md')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo_model_out")
    parser.add_argument("--max-steps", type=int, default=None, help="override optim.max_steps")
    parser.add_argument("--no-publish", action="store_true",
                        help=f"evaluate only; leave {MODEL_PATH.relative_to(REPO_ROOT)} alone")
    args = parser.parse_args(argv)
    start = time.monotonic()
    out = args.out.resolve()
    train_data = generate(out / "train_data", TRAIN_DATA_ARGS)
    train_cmd = train(out / "run", train_data, args.max_steps)
    demo_data = generate(out / "demo_data", DEMO_DATA_ARGS)
    run_dir = out / "run"
    ckpt = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
    metrics = evaluate(ckpt, demo_data, train_data)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if not args.no_publish:
        publish(ckpt, train_cmd, metrics, time.monotonic() - start)
    print(metrics_markdown(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
