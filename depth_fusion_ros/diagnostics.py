"""Node health bookkeeping: input rates, counters, bad messages by reason, per-stage timings,
and the level from the camera mode (degraded.ModeTracker): the model's full mode (fused, or a
baseline's own camera) is OK, a single-camera mode WARN, `none` ERROR.

Thread-safe (subscription callbacks and the inference worker both record); `snapshot()` turns the
state into a level, a message and key/value strings, which the node wraps into a
diagnostic_msgs/DiagnosticStatus. No rclpy here, so it is unit-testable with fake clocks.
"""
from __future__ import annotations

import statistics
import threading
from collections import Counter, deque
from dataclasses import dataclass

STAGES = ("preprocess", "inference", "postprocess", "publish")
OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


def percentile(samples, q: float) -> float:
    """Nearest-rank q-quantile (q in [0, 1]) of the samples; NaN when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def mode_level(mode: str, full_mode: str = "fused") -> int:
    """OK in the model's full mode, ERROR with no usable camera, WARN in single-camera mode."""
    if mode == full_mode:
        return OK
    return ERROR if mode == "none" else WARN


@dataclass(frozen=True)
class ModeStatus:
    """The camera mode at snapshot time (degraded.ModeTracker.mode) and what it is compared to."""

    mode: str
    reason: str
    full_mode: str = "fused"
    changes: int = 0


@dataclass
class Snapshot:
    level: int
    message: str
    values: dict[str, str]


class NodeStats:
    """Counters and timings of one depth_fusion node."""

    def __init__(self, inputs: tuple[str, ...], stale_timeout_s: float, start_s: float,
                 window: int = 100):
        self.inputs = inputs
        self.stale_timeout_s = stale_timeout_s
        self._lock = threading.Lock()
        self._start_s = start_s
        self._arrivals = {name: deque(maxlen=window) for name in inputs}  # receive times (s)
        self._stages = {name: deque(maxlen=window) for name in STAGES}  # ms
        self._latency_ms: deque = deque(maxlen=window)
        self.counters: Counter = Counter()
        self.bad: Counter = Counter()  # (topic, reason) -> count
        self.info: dict[str, str] = {}

    def record_input(self, name: str, now_s: float) -> None:
        with self._lock:
            self._arrivals[name].append(now_s)

    def record_bad(self, topic: str, reason: str) -> None:
        with self._lock:
            self.bad[(topic, reason)] += 1

    def count(self, name: str, increment: int = 1) -> None:
        with self._lock:
            self.counters[name] += increment

    def set_count(self, name: str, value: int) -> None:
        with self._lock:
            self.counters[name] = value

    def record_stage(self, stage: str, ms: float) -> None:
        with self._lock:
            self._stages[stage].append(ms)

    def record_latency(self, ms: float) -> None:
        with self._lock:
            self._latency_ms.append(ms)

    def _rate_hz(self, name: str, now_s: float) -> float:
        times = [t for t in self._arrivals[name] if now_s - t <= 5.0]  # the last 5 s
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def _stale(self, name: str, now_s: float) -> bool:
        arrivals = self._arrivals[name]
        last = arrivals[-1] if arrivals else self._start_s
        return now_s - last > self.stale_timeout_s

    def snapshot(self, now_s: float, mode: ModeStatus | None = None) -> Snapshot:
        """Level, summary message and all values as strings. The level follows `mode` when
        given (mode_level; the message says why a camera is missing), else the stale inputs
        (WARN for one, ERROR for all)."""
        with self._lock:
            values = dict(self.info)
            for name in self.inputs:
                values[f"{name}_rate_hz"] = f"{self._rate_hz(name, now_s):.2f}"
            for name, count in sorted(self.counters.items()):
                values[name] = str(count)
            values["bad_messages"] = str(sum(self.bad.values()))
            for (topic, reason), count in sorted(self.bad.items()):
                values[f"bad:{topic}:{reason}"] = str(count)
            for stage, samples in self._stages.items():
                median = statistics.median(samples) if samples else float("nan")
                values[f"{stage}_ms"] = f"{median:.2f}"
            latency = statistics.median(self._latency_ms) if self._latency_ms else float("nan")
            values["latency_ms"] = f"{latency:.1f}"  # stamp to publish, median of the window
            values["latency_ms_p99"] = f"{percentile(self._latency_ms, 0.99):.1f}"
            stale = [name for name in self.inputs if self._stale(name, now_s)]
        values["stale_inputs"] = ",".join(stale)
        if mode is not None:
            values.update({"mode": mode.mode, "mode_reason": mode.reason,
                           "mode_changes": str(mode.changes)})
            level = mode_level(mode.mode, mode.full_mode)
            message = {OK: "running", WARN: f"{mode.mode}: {mode.reason}",
                       ERROR: f"no usable input: {mode.reason}"}[level]
            return Snapshot(level, message, values)
        if len(stale) == len(self.inputs):
            return Snapshot(ERROR, f"no input for {self.stale_timeout_s:g} s: {', '.join(stale)}",
                            values)
        if stale:
            return Snapshot(WARN, f"input stale for {self.stale_timeout_s:g} s: {', '.join(stale)}",
                            values)
        return Snapshot(OK, "running", values)
