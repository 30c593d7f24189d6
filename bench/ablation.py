"""Fusion ablation on the synthetic MS2-format data: fused vs single-modality models, N seeds.

Every arm is the same run config (default `training/configs/ablation_synthetic.yaml`: same
variant, size, steps, batch, schedule and data) with a few overrides; each is trained with every seed,
evaluated (best.pt by validation, as the demo does) on every test split present (day, night,
rain), both views, metric depth and median-scaled. The script writes per run `eval.json`, and
for the whole ablation `ablation.json`, `ablation.md` (mean and sample standard deviation over
seeds, and the fused model's change against the single-modality model of each view) and
`ablation.png` (abs_rel bars with one-standard-deviation whiskers); `--record` appends the
Markdown to bench/RESULTS.md.

Finished runs and evaluations are reused, an interrupted run resumes from its last.pt: the
ablation can be stopped and restarted at any time.

    python bench/ablation.py --data-root DIR [--out bench/ablation_out] [--seeds 0,1,2]
        [--arms fused,thermal_only,rgb_only,...] [--steps N] [--config CFG] [--record]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO_ROOT, record

# Override groups several arms combine (same order as the runs were recorded with).
UNSHARED = ["model.shared_encoder=false", "model.shared_decoder=false"]
SEP_DMCF = "model.shared_dmcf=false"
DETACH = "model.detach_cross_modal=true"
TWO_TOWERS = [*UNSHARED, SEP_DMCF, DETACH]  # swin_b_two_towers.yaml's switches


def rgb_dropout(p: float) -> list[str]:
    """Overrides that blank the RGB camera (only) in a fraction p of the training samples."""
    return [f"data.modality_dropout_p={p}", "data.modality_dropout_of=[rgb]"]


DUPLICATE = "data.modality_dropout_mode=duplicate"  # blanked copies join the whole samples


# name -> (overrides, description). A single-modality arm predicts one view only.
ARMS: dict[str, tuple[list[str], str]] = {
    "fused": ([], "DMCF-SIDE as configured (shared encoder and decoder, 2 attention pairs)"),
    "thermal_only": (["model.modality=thermal_only"], "thermal-only baseline"),
    "rgb_only": (["model.modality=rgb_only"], "RGB-only baseline"),
    "fused_4pairs": (["model.attn_pairs_per_block=2"],
                     "fused, (W-SA, W-CA, SW-SA, SW-CA) in every Cross-Relation block"),
    "fused_sep_decoders": (["model.shared_decoder=false"], "fused, one decoder per view"),
    "fused_unshared": (UNSHARED,
                       "fused, one encoder and one decoder per modality: per view the capacity "
                       "of a single-modality model, plus the DMCF attention between them"),
    "fused_gated": (["model.gated_cross_attention=true"], "fused, gated cross-attention"),
    "fused_modality_bn": (["model.modality_batchnorm=true"],
                          "fused, one BatchNorm per modality in the DMCF ConvBlocks"),
    "fused_detach": ([DETACH],
                     "fused, cross-attention without gradients into the other modality"),
    "fused_unshared_detach": ([*UNSHARED, DETACH],
                              "fused_unshared with cross-attention without gradients into the "
                              "other modality: each encoder is trained by its own view only"),
    "fused_two_towers": (TWO_TOWERS,
                         "fused, one encoder, one set of DMCF weights and one decoder per "
                         "modality, cross-attention without gradients into the other "
                         "modality: each view is a single-modality network trained by its own "
                         "loss that reads the other camera's tokens as an input"),
    "fused_sep_dmcf": ([SEP_DMCF],
                       "fused, one set of DMCF weights per modality (encoder and decoder shared)"),
    "fused_two_towers_grad": ([*UNSHARED, SEP_DMCF],
                              "fused_two_towers with gradients through the cross-attention "
                              "into the other modality (no detach_cross_modal)"),
    "fused_two_towers_rgb30": ([*TWO_TOWERS, *rgb_dropout(0.3)],
                               "fused_two_towers trained as fused_dropout_rgb30 (the RGB camera "
                               "blanked in 30 % of the samples)"),
    "fused_two_towers_rgb15": ([*TWO_TOWERS, *rgb_dropout(0.15)],
                               "fused_two_towers with the RGB camera blanked in 15 % of the "
                               "samples"),
    "fused_two_towers_rgb30_dup": ([*TWO_TOWERS, *rgb_dropout(0.3), DUPLICATE],
                                   "fused_two_towers, and for 30 % of the samples a copy with "
                                   "the RGB camera blanked joins the batch (the sample itself "
                                   "stays whole: full-input training as fused_two_towers)"),
    "fused_two_towers_dup30": ([*TWO_TOWERS, "data.modality_dropout_p=0.3", DUPLICATE],
                               "fused_two_towers, and for 30 % of the samples a copy with one "
                               "camera blanked (either, with equal chance) joins the batch (as "
                               "the demo model)"),
    "fused_two_towers_dup30_sep": ([*TWO_TOWERS, "data.modality_dropout_p=0.3", DUPLICATE,
                                    "loss.blanked_weight=1.0"],
                                   "fused_two_towers_dup30 with the blanked copies' SILog "
                                   "apart from the whole samples' (loss.blanked_weight 1): the "
                                   "full-input objective exactly as without dropout, plus "
                                   "single-camera mode as a second objective"),
    "fused_two_towers_dup30_sep05": ([*TWO_TOWERS, "data.modality_dropout_p=0.3", DUPLICATE,
                                      "loss.blanked_weight=0.5"],
                                     "fused_two_towers_dup30_sep with the copies' term "
                                     "weighted 0.5"),
    "fused_two_towers_dup30_late": ([*TWO_TOWERS, "data.modality_dropout_p=0.3", DUPLICATE,
                                     "data.modality_dropout_from_step=700"],
                                    "fused_two_towers_dup30 with the blanked copies only after "
                                    "step 700 of 1000 (late dropout): the fused mode trains as "
                                    "without dropout first"),
    "fused_two_towers_dup30_late85": ([*TWO_TOWERS, "data.modality_dropout_p=0.3", DUPLICATE,
                                       "data.modality_dropout_from_step=850"],
                                      "fused_two_towers_dup30 with the blanked copies only after "
                                      "step 850 of 1000 (the last 15 %): less training of the "
                                      "single-camera mode, less pull on the full-input one"),
    "fused_two_towers_dup30_late05": ([*TWO_TOWERS, "data.modality_dropout_p=0.3", DUPLICATE,
                                       "data.modality_dropout_from_step=700",
                                       "loss.blanked_weight=0.5"],
                                      "fused_two_towers_dup30_late with the blanked copies' term "
                                      "apart and weighted 0.5 (as _sep05): late dropout with "
                                      "less pull from the single-camera objective"),
    "fused_rgb_blanked": (rgb_dropout(1.0),
                          "control: the fusion network trained with the RGB input always "
                          "blanked (its thermal-alone score isolates the architecture's cost)"),
    "fused_image_gated": (["model.image_gated_cross_attention=true"],
                          "fused, cross-attention message scaled by a per-image gate"),
    "fused_zero_init": (["model.zero_init_attention=true"],
                        "fused, attention layers start as the identity"),
    "fused_dropout": (["data.modality_dropout_p=0.2"],
                      "fused, one modality blanked in 20 % of the training samples (as the demo "
                      "model)"),
    "fused_dropout50": (["data.modality_dropout_p=0.5"],
                        "fused, one modality blanked in 50 % of the training samples"),
    "fused_dropout_rgb30": (rgb_dropout(0.3),
                            "fused, the RGB camera blanked in 30 % of the training samples (the "
                            "thermal camera never): trains the thermal-alone mode the node falls "
                            "back to when the RGB camera fails"),
    "fused_dropout_rgb50": (rgb_dropout(0.5),
                            "fused, the RGB camera blanked in 50 % of the training samples"),
    "fused_dropout_rgb70": (rgb_dropout(0.7),
                            "fused, the RGB camera blanked in 70 % of the training samples"),
    "fused_unshared_detach_rgb30": ([*UNSHARED, DETACH, *rgb_dropout(0.3)],
                                    "fused_unshared_detach trained as fused_dropout_rgb30 (the "
                                    "RGB camera blanked in 30 % of the samples)"),
    "fused_rgb_noise": (["data.augment.rgb_noise_std=12"],
                        "fused, fresh Gaussian noise on the RGB training images (std drawn from "
                        "U(0, 12) levels per sample): the recorded frames' noise cannot be "
                        "memorised"),
    "rgb_only_noise": (["model.modality=rgb_only", "data.augment.rgb_noise_std=12"],
                       "RGB-only baseline with the same RGB noise augmentation"),
    "fused_global_attn": (["model.attn_splits=[1,1,1,1]"],
                          "fused, attention over the whole map at every scale (no K x K "
                          "windows): a token can reach the other camera's view of its scene "
                          "point however far the two images are misaligned"),
    "fused_align_views": (["model.align_views=true"],
                          "fused, the other camera's tokens resampled onto this camera's rays "
                          "(rig homography from the calibration) before every cross-attention"),
    "fused_align_inputs": (["model.align_inputs=true"],
                           "fused, each view predicted from its own image and the other camera's "
                           "image resampled onto its rays (rig homography from the calibration)"),
    "fused_thermal_weighted": (["loss.rgb_weight=0.5"],
                               "fused, RGB view's SILog weighted 0.5 (its loss runs ~1.5x the "
                               "thermal view's, so it dominates the shared weights' gradient)"),
}
SINGLE = {"thermal": "thermal_only", "rgb": "rgb_only"}
# Arms trained with one camera always blanked: only the other view, fed alone, is meaningful.
ALONE = {"fused_rgb_blanked": "thermal"}
REPORTED = ("abs_rel", "rmse", "d1")


def run_dir_for(out: Path, arm: str, seed: int) -> Path:
    return out / arm / f"seed_{seed}"


def train_run(config: Path, data_root: Path, run_dir: Path, overrides: list[str], seed: int,
              steps: int | None) -> None:
    """Train one arm/seed, or resume it, or reuse it when it already reached max_steps."""
    from training.checkpoint import load_checkpoint

    cmd = [sys.executable, "-m", "training.train", "--config", str(config), "--data-root",
           str(data_root), "--out", str(run_dir), *overrides, f"schedule.seed={seed}"]
    if steps:
        cmd += ["--max-steps", str(steps)]
    last = run_dir / "last.pt"
    if last.exists():
        payload = load_checkpoint(last)
        if payload["step"] >= payload["config"]["optim"]["max_steps"]:
            return
        cmd.append("--resume")
    print("$ " + " ".join(cmd), flush=True)
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
        code = subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"training {run_dir} failed (exit {code}); see {log.name}")


def train_as_test_root(data_root: Path, out: Path) -> Path:
    """A data root whose test_day / test_night / test_rainy lists are the *training* sequences
    of each condition (symlinks to the real images and GT): evaluating on it measures how well a
    run fits what it was trained on, and test minus train is its generalisation gap."""
    from depth_fusion_ros import ms2

    root = out / "train_as_test"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("sync_data", "proj_depth"):
        link = root / name
        if not link.is_symlink():
            link.symlink_to(data_root / name, target_is_directory=True)
    conditions = ms2.read_conditions(data_root)
    train = ms2.read_split(data_root, "train")
    for split, condition in ms2.TEST_SPLIT_CONDITION.items():
        seqs = [s for s in train if conditions.get(s) == condition]
        path = root / f"{split}_list.txt"
        path.unlink(missing_ok=True)
        if seqs:  # a condition without training sequences is not scored
            path.write_text("".join(f"{s}\n" for s in seqs))
    for split in ("train", "val"):
        (root / f"{split}_list.txt").write_text(
            "".join(f"{s}\n" for s in ms2.read_split(data_root, split)))
    return root


FIT_FRAME_STEP = 4  # the fit is scored on every 4th training frame (15 fps: neighbours repeat)


def evaluate_run(run_dir: Path, data_root: Path, degraded: bool,
                 cache_name: str = "eval.json", step: int = 1) -> dict:
    """{split: {mode: {view: metrics}}} of best.pt on every test split, cached in `cache_name`.

    degraded (fused arms): also each view with the *other* camera lost, as the node's
    single-camera mode runs it, under the keys "<view>_alone" of every split and mode.
    """
    from depth_fusion_ros.metadata import sha256_file
    from training.evaluate import evaluate_checkpoint

    ckpt = run_dir / "best.pt"
    cache = run_dir / cache_name
    digest = sha256_file(ckpt)
    if cache.exists():
        cached = json.loads(cache.read_text())
        if (cached.get("checkpoint_sha256") == digest and cached.get("data_root") == str(data_root)
                and cached.get("frame_step", 1) == step
                and cached.get("degraded", False) >= degraded):
            return cached["splits"]
    common = dict(both=True, device="cpu", viz_frames=0, progress=False, step=step)
    report = evaluate_checkpoint(ckpt, data_root, "all", **common)
    splits = report["splits"]
    if degraded:
        for lost, kept in (("rgb", "thermal"), ("thermal", "rgb")):
            alone = evaluate_checkpoint(ckpt, data_root, "all", missing=lost, **common)["splits"]
            for split, result in alone.items():
                for mode in ("metric", "median"):
                    splits[split][mode][f"{kept}_alone"] = result[mode][kept]
    cache.write_text(json.dumps({"checkpoint_sha256": digest, "data_root": str(data_root),
                                 "step": report["step"], "degraded": degraded,
                                 "frame_step": step,
                                 "splits": splits}, indent=2))
    return splits


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(results: dict[str, dict[int, dict]]) -> dict:
    """{arm: {split: {mode: {view: {metric: (mean, std, n)}}}}} over seeds."""
    out: dict = {}
    for arm, per_seed in results.items():
        first = next(iter(per_seed.values()))
        for split, modes in first.items():
            for mode, views in modes.items():
                if mode not in ("metric", "median"):
                    continue
                for view in views:
                    for metric in REPORTED:
                        values = [r[split][mode][view][metric] for r in per_seed.values()]
                        m, s = mean_std(values)
                        out.setdefault(arm, {}).setdefault(split, {}).setdefault(mode, {}) \
                            .setdefault(view, {})[metric] = (m, s, len(values))
    return out


def _cell(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "-"
    # one seed has no spread: say so rather than print a standard deviation of 0
    return f"{stat[0]:.4f} ± {stat[1]:.4f}" if stat[2] > 1 else f"{stat[0]:.4f} (1 seed)"


def markdown(agg: dict, arms: list[str], seeds: list[int], mode: str = "metric",
             compare: tuple[str, ...] = ("fused",)) -> str:
    """abs_rel table (mean ± std over seeds) per view and split, and for each fused arm in
    `compare` its change against the single-modality model of that view."""
    splits = sorted({s for a in agg.values() for s in a}, key=lambda s: ("day" not in s, s))
    heads = ["change" if a == "fused" and len(compare) == 1 else f"change {a}" for a in compare]
    lines = [f"{mode} abs_rel, mean ± sample std over seeds {seeds} (best.pt by validation); "
             f"change = {', '.join(compare)} vs the single-modality model of that "
             "view (negative = fused better)",
             "", "| view / split | " + " | ".join(arms + heads) + " |",
             "|---" * (len(arms) + len(heads) + 1) + "|"]
    for view in ("thermal", "rgb"):
        for split in splits:
            stats = {arm: _arm_stat(agg, arm, split, view, mode) for arm in arms}
            single = stats.get(SINGLE[view])
            cells = [_cell(stats[arm]) for arm in arms]
            cells += [_change(stats.get(a), single) for a in compare]
            lines.append(f"| {view} / {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stat(agg: dict, arm: str, split: str, view: str, mode: str = "metric"):
    return agg.get(arm, {}).get(split, {}).get(mode, {}).get(view, {}).get("abs_rel")


def _arm_stat(agg: dict, arm: str, split: str, view: str, mode: str = "metric"):
    """abs_rel of an arm's view; an `ALONE` arm reports its view fed alone, no other view."""
    if arm in ALONE:
        return _stat(agg, arm, split, f"{view}_alone", mode) if ALONE[arm] == view else None
    return _stat(agg, arm, split, view, mode)


