"""The per-machine TensorRT engine cache (`backends/engine_cache.py`) on real files and processes.

Key, entry check, lock and hit/miss decisions need neither TensorRT nor a GPU: the "build" here
writes an engine-shaped file and a real engine sidecar (`tensorrt_build.engine_metadata`), and
concurrency is tested with real processes taking the real flock. Building a real engine needs
TensorRT 10 and a CUDA GPU; that test is skipped with the reason.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from model_fixtures import tensorrt_10_available

from depth_fusion_ros.backends import create_backend
from depth_fusion_ros.backends.engine_cache import (
    BUILD_RECIPE,
    REQUIRED_FACTS,
    CacheEntry,
    EngineCacheError,
    check_entry,
    default_engine_cache_dir,
    discard_entry,
    engine_cache_key,
    engine_facts,
    ensure_entry,
    entry_for,
    entry_lock,
)
from depth_fusion_ros.backends.tensorrt_build import engine_metadata
from depth_fusion_ros.fileio import atomic_output, atomic_write_bytes
from depth_fusion_ros.metadata import (
    SCHEMA_VERSION,
    ModelMetadata,
    TensorSpec,
    load_metadata,
    sha256_file,
    sidecar_path,
    write_metadata,
)
from depth_fusion_ros.preprocess import normalisation_params

TEST_DIR = Path(__file__).resolve().parent
REPO = TEST_DIR.parent
MACHINE = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H200", "compute_capability": "9.0",
           "sm_count": 132}
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
TENSORRT_10 = tensorrt_10_available()


def make_onnx(folder: Path, content: bytes = b"onnx-bytes" * 100) -> Path:
    """An `.onnx` file with a valid sidecar (the bytes are no graph: nothing here parses it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(content)
    sha = sha256_file(path)
    md = ModelMetadata(
        schema_version=SCHEMA_VERSION, format="onnx", model_file=path.name, model_sha256=sha,
        model_id=f"cache_test-{sha[:12]}",
        inputs=[TensorSpec("thermal", [1, 1, 64, 128], "float32", "thermal"),
                TensorSpec("rgb", [1, 3, 64, 128], "float32", "rgb")],
        outputs=[TensorSpec("depth_thermal", [1, 1, 64, 128], "float32", "thermal", "m")],
        input_size={"height": 64, "width": 128}, max_depth_m=80.0,
        normalization=normalisation_params(), training_config={}, source_checkpoint_sha256=None,
        git_commit="test", created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat())
    write_metadata(md, path)
    return path


def fake_build(onnx: Path, facts: dict, marker: Path | None = None, seconds: float = 0.0):
    """A `build` for ensure_entry that writes what build_engine writes: engine bytes, then the
    engine sidecar (plus the cache record), each atomically; appends one line per build to
    `marker` so a test can count builds across processes."""

    def build(entry: CacheEntry) -> None:
        if marker is not None:
            with marker.open("a") as out:
                out.write(f"build {os.getpid()}\n")
        time.sleep(seconds)
        blob = f"engine of {facts['onnx_sha256']} {facts['precision']}".encode() * 50
        atomic_write_bytes(entry.engine, blob)
        md = engine_metadata(load_metadata(onnx), entry.engine, sha256_file(entry.engine),
                             precision=facts["precision"], trt_version=facts["tensorrt_version"],
                             gpu_name=facts["gpu_name"],
                             compute_capability=facts["compute_capability"],
                             workspace_gb=facts["build"]["workspace_gb"], build={})
        md.tensorrt["cache"] = {"key": entry.key, "facts": facts}
        write_metadata(md, entry.engine)

    return build


def facts_for(onnx: Path, precision: str = "fp16", **machine) -> dict:
    return engine_facts(load_metadata(onnx).model_sha256, {**MACHINE, **machine}, precision, 4)


def worker(folder: str, onnx: str, marker: str, seconds: float) -> None:
    """Run in a child process: wait for the test's go, then get the entry; prints its status."""
    onnx_path = Path(onnx)
    facts = facts_for(onnx_path)
    Path(folder, f"ready-{os.getpid()}").touch()
    while not Path(folder, "go").exists():
        time.sleep(0.01)
    outcome = ensure_entry(entry_for(folder, facts), facts,
                           fake_build(onnx_path, facts, Path(marker), seconds),
                           lambda line: print(line, flush=True))
    print(json.dumps({"status": outcome.status, "waited_s": outcome.waited_s}), flush=True)


def _start_worker(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TEST_DIR), str(REPO)])}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_cache_module_imports_no_torch_or_tensorrt():
    """The node imports the cache code on every start; heavy modules load only for a build."""
    code = ("import sys, depth_fusion_ros.backends.engine_cache, depth_fusion_ros.backends; "
            "print(sorted(m for m in ('torch', 'tensorrt', 'onnxruntime') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True, cwd=REPO)
    assert result.stdout.strip() == "[]"


# ---- key and entry ---------------------------------------------------------------------------

def test_key_hashes_every_fact_and_nothing_else(tmp_path):
    facts = facts_for(make_onnx(tmp_path))
    key = engine_cache_key(facts)
    assert key.startswith("fp16-") and len(key) == len("fp16-") + 24
    assert engine_cache_key(dict(reversed(list(facts.items())))) == key  # order does not matter
    changed = {
        "onnx_sha256": "0" * 64, "tensorrt_version": "10.8.0", "gpu_name": "NVIDIA H100",
        "compute_capability": "8.9", "sm_count": 114, "precision": "fp32",
        "build": {**facts["build"], "workspace_gb": 8.0},
    }
    keys = {engine_cache_key({**facts, name: value}) for name, value in changed.items()}
    assert len(keys) == len(changed) and key not in keys
    assert set(changed) == set(REQUIRED_FACTS)
    with pytest.raises(ValueError, match="engine cache facts lack sm_count"):
        engine_cache_key({k: v for k, v in facts.items() if k != "sm_count"})
    assert facts["build"] == {"workspace_gb": 4.0, "recipe": BUILD_RECIPE}
    int8 = engine_facts("a" * 64, MACHINE, "int8", 4, {"data": "/ms2", "split": "train",
                                                       "frames": 200})
    assert int8["build"]["calib"] == {"data": "/ms2", "split": "train", "frames": 200}
    assert "calib" not in engine_facts("a" * 64, MACHINE, "fp16", 4, {"data": "/ms2"})["build"]


def test_default_cache_dir_follows_ros_home(tmp_path):
    assert default_engine_cache_dir({"ROS_HOME": str(tmp_path)}) == (
        tmp_path / "depth_fusion" / "engines")
    assert default_engine_cache_dir({"HOME": "/home/robot"}) == (
        Path("/home/robot/.ros/depth_fusion/engines"))


def test_miss_builds_once_then_hits_without_building(tmp_path):
    onnx = make_onnx(tmp_path / "model")
    facts = facts_for(onnx)
    entry = entry_for(tmp_path / "cache", facts)
    marker = tmp_path / "builds.txt"
    lines: list[str] = []
    first = ensure_entry(entry, facts, fake_build(onnx, facts, marker), lines.append)
    assert (first.status, first.reason) == ("built", f"no {entry.key}.engine")
    assert first.metadata.tensorrt["cache"]["key"] == entry.key
    assert first.metadata.precision == "fp16" and first.build_s >= 0.0
    again = ensure_entry(entry, facts, fake_build(onnx, facts, marker), lines.append)
    assert again.status == "hit" and again.metadata.model_sha256 == sha256_file(entry.engine)
    assert marker.read_text().count("build") == 1
    assert lines == []  # no lock wait, no rebuild
    other_gpu = facts_for(onnx, gpu_name="NVIDIA L4", compute_capability="8.9", sm_count=58)
    assert entry_for(tmp_path / "cache", other_gpu).key != entry.key
    assert check_entry(entry_for(tmp_path / "cache", other_gpu), other_gpu).state == "missing"


def _truncate(entry: CacheEntry) -> None:
    entry.engine.write_bytes(entry.engine.read_bytes()[:100])


def _drop_sidecar(entry: CacheEntry) -> None:
    entry.sidecar.unlink()


def _garble_sidecar(entry: CacheEntry) -> None:
    entry.sidecar.write_text("{not json")


def _foreign_gpu(entry: CacheEntry) -> None:
    data = json.loads(entry.sidecar.read_text())
    data["tensorrt"]["gpu_name"] = "NVIDIA Jetson AGX Orin"
    entry.sidecar.write_text(json.dumps(data))


@pytest.mark.parametrize(("damage", "reason"), [
    (_truncate, "does not match its sidecar"),
    (_drop_sidecar, "has no metadata sidecar"),
    (_garble_sidecar, "is not valid JSON"),
    (_foreign_gpu, "GPU 'NVIDIA Jetson AGX Orin' (this GPU is 'NVIDIA H200')"),
], ids=["truncated_engine", "no_sidecar", "garbled_sidecar", "foreign_gpu"])
def test_corrupt_entry_is_rebuilt(tmp_path, damage, reason):
    onnx = make_onnx(tmp_path / "model")
    facts = facts_for(onnx)
    entry = entry_for(tmp_path / "cache", facts)
    marker = tmp_path / "builds.txt"
    ensure_entry(entry, facts, fake_build(onnx, facts, marker), print)
    damage(entry)
    state = check_entry(entry, facts)
    assert state.state == "corrupt" and reason in state.reason
    lines: list[str] = []
    outcome = ensure_entry(entry, facts, fake_build(onnx, facts, marker), lines.append)
    assert outcome.status == "built" and reason in outcome.reason
    assert marker.read_text().count("build") == 2
    assert any(f"entry {entry.key} is unusable" in line and "rebuilding" in line for line in lines)
    assert check_entry(entry, facts).state == "hit"


def test_entry_of_another_onnx_or_precision_is_not_a_hit(tmp_path):
    onnx = make_onnx(tmp_path / "model")
    facts = facts_for(onnx)
    entry = entry_for(tmp_path / "cache", facts)
    ensure_entry(entry, facts, fake_build(onnx, facts), print)
    other = make_onnx(tmp_path / "other", b"another model" * 10)
    moved = {**facts_for(other)}
    state = check_entry(entry, moved)  # the same files looked up with other facts
    assert state.state == "corrupt" and "built from another ONNX file" in state.reason
    fp32 = {**facts, "precision": "fp32"}
    assert "its precision is fp16, not fp32" in check_entry(entry, fp32).reason


def test_failed_build_leaves_no_entry_and_raises(tmp_path):
    onnx = make_onnx(tmp_path / "model")
    facts = facts_for(onnx)
    entry = entry_for(tmp_path / "cache", facts)

    def build_nothing(target: CacheEntry) -> None:
        target.engine.write_bytes(b"half")  # no sidecar: what a broken builder would leave

    with pytest.raises(EngineCacheError, match=f"engine just built for {entry.key} does not "
                                               "check: .*no metadata sidecar"):
        ensure_entry(entry, facts, build_nothing, print)


def test_discard_entry_removes_only_the_engine_that_failed_to_load(tmp_path):
    onnx = make_onnx(tmp_path / "model")
    facts = facts_for(onnx)
    entry = entry_for(tmp_path / "cache", facts)
    first = ensure_entry(entry, facts, fake_build(onnx, facts), print)
    lines: list[str] = []
    # another process rebuilt it meanwhile: the entry holds another engine, keep it
    assert not discard_entry(entry, "0" * 64, lines.append)
    assert check_entry(entry, facts).state == "hit" and lines == []
    assert discard_entry(entry, first.metadata.model_sha256, lines.append)
    assert not entry.engine.exists() and not entry.sidecar.exists() and entry.lock.exists()
    assert lines == [f"removing engine cache entry {entry.key}: its engine does not load"]
    assert not discard_entry(entry, first.metadata.model_sha256, print)  # already gone


def test_cached_engine_that_does_not_load_is_built_again_once(tmp_path, monkeypatch):
    """create_backend's cache path when TensorRT cannot deserialise a cached engine. TensorRT
    and a GPU are missing here, so the builder and the TensorRT runtime are stand-ins; the cache
    entry, its lock and the discard are the real files."""
    import depth_fusion_ros.backends.engine_cache as cache_module
    import depth_fusion_ros.backends.tensorrt_backend as trt_module

    onnx = make_onnx(tmp_path / "model")
    facts = facts_for(onnx)
    folder = tmp_path / "cache"
    marker = tmp_path / "builds.txt"

    def cached_engine(onnx_path, source, *, log, **_):
        return ensure_entry(entry_for(folder, facts), facts, fake_build(onnx, facts, marker),
                            log)

    loads: list[str] = []

    failure = {"kind": trt_module.EngineLoadError}

    class Runtime:  # deserialises only engines built by this test run
        def __init__(self, path, metadata, device, rebuild_hint=None):
            loads.append(rebuild_hint)
            if marker.read_text().count("build") < 2:
                raise failure["kind"](f"TensorRT could not deserialise {path}; {rebuild_hint}")
            self.metadata = metadata

    monkeypatch.setattr(cache_module, "cached_engine", cached_engine)
    monkeypatch.setattr(trt_module, "TensorRTBackend", Runtime)
    ensure_entry(entry_for(folder, facts), facts, fake_build(onnx, facts, marker), print)
    lines: list[str] = []
    made = create_backend(onnx, backend="tensorrt", device="cuda", log=lines.append)
    assert made.engine_cache.status == "built" and marker.read_text().count("build") == 2
    assert len(loads) == 2 and "it is an engine-cache entry: delete" in loads[0]
    assert any("does not load" in line and "building it again" in line for line in lines)
    marker.write_text("")  # now nothing loads: a freshly built engine that fails is an error
    cache_module.remove_entry(entry_for(folder, facts))
    with pytest.raises(trt_module.EngineLoadError, match="it was just built on this machine"):
        create_backend(onnx, backend="tensorrt", device="cuda", log=lines.append)
    assert marker.read_text().count("build") == 1  # built once, not in a loop
    # A failure that is not the file's (out of GPU memory, a CUDA error) keeps the entry.
    failure["kind"] = RuntimeError
    with pytest.raises(RuntimeError, match="could not deserialise"):
        create_backend(onnx, backend="tensorrt", device="cuda", log=lines.append)
    assert marker.read_text().count("build") == 1
    assert check_entry(entry_for(folder, facts), facts).state == "hit"


# ---- concurrency, with real processes ---------------------------------------------------------

def test_two_processes_starting_together_build_once(tmp_path):
    onnx = make_onnx(tmp_path / "model")
    folder, marker = tmp_path / "cache", tmp_path / "builds.txt"
    folder.mkdir()
    code = (f"import test_engine_cache as t; t.worker({str(folder)!r}, {str(onnx)!r}, "
            f"{str(marker)!r}, 2.0)")
    procs = [_start_worker(code) for _ in range(2)]
    try:
        _wait_for(lambda: len(list(folder.glob("ready-*"))) == 2, 120.0, "both workers")
        (folder / "go").touch()
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert marker.read_text().count("build") == 1, outputs  # one build for two nodes
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert sorted(r["status"] for r in results) == ["built", "hit_after_wait"], outputs
    waiter = outputs[[r["status"] for r in results].index("hit_after_wait")]
    builder_pid = marker.read_text().split()[1]
    assert f"another process (pid {builder_pid} on " in waiter and "is building" in waiter
    facts = facts_for(onnx)
    assert check_entry(entry_for(folder, facts), facts).state == "hit"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("ready-")) == sorted(
        [f"{engine_cache_key(facts)}.engine", f"{engine_cache_key(facts)}.engine.json",
         f"{engine_cache_key(facts)}.lock", "go"])  # no temporaries left behind


