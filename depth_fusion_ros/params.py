"""depth_fusion_node parameters: one declaration table, read into a validated frozen dataclass.

Every parameter is declared once from PARAMETERS (name, default, description); the node reads the
values into NodeParams, whose validation names the offending parameter and what to set instead.
config/depth_fusion.yaml documents the same keys for users.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
OUTPUT_SIZES = ("network", "camera")
QOS_PROFILES = ("sensor_data", "reliable", "best_effort", "system_default")


class ParameterError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


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
    input_qos: str = "sensor_data"
    output_qos: str = "reliable"
    stale_timeout_s: float = 1.0
    diagnostics_period_s: float = 1.0
    max_rate_hz: float = 0.0
    warmup_iterations: int = 2
    warn_throttle_s: float = 5.0

    def __post_init__(self):
        _check(bool(self.model_path), "model_path", "is empty: set it to an exported .onnx, "
               ".engine or .pt2 file (its sidecar <file>.json must sit next to it)")
        _check_choice("backend", self.backend, BACKENDS)
        _check(bool(self.device), "device", "is empty: use e.g. 'cuda', 'cuda:0' or 'cpu'")
        _check(self.sync_slop_s >= 0.0, "sync_slop_s", f"= {self.sync_slop_s} must be >= 0")
        _check(self.sync_queue_size >= 1, "sync_queue_size",
               f"= {self.sync_queue_size} must be >= 1")
        _check(self.publish_thermal or self.publish_rgb, "publish_thermal/publish_rgb",
               "are both false: enable at least one view")
        _check(self.points_stride >= 1, "points_stride", f"= {self.points_stride} must be >= 1")
        _check(self.min_depth_m >= 0.0, "min_depth_m", f"= {self.min_depth_m} must be >= 0")
        _check(self.max_depth_m > self.min_depth_m, "max_depth_m",
               f"= {self.max_depth_m} must be > min_depth_m = {self.min_depth_m}")
        _check_choice("output_size", self.output_size, OUTPUT_SIZES)
        _check_choice("input_qos", self.input_qos, QOS_PROFILES)
        _check_choice("output_qos", self.output_qos, QOS_PROFILES)
        _check(self.stale_timeout_s > 0.0, "stale_timeout_s", f"= {self.stale_timeout_s} must be > 0")
        _check(self.diagnostics_period_s > 0.0, "diagnostics_period_s",
               f"= {self.diagnostics_period_s} must be > 0")
        _check(self.max_rate_hz >= 0.0, "max_rate_hz", f"= {self.max_rate_hz} must be >= 0")
        _check(self.warmup_iterations >= 0, "warmup_iterations",
               f"= {self.warmup_iterations} must be >= 0")
        _check(self.warn_throttle_s >= 0.0, "warn_throttle_s", f"= {self.warn_throttle_s} must be >= 0")


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
    "input_qos": "QoS of the subscriptions: sensor_data | reliable | best_effort | system_default.",
    "output_qos": "QoS of the publishers: sensor_data | reliable | best_effort | system_default.",
    "stale_timeout_s": "An input silent for this long (s) is reported stale (WARN; ERROR if both).",
    "diagnostics_period_s": "Period (s) of the /diagnostics status.",
    "max_rate_hz": "Cap on processed pairs per second (0 = as fast as inference allows); "
    "newer pairs replace waiting ones, drops are counted.",
    "warmup_iterations": "Inference runs on dummy input at start-up before subscribing.",
    "warn_throttle_s": "Minimum interval (s) between repeated bad-input warnings per topic/reason.",
}


def parameter_defaults() -> dict[str, object]:
    """name -> default value, in declaration order (the dataclass field defaults)."""
    defaults = {f.name: f.default for f in fields(NodeParams)}
    missing = set(defaults) ^ set(PARAMETERS)
    if missing:
        raise RuntimeError(f"PARAMETERS and NodeParams disagree on {sorted(missing)}")
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


def declare_and_read(node) -> NodeParams:
    """Declare every parameter on an rclpy node (with its description) and read NodeParams.

    Floats are declared with dynamic typing off but integer YAML values (e.g. `max_rate_hz: 5`)
    are still accepted, because rclpy would otherwise reject them with an obscure type error.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for name, default in parameter_defaults().items():
        descriptor = ParameterDescriptor(
            description=PARAMETERS[name],
            dynamic_typing=isinstance(default, float),
        )
        param = node.declare_parameter(name, default, descriptor)
        values[name] = param.value
    return params_from_mapping(values)