def _change(a, b) -> str:
    return f"{(a[0] / b[0] - 1) * 100:+.1f} %" if a and b else "-"


def dropout_bases(arms: list[str]) -> dict[str, list[str]]:
    """{base arm: [its modality-dropout arms]}: an arm trained with `data.modality_dropout_*`
    (and `loss.blanked_weight`, which only acts on dropout's copies) and the arm with the same
    overrides without them (e.g. fused_two_towers_rgb30 -> fused_two_towers), for the cost of
    dropout on full input."""
    bases: dict[str, list[str]] = {}
    for arm in arms:
        overrides = ARMS[arm][0]
        rest = [o for o in overrides if not o.startswith(("data.modality_dropout",
                                                          "loss.blanked_weight"))]
        if arm in ALONE or rest == overrides:
            continue
        base = next((a for a, (o, _) in ARMS.items() if o == rest), None)
        if base is not None:
            bases.setdefault(base, []).append(arm)
    return bases


def paired_change(runs: dict, arm: str, base: str, split: str, view: str,
                  mode: str = "metric") -> tuple[float, float, int, int] | None:
    """`arm` vs `base` seed by seed (the seeds both ran): the per-seed change of abs_rel in %,
    as (mean, standard error of the mean (NaN for one seed), seeds worse, seeds); None if no
    seed has both."""
    changes = []
    for seed in sorted(set(runs.get(arm, {})) & set(runs.get(base, {}))):
        try:
            a = runs[arm][seed][split][mode][view]["abs_rel"]
            b = runs[base][seed][split][mode][view]["abs_rel"]
        except KeyError:
            continue
        changes.append((a / b - 1.0) * 100.0)
    if not changes:
        return None
    n = len(changes)
    sem = statistics.stdev(changes) / n**0.5 if n > 1 else float("nan")
    return statistics.fmean(changes), sem, sum(c > 0 for c in changes), n


