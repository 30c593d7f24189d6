"""Run configuration: typed dataclasses loaded from YAML with `a.b=value` command-line overrides.

A run config has six blocks: `model` (training.model.ModelConfig), `data`, `optim`, `schedule`,
`loss` and `init`. Unknown keys are errors that name the key and the file (or override) they came from,
so a typo never silently trains the wrong thing. The resolved config (`to_dict`) is saved in every
run folder and in every checkpoint.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from depth_fusion_ros.ms2 import CONDITIONS
from training.data import DROPOUT_MODES, AugmentConfig
from training.losses import LossConfig
from training.model import ModelConfig

AMP_MODES = ("bf16", "fp16", "off")


class ConfigError(ValueError):
    """A run config file or override is invalid; the message names the key and its source."""


@dataclass
class DataConfig:
    """Where the MS2-layout data lives and how it is read (training.data.MS2Dataset)."""

    root: str = "data/ms2"
    train_split: str = "train"
    val_split: str = "val"
    step: int = 1  # use every `step`-th training frame (MS2 frames are 15 fps, highly redundant)
    val_step: int = 1
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    modality_dropout_p: float = 0.0
    # Which cameras dropout may blank (one per blanked sample, with equal chance). [rgb] with
    # p = 1 trains the fusion network on thermal alone (an ablation control).
    modality_dropout_of: tuple[str, ...] = ("thermal", "rgb")
    # replace: the drawn sample's camera is blanked in place (its own view then unsupervised for
    # that sample). duplicate: the sample stays whole and a copy with the camera blanked joins
    # the batch, supervising only the surviving view: full-input training is left as it was,
    # for p x batch_size more samples per step on average.
    modality_dropout_mode: str = "replace"
    # duplicate mode: the blanked copies join the batches only after this many optimiser steps
    # (0 = from the start); before, the network trains on whole samples alone (late dropout).
    modality_dropout_from_step: int = 0
    num_workers: int = 4
    # The DMCF paper's training protocol (train split only): e.g. [day, night] drops rainy
    # sequences (conditions from the test lists and <root>/conditions.txt), and frames slower
    # than min_speed_mps by their GNSS/IMU record are dropped as static (MS2's filter: 1.0).
    conditions: tuple[str, ...] | None = None
    min_speed_mps: float = 0.0


@dataclass
class OptimConfig:
    """Adam with polynomial LR decay (NeWCRFs: 2e-5 -> 2e-6, power 0.9)."""

    lr: float = 2e-5
    lr_final: float = 2e-6
    poly_power: float = 0.9
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    batch_size: int = 8
    max_steps: int = 40000
    warmup_steps: int = 0  # linear LR warm-up (transformers trained from scratch like one)
    amp: str = "bf16"  # CUDA only; "bf16" | "fp16" | "off"
    channels_last: bool = True  # CUDA only


@dataclass
class ScheduleConfig:
    """When to validate, checkpoint and log; the seed of everything random."""

    val_every: int = 2000
    ckpt_every: int = 500
    log_every: int = 20
    seed: int = 0
    val_max_frames: int = 400  # validation frames (evenly subsampled); 0 = all
    viz_frames: int = 3  # validation frames drawn in the PNG at every validation


@dataclass
class InitConfig:
    """Weight initialisation: Swin ImageNet weights for the encoder(s) (the paper starts there),
    or all weights from an earlier training run's checkpoint (fine-tuning; not `--resume`)."""

    pretrained_encoder: str | None = None  # official / timm Swin checkpoint; None = random init
    checkpoint: str | None = None  # last.pt / best.pt: weights only, fresh optimiser, step 0


@dataclass
class TrainConfig:
    """A complete, resolved training run description."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def __post_init__(self) -> None:
        if self.optim.amp not in AMP_MODES:
            raise ConfigError(f"optim.amp={self.optim.amp!r}: choose one of {AMP_MODES}")
        if self.optim.batch_size < 1 or self.optim.max_steps < 0:
            raise ConfigError("optim.batch_size must be >= 1 and optim.max_steps >= 0")
        bad = [c for c in self.data.conditions or () if c not in CONDITIONS]
        if bad or self.data.conditions == ():
            raise ConfigError(f"data.conditions={self.data.conditions}: choose from {CONDITIONS}")
        if self.data.modality_dropout_mode not in DROPOUT_MODES:
            raise ConfigError(f"data.modality_dropout_mode={self.data.modality_dropout_mode!r}: "
                              f"choose one of {DROPOUT_MODES}")
        if self.data.modality_dropout_from_step < 0:
            raise ConfigError("data.modality_dropout_from_step must be >= 0")
        if self.data.modality_dropout_from_step and self.data.modality_dropout_mode != "duplicate":
            raise ConfigError("data.modality_dropout_from_step needs data.modality_dropout_mode: "
                              "duplicate (replace mode blanks inside the data loader's workers)")
        if self.data.min_speed_mps < 0:
            raise ConfigError("data.min_speed_mps must be >= 0")
        for key in ("val_every", "ckpt_every", "log_every"):
            if getattr(self.schedule, key) < 1:
                raise ConfigError(f"schedule.{key} must be >= 1")


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass in a type hint (`X` or `X | None`), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Convert a YAML value to the field's type where that is lossless (int->float, list->tuple)."""
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{key} in {source} may not be null")
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        base = next(a for a in args if a is not type(None))
    origin = typing.get_origin(base) or base
    try:
        if origin is float and not isinstance(value, bool):
            return float(value)  # YAML reads "1e-4" as a string: float() accepts it
        if origin is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if origin is bool and isinstance(value, bool):
            return value
        if origin is str and isinstance(value, str):
            return value
        if origin is tuple and isinstance(value, (list, tuple)):
            inner = typing.get_args(base)
            return tuple(_coerce(v, inner[0] if inner else Any, key, source) for v in value)
        if base is Any:
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{key}={value!r} in {source}: expected {getattr(base, '__name__', base)}")


def from_dict(cls: type, data: dict | None, source: str, prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested mapping, checking every key.

    Raises:
        ConfigError naming the dotted key and `source` (a file or an override).
    """
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} in {source} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}' in {source}; "
                              f"valid keys under '{prefix or '(top)'}': {names}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        value, hint = data[name], hints[name]
        sub = _dataclass_of(hint)
        if sub is not None and isinstance(value, dict):
            kwargs[name] = from_dict(sub, value, source, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}", source)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid '{prefix.rstrip('.') or 'config'}' block in {source}: {exc}") \
            from exc


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def to_dict(cfg: TrainConfig) -> dict:
    """The resolved config as plain YAML/JSON types (tuples become lists)."""
    return _to_plain(cfg)


def apply_override(data: dict, override: str) -> None:
    """Set `a.b.c=value` (value parsed as YAML) in a nested mapping, creating blocks as needed."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: '{part}' is a value, not a block")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def config_from_dict(data: dict, source: str) -> TrainConfig:
    """TrainConfig from a nested mapping (e.g. a checkpoint's saved config)."""
    return from_dict(TrainConfig, data, source)


def load_config(yaml_path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a run config YAML and apply `a.b=value` overrides (YAML-typed).

    Raises:
        ConfigError (file missing, bad YAML, unknown key, wrong type) naming the file / override.
    """
    path = Path(yaml_path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; see training/configs/*.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of blocks (model, data, ...)")
    from_dict(TrainConfig, data, str(path))  # report file errors against the file
    for override in overrides or []:
        apply_override(data, override)
        from_dict(TrainConfig, data, f"override '{override}' (on {path})")
    return from_dict(TrainConfig, data, str(path))
