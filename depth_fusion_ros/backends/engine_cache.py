"""The per-machine TensorRT engine cache: build an ONNX model's engine once, load it afterwards.

DESIGN.md section 4: engines are a cache, not a file users carry. Given an ONNX model and the
tensorrt backend, the node looks up `<cache dir>/<key>.engine` (+ sidecar), where the key hashes
the facts that make an engine valid: the ONNX file's sha256, the TensorRT version, the GPU (name,
compute capability, SM count), the precision and the build options (workspace, builder recipe,
int8 calibration data). A hit loads in seconds; a miss builds with `tensorrt_build.build_engine`
(the builder of `python -m training.build_engine`), which checks the engine against ONNX Runtime
fp32 and writes engine, sidecar and timing cache atomically. The sidecar then also records the
key and its facts; one timing cache per TensorRT version and GPU is shared by all models.
An entry that does not check (truncated engine, missing, garbled or foreign sidecar) is rebuilt.

Concurrency: a builder holds `fcntl.flock` on `<key>.lock` beside the entry. Two nodes starting
at once on one machine therefore never both build, and never use a half-written entry: the second
one logs that another process is building, waits, re-checks and loads the finished entry. The
kernel releases a flock when its process dies (SIGKILL, OOM killer), so a crashed builder never
blocks the next start; its temporaries are removed by `fileio.atomic_output`. Lock files are never
deleted (deleting a lock file others may have opened breaks mutual exclusion). flock works on a
local folder (and NFSv4); keep the cache off other network filesystems.

Everything here except `machine_facts` and `cached_engine` is pure Python on files, so the key,
the entry check and the locking are tested without TensorRT or a GPU.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from depth_fusion_ros.metadata import (
    ModelMetadata,
    ModelMetadataError,
    check_engine_compatible,
    load_metadata,
    sidecar_path,
    write_metadata,
)

# Bump when the builder changes how an engine is made from the same facts (e.g. which layers it
# pins to fp32): every cached engine then rebuilds once.
BUILD_RECIPE = 1
REQUIRED_FACTS = ("onnx_sha256", "tensorrt_version", "gpu_name", "compute_capability", "sm_count",
                  "precision", "build")
WAIT_REPORT_S = 30.0  # how often a waiting process says it is still waiting
INT8_CALIB_SPLIT, INT8_CALIB_FRAMES = "train", 200  # what the node calibrates int8 engines on

Log = Callable[[str], None]


class EngineCacheError(RuntimeError):
    """The cache could not produce a usable engine; the message names the entry and the fix."""


def default_engine_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """$ROS_HOME/depth_fusion/engines, else ~/.ros/depth_fusion/engines (ROS's home folder)."""
    env = os.environ if env is None else env
    ros_home = env.get("ROS_HOME")
    home = Path(env.get("HOME") or Path.home())
    base = Path(ros_home).expanduser() if ros_home else home / ".ros"
    return base / "depth_fusion" / "engines"


def engine_cache_key(facts: Mapping) -> str:
    """`<precision>-<24 hex digits>`: the sha256 of the facts as canonical JSON.

    Args:
        facts: plain JSON-able dict with every key of REQUIRED_FACTS ("build" is a dict of
            build options). Key order does not matter; values do (4 and 4.0 differ, so build the
            facts with `engine_facts`).
    Raises:
        ValueError naming missing facts.
    """
    missing = [name for name in REQUIRED_FACTS if name not in facts]
    if missing:
        raise ValueError(f"engine cache facts lack {', '.join(missing)}")
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return f"{facts['precision']}-{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"


def engine_facts(onnx_sha256: str, machine: Mapping, precision: str, workspace_gb: float,
                 calib: Mapping | None = None) -> dict:
    """The facts dict of one build: the ONNX hash, `machine` (from `machine_facts`: TensorRT
    version, GPU name, compute capability, SM count), precision and build options. `calib`
    (int8 only: data, split, frames) is part of the key because it changes the engine."""
    build = {"workspace_gb": float(workspace_gb), "recipe": BUILD_RECIPE}
    if precision == "int8" and calib:
        build["calib"] = dict(calib)
    return {"onnx_sha256": onnx_sha256, "tensorrt_version": str(machine["tensorrt_version"]),
            "gpu_name": str(machine["gpu_name"]),
            "compute_capability": str(machine["compute_capability"]),
            "sm_count": int(machine["sm_count"]), "precision": precision, "build": build}


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """The files of one cache entry (all beside each other in the cache folder)."""

    folder: Path
    key: str

    @property
    def engine(self) -> Path:
        return self.folder / f"{self.key}.engine"

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.engine)

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.key}.lock"

    def timing_cache(self, facts: Mapping) -> Path:
        """One timing cache per TensorRT version and GPU, shared by every model built on it
        (tactic timings do not depend on the model), so a new model builds faster."""
        machine = json.dumps([facts[k] for k in ("tensorrt_version", "gpu_name",
                                                 "compute_capability", "sm_count")])
        return self.folder / f"timing-{hashlib.sha256(machine.encode()).hexdigest()[:16]}.cache"


