"""Shared helpers for the benchmark scripts: machine description, timing, RESULTS.md appending.

Benchmarks are not tests: they print figures and append them, with the date, machine and
versions, to bench/RESULTS.md so numbers stay comparable over time.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO_ROOT / "bench" / "RESULTS.md"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions(*packages: str) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def machine_line() -> str:
    """One line naming the machine, cores and the versions that matter for the figures."""
    return (f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            + versions("numpy", "opencv-python-headless", "onnxruntime", "torch", "ros-jazzy-rclpy"))


def times_ms(fn: Callable[[], object], runs: int, warmup: int = 0,
             label: str | None = None) -> list[float]:
    """Wall time of each of `runs` calls of `fn()` in milliseconds, after `warmup` untimed calls;
    with `label`, a tqdm progress bar of that name."""
    for _ in range(warmup):
        fn()
    calls = range(runs)
    if label is not None:
        from tqdm import tqdm

        calls = tqdm(calls, desc=label, leave=False)
    times = []
    for _ in calls:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM a process still running and wait for it; SIGKILL after `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in milliseconds over `runs` calls after `warmup` calls."""
    return statistics.median(times_ms(fn, runs, warmup))


def record(title: str, table_md: str, command: str, notes: str = "") -> None:
    """Print a result block and append it to bench/RESULTS.md."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"## {title}", "", f"- date: {stamp}", f"- machine: {machine_line()}",
             f"- command: `{command}`"]
    if notes:
        block.append(f"- notes: {notes}")
    block += ["", table_md, "", ""]
    text = "\n".join(block)
    print(text)
    if not RESULTS_MD.exists():
        RESULTS_MD.write_text("# Benchmark results\n\nAppended by the scripts under bench/ "
                              "(`make bench` runs them all). Newest last.\n\n")
    with RESULTS_MD.open("a") as handle:
        handle.write(text)
