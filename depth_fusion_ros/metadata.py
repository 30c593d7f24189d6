"""Model artifact metadata: the sidecar `X.<ext>.json` next to every exported model (DESIGN.md section 4).

The sidecar is the only thing that crosses from `training/` to the runtime besides the model file
itself: input/output names and shapes, the preprocessing constants (taken from
`depth_fusion_ros.preprocess.normalisation_params()`, never retyped), the network size, max depth,
the training config and provenance hashes. Every backend loads its model through `load_metadata`,
which refuses a missing, malformed, tampered or foreign file with a message saying how to rebuild it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from depth_fusion_ros.fileio import atomic_write_text
from depth_fusion_ros.preprocess import normalisation_params

SCHEMA_VERSION = 1
FORMATS = ("onnx", "engine", "pt2")
PRECISIONS = ("fp32", "fp16", "int8")
VIEWS = ("thermal", "rgb")
EXTENSION_FORMATS = {".onnx": "onnx", ".engine": "engine", ".plan": "engine", ".pt2": "pt2"}


OUTPUT_KINDS = ("depth", "confidence")


class ModelMetadataError(RuntimeError):
    """A model file or its sidecar cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, static shape, dtype, the view it belongs to, its unit
    and, for outputs, what it holds: "depth" (metres) or "confidence" (exp(-sigma) in (0, 1],
    sigma = the predicted expected |log(depth / true depth)|; models with an uncertainty head).
    Sidecars written before confidence outputs existed have no `kind`: their outputs are depth."""

    name: str
    shape: list[int]
    dtype: str
    view: str
    unit: str | None = None  # "m" for depth outputs, "1" for confidence, None for image inputs
    kind: str = "depth"


@dataclass
class ModelMetadata:
    """Every field of the model sidecar (DESIGN.md section 4); `tensorrt` only for engines."""

    schema_version: int
    format: str  # "onnx" | "engine" | "pt2"
    model_file: str  # base name of the model file the sidecar describes
    model_sha256: str
    model_id: str  # "<config name>-<sha256[:12]>", shown in logs and diagnostics
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    input_size: dict  # {"height": H, "width": W}
    max_depth_m: float
    normalization: dict  # == depth_fusion_ros.preprocess.normalisation_params()
    training_config: dict
    source_checkpoint_sha256: str | None
    git_commit: str
    created_utc: str
    precision: str = "fp32"
    tensorrt: dict | None = None  # {version, gpu_name, compute_capability, source_onnx_sha256}
    extra: dict = field(default_factory=dict)  # free-form provenance (parity figures, opset, ...)

    @property
    def height(self) -> int:
        return int(self.input_size["height"])

    @property
    def width(self) -> int:
        return int(self.input_size["width"])

    @property
    def views(self) -> list[str]:
        """Views the model outputs depth for, in output order ("thermal", "rgb")."""
        return [spec.view for spec in self.outputs if spec.kind == "depth"]

    @property
    def confidence_views(self) -> list[str]:
        """Views with a confidence output (empty for models without the uncertainty head)."""
        return [spec.view for spec in self.outputs if spec.kind == "confidence"]

    def input_for(self, view: str) -> TensorSpec:
        """The input spec of a view; raises KeyError naming the view if absent."""
        for spec in self.inputs:
            if spec.view == view:
                return spec
        raise KeyError(f"model {self.model_file} has no input for view {view!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelMetadata:
        """Builds metadata from parsed JSON; raises KeyError/TypeError/ValueError on bad content."""
        known = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise KeyError(f"missing field(s) {', '.join(missing)}")
        values = {key: value for key, value in data.items() if key in known}
        values["inputs"] = [TensorSpec(**spec) for spec in data["inputs"]]
        values["outputs"] = [TensorSpec(**spec) for spec in data["outputs"]]
        return cls(**values)


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """The sidecar of a model file: the model path plus ".json" (X.onnx -> X.onnx.json)."""
    return Path(str(model_path) + ".json")


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB engines do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def format_for_path(model_path: str | os.PathLike) -> str:
    """Model format from the file extension; raises ValueError naming the file when unknown."""
    suffix = Path(model_path).suffix.lower()
    if suffix not in EXTENSION_FORMATS:
        raise ValueError(
            f"model file {model_path}: unknown extension {suffix!r}; expected one of "
            f"{', '.join(sorted(EXTENSION_FORMATS))}"
        )
    return EXTENSION_FORMATS[suffix]


def rebuild_command(model_path: str | os.PathLike, fmt: str | None = None) -> str:
    """The command that regenerates a model file and its sidecar (quoted in every error)."""
    path = Path(model_path)
    fmt = fmt or EXTENSION_FORMATS.get(path.suffix.lower(), "onnx")
    if fmt == "engine":
        return (
            f"python -m training.build_engine --onnx {path.with_suffix('.onnx')} --out {path} "
            "[--precision fp16] on the machine that will run it"
        )
    fmt_flag = " --format pt2" if fmt == "pt2" else ""
    return f"python -m training.export --checkpoint CHECKPOINT.pt --out {path}{fmt_flag}"


def _fail(model_path: str | os.PathLike, problem: str, fmt: str | None = None) -> ModelMetadataError:
    return ModelMetadataError(
        f"{problem}. Rebuild the model and its sidecar with: {rebuild_command(model_path, fmt)}"
    )


def write_metadata(md: ModelMetadata, model_path: str | os.PathLike) -> Path:
    """Writes the sidecar of `model_path` atomically (temp file + rename) and returns its path."""
    target = sidecar_path(model_path)
    return atomic_write_text(target, json.dumps(md.to_dict(), indent=2, sort_keys=False) + "\n")


def _validate_content(md: ModelMetadata, model_path: Path, car: Path) -> None:
    """Field-level checks; raises ValueError with the reason (wrapped by the caller)."""
    if md.format not in FORMATS:
        raise ValueError(f"format {md.format!r} is not one of {FORMATS}")
    if md.precision not in PRECISIONS:
        raise ValueError(f"precision {md.precision!r} is not one of {PRECISIONS}")
    if not md.outputs:
        raise ValueError("no outputs listed")
    for spec in md.inputs + md.outputs:
        if spec.view not in VIEWS:
            raise ValueError(f"tensor {spec.name!r} has unknown view {spec.view!r}")
    for spec in md.outputs:
        if spec.kind not in OUTPUT_KINDS:
            raise ValueError(f"output {spec.name!r} has unknown kind {spec.kind!r} "
                             f"(expected one of {OUTPUT_KINDS})")
    orphans = set(md.confidence_views) - set(md.views)
    if orphans:
        raise ValueError(f"confidence outputs for {sorted(orphans)} have no depth output")
    if md.format == "engine" and not md.tensorrt:
        raise ValueError("an engine sidecar needs a 'tensorrt' block (version, gpu_name, ...)")
    if md.height <= 0 or md.width <= 0:
        raise ValueError(f"input_size {md.input_size} is not positive")
    if md.normalization != normalisation_params():
        raise ValueError(f"it was exported with preprocessing {md.normalization}, but this "
                         f"runtime preprocesses with {normalisation_params()}")


def load_metadata(model_path: str | os.PathLike, verify_hash: bool = True) -> ModelMetadata:
    """Loads and validates the sidecar of a model file.

    Checks, in order: model file exists, sidecar exists, JSON parses, schema version, fields,
    format matches the extension, sidecar describes this file, and (verify_hash) the sha256.
    Raises:
        ModelMetadataError naming the file, the problem and the command that rebuilds it.
    """
    path = Path(model_path)
    car = sidecar_path(path)
    try:
        fmt = format_for_path(path)
    except ValueError as exc:
        raise ModelMetadataError(str(exc)) from None
    if not path.is_file():
        raise _fail(path, f"model file {path} does not exist", fmt)
    if not car.is_file():
        raise _fail(path, f"model file {path} has no metadata sidecar {car}", fmt)
    try:
        data = json.loads(car.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"metadata sidecar {car} is not valid JSON ({exc})", fmt) from None
    if not isinstance(data, dict):
        raise _fail(path, f"metadata sidecar {car} is not a JSON object", fmt)
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _fail(
            path,
            f"metadata sidecar {car} has schema_version {version!r}; this package reads "
            f"version {SCHEMA_VERSION}",
            fmt,
        )
    try:
        md = ModelMetadata.from_dict(data)
        _validate_content(md, path, car)
    except (KeyError, TypeError, ValueError) as exc:
        reason = exc.args[0] if exc.args else exc
        raise _fail(path, f"metadata sidecar {car} is malformed: {reason}", fmt) from None
    if md.format != fmt:
        raise _fail(
            path, f"metadata sidecar {car} says format {md.format!r} but {path} is a {fmt!r} file", fmt
        )
    if md.model_file != path.name:
        raise _fail(path, f"metadata sidecar {car} describes {md.model_file!r}, not {path.name!r}", fmt)
    if verify_hash:
        actual = sha256_file(path)
        if actual != md.model_sha256:
            raise _fail(
                path,
                f"model file {path} does not match its sidecar {car} (sha256 {actual[:12]}... != "
                f"{md.model_sha256[:12]}...): the file was modified or replaced",
                fmt,
            )
    return md


def check_engine_compatible(
    md: ModelMetadata,
    trt_version: str,
    gpu_name: str,
    compute_capability: str | tuple[int, int],
    model_path: str | os.PathLike | None = None,
) -> None:
    """Refuses a TensorRT engine built by another TensorRT version or for another GPU.

    TensorRT engines are neither portable across TensorRT versions nor across GPU architectures
    (TensorRT developer guide, "Engine compatibility"), and deserialising a foreign one fails
    with an opaque error or, worse, runs slowly; so the sidecar's record is checked first.
    Raises:
        ModelMetadataError naming the engine, the mismatch and the build_engine command.
    """
    path = Path(model_path) if model_path is not None else Path(md.model_file)
    if md.format != "engine" or not md.tensorrt:
        raise _fail(path, f"{path} is not a TensorRT engine sidecar (format {md.format!r})", "engine")
    if isinstance(compute_capability, tuple | list):
        compute_capability = f"{compute_capability[0]}.{compute_capability[1]}"
    built = md.tensorrt
    problems = []
    if str(built.get("version")) != str(trt_version):
        problems.append(f"TensorRT {built.get('version')} (this machine has {trt_version})")
    if str(built.get("compute_capability")) != str(compute_capability):
        problems.append(
            f"compute capability {built.get('compute_capability')} "
            f"(this GPU is {compute_capability})"
        )
    if str(built.get("gpu_name")) != str(gpu_name):
        problems.append(f"GPU {built.get('gpu_name')!r} (this GPU is {gpu_name!r})")
    if problems:
        raise _fail(
            path, f"TensorRT engine {path} was built for {'; '.join(problems)}", "engine"
        )