def entry_for(folder: str | os.PathLike, facts: Mapping) -> CacheEntry:
    """The entry of `facts` in `folder` (nothing is created)."""
    return CacheEntry(Path(folder), engine_cache_key(facts))


@dataclasses.dataclass(frozen=True)
class EntryState:
    """What `check_entry` found: "hit" (usable; `metadata` set), "missing" or "corrupt"."""

    state: str
    reason: str = ""
    metadata: ModelMetadata | None = None


def check_entry(entry: CacheEntry, facts: Mapping) -> EntryState:
    """Is the entry a complete engine for these facts? Reads files only; never raises for a
    bad entry (a truncated engine, a missing or foreign sidecar are "corrupt": rebuild it)."""
    if not entry.engine.is_file():
        return EntryState("missing", f"no {entry.engine.name}")
    try:
        md = load_metadata(entry.engine)  # sidecar present, well-formed, sha256 of the engine
        check_engine_compatible(md, facts["tensorrt_version"], facts["gpu_name"],
                                facts["compute_capability"], entry.engine)
    except ModelMetadataError as exc:
        return EntryState("corrupt", str(exc).split(". Rebuild")[0])
    problems = []
    if md.tensorrt.get("source_onnx_sha256") != facts["onnx_sha256"]:
        problems.append("it was built from another ONNX file")
    if md.precision != facts["precision"]:
        problems.append(f"its precision is {md.precision}, not {facts['precision']}")
    recorded = md.tensorrt.get("cache", {}).get("facts")
    if recorded is not None and recorded != dict(facts):
        problems.append("its recorded build facts differ")
    if problems:
        return EntryState("corrupt", f"{entry.engine.name}: {'; '.join(problems)}")
    return EntryState("hit", metadata=md)


def remove_entry(entry: CacheEntry) -> None:
    """Deletes the entry's sidecar, then its engine (never the lock or the timing cache)."""
    entry.sidecar.unlink(missing_ok=True)
    entry.engine.unlink(missing_ok=True)


def discard_entry(entry: CacheEntry, engine_sha256: str, log: Log) -> bool:
    """Removes an entry whose files check but whose engine TensorRT cannot load (e.g. after a
    TensorRT or driver update that kept the version string), under the entry's lock and only if
    it still holds that engine (another process may have rebuilt it meanwhile). Returns whether
    it was removed; the next `ensure_entry` then builds it again."""
    with entry_lock(entry.lock, log):
        try:
            current = load_metadata(entry.engine).model_sha256 if entry.engine.is_file() else None
        except ModelMetadataError:
            current = engine_sha256  # its sidecar broke too: remove it all the same
        if current != engine_sha256:
            return False
        log(f"removing engine cache entry {entry.key}: its engine does not load")
        remove_entry(entry)
        return True


def _holder(fd: int, wait_s: float = 0.0) -> str:
    """The lock holder's "pid N on host" line. A holder writes it just after taking the lock, so
    a caller that has just found the lock taken waits up to `wait_s` for the name to appear."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if text or time.monotonic() >= deadline:
            return text or "a process that has not written its name yet"
        time.sleep(0.02)


@contextlib.contextmanager
def entry_lock(path: Path, log: Log, *, poll_s: float = 0.2, report_s: float = WAIT_REPORT_S,
               timeout_s: float | None = None) -> Iterator[float]:
    """Holds an exclusive flock on `path` (created if absent); yields the seconds spent waiting.

    While another process holds it, logs who (the holder writes its PID and host into the file)
    and polls, logging again every `report_s`. A holder that dies loses the lock at once (the
    kernel releases flocks with the process). Raises EngineCacheError after `timeout_s` (None:
    wait as long as the holder lives, e.g. a build of many minutes).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        start = time.monotonic()
        waited_s = 0.0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd, wait_s=2.0)
            log(f"another process ({holder}) is building the engine of {path.stem}; "
                "waiting for it, then loading its engine")
            next_report = start + report_s
            while True:
                time.sleep(poll_s)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    now = time.monotonic()
                    if timeout_s is not None and now - start > timeout_s:
                        raise EngineCacheError(
                            f"waited {now - start:.0f} s for {path} held by {_holder(fd)}; "
                            "if no build is running, another host may hold it (shared folder)"
                        ) from None
                    if now >= next_report:
                        log(f"still waiting for {_holder(fd)} ({now - start:.0f} s)")
                        next_report = now + report_s
            waited_s = time.monotonic() - start
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield waited_s
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


@dataclasses.dataclass(frozen=True)
class CacheOutcome:
    """How the engine was obtained. status: "hit" (found complete), "built" (built here) or
    "hit_after_wait" (another process built it while this one waited)."""

    entry: CacheEntry
    status: str
    metadata: ModelMetadata
    reason: str = ""  # why it was not a hit at first
    waited_s: float = 0.0
    build_s: float = 0.0


