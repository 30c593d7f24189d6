"""Accuracy of a converted model against its fp32 reference: the seeded reference inputs, the
per-precision limits and the comparison (pure numpy, no GPU).

`training.export` checks ONNX / pt2 against PyTorch with `sample_inputs`; the engine builder
(`backends.tensorrt_build`) checks every TensorRT engine against ONNX Runtime fp32 on the same
inputs (plus real MS2 frames when it has them) with `compare_depths` and refuses an engine above
the limits of its precision.

Limits (metres, for the 0-80 m depth range of DMCF-SIDE):

| precision | max abs diff | mean abs diff |
|---|---|---|
| fp32 | 1e-3 | 1e-4 |
| fp16 | 1.0  | 0.1  |
| int8 | 8.0  | 0.5  |

- fp32: the same arithmetic up to summation order (TF32 is switched off for fp32 engines); the
  export's ONNX-vs-PyTorch parity tolerance is the same 1 mm.
- fp16: a 10-bit mantissa through ~100 layers with LayerNorm and Softmax kept fp32; the head
  (depth = 80 m * sigmoid) turns a logit error into up to 20x as many metres.
- int8: 10 % / 0.6 % of the range, loose enough for honest quantisation, tight enough to catch
  saturated or stale calibration scales.

They catch broken engines (overflow, wrong calibration, a mis-parsed graph), not metric changes:
measure those with `python -m training.evaluate` on the engine's outputs.

Models with the uncertainty head also output confidence = exp(-sigma) in (0, 1]; `compare_outputs`
checks it too, against `CONFIDENCE_LIMITS` (absolute, unitless): fp32 1e-4 / 1e-5, fp16
0.02 / 0.002, int8 0.1 / 0.01 (max / mean). sigma is a log-depth error, so a confidence error
of 0.02 near 0.9 is about 2 % of expected relative depth error, as loose as fp16's depth limit.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from depth_fusion_ros.preprocess import preprocess_rgb, preprocess_thermal


@dataclass(frozen=True)
class AccuracyLimits:
    """Largest allowed |engine - reference| depth difference in metres."""

    max_abs_m: float
    mean_abs_m: float


ACCURACY_LIMITS: dict[str, AccuracyLimits] = {
    "fp32": AccuracyLimits(max_abs_m=1e-3, mean_abs_m=1e-4),
    "fp16": AccuracyLimits(max_abs_m=1.0, mean_abs_m=0.1),
    "int8": AccuracyLimits(max_abs_m=8.0, mean_abs_m=0.5),
}
# confidence outputs, exp(-sigma) in (0, 1]: unitless (the field names keep "_m" for one type)
CONFIDENCE_LIMITS: dict[str, AccuracyLimits] = {
    "fp32": AccuracyLimits(max_abs_m=1e-4, mean_abs_m=1e-5),
    "fp16": AccuracyLimits(max_abs_m=0.02, mean_abs_m=0.002),
    "int8": AccuracyLimits(max_abs_m=0.1, mean_abs_m=0.01),
}


@dataclass(frozen=True)
class AccuracyReport:
    """Result of `compare_depths`; `to_dict()` is what the engine sidecar records."""

    precision: str
    n_inputs: int
    max_abs_diff_m: float
    mean_abs_diff_m: float
    non_finite: int  # pixels where the reference is finite and the candidate is not
    limits: AccuracyLimits
    per_view: dict  # {view: {"max_abs_diff_m": x, "mean_abs_diff_m": y}}
    passed: bool
    message: str
    confidence: dict | None = None  # the confidence outputs' report (`compare_outputs`)

    def to_dict(self) -> dict:
        return asdict(self)


def sample_inputs(height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded, camera-like raw images run through the shared preprocessing.

    Thermal: a vertical temperature gradient (sky cold, road warm, as in MS2) plus warm blobs and
    sensor noise in raw counts; RGB: smooth colour gradients plus noise. Realistic statistics
    matter for parity: random normal inputs saturate the sigmoid head and hide errors.
    Returns:
        {"thermal": [1,1,H,W] f32, "rgb": [1,3,H,W] f32} normalised.
    """
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    blobs = sum(np.exp(-((rows - rng.uniform()) ** 2 + (cols - rng.uniform()) ** 2) / 0.01)
                for _ in range(4))
    counts = 3000 + 2000 * rows + 800 * blobs + rng.normal(0, 20, (height, width))
    thermal_raw = np.clip(counts, 0, 65535).astype(np.uint16)
    rgb_raw = np.stack([200 * rows + 30 * cols, 120 + 80 * cols + 0 * rows, 180 - 150 * rows * cols],
                       axis=2) + rng.normal(0, 8, (height, width, 3))
    rgb_raw = np.clip(rgb_raw, 0, 255).astype(np.uint8)
    return {
        "thermal": preprocess_thermal(thermal_raw, (height, width))[None],
        "rgb": preprocess_rgb(rgb_raw, (height, width))[None],
    }