def test_lock_of_a_killed_builder_does_not_block(tmp_path):
    onnx = make_onnx(tmp_path / "model")
    facts = facts_for(onnx)
    entry = entry_for(tmp_path / "cache", facts)
    started = tmp_path / "started"
    # A builder SIGKILLed in the middle of writing the engine (as the OOM killer would).
    code = ("import time\nfrom pathlib import Path\n"
            "from depth_fusion_ros.backends.engine_cache import entry_lock\n"
            "from depth_fusion_ros.fileio import atomic_output\n"
            f"with entry_lock(Path({str(entry.lock)!r}), print):\n"
            f"    with atomic_output(Path({str(entry.engine)!r})) as tmp:\n"
            "        tmp.write_bytes(b'half an engine')\n"
            f"        Path({str(started)!r}).touch()\n"
            "        time.sleep(600)\n")
    proc = _start_worker(code)
    try:
        _wait_for(started.exists, 120.0, "the builder to take the lock")
        lines: list[str] = []
        with pytest.raises(EngineCacheError, match=r"held by pid \d+ on "):
            with entry_lock(entry.lock, lines.append, timeout_s=0.5):
                pass
        assert "another process (pid" in lines[0] and "is building" in lines[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert list(entry.folder.glob(f".{entry.engine.name}.*.tmp"))  # its half-written temporary
    start = time.monotonic()
    outcome = ensure_entry(entry, facts, fake_build(onnx, facts), print, lock_timeout_s=30.0)
    assert outcome.status == "built" and time.monotonic() - start < 10.0
    assert not list(entry.folder.glob(f".{entry.engine.name}.*.tmp"))  # removed by the new write


def test_lock_reports_its_holder_and_waits_for_it(tmp_path):
    lock = tmp_path / "x.lock"
    released = tmp_path / "released"
    code = ("import time\nfrom pathlib import Path\n"
            "from depth_fusion_ros.backends.engine_cache import entry_lock\n"
            f"with entry_lock(Path({str(lock)!r}), print):\n"
            f"    Path({str(released)!r} + '.held').touch()\n"
            "    time.sleep(1.5)\n"
            f"    Path({str(released)!r}).touch()\n")
    proc = _start_worker(code)
    try:
        _wait_for(lambda: Path(f"{released}.held").exists(), 120.0, "the holder")
        lines: list[str] = []
        with entry_lock(lock, lines.append, report_s=0.5) as waited_s:
            assert released.exists()  # got the lock only after the holder let go
            assert lock.read_text().startswith(f"pid {os.getpid()} on ")
        assert 0.3 < waited_s < 30.0
        assert lines[0].startswith(f"another process (pid {proc.pid} on ")
        assert any(line.startswith(f"still waiting for pid {proc.pid}") for line in lines[1:])
        assert lock.read_text() == ""  # holder line cleared on release
    finally:
        proc.wait(timeout=30)


def test_atomic_output_temporaries_are_what_the_killed_test_looks_for(tmp_path):
    """Guards the glob above: atomic_output names temporaries `.<name>.<pid>.XXXXXXXX.tmp`."""
    with atomic_output(tmp_path / "k.engine") as tmp:
        assert tmp.name.startswith(".k.engine.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"x")


# ---- create_backend: the node's path ----------------------------------------------------------

def test_tensorrt_with_onnx_needs_a_gpu_device(tmp_path):
    onnx = make_onnx(tmp_path)
    with pytest.raises(ValueError, match="parameter device='cpu': the tensorrt backend needs"):
        create_backend(onnx, backend="tensorrt", device="cpu")
    with pytest.raises(ValueError, match="parameter precision='fp8'"):
        create_backend(onnx, backend="tensorrt", device="cuda", precision="fp8")


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed: its absence cannot be observed")
def test_tensorrt_with_onnx_without_tensorrt_says_what_to_install(tmp_path):
    onnx = make_onnx(tmp_path)
    with pytest.raises(ImportError, match="'tensorrt' \\(TensorRT 10\\) is not importable"):
        create_backend(onnx, backend="tensorrt", device="cuda",
                       engine_cache_dir=tmp_path / "engines")
    with pytest.raises(ValueError, match="precision int8 needs calibration data"):
        create_backend(onnx, backend="tensorrt", device="cuda", precision="int8")


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.skipif(not (TENSORRT_10 and _cuda_count() > 0),
                    reason="needs the tensorrt package (TensorRT 10) and a CUDA GPU")
def test_real_engine_is_built_once_then_loaded_from_the_cache(tiny_onnx_model, tmp_path):
    from depth_fusion_ros.backends.accuracy import sample_inputs

    lines: list[str] = []
    built = create_backend(tiny_onnx_model, backend="tensorrt", device="cuda", precision="fp16",
                           engine_cache_dir=tmp_path, log=lines.append)
    assert built.engine_cache.status == "built" and built.precision == "fp16"
    assert built.metadata.tensorrt["accuracy"]["passed"]
    assert any(line.startswith("built ") for line in lines)
    start = time.monotonic()
    loaded = create_backend(tiny_onnx_model, backend="tensorrt", device="cuda", precision="fp16",
                            engine_cache_dir=tmp_path)
    assert loaded.engine_cache.status == "hit" and time.monotonic() - start < 30.0
    assert loaded.engine_cache.entry.timing_cache(loaded.metadata.tensorrt["cache"]["facts"]
                                                  ).is_file()
    inputs = sample_inputs(256, 640)
    first, second = (b.infer(inputs["thermal"], inputs["rgb"]) for b in (built, loaded))
    for view in first:
        assert (first[view] == second[view]).all()
    assert sidecar_path(loaded.engine_cache.entry.engine).is_file()