def ensure_entry(entry: CacheEntry, facts: Mapping, build: Callable[[CacheEntry], None],
                 log: Log, *, lock_timeout_s: float | None = None) -> CacheOutcome:
    """Returns a usable entry for `facts`, building it under the entry's lock if needed.

    Args:
        build: writes `entry.engine` and its sidecar (atomically); called at most once, only
            while holding the lock, after a corrupt entry was removed.
        log: one-line progress messages.
    Raises:
        whatever `build` raises; EngineCacheError if the built entry does not check.
    """
    found = check_entry(entry, facts)
    if found.state == "hit":
        return CacheOutcome(entry, "hit", found.metadata)
    with entry_lock(entry.lock, log, timeout_s=lock_timeout_s) as waited_s:
        again = check_entry(entry, facts)  # another process may have built it meanwhile
        if again.state == "hit":
            status = "hit_after_wait" if waited_s > 0 else "hit"
            return CacheOutcome(entry, status, again.metadata, found.reason, waited_s)
        if again.state == "corrupt":
            log(f"engine cache entry {entry.key} is unusable ({again.reason}); rebuilding it")
            remove_entry(entry)
        start = time.monotonic()
        build(entry)
        build_s = time.monotonic() - start
        built = check_entry(entry, facts)
        if built.state != "hit":
            raise EngineCacheError(f"the engine just built for {entry.key} does not check: "
                                   f"{built.reason}; delete {entry.folder} and start again")
        return CacheOutcome(entry, "built", built.metadata, again.reason, waited_s, build_s)


# ---- the TensorRT side: needs tensorrt and torch (imported only when called) -----------------

def machine_facts(device: str) -> dict:
    """TensorRT version and the GPU of `device` ("cuda[:N]"): name, compute capability, SMs."""
    from depth_fusion_ros.backends.tensorrt_backend import import_tensorrt, select_cuda_device

    trt = import_tensorrt()  # first: without TensorRT 10 the message says what to install
    index, gpu_name, capability = select_cuda_device(device)
    import torch  # loaded by select_cuda_device already

    sm_count = torch.cuda.get_device_properties(index).multi_processor_count
    return {"tensorrt_version": trt.__version__, "gpu_name": gpu_name,
            "compute_capability": capability, "sm_count": int(sm_count)}


def cached_engine(onnx_path: str | os.PathLike, source: ModelMetadata, *, device: str,
                  precision: str, cache_dir: str | os.PathLike | None, workspace_gb: float,
                  calib_data: str | os.PathLike | None, log: Log) -> CacheOutcome:
    """The engine of an ONNX model for this machine: from the cache, or built into it.

    Args:
        source: the ONNX model's validated sidecar (its sha256 is the model part of the key).
        cache_dir: None for `default_engine_cache_dir()`.
    Raises:
        ValueError (bad request, unwritable folder), ImportError (no TensorRT 10), RuntimeError
        (no GPU), EngineBuildError / EngineAccuracyError (build), EngineCacheError.
    """
    from depth_fusion_ros.backends.tensorrt_build import build_engine, check_request

    folder = Path(cache_dir) if cache_dir else default_engine_cache_dir()
    # Argument checks first: a bad request fails before TensorRT is imported or a GPU touched.
    check_request(source, folder / "request.engine", precision, calib_data, workspace_gb)
    calib = None
    if precision == "int8":
        calib = {"data": str(Path(calib_data).resolve()), "split": INT8_CALIB_SPLIT,
                 "frames": INT8_CALIB_FRAMES}
    facts = engine_facts(source.model_sha256, machine_facts(device), precision, workspace_gb,
                         calib)
    entry = entry_for(folder, facts)

    def build(target: CacheEntry) -> None:
        log(f"building the {precision} TensorRT engine of {onnx_path} for {facts['gpu_name']} "
            f"into {target.engine} (once per machine; minutes for Swin models)")
        md = build_engine(onnx_path, target.engine, precision=precision, device=device,
                          workspace_gb=workspace_gb, calib_data=calib_data,
                          calib_split=INT8_CALIB_SPLIT, calib_frames=INT8_CALIB_FRAMES,
                          timing_cache=target.timing_cache(facts), progress=log,
                          workspace_option="parameter engine_workspace_gb")
        md.tensorrt["cache"] = {"key": target.key, "facts": dict(facts)}
        write_metadata(md, target.engine)

    try:
        folder.mkdir(parents=True, exist_ok=True)
        outcome = ensure_entry(entry, facts, build, log)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise ValueError(f"engine cache folder {folder} is not writable ({exc}); set parameter "
                         "engine_cache_dir to a writable folder") from exc
    if outcome.status == "built":
        log(f"built {entry.engine.name} in {outcome.build_s:.1f} s ({outcome.reason})")
    elif outcome.status == "hit_after_wait":
        log(f"loaded {entry.engine.name} built by another process (waited "
            f"{outcome.waited_s:.1f} s)")
    else:
        log(f"engine cache hit: {entry.engine}")
    return outcome
