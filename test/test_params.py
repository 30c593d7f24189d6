"""Parameter validation and parameter files, on the real node and evaluator processes.

Unit tests check every int/float parameter's range (finite, inside a documented range, durations
far inside int64 nanoseconds) and the messages; process tests check that an out-of-range value
stops start-up with exit code 2 and a message naming the parameter (not an OverflowError from
deep inside rclpy), and that the shipped YAMLs, keyed `/**`, reach a node in a namespace: the
test asks the node's own parameter service over DDS what it was given.
"""
from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from depth_fusion_ros import evaluator, params

REPO = Path(__file__).resolve().parents[1]
INT64_MAX_NS = 2**63 - 1  # rclpy keeps durations and timer periods as int64 nanoseconds


def _command(executable: str) -> list[str]:
    """The installed console script (what `ros2 run` starts), or the module if not installed."""
    script = Path(sys.executable).parent / executable
    if script.exists():
        return [str(script)]
    module = {"depth_fusion_node": "depth_fusion_ros.node",
              "depth_fusion_evaluator": "depth_fusion_ros.evaluator"}[executable]
    return [sys.executable, "-m", module]


@contextlib.contextmanager
def _declared_node(name: str):
    """An in-process node in its own context with the node's parameters declared (model_path
    m.onnx); yields (node, the Params read)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(name, context=context,
                                 parameter_overrides=[Parameter("model_path", value="m.onnx")])
        try:
            yield node, params.declare_and_read(node)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


# --- ranges, without ROS -------------------------------------------------------------------------
@pytest.mark.parametrize("program", ["node", "evaluator"])
def test_every_number_parameter_has_a_finite_range_that_fits_nanoseconds(program):
    if program == "node":
        table, defaults = params.RANGES, params.parameter_defaults()  # raises on a missing range
        params.NodeParams(model_path="m.onnx")  # the defaults themselves validate
    else:
        table = evaluator.RANGES
        defaults = {name: default for name, (default, _) in evaluator.PARAMETERS.items()}
    assert set(table) == {n for n, d in defaults.items() if type(d) in (int, float)}
    for name, allowed in table.items():
        assert math.isfinite(allowed.low) and math.isfinite(allowed.high)
        assert allowed.low <= allowed.high and allowed.allows(defaults[name]), name
        if name.endswith("_s"):  # a duration or a timer period, held as int64 ns by rclpy
            assert allowed.high * 1e9 < INT64_MAX_NS, name
        if name.endswith("_hz"):  # its period 1 / rate is a wait in seconds
            assert allowed.low > 0.0 and 1e9 / allowed.low < INT64_MAX_NS, name


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("sync_slop_s", math.inf, "a value in [0, 10] s"),
    ("sync_slop_s", -0.01, "a value in [0, 10] s"),
    ("diagnostics_period_s", 1.0e300, "a value in [0.01, 3600] s"),
    ("diagnostics_period_s", math.nan, "a value in [0.01, 3600] s"),
    ("stale_timeout_s", 0.0, "a value in [0.01, 3600] s"),
    ("warn_throttle_s", -math.inf, "a value in [0, 3600] s"),
    ("max_rate_hz", 1e-300, "0 (no cap) or a value in [0.01, 1000] Hz"),
    ("min_depth_m", 1e6, "a value in [0, 1000] m"),
    ("sync_queue_size", 0, "a value in [1, 1000] messages"),
    ("points_stride", 10**6, "a value in [1, 64]"),
    ("warmup_iterations", -1, "a value in [0, 1000] runs"),
])
def test_out_of_range_value_names_parameter_value_and_range(name, value, allowed):
    with pytest.raises(params.ParameterError) as err:
        params.params_from_mapping({"model_path": "m.onnx", name: value})
    assert str(err.value) == (f"parameter '{name}' = {value!r} is out of range: "
                              f"set it to {allowed}")


def test_range_edges_special_values_and_yaml_integers_are_accepted():
    p = params.params_from_mapping({"model_path": "m.onnx", "sync_slop_s": 10, "max_rate_hz": 0,
                                    "diagnostics_period_s": 0.01, "stale_timeout_s": 3600.0,
                                    "sync_queue_size": 1000, "points_stride": 64,
                                    "warn_throttle_s": 0.0, "min_depth_m": 0.0,
                                    "max_depth_m": 1000.0})
    assert (p.sync_slop_s, p.max_rate_hz, p.diagnostics_period_s) == (10.0, 0.0, 0.01)
    assert type(p.sync_slop_s) is float and type(p.max_rate_hz) is float
    with pytest.raises(params.ParameterError, match="'max_depth_m' = 5.0 must be > min_depth_m"):
        params.params_from_mapping({"model_path": "m.onnx", "min_depth_m": 5.0,
                                    "max_depth_m": 5.0})
    with pytest.raises(params.ParameterError, match="'sync_slop_s' must be float, got 'x'"):
        params.params_from_mapping({"model_path": "m.onnx", "sync_slop_s": "x"})


def test_declared_parameters_describe_their_range():
    with _declared_node("params_describe") as (node, read):
        assert read.model_path == "m.onnx"
        described = node.describe_parameters(["sync_slop_s", "max_rate_hz", "backend"])
        assert described[0].additional_constraints == "finite, a value in [0, 10] s"
        assert described[1].additional_constraints == "finite, 0 (no cap) or a value in [0.01, 1000] Hz"
        assert described[2].additional_constraints == ""


# --- start-up errors of the real processes -------------------------------------------------------
@pytest.mark.parametrize(("name", "text", "expected"), [
    ("sync_slop_s", ".inf", "parameter 'sync_slop_s' = inf is out of range: set it to a value "
                            "in [0, 10] s"),
    ("diagnostics_period_s", "1.0e300", "parameter 'diagnostics_period_s' = 1e+300 is out of "
                                        "range: set it to a value in [0.01, 3600] s"),
], ids=["sync_slop_s", "diagnostics_period_s"])
def test_node_exits_2_naming_an_out_of_range_parameter(tiny_onnx_model, name, text, expected):
    # A real, loadable model: the parameter is the only thing wrong with this start.
    result = subprocess.run(_command("depth_fusion_node") + [
        "--ros-args", "-p", f"model_path:={tiny_onnx_model}", "-p", "device:=cpu",
        "-p", f"{name}:={text}"], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"cannot start: {expected}" in output
    assert "OverflowError" not in output and "Traceback" not in output


@pytest.mark.parametrize("script", ["depth_fusion_node", "depth_fusion_evaluator"])
def test_node_scripts_print_their_parameters_for_help(script):
    from depth_fusion_ros import evaluator

    names = list(params.PARAMETERS) if script == "depth_fusion_node" else list(
        evaluator.PARAMETERS)
    for flag in ("--help", "-h"):
        result = subprocess.run(_command(script) + [flag], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(f"usage: {script} --ros-args [--params-file FILE]")
        listed = [line.split(" = ")[0].strip() for line in result.stdout.splitlines()
                  if line.startswith("  ") and " = " in line]
        assert listed == names
        live = [line.split(" = ")[0].strip() for line in result.stdout.splitlines()
                if line.startswith("  ") and line.endswith(" (live)")]
        assert live == ([n for n in names if n in params.LIVE_PARAMETERS]
                        if script == "depth_fusion_node" else [])
    # inside --ros-args, -h is not the program's (a remap or value could look like it)
    assert not params.wants_help([script, "--ros-args", "-p", "x:=1", "-h"])
    assert params.wants_help([script, "--help", "--ros-args", "-p", "x:=1"])


def test_command_line_overrides_are_read_as_rcl_reads_them():
    argv = ["depth_fusion_node", "--ros-args", "--params-file", "x.yaml", "-p",
            "points_stride:=2.0", "-p", "depth_fusion:publish_points:=maybe", "--param",
            "sync_slop_s:=5e-2", "-r", "__ns:=/cam", "--", "-p", "not_ros:=1"]
    assert params.command_line_overrides(argv) == [
        ("", "points_stride", "2.0"), ("depth_fusion", "publish_points", "maybe"),
        ("", "sync_slop_s", "5e-2")]
    kinds = {"1": "int", "0x10": "int", "010": "int", "-3": "int", "2.0": "float",
             "1e-3": "float", ".inf": "float", "-.inf": "float", ".nan": "float", "inf": "float",
             "y": "bool", "N": "bool", "True": "bool", "off": "bool", "maybe": "str",
             "2024-05-01": "str", "1:30": "str", "null": "str", "~": "str", "'5'": "str",
             '"true"': "str", "/models/x.onnx": "str", "": "str", "[a, b]": "array"}
    assert {text: params.rcl_kind(text) for text in kinds} == kinds


def test_override_check_refuses_only_overrides_rcl_dropped():
    def check(values, *overrides):
        argv = ["n", "--ros-args", "--params-file", "f.yaml"]
        for item in overrides:
            argv += ["-p", item]
        params.check_command_line_overrides(values, argv, "depth_fusion")

    took = {"points_stride": 2, "publish_points": True, "sync_slop_s": 0.05,
            "engine_cache_dir": "2024-05-01", "model_path": ""}
    # what rcl applies: the node got the override's type
    check(took, "points_stride:=2", "publish_points:=y", "sync_slop_s:=5e-2",
          "engine_cache_dir:=2024-05-01", "model_path:=")
    check(took, "points_stride:=1", "depth_fusion:points_stride:=2")  # the last one applies
    check(took, "other_node:points_stride:=2.5")  # another node's override: not ours
    check({**took, "sync_slop_s": 0.0}, "sync_slop_s:=0")  # dropped by rcl, but the same number
    with pytest.raises(params.ParameterError, match="'sync_slop_s': the command line sets '0'"):
        check(took, "sync_slop_s:=0")  # the file's 0.05 stayed
    with pytest.raises(params.ParameterError, match=r"parameter 'points_stride': the command "
                       r"line sets '2.0' but the node got 1 .*write it as an integer"):
        check({**took, "points_stride": 1}, "points_stride:=2.0")
    with pytest.raises(params.ParameterError, match="'publish_points': the command line sets "
                       "'maybe' but the node got True .*write it as true or false"):
        check(took, "publish_points:=maybe")
    with pytest.raises(params.ParameterError, match="'sync_slop_s'.*a number with a decimal"):
        check(took, "depth_fusion:sync_slop_s:=fast")


def test_node_exits_2_when_an_override_of_another_type_than_the_params_file_is_dropped(
        tiny_onnx_model, tmp_path):
    """rcl keeps the file's `points_stride: 1` for `-p points_stride:=2.0`; the node says so."""
    config = tmp_path / "params.yaml"
    config.write_text(f"/**:\n  ros__parameters:\n    model_path: {tiny_onnx_model}\n"
                      "    device: cpu\n    points_stride: 1\n")
    result = subprocess.run(_command("depth_fusion_node") + [
        "--ros-args", "--params-file", str(config), "-p", "points_stride:=2.0"],
        capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert ("cannot start: parameter 'points_stride': the command line sets '2.0' but the node "
            "got 1") in output
    evaluator = tmp_path / "evaluator.yaml"
    evaluator.write_text("/**:\n  ros__parameters:\n    queue_size: 30\n")
    result = subprocess.run(_command("depth_fusion_evaluator") + [
        "--ros-args", "--params-file", str(evaluator), "-p", "queue_size:=12.5"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "parameter 'queue_size': the command line sets '12.5' but the node got 30" \
        in result.stderr


@pytest.mark.parametrize(("argument", "expected"), [
    ("publish_period_s:=1.0e300", "parameter 'publish_period_s' = 1e+300 is out of range: set it "
                                  "to a value in [0.01, 3600] s"),
    ("queue_size:=1.5", "parameter 'queue_size' must be int like its default 30"),
    ("input_qos:=fast", "parameter 'input_qos' = 'fast' is not one of ['reliable', 'sensor_data']"),
], ids=["publish_period_s", "queue_size", "input_qos"])
def test_evaluator_exits_2_naming_a_bad_parameter(argument, expected):
    result = subprocess.run(_command("depth_fusion_evaluator") + ["--ros-args", "-p", argument],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"depth_fusion_evaluator: error: {expected}" in output
    assert "Traceback" not in output


# --- parameter files in a namespace --------------------------------------------------------------
def _shipped_yaml_with(name: str, tmp_path: Path, changes: dict, key: str | None = None) -> Path:
    """config/<name> as shipped, with some values changed (and optionally its node key)."""
    loaded = yaml.safe_load((REPO / "config" / name).read_text())
    assert list(loaded) == ["/**"], f"config/{name} must key its parameters by /**"
    values = loaded["/**"]["ros__parameters"]
    assert set(changes) <= set(values)
    values.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump({key or "/**": {"ros__parameters": values}}))
    return path


def _service_over_dds(proc: subprocess.Popen, node_fqn: str, service, name: str, request,
                      log: Path, timeout_s: float = 120.0):
    """Call the running node's rcl_interfaces service `name` with a real rclpy client."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        client_node = rclpy.create_node("params_client", context=context)
        client = client_node.create_client(service, f"{node_fqn}/{name}")
        deadline = time.monotonic() + timeout_s
        while not client.wait_for_service(timeout_sec=0.5):
            assert proc.poll() is None, f"{node_fqn} exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no {node_fqn}/{name}:\n{log.read_text()}"
        future = client.call_async(request)
        rclpy.spin_until_future_complete(client_node, future, timeout_sec=30.0,
                                         executor=SingleThreadedExecutor(context=context))
        assert future.done(), f"no answer from {node_fqn}/{name}"
        return future.result()
    finally:
        rclpy.shutdown(context=context)


def _parameters_over_dds(proc: subprocess.Popen, node_fqn: str, names: list[str],
                         log: Path) -> dict[str, object]:
    """Ask the running node's parameter service for some values."""
    values = _service_over_dds(proc, node_fqn, GetParameters, "get_parameters",
                               GetParameters.Request(names=names), log).values
    fields = {ParameterType.PARAMETER_DOUBLE: "double_value",
              ParameterType.PARAMETER_INTEGER: "integer_value",
              ParameterType.PARAMETER_STRING: "string_value",
              ParameterType.PARAMETER_BOOL: "bool_value"}
    return {name: getattr(value, fields[value.type])
            for name, value in zip(names, values, strict=True)}


def _run(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_node_params_file_keyed_by_wildcard_applies_in_a_namespace(tiny_onnx_model, tmp_path):
    changes = {"model_path": str(tiny_onnx_model), "device": "cpu", "warmup_iterations": 1,
               "sync_slop_s": 0.05, "sync_queue_size": 7, "output_size": "camera"}
    path = _shipped_yaml_with("depth_fusion.yaml", tmp_path, changes)
    log = tmp_path / "node.log"
    proc = _run(_command("depth_fusion_node") + ["--ros-args", "--params-file", str(path),
                                                 "-r", "__ns:=/cam"], log)
    try:
        got = _parameters_over_dds(proc, "/cam/depth_fusion", list(changes), log)
    finally:
        _stop(proc)
    assert got == changes
    assert "[cam.depth_fusion]: warm-up: 1 runs" in log.read_text()

    # The old key `depth_fusion:` does not reach /cam/depth_fusion: the node starts without the
    # file's model_path and says so (what `namespace:=cam` used to do silently with defaults).
    old_key = _shipped_yaml_with("depth_fusion.yaml", tmp_path, changes, key="depth_fusion")
    result = subprocess.run(_command("depth_fusion_node") + [
        "--ros-args", "--params-file", str(old_key), "-r", "__ns:=/cam"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "parameter 'model_path' is empty" in result.stdout + result.stderr


def test_evaluator_params_file_keyed_by_wildcard_applies_in_a_namespace(tmp_path):
    changes = {"queue_size": 7, "publish_period_s": 2.5, "input_qos": "sensor_data",
               "summary_path": str(tmp_path / "summary.md")}
    path = _shipped_yaml_with("evaluator.yaml", tmp_path, changes)
    log = tmp_path / "evaluator.log"
    proc = _run(_command("depth_fusion_evaluator") + ["--ros-args", "--params-file", str(path),
                                                      "-r", "__ns:=/cam"], log)
    try:
        got = _parameters_over_dds(proc, "/cam/depth_fusion_evaluator", list(changes), log)
        # read at start-up only: `ros2 param set` is refused, not silently ignored
        request = SetParameters.Request(parameters=[
            Parameter("queue_size", value=9).to_parameter_msg()])
        refused = _service_over_dds(proc, "/cam/depth_fusion_evaluator", SetParameters,
                                    "set_parameters", request, log).results[0]
    finally:
        _stop(proc)
    assert got == changes
    assert not refused.successful and "read-only" in refused.reason
    assert (tmp_path / "summary.md").read_text().startswith("## depth_fusion_evaluator summary")


# --- engine building and ONNX Runtime threads (GPU deployment path) ------------------------------
ENGINE_AND_ORT_DEFAULTS = {"precision": "fp16", "engine_cache_dir": "", "engine_workspace_gb": 4.0,
                           "engine_calib_data": "", "ort_num_threads": 0,
                           "ort_allow_spinning": False}


def test_engine_and_ort_parameters_defaults_ranges_and_yaml():
    defaults = params.parameter_defaults()
    assert {name: defaults[name] for name in ENGINE_AND_ORT_DEFAULTS} == ENGINE_AND_ORT_DEFAULTS
    shipped = yaml.safe_load((REPO / "config" / "depth_fusion.yaml").read_text())
    values = shipped["/**"]["ros__parameters"]
    assert {name: values[name] for name in ENGINE_AND_ORT_DEFAULTS} == ENGINE_AND_ORT_DEFAULTS
    p = params.params_from_mapping({"model_path": "m.onnx", "ort_num_threads": 256,
                                    "engine_workspace_gb": 1, "precision": "fp32"})
    assert (p.ort_num_threads, p.engine_workspace_gb, p.precision) == (256, 1.0, "fp32")


@pytest.mark.parametrize(("values", "expected"), [
    ({"precision": "fp8"}, "parameter 'precision' = 'fp8' is not one of ['fp32', 'fp16', 'int8']"),
    ({"ort_num_threads": -1}, "parameter 'ort_num_threads' = -1 is out of range: set it to 0 (the "
                              "backend's default) or a value in [1, 256] threads"),
    ({"engine_workspace_gb": 0.0}, "parameter 'engine_workspace_gb' = 0.0 is out of range: set it "
                                   "to a value in [0.125, 1024] GB"),
    ({"ort_allow_spinning": "yes"}, "parameter 'ort_allow_spinning' must be bool, got 'yes'"),
    ({"backend": "tensorrt", "precision": "int8"},
     "parameter 'engine_calib_data' is empty but precision is int8: int8 engines calibrate on "
     "real frames, so set it to an MS2 root (or use precision fp16)"),
], ids=["precision", "ort_num_threads", "engine_workspace_gb", "ort_allow_spinning", "int8"])
def test_engine_and_ort_parameters_are_checked(values, expected):
    with pytest.raises(params.ParameterError) as err:
        params.params_from_mapping({"model_path": "m.onnx", **values})
    assert str(err.value) == expected
    # int8 needs frames only when the node builds the engine (tensorrt + .onnx)
    params.params_from_mapping({"model_path": "m.engine", "backend": "tensorrt",
                                "precision": "int8"})
    params.params_from_mapping({"model_path": "m.onnx", "backend": "tensorrt",
                                "precision": "int8", "engine_calib_data": "/data/ms2"})


def _diagnostics_over_dds(proc: subprocess.Popen, node_fqn: str, log: Path,
                          timeout_s: float = 120.0) -> dict[str, str]:
    """Key/values of the node's first /diagnostics status, received by a real subscription."""
    from diagnostic_msgs.msg import DiagnosticArray

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("diagnostics_client", context=context)
        received: list[dict[str, str]] = []

        def on_array(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name.startswith(f"{node_fqn}:"):
                    received.append({kv.key: kv.value for kv in status.values})

        node.create_subscription(DiagnosticArray, "/diagnostics", on_array, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout_s
        while not received:
            assert proc.poll() is None, f"{node_fqn} exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no diagnostics from {node_fqn}:\n{log.read_text()}"
            executor.spin_once(timeout_sec=0.1)
        return received[0]
    finally:
        rclpy.shutdown(context=context)


def test_ort_threads_and_spinning_reach_the_session_and_diagnostics(tiny_onnx_model, tmp_path):
    log = tmp_path / "node.log"
    proc = _run(_command("depth_fusion_node") + [
        "--ros-args", "-p", f"model_path:={tiny_onnx_model}", "-p", "device:=cpu",
        "-p", "warmup_iterations:=0", "-p", "ort_num_threads:=1",
        "-p", "ort_allow_spinning:=true", "-p", "precision:=fp32", "-r", "__ns:=/ort"], log)
    try:
        values = _diagnostics_over_dds(proc, "/ort/depth_fusion", log)
    finally:
        _stop(proc)
    # What the ONNX Runtime session really has, read back from it (not the parameters echoed).
    assert {k: values.get(k) for k in ("backend", "device", "precision", "ort_threads",
                                       "ort_allow_spinning")} == {
        "backend": "onnxruntime", "device": "cpu", "precision": "fp32", "ort_threads": "1",
        "ort_allow_spinning": "true"}
    assert "engine_cache" not in values  # no engine was built or loaded from the cache


def test_tensorrt_backend_with_onnx_on_cpu_exits_2_naming_device(tiny_onnx_model, tmp_path):
    result = subprocess.run(_command("depth_fusion_node") + [
        "--ros-args", "-p", f"model_path:={tiny_onnx_model}", "-p", "backend:=tensorrt",
        "-p", "device:=cpu", "-p", f"engine_cache_dir:={tmp_path}/engines"],
        capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "cannot start: parameter device='cpu': the tensorrt backend needs 'cuda[:N]'" in output
    assert not (tmp_path / "engines").exists()  # refused before touching the cache


# --- live parameters -------------------------------------------------------------------------------

def test_with_changes_applies_live_parameters_and_refuses_the_rest():
    current = params.params_from_mapping({"model_path": "m.onnx"})
    new = params.with_changes(current, {"max_depth_m": 40, "points_stride": 4,
                                        "check_image_usable": False})
    assert (new.max_depth_m, new.points_stride, new.check_image_usable) == (40.0, 4, False)
    assert type(new.max_depth_m) is float and new.model_path == "m.onnx"
    assert current.max_depth_m == 80.0  # the old configuration is untouched (frozen)
    with pytest.raises(params.ParameterError, match="parameter 'backend/device' cannot change "
                                                    "while the node runs"):
        params.with_changes(current, {"device": "cpu", "backend": "torch", "max_depth_m": 5.0})
    with pytest.raises(params.ParameterError, match="'max_depth_m' = 0.05 must be > min_depth_m"):
        params.with_changes(current, {"max_depth_m": 0.05})
    with pytest.raises(params.ParameterError, match="'points_stride' = 0 is out of range"):
        params.with_changes(current, {"points_stride": 0})
    with pytest.raises(params.ParameterError, match="'min_confidence' must be float, got None"):
        params.with_changes(current, {"min_confidence": None})  # `ros2 param delete`
    assert set(params.LIVE_PARAMETERS) < set(params.parameter_defaults())


def test_only_live_parameters_are_writable_on_a_node():
    with _declared_node("params_live") as (node, _):
        names = list(params.parameter_defaults())
        writable = {n for n, d in zip(names, node.describe_parameters(names), strict=True)
                    if not d.read_only}
        assert writable == set(params.LIVE_PARAMETERS)
        result = node.set_parameters([Parameter("output_size", value="camera")])[0]
        assert not result.successful and "read-only" in result.reason
        assert node.get_parameter("output_size").value == "network"
