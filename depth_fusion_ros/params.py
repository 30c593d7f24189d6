"""depth_fusion_node parameters: one declaration table, read into a validated frozen dataclass.

Every parameter is declared once from PARAMETERS (name, default, description); the node reads the
values into NodeParams, whose validation names the offending parameter and what to set instead.
Every int/float parameter has an allowed range in RANGES: values must be finite and inside it, so
durations stay far inside the int64 nanoseconds that rclpy timers and the pairing use (`inf` or
`1e300` s would otherwise surface later as an OverflowError that names nothing).
config/depth_fusion.yaml documents the same keys and ranges for users.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass, fields

from depth_fusion_ros.metadata import PRECISIONS

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
OUTPUT_SIZES = ("network", "camera")
QOS_PROFILES = ("sensor_data", "reliable", "best_effort", "system_default")
INPUT_QOS = ("auto", *QOS_PROFILES)  # auto: match the publishers found (qos_match.py)
EXECUTORS = ("events", "single_threaded")
# image_transport names: raw = sensor_msgs/Image on <view>/image_raw, compressed =
# sensor_msgs/CompressedImage on <view>/image_raw/compressed (compressedDepth: 16-bit PNG).
TRANSPORTS = {"thermal": ("raw", "compressed", "compressedDepth"), "rgb": ("raw", "compressed")}


class ParameterError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class NumberRange:
    """Inclusive [low, high] an int/float parameter must lie in, plus an optional special value."""

    low: float
    high: float
    unit: str = ""
    off: float | None = None  # also allowed, outside [low, high], e.g. 0 = "no cap"
    off_means: str = ""

    def describe(self) -> str:
        """E.g. 'a value in [0, 10] s' or '0 (no cap) or a value in [0.01, 1000] Hz'."""
        text = f"a value in [{self.low:g}, {self.high:g}]" + (f" {self.unit}" if self.unit else "")
        return text if self.off is None else f"{self.off:g} ({self.off_means}) or {text}"

    def allows(self, value: float) -> bool:
        return math.isfinite(value) and (self.low <= value <= self.high or value == self.off)


# name -> allowed values of every int/float parameter. The bounds are generous for any real setup;
# durations stop at an hour (3.6e12 ns), far inside rclpy's int64 nanoseconds (~9.2e18).
RANGES: dict[str, NumberRange] = {
    "sync_slop_s": NumberRange(0.0, 10.0, "s"),
    "sync_queue_size": NumberRange(1, 1000, "messages"),
    "points_stride": NumberRange(1, 64),
    "min_depth_m": NumberRange(0.0, 1000.0, "m"),
    "max_depth_m": NumberRange(0.0, 1000.0, "m"),
    "stale_timeout_s": NumberRange(0.01, 3600.0, "s"),
    "diagnostics_period_s": NumberRange(0.01, 3600.0, "s"),
    # 1 / max_rate_hz is a wait in seconds: a tiny positive rate would be an endless wait.
    "max_rate_hz": NumberRange(0.01, 1000.0, "Hz", off=0.0, off_means="no cap"),
    "warmup_iterations": NumberRange(0, 1000, "runs"),
    "warn_throttle_s": NumberRange(0.0, 3600.0, "s"),
    "engine_workspace_gb": NumberRange(0.125, 1024.0, "GB"),
    "ort_num_threads": NumberRange(1, 256, "threads", off=0, off_means="the backend's default"),
    "pair_queue_size": NumberRange(1, 100, "pairs"),
    "min_confidence": NumberRange(0.0, 1.0),
    "colored_min_depth_m": NumberRange(0.0, 1000.0, "m"),
    "colored_max_depth_m": NumberRange(0.0, 1000.0, "m"),
}

# Parameters the running node applies from its next input on (`ros2 param set`): they shape the
# pairing, the rate and what is made of the network's output, not the subscriptions, publishers,
# backend or worker layout. Every other parameter is read-only once the node runs, so rclpy
# refuses to set it ("read-only parameter") rather than take a value the node would ignore.
LIVE_PARAMETERS = ("sync_slop_s", "points_stride", "min_depth_m", "max_depth_m", "max_rate_hz",
                   "warn_throttle_s", "check_image_usable", "min_confidence",
                   "colored_min_depth_m", "colored_max_depth_m")


@dataclass(frozen=True)
class NodeParams:
    """Resolved node configuration (see PARAMETERS for what each field means)."""

    model_path: str = ""
    backend: str = "auto"
    device: str = "cuda"
    sync_slop_s: float = 0.03
    sync_queue_size: int = 10
    publish_thermal: bool = True
    publish_rgb: bool = True
    publish_points: bool = True
    points_stride: int = 1
    min_depth_m: float = 0.1
    max_depth_m: float = 80.0
    output_size: str = "network"
    input_qos: str = "auto"
    output_qos: str = "reliable"
    stale_timeout_s: float = 1.0
    diagnostics_period_s: float = 1.0
    max_rate_hz: float = 0.0
    pair_queue_size: int = 3
    executor: str = "events"
    pipelined: bool = True
    warmup_iterations: int = 2
    warn_throttle_s: float = 5.0
    precision: str = "fp16"
    engine_cache_dir: str = ""
    engine_workspace_gb: float = 4.0
    engine_calib_data: str = ""
    ort_num_threads: int = 0
    ort_allow_spinning: bool = False
    thermal_transport: str = "raw"
    rgb_transport: str = "raw"
    thermal_rectify: bool = True
    rgb_rectify: bool = True
    # On: a black/saturated RGB or flat thermal image counts as a missing camera (degraded.py).
    # Its thresholds sit far from any real scene, it costs < 1 ms an image, and without it a
    # covered or blinded camera feeds the fused network garbage whose depth is published.
    check_image_usable: bool = True
    min_confidence: float = 0.0
    colored_min_depth_m: float = 0.0
    colored_max_depth_m: float = 80.0

    def __post_init__(self):
        _check(bool(self.model_path), "model_path", "is empty: set it to an exported .onnx, "
               ".engine or .pt2 file (its sidecar <file>.json must sit next to it)")
        _check_choice("backend", self.backend, BACKENDS)
        _check(bool(self.device), "device", "is empty: use e.g. 'cuda', 'cuda:0' or 'cpu'")
        for name, allowed in RANGES.items():
            check_range(name, getattr(self, name), allowed)
        _check(self.publish_thermal or self.publish_rgb, "publish_thermal/publish_rgb",
               "are both false: enable at least one view")
        _check(self.max_depth_m > self.min_depth_m, "max_depth_m",
               f"= {self.max_depth_m} must be > min_depth_m = {self.min_depth_m}")
        _check(self.colored_max_depth_m > self.colored_min_depth_m, "colored_max_depth_m",
               f"= {self.colored_max_depth_m} must be > colored_min_depth_m = "
               f"{self.colored_min_depth_m}")
        _check_choice("output_size", self.output_size, OUTPUT_SIZES)
        _check_choice("input_qos", self.input_qos, INPUT_QOS)
        _check_choice("executor", self.executor, EXECUTORS)
        _check_choice("output_qos", self.output_qos, QOS_PROFILES)
        _check_choice("thermal_transport", self.thermal_transport, TRANSPORTS["thermal"])
        _check_choice("rgb_transport", self.rgb_transport, TRANSPORTS["rgb"])
        _check_choice("precision", self.precision, PRECISIONS)
        builds_engine = self.backend == "tensorrt" and self.model_path.lower().endswith(".onnx")
        _check(not (builds_engine and self.precision == "int8" and not self.engine_calib_data),
               "engine_calib_data", "is empty but precision is int8: int8 engines calibrate on "
               "real frames, so set it to an MS2 root (or use precision fp16)")


def check_against_model(p: NodeParams, model_path: str, views: list[str],
                        confidence_views: list[str]) -> None:
    """Parameters that need something of the model (its sidecar's depth and confidence views).

    Raises:
        ParameterError naming the parameter and what to set instead.
    """
    for view in ("thermal", "rgb"):
        _check(not getattr(p, f"publish_{view}") or view in views, f"publish_{view}",
               f"is true but model {model_path} outputs {views}: set it to false or use a "
               "fusion model")
    published = [v for v in views if getattr(p, f"publish_{v}")]
    lacking = [v for v in published if v not in confidence_views]
    _check(p.min_confidence == 0.0 or not lacking, "min_confidence",
           f"= {p.min_confidence} needs confidence outputs, but model {model_path} has none for "
           f"{lacking}: set it to 0, or export a model trained with model.uncertainty_head: true")


def with_changes(current: NodeParams, changes: dict[str, object]) -> NodeParams:
    """`current` with `changes` (name -> new value) applied, validated as at start-up.

    Raises:
        ParameterError naming the parameter: not in LIVE_PARAMETERS, of the wrong type, out of
        range, or inconsistent with the others (min_depth_m must stay below max_depth_m).
    """
    fixed = sorted(set(changes) - set(LIVE_PARAMETERS))
    _check(not fixed, "/".join(fixed), "cannot change while the node runs (read-only): set it "
           "in the params file and restart the node")
    return params_from_mapping({**asdict(current), **changes})


def check_range(name: str, value: float, allowed: NumberRange) -> None:
    """Raise ParameterError naming `name`, its value and `allowed` unless the value is allowed."""
    _check(allowed.allows(value), name, f"= {value!r} is out of range: set it to {allowed.describe()}")


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ParameterError(f"parameter '{name}' {problem}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, name, f"= '{value}' is not one of {list(choices)}")


# name -> description; defaults and types come from NodeParams so they are written once.
PARAMETERS: dict[str, str] = {
    "model_path": "Exported model (.onnx | .engine | .pt2) with its sidecar <file>.json. Required.",
    "backend": "Inference backend: auto (by file extension) | tensorrt | onnxruntime | torch.",
    "device": "Device for inference, e.g. cuda, cuda:0 or cpu.",
    "sync_slop_s": "Largest thermal/RGB stamp difference (s) that still forms a pair.",
    "sync_queue_size": "Messages kept per stream while waiting for a partner.",
    "publish_thermal": "Publish the thermal-view outputs (thermal/depth/*).",
    "publish_rgb": "Publish the RGB-view outputs (rgb/depth/*).",
    "publish_points": "Publish organised point clouds (built only while someone subscribes).",
    "points_stride": "Keep every n-th row and column of the depth in the point clouds.",
    "min_depth_m": "Depth below this (m) is published as NaN (invalid).",
    "max_depth_m": "Depth above this (m) is published as NaN (invalid).",
    "output_size": "network: publish at the network input size; camera: upsample to each camera's resolution.",
    "input_qos": "QoS of the subscriptions: auto (reliability and durability of the publishers "
    "found on each input, re-checked while running) | sensor_data | reliable | best_effort | "
    "system_default.",
    "output_qos": "QoS of the publishers: sensor_data | reliable | best_effort | system_default.",
    "stale_timeout_s": "A camera silent (or sending unusable images) for this long (s) is "
    "missing: the node runs on the other camera alone (mode thermal_only / rgb_only, WARN; "
    "none: ERROR).",
    "diagnostics_period_s": "Period (s) of the /diagnostics status.",
    "max_rate_hz": "Cap on processed pairs per second (0 = as fast as inference allows); "
    "newer pairs replace waiting ones, drops are counted.",
    "pair_queue_size": "Pairs that may wait for the worker while it keeps up with the cameras "
    "(bursts); when inference is slower than the cameras only the newest pair waits.",
    "executor": "rclpy executor: events (rclpy.experimental.EventsExecutor, less CPU per "
    "message) | single_threaded (rclpy's SingleThreadedExecutor).",
    "pipelined": "Run prepare, inference and publish on one thread each, overlapped (input N+1 "
    "prepared while N is inferred and N-1 published), instead of one after the other on one "
    "thread; no backlog either way.",
    "warmup_iterations": "Inference runs on dummy input at start-up before subscribing.",
    "warn_throttle_s": "Minimum interval (s) between repeated bad-input warnings per topic/reason.",
    "precision": "Precision of engines the node builds: fp32 | fp16 | int8 (the tensorrt engine "
    "of an .onnx model; ONNX Runtime's TensorRT provider: fp16 unless fp32). A .engine or .pt2 "
    "runs its sidecar's precision; /diagnostics reports what runs.",
    "engine_cache_dir": "Per-machine TensorRT engine cache for backend tensorrt with an .onnx "
    "model (empty = $ROS_HOME/depth_fusion/engines, else ~/.ros/depth_fusion/engines).",
    "engine_workspace_gb": "TensorRT builder workspace limit (GB) of engines the node builds.",
    "engine_calib_data": "MS2 root with real frames for int8 calibration of engines the node "
    "builds (required for precision int8 with backend tensorrt and an .onnx model).",
    "ort_num_threads": "ONNX Runtime intra-op threads (0 = the usable cores, at most 8; spinning "
    "off, so the executor gets the cores between ops). Set fewer on a machine shared with other "
    "busy processes.",
    "ort_allow_spinning": "Let idle ONNX Runtime threads busy-wait between ops (lower latency, "
    "but they hold their cores; off so the executor and preprocessing keep a core).",
    "thermal_transport": "Thermal input transport: raw (Image on thermal/image_raw) | compressed "
    "(CompressedImage on thermal/image_raw/compressed, e.g. 16-bit PNG) | compressedDepth.",
    "rgb_transport": "RGB input transport: raw (Image on rgb/image_raw) | compressed "
    "(CompressedImage JPEG/PNG on rgb/image_raw/compressed).",
    "thermal_rectify": "Rectify thermal images whose camera_info has non-zero D (raw input) "
    "before the network; false = the input is rectified already (image_rect), geometry from P.",
    "rgb_rectify": "Rectify RGB images whose camera_info has non-zero D (raw input) before the "
    "network; false = the input is rectified already (image_rect), geometry from P.",
    "check_image_usable": "Treat a black or saturated RGB image, or a flat thermal image, as a "
    "missing camera (single-camera mode), as one silent for stale_timeout_s is.",
    "min_confidence": "Depth pixels whose confidence (exp(-sigma), 0.9 = ~10 % expected relative "
    "error) is below this are published as NaN, in the depth and the cloud (0 = off; needs a "
    "model with confidence outputs).",
    "colored_min_depth_m": "Depth (m) drawn at the near (blue) end of the TURBO colours of "
    "{view}/depth/colored.",
    "colored_max_depth_m": "Depth (m) drawn at the far (red) end of the TURBO colours of "
    "{view}/depth/colored.",
}


def parameter_defaults() -> dict[str, object]:
    """name -> default value, in declaration order (the dataclass field defaults)."""
    defaults = {f.name: f.default for f in fields(NodeParams)}
    missing = set(defaults) ^ set(PARAMETERS)
    if missing:
        raise RuntimeError(f"PARAMETERS and NodeParams disagree on {sorted(missing)}")
    numeric = {n for n, d in defaults.items() if type(d) in (int, float)}
    if numeric != set(RANGES):
        raise RuntimeError(f"RANGES and the int/float parameters disagree on "
                           f"{sorted(numeric ^ set(RANGES))}")
    return defaults


def params_from_mapping(values: dict[str, object]) -> NodeParams:
    """NodeParams from plain values, coercing ints given for floats; validation errors name the key."""
    defaults = parameter_defaults()
    unknown = set(values) - set(defaults)
    if unknown:
        raise ParameterError(f"unknown parameter(s) {sorted(unknown)}; known: {list(defaults)}")
    resolved = {}
    for name, default in defaults.items():
        value = values.get(name, default)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            raise ParameterError(
                f"parameter '{name}' must be {type(default).__name__}, got {value!r}"
            )
        resolved[name] = value
    return NodeParams(**resolved)


def wants_help(argv: list[str]) -> bool:
    """-h / --help among the program's own arguments (not inside --ros-args ... --)."""
    in_ros_args = False
    for arg in argv[1:]:
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif not in_ros_args and arg in ("-h", "--help"):
            return True
    return False


def help_text(program: str, summary: str, parameters: list[tuple[str, object, str]]) -> str:
    """Usage of a node's console script: how to pass parameters, then every parameter with its
    default and description (`parameters`: (name, default, description))."""
    lines = [f"usage: {program} --ros-args [--params-file FILE] [-p NAME:=VALUE ...] "
             "[-r FROM:=TO ...]", "", summary, "", "parameters (name = default: meaning):"]
    for name, default, description in parameters:
        lines.append(f"  {name} = {default!r}: {description}")
    lines += ["", "Full documentation: the README (The node / Parameters, Diagnostics)."]
    return "\n".join(lines)


def command_line_overrides(argv: list[str]) -> list[tuple[str, str, str]]:
    """The `-p [node:]name:=value` / `--param ...` overrides after `--ros-args` in argv, in
    order: [(node prefix or "", name, value text)]."""
    found: list[tuple[str, str, str]] = []
    in_ros_args = False
    args = iter(argv)
    for arg in args:
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg in ("-p", "--param"):
            name, sep, value = next(args, "").partition(":=")
            if sep:
                prefix, _, short = name.rpartition(":")
                found.append((prefix, short, value))
    return found


# rcl_yaml_param_parser's words for booleans (parse.c)
_RCL_TRUE = {"Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_RCL_FALSE = {"N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
_RCL_SPECIAL_FLOATS = {f"{sign}.{word}" for sign in ("", "+", "-")
                       for word in ("inf", "Inf", "INF")} | {".nan", ".NaN", ".NAN"}


def rcl_kind(text: str) -> str:
    """The type rcl gives a `-p name:=TEXT` value: "bool", "int", "float", "str" or "array"
    (rcl reads the text as a YAML scalar: its own boolean words, strtoll / strtod numbers,
    quoted text is a string)."""
    text = text.strip()
    if text.startswith("["):
        return "array"
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return "str"
    if text in _RCL_TRUE or text in _RCL_FALSE:
        return "bool"
    try:
        int(text, 0)  # strtoll(base 0): decimal, 0x hex, ...
        return "int"
    except ValueError:
        if re.fullmatch(r"[+-]?0[0-7]+", text):  # ... and C octal
            return "int"
    if text in _RCL_SPECIAL_FLOATS:
        return "float"
    try:
        float(text)  # strtod: also inf, nan, 1e-3
        return "float"
    except ValueError:
        return "str"


def _number(text: str) -> float | None:
    try:
        return float(int(text.strip(), 0))
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (list, tuple)):
        return "array"
    return {int: "int", float: "float"}.get(type(value), "str")


_KIND_WORDS = {"bool": "true or false", "int": "an integer (e.g. 2)",
               "float": "a number with a decimal point (e.g. 2.0)", "str": "a string",
               "array": "a list like [a, b]"}


def check_command_line_overrides(values: dict[str, object], argv: list[str] | None,
                                 node_name: str) -> None:
    """Refuses start-up when a `-p` override did not take effect.

    rcl merges `--params-file` values with `-p` overrides, and when the two give one parameter
    different types (the file's `points_stride: 1` and `-p points_stride:=2.0`, or
    `-p publish_points:=maybe` for a boolean) it keeps the file's value without an error: the
    node would run with a value the user did not ask for. So the type rcl gives the last
    override of each parameter that applies to this node (`rcl_kind`) must be the type of the
    value the node got; equal types mean rcl applied it.
    Raises:
        ParameterError naming the parameter, the override, the value the node got and the type
        to write. argv None: sys.argv.
    """
    last: dict[str, str] = {}
    for prefix, name, text in command_line_overrides(sys.argv if argv is None else argv):
        if name in values and prefix in ("", node_name):
            last[name] = text
    for name, text in last.items():
        effective = values[name]
        wanted, given = _kind(effective), rcl_kind(text)
        if {wanted, given} == {"int", "float"} and _number(text) == float(effective):
            continue  # `-p max_rate_hz:=0` for the file's 0.0: dropped, but the same number
        if given != wanted:
            raise ParameterError(
                f"parameter '{name}': the command line sets {text!r} but the node got "
                f"{effective!r} (rcl keeps the params file's value when a -p override has "
                f"another type); write it as {_KIND_WORDS[wanted]}")


def declare_and_read(node, argv: list[str] | None = None) -> NodeParams:
    """Declare every parameter on an rclpy node (with its description) and read NodeParams.

    argv: the command line rclpy was initialised with (default sys.argv), for
    `check_command_line_overrides`.

    Floats are declared with dynamic typing on so that integer YAML values (e.g. `max_rate_hz: 5`)
    are accepted, which rclpy would otherwise reject with an obscure type error; the type and the
    range are then checked here.
    Ranges are shown as `additional_constraints` (`ros2 param describe`) and checked by NodeParams
    rather than by rclpy, so a bad value stops start-up with this module's message.
    Parameters outside LIVE_PARAMETERS are declared read-only (the node's set-parameters
    callback checks the live ones with `with_changes`).
    """
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for name, default in parameter_defaults().items():
        descriptor = ParameterDescriptor(
            description=PARAMETERS[name],
            dynamic_typing=isinstance(default, float),
            read_only=name not in LIVE_PARAMETERS,
            additional_constraints=f"finite, {RANGES[name].describe()}" if name in RANGES else "",
        )
        param = node.declare_parameter(name, default, descriptor)
        values[name] = param.value
    check_command_line_overrides(values, argv, node.get_name())
    return params_from_mapping(values)