def compare_depths(
    pairs: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
    precision: str,
    limits: AccuracyLimits | None = None,
    label: str = "engine",
    reference_label: str = "ONNX Runtime fp32",
    unit: str = " m",
    what: str = "depth",
) -> AccuracyReport:
    """Compares candidate depth maps with reference ones, input by input.

    Args:
        pairs: per input, ({view: reference [H, W] m}, {view: candidate [H, W] m}); both
            mappings hold the same views.
        precision: "fp32" | "fp16" | "int8", selects `ACCURACY_LIMITS` unless `limits` is given.
        label, reference_label: what the message calls the candidate and the reference.
        unit, what: the maps' unit and name in the message (confidence: "", "confidence").
    Returns:
        the report; `passed` is False when a limit is exceeded or the candidate has non-finite
        values where the reference is finite. Raises ValueError on empty input, mismatched views
        or shapes (a caller bug, not an accuracy problem).
    """
    if not pairs:
        raise ValueError("compare_depths needs at least one (reference, candidate) pair")
    limits = limits or ACCURACY_LIMITS[precision]
    sums: dict[str, list[float]] = {}
    non_finite = 0
    for i, (reference, candidate) in enumerate(pairs):
        if set(reference) != set(candidate):
            raise ValueError(f"input {i}: views {sorted(candidate)} != reference "
                             f"{sorted(reference)}")
        for view, ref in reference.items():
            ref = np.asarray(ref, np.float64)
            cand = np.asarray(candidate[view], np.float64)
            if ref.shape != cand.shape:
                raise ValueError(f"input {i} view {view}: shape {cand.shape} != {ref.shape}")
            valid = np.isfinite(ref)
            diff = np.abs(cand[valid] - ref[valid])
            bad = ~np.isfinite(diff)
            non_finite += int(bad.sum())
            diff = diff[~bad]
            acc = sums.setdefault(view, [0.0, 0.0, 0.0])  # max, sum, count
            if diff.size:
                acc[0] = max(acc[0], float(diff.max()))
                acc[1] += float(diff.sum())
                acc[2] += diff.size
    per_view = {view: {"max_abs_diff_m": acc[0], "mean_abs_diff_m": acc[1] / max(acc[2], 1)}
                for view, acc in sums.items()}
    max_m = max(acc[0] for acc in sums.values())
    mean_m = sum(acc[1] for acc in sums.values()) / max(sum(acc[2] for acc in sums.values()), 1)
    problems = []
    if non_finite:
        problems.append(f"{non_finite} non-finite {what} value(s) where the reference is finite")
    if not max_m <= limits.max_abs_m:
        problems.append(f"{what} max |diff| {max_m:.3g}{unit} > {limits.max_abs_m:g}{unit}")
    if not mean_m <= limits.mean_abs_m:
        problems.append(f"{what} mean |diff| {mean_m:.3g}{unit} > {limits.mean_abs_m:g}{unit}")
    summary = (f"{label} ({precision}) vs {reference_label} on {len(pairs)} input(s): {what} max "
               f"|diff| {max_m:.3g}{unit} (limit {limits.max_abs_m:g}), mean {mean_m:.3g}{unit} "
               f"(limit {limits.mean_abs_m:g})")
    message = summary if not problems else f"{summary}: FAILED, {'; '.join(problems)}"
    return AccuracyReport(precision, len(pairs), max_m, mean_m, non_finite, limits, per_view,
                          not problems, message)


def compare_outputs(
    pairs: Sequence[tuple[Mapping[str, Mapping[str, np.ndarray]],
                          Mapping[str, Mapping[str, np.ndarray]]]],
    precision: str,
    label: str = "engine",
    reference_label: str = "ONNX Runtime fp32",
) -> AccuracyReport:
    """`compare_depths` over every output of `Backend.infer_outputs`: the depth maps, and the
    confidence maps when the model has them (against `CONFIDENCE_LIMITS`; the report's
    `confidence` holds their figures and `passed` / `message` cover both).

    Args:
        pairs: per input, (reference, candidate) {"depth": {view: map}, "confidence": {...}}.
    Raises:
        ValueError when reference and candidate do not have the same confidence views.
    """
    depth = compare_depths([(ref["depth"], cand["depth"]) for ref, cand in pairs], precision,
                           label=label, reference_label=reference_label)
    confidence_pairs = [(ref.get("confidence") or {}, cand.get("confidence") or {})
                        for ref, cand in pairs]
    if not any(ref or cand for ref, cand in confidence_pairs):
        return depth
    conf = compare_depths(confidence_pairs, precision, CONFIDENCE_LIMITS[precision],
                          label=label, reference_label=reference_label, unit="",
                          what="confidence")
    return replace(depth, confidence=conf.to_dict(), passed=depth.passed and conf.passed,
                   message=f"{depth.message}; {conf.message}")