def _paired_cell(stat: tuple[float, float, int, int] | None) -> str:
    if stat is None:
        return "-"
    mean, sem, worse, n = stat
    if n == 1:
        return f"{mean:+.1f} % (1 seed)"
    return f"{mean:+.1f} ± {sem:.1f} % ({worse}/{n} worse)"


def degraded_markdown(agg: dict, arms: list[str], runs: dict | None = None) -> str:
    """A fused model with one camera lost vs the dedicated single-modality model of the other
    camera, and what modality dropout costs the fused model on full input (metric abs_rel).

    runs ({arm: {seed: evaluate_run's result}}), if given, adds the cost paired seed by seed:
    a dropout arm and its base with the same seed start from the same weights and data order,
    so their per-seed difference carries much less of the seeds' spread than the means do."""
    fused_arms = [a for a in arms if a.startswith("fused") and a in agg and a not in ALONE]
    if not fused_arms:
        return ""
    splits = sorted({s for a in agg.values() for s in a}, key=lambda s: ("day" not in s, s))
    lines = ["single-camera mode: a fused model fed one camera (the other replaced by "
             "`missing_input`, as the node does) vs the single-modality model of that camera "
             "(metric abs_rel; change vs the single-modality model)", "",
             "| view / split | " + " | ".join(f"{a} (alone)" for a in fused_arms)
             + " | single-modality | " + " | ".join(f"change {a}" for a in fused_arms) + " |",
             "|---" * (2 * len(fused_arms) + 2) + "|"]
    for view in ("thermal", "rgb"):
        for split in splits:
            alone = [_stat(agg, a, split, f"{view}_alone") for a in fused_arms]
            single = _stat(agg, SINGLE[view], split, view)
            lines.append(f"| {view} / {split} | " + " | ".join(_cell(x) for x in alone)
                         + f" | {_cell(single)} | "
                         + " | ".join(_change(x, single) for x in alone) + " |")
    for base, dropout_arms in dropout_bases(fused_arms).items():
        if base not in agg:
            continue
        lines += ["", f"cost of modality dropout on full input: {', '.join(dropout_arms)} vs "
                      f"{base} (the same arm without dropout; metric abs_rel)", "",
                  f"| view / split | {base} | " + " | ".join(dropout_arms) + " | "
                  + " | ".join(f"change {a}" for a in dropout_arms) + " |",
                  "|---" * (2 + 2 * len(dropout_arms)) + "|"]
        for view in ("thermal", "rgb"):
            for split in splits:
                b = _stat(agg, base, split, view)
                dropped = [_stat(agg, a, split, view) for a in dropout_arms]
                lines.append(f"| {view} / {split} | {_cell(b)} | "
                             + " | ".join(_cell(a) for a in dropped) + " | "
                             + " | ".join(_change(a, b) for a in dropped) + " |")
        if runs is None:
            continue
        lines += ["", f"the same cost paired by seed ({base} and each dropout arm with one seed "
                      "share initial weights and data order): mean ± standard error of the "
                      "per-seed change of metric abs_rel, and how many seeds got worse; a change "
                      "within two standard errors of zero is not told apart from seed noise by "
                      "this many seeds", "",
                  "| view / split | " + " | ".join(f"paired change {a}" for a in dropout_arms)
                  + " |", "|---" * (1 + len(dropout_arms)) + "|"]
        for view in ("thermal", "rgb"):
            for split in splits:
                lines.append(f"| {view} / {split} | " + " | ".join(
                    _paired_cell(paired_change(runs, a, base, split, view))
                    for a in dropout_arms) + " |")
    return "\n".join(lines)


