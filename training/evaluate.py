"""Offline evaluation of a DMCF-SIDE checkpoint on MS2-layout test splits.

`python -m training.evaluate --checkpoint CKPT --data-root DIR --split test_day [--median-scaling]
[--both] [--protocol ms2] [--out DIR] [--max-frames N]`

The nine metrics of DESIGN.md section 6 (and prediction coverage) for each view the model
predicts (thermal-aligned and RGB-aligned GT), per image over every valid GT pixel
(1e-3 < gt < 80 m) with the prediction bilinearly upsampled to the GT size
(depth_fusion_ros.metrics), then averaged over images. Metric depth by default;
`--median-scaling` applies the MS2 benchmark's per-image median scaling; `--both` reports both.
`--protocol ms2` is the MS2 reference test protocol (SupDepth4Thermal `test_monodepth.py`):
median-scaled, every 10th frame of the split's concatenated frame list taken as the reference
slices it (`frames[0:-1:10]`, so the split's last frame is never used), depth range 1e-3..80 m.
The validation step of training uses `run_evaluation` from here, so the numbers agree.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depth_fusion_ros.metrics import (
    MetricAccumulator,
    compute_depth_metrics,
    format_metrics_table,
    resize_prediction,
)
from depth_fusion_ros.ms2 import TEST_SPLITS, read_split
from depth_fusion_ros.preprocess import missing_input
from depth_fusion_ros.viz import (
    colorize_depth,
    colorize_error,
    contact_sheet,
    input_to_rgb,
    save_png,
)
from training.sparsification import SparsificationAccumulator, image_curves, plot_curves

MODES = {"metric": False, "median": True}
MS2_PROTOCOL_STEP = 10  # SupDepth4Thermal configs: test sample_step 10


def ms2_protocol_indices(length: int, step: int = MS2_PROTOCOL_STEP) -> list[int]:
    """Frame indices the MS2 reference evaluates: `range(length)[0:-1:step]` over the split's
    concatenated frames (its loader slices the sample list this way)."""
    return list(range(length))[0:-1:step]


def frame_sheet(sample: dict, preds: dict[str, np.ndarray], max_depth_m: float) -> np.ndarray:
    """Contact sheet for one frame: inputs, then per view prediction / GT / abs-rel error.

    Args:
        sample: one dataset item (tensors without batch dim): thermal [1,h,w], rgb [3,h,w],
            gt_thermal / gt_rgb [1,Hg,Wg].
        preds: {"thermal": [h, w], "rgb": [h, w]} metres (views the model produced).
    """
    rows = [[("thermal input", input_to_rgb(np.asarray(sample["thermal"]))),
             ("rgb input", input_to_rgb(np.asarray(sample["rgb"])))]]
    for view, pred in preds.items():
        gt = np.asarray(sample[f"gt_{view}"])[0]  # [Hg, Wg]
        pred = resize_prediction(pred, gt.shape)  # as the metrics see it; same-size tiles
        rows.append([(f"{view} prediction", colorize_depth(pred, max_depth_m)),
                     (f"{view} GT", colorize_depth(gt, max_depth_m, dilate_px=1)),
                     (f"{view} abs-rel error", colorize_error(pred, gt, dilate_px=1))])
    return contact_sheet(rows)


def subsample(length: int, max_frames: int | None) -> list[int]:
    """Evenly spaced indices (all when max_frames is 0/None or >= length)."""
    if not max_frames or max_frames >= length:
        return list(range(length))
    return [int(i) for i in np.linspace(0, length - 1, max_frames).round()]


@torch.no_grad()
def run_evaluation(model: torch.nn.Module, dataset, *, device: torch.device, max_depth_m: float,
                   modes: tuple[str, ...] = ("metric",), max_frames: int | None = None,
                   viz_frames: int = 0, progress: bool = True,
                   indices: list[int] | None = None,
                   missing: str | None = None) -> tuple[dict, list[np.ndarray]]:
    """Metrics of `model` over an evaluation dataset (items with full-size GT).

    indices: dataset items to evaluate (default: `max_frames` evenly spaced, or all).
    missing: "thermal" or "rgb" to evaluate a fused model as the node runs it when that camera
        is lost: the input replaced by `preprocess.missing_input`, only the other view scored.
    Returns:
        ({mode: {view: {metric: mean}}, "frames": n}, [contact sheet per visualised frame]);
        for a model with an uncertainty head also "uncertainty": {view: {"ause_abs_rel",
        "aurg_abs_rel", "ause_rmse", "aurg_rmse", "curves"}} (training.sparsification, metric
        depth).
    """
    model.eval()
    views = tuple(getattr(model, "output_views", ("thermal", "rgb")))
    if missing is not None:
        if missing not in views or len(views) < 2:
            raise ValueError(f"missing={missing!r}: needs a fused model (this one outputs {views})")
        views = tuple(v for v in views if v != missing)
    acc = {mode: {view: MetricAccumulator() for view in views} for mode in modes}
    if indices is None:
        indices = subsample(len(dataset), max_frames)
    viz_at = set(subsample(len(indices), viz_frames)) if viz_frames else set()
    sheets = []
    sparse = {view: SparsificationAccumulator() for view in views}
    for n, index in enumerate(tqdm(indices, desc="evaluate", disable=not progress, leave=False)):
        sample = dataset[index]
        if missing is not None:
            sample = dict(sample, **{missing: torch.from_numpy(
                missing_input(missing, tuple(sample[missing].shape[1:])))})
        thermal = sample["thermal"][None].to(device)  # [1, 1, h, w]
        rgb = sample["rgb"][None].to(device)  # [1, 3, h, w]
        outputs = model(thermal, rgb, views=views)
        preds = {view: outputs[f"depth_{view}"][0, 0].float().cpu().numpy() for view in views}
        for view, pred in preds.items():
            gt = sample[f"gt_{view}"][0].numpy()  # [Hg, Wg]
            for mode in modes:
                acc[mode][view].add(compute_depth_metrics(pred, gt, median_scaling=MODES[mode]))
            sigma = outputs.get(f"uncertainty_{view}")
            if sigma is not None:
                sparse[view].add(image_curves(pred, sigma[0, 0].float().cpu().numpy(), gt))
        if n in viz_at:
            sheets.append(frame_sheet(sample, preds, max_depth_m))
    results = {mode: {view: a.mean() for view, a in per_view.items()}
               for mode, per_view in acc.items()}
    results["frames"] = len(indices)
    if any(a.count for a in sparse.values()):
        results["uncertainty"] = {view: {**a.summary(), "curves": a.curves()}
                                  for view, a in sparse.items()}
    return results, sheets


def _uncertainty_table(splits: dict) -> str:
    """Markdown rows of AUSE/AURG per split and view ("" for models without uncertainty)."""
    rows = [f"| {name} / {view} | {u['ause_abs_rel']:.4f} | {u['aurg_abs_rel']:.4f} | "
            f"{u['ause_rmse']:.3f} | {u['aurg_rmse']:.3f} |"
            for name, result in splits.items() for view, u in result.get("uncertainty", {}).items()]
    if not rows:
        return ""
    return ("\n\nuncertainty (sparsification vs oracle; lower AUSE and higher AURG are better)\n\n"
            "| split / view | AUSE abs_rel | AURG abs_rel | AUSE rmse (m) | AURG rmse (m) |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows))


def load_model(checkpoint: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network from a checkpoint's saved model config and load its weights."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(payload)
    return model.to(device), payload


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, split: str = "test_day", *,
                        median_scaling: bool = False, both: bool = False,
                        max_frames: int | None = None, out_dir: str | Path | None = None,
                        device: str | None = None, viz_frames: int = 3, step: int = 1,
                        progress: bool = True, protocol: str | None = None,
                        missing: str | None = None) -> dict:
    """Evaluate a checkpoint on one split (or "all" = the three test splits).

    protocol "ms2": the MS2 reference protocol (module docstring); it replaces the scaling
    choice, `step` and `max_frames`. missing: see `run_evaluation` (single-camera mode).
    Returns:
        {"checkpoint", "step", "splits": {split: {"metric"|"median": {view: metrics}, "frames"}},
         "table": Markdown}. With out_dir, also writes metrics.json and qualitative PNGs there.
    """
    from training.data import MS2Dataset

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, payload = load_model(checkpoint, dev)
    model_cfg = payload["config"]["model"]
    if protocol not in (None, "ms2"):
        raise ValueError(f"unknown evaluation protocol {protocol!r}; the only one is 'ms2'")
    modes = ("metric", "median") if both else (("median",) if median_scaling else ("metric",))
    if protocol == "ms2":
        modes, step, max_frames = ("median",), 1, None
    splits = TEST_SPLITS if split == "all" else (split,)
    report = {"checkpoint": str(checkpoint), "step": int(payload["step"]), "protocol": protocol,
              "missing": missing, "splits": {}}
    rows = {}
    for name in splits:
        if split == "all" and not read_split(data_root, name):
            report.setdefault("skipped_splits", []).append(name)
            continue  # e.g. a generated data set without rainy sequences
        dataset = MS2Dataset(data_root, name, height=model_cfg["height"], width=model_cfg["width"],
                             train=False, step=step, max_depth_m=model_cfg["max_depth_m"])
        results, sheets = run_evaluation(model, dataset, device=dev, modes=modes,
                                         max_depth_m=model_cfg["max_depth_m"],
                                         max_frames=max_frames, viz_frames=viz_frames,
                                         progress=progress,
                                         indices=ms2_protocol_indices(len(dataset))
                                         if protocol == "ms2" else None, missing=missing)
        report["splits"][name] = results
        for mode in modes:
            for view, values in results[mode].items():
                rows[f"{name} / {view} / {mode}"] = values
        if out_dir is not None:
            for i, sheet in enumerate(sheets):
                save_png(Path(out_dir) / f"{name}_{i:02d}.png", sheet)
            if "uncertainty" in results:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                plot_curves({v: u["curves"] for v, u in results["uncertainty"].items()},
                            Path(out_dir) / f"{name}_sparsification.png",
                            f"{name}: sparsification (AUSE abs_rel "
                            + ", ".join(f"{v} {u['ause_abs_rel']:.4f}"
                                        for v, u in results["uncertainty"].items()) + ")")
    report["table"] = format_metrics_table(rows) + _uncertainty_table(report["splits"])
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="last.pt / best.pt of a training run")
    parser.add_argument("--data-root", required=True, help="MS2-layout data folder")
    parser.add_argument("--split", default="test_day", help=f"one of {TEST_SPLITS}, val, or all")
    parser.add_argument("--median-scaling", action="store_true",
                        help="per-image median scaling, as the MS2 benchmark code does")
    parser.add_argument("--both", action="store_true", help="report metric and median-scaled")
    parser.add_argument("--protocol", choices=("ms2",), default=None,
                        help="ms2: the MS2 reference test protocol (median-scaled, every 10th "
                             "frame as its loader slices them, 1e-3..80 m)")
    parser.add_argument("--missing", choices=("thermal", "rgb"), default=None,
                        help="evaluate a fused model with this camera lost (its input replaced as "
                             "the node's single-camera mode does); only the other view is scored")
    parser.add_argument("--out", default=None, help="folder for metrics.json and PNGs")
    parser.add_argument("--max-frames", type=int, default=None, help="evenly subsample frames")
    parser.add_argument("--step", type=int, default=1, help="use every N-th frame")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    args = parser.parse_args(argv)
    from training.checkpoint import CheckpointError

    try:
        report = evaluate_checkpoint(args.checkpoint, args.data_root, args.split,
                                     median_scaling=args.median_scaling, both=args.both,
                                     max_frames=args.max_frames, out_dir=args.out,
                                     device=args.device, step=args.step, protocol=args.protocol,
                                     missing=args.missing)
    except (CheckpointError, ValueError, OSError) as exc:  # names the file, split or option
        print(f"training.evaluate: error: {exc}", file=sys.stderr)
        return 2
    frames = {name: r["frames"] for name, r in report["splits"].items()}
    print(f"checkpoint {args.checkpoint} (step {report['step']}), frames {frames}")
    if report.get("skipped_splits"):
        print(f"skipped (no sequences in {args.data_root}): "
              f"{', '.join(report['skipped_splits'])}")
    print(report["table"])
    if args.out:
        print(f"wrote {Path(args.out) / 'metrics.json'} and qualitative PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