def fit_markdown(agg: dict, train_agg: dict, arms: list[str]) -> str:
    """Each arm's metric abs_rel on its own training sequences (per condition), on the test
    sequences, and the gap between them (test - train); an `ALONE` arm's view fed alone."""
    splits = sorted({s for a in agg.values() for s in a}, key=lambda s: ("day" not in s, s))
    lines = ["fit and generalisation: metric abs_rel on the training sequences of each condition "
             f"(every {FIT_FRAME_STEP}th frame) / on the test sequences / gap (test - train), "
             "mean over seeds", "",
             "| view / condition | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for view in ("thermal", "rgb"):
        for split in splits:
            cells = []
            for arm in arms:
                if arm in ALONE and ALONE[arm] != view:
                    cells.append("-")
                    continue
                key = f"{view}_alone" if arm in ALONE else view
                fit, test = _stat(train_agg, arm, split, key), _stat(agg, arm, split, key)
                cells.append(f"{fit[0]:.4f} / {test[0]:.4f} / {test[0] - fit[0]:+.4f}"
                             if fit and test else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {view} / {split.removeprefix('test_')} | " + " | ".join(cells)
                             + " |")
    return "\n".join(lines)


def plot(agg: dict, arms: list[str], path: Path, mode: str = "metric") -> None:
    """Grouped bars of abs_rel (mean, std whiskers) per view/split and arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = sorted({s for a in agg.values() for s in a}, key=lambda s: ("day" not in s, s))
    groups = [(v, s) for v in ("thermal", "rgb") for s in splits]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups)), 3.6), dpi=120)
    width = 0.8 / len(arms)
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: more arms than tab10 has
    for i, arm in enumerate(arms):
        xs, means, stds = [], [], []
        for g, (view, split) in enumerate(groups):
            stat = _arm_stat(agg, arm, split, view, mode)
            if stat is not None:
                xs.append(g + (i - (len(arms) - 1) / 2) * width)
                means.append(stat[0])
                stds.append(stat[1])
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=arm, color=colours[i % len(colours)])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{v}\n{s}" for v, s in groups], fontsize=8)
    ax.set_ylabel(f"abs_rel ({mode})")
    ax.legend(fontsize=7, ncol=min(len(arms), 3))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True,
                        help="synthetic MS2-format data with test_day/night/rainy splits")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "ablation_out")
    parser.add_argument("--config", type=Path,
                        default=REPO_ROOT / "training" / "configs" / "ablation_synthetic.yaml")
    parser.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    parser.add_argument("--arms", default="fused,thermal_only,rgb_only,fused_4pairs",
                        help=f"comma list of {sorted(ARMS)}")
    parser.add_argument("--compare", default="fused",
                        help="comma list of fused arms whose change vs the single-modality "
                             "models the tables show (default: fused)")
    parser.add_argument("--steps", type=int, default=None, help="override optim.max_steps")
    parser.add_argument("--train-fit", action="store_true",
                        help="also score every run on its own training sequences per condition "
                             "(fit, and the generalisation gap test - train)")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    return parser.parse_args(argv)


def generator_command(data_root: Path) -> str | None:
    """The `python -m training.synthetic ...` command that made a data root: from
    generator_args.json (training.demo_model's) or the generator's own synthetic.json; None for
    other data."""
    stamp = data_root / "generator_args.json"
    if stamp.is_file():
        return f"python -m training.synthetic {' '.join(json.loads(stamp.read_text()))}"
    meta = data_root / "synthetic.json"
    if not meta.is_file():
        return None
    words = []
    for key, value in json.loads(meta.read_text()).get("args", {}).items():
        if key in ("out", "workers", "overwrite") or value is None or value is False:
            continue  # where it went and how fast: not what it made
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return "python -m training.synthetic " + " ".join(words)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; choose from {sorted(ARMS)}")
    stray = [a for a in args.compare.split(",") if a not in arms]
    if stray and args.compare != "fused":
        raise SystemExit(f"--compare {stray}: not among --arms {arms}")
    seeds = [int(s) for s in args.seeds.split(",")]
    data_root, out = args.data_root.resolve(), args.out.resolve()
    results: dict[str, dict[int, dict]] = {}
    fit: dict[str, dict[int, dict]] = {}
    fit_root = train_as_test_root(data_root, out) if args.train_fit else None
    start = time.monotonic()
    for arm in arms:
        for seed in seeds:
            run_dir = run_dir_for(out, arm, seed)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            print(f"[{time.monotonic() - start:6.0f} s] {arm} seed {seed}", flush=True)
            train_run(args.config, data_root, run_dir, ARMS[arm][0], seed, args.steps)
            degraded = arm.startswith("fused")
            results.setdefault(arm, {})[seed] = evaluate_run(run_dir, data_root, degraded)
            if fit_root is not None:
                fit.setdefault(arm, {})[seed] = evaluate_run(
                    run_dir, fit_root, degraded, "eval_train.json", step=FIT_FRAME_STEP)
    agg = aggregate(results)
    compare = tuple(args.compare.split(","))
    table = (markdown(agg, arms, seeds, compare=compare) + "\n\n"
             + markdown(agg, arms, seeds, mode="median", compare=compare))
    degraded = degraded_markdown(agg, arms, results)
    if degraded:
        table += "\n\n" + degraded
    if fit:
        table += "\n\n" + fit_markdown(agg, aggregate(fit), arms)
    arms_md = "\n".join(f"- `{a}`: {ARMS[a][1]} (overrides: {' '.join(ARMS[a][0]) or 'none'})"
                        for a in arms)
    text = f"{arms_md}\n\n{table}"
    (out / "ablation.md").write_text(text + "\n")
    (out / "ablation.json").write_text(json.dumps({"arms": arms, "seeds": seeds,
                                                   "aggregate": agg, "runs": results}, indent=2))
    plot(agg, arms, out / "ablation.png")
    print(text)
    print(f"\nwrote {out / 'ablation.md'}, {out / 'ablation.json'}, {out / 'ablation.png'} "
          f"({time.monotonic() - start:.0f} s)")
    if args.record:
        cmd = "bench/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
        generated = generator_command(data_root)
        data = f"data `{generated}`; " if generated else ""
        record("Fusion ablation on the synthetic data (abs_rel, mean ± std over seeds)", text,
               cmd, f"{data}config {args.config.relative_to(REPO_ROOT)}; "
               f"plot {out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
