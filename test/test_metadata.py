"""Sidecar contract: schema and hashes of a real export, and every refusal of the validator."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from depth_fusion_ros.metadata import (
    SCHEMA_VERSION,
    ModelMetadataError,
    check_engine_compatible,
    load_metadata,
    sha256_file,
    sidecar_path,
    write_metadata,
)
from depth_fusion_ros.preprocess import normalisation_params


@pytest.fixture
def model_copy(tiny_onnx_model, tmp_path):
    """A private copy of the tiny ONNX + sidecar that a test may damage."""
    dst = tmp_path / "copy.onnx"
    shutil.copyfile(tiny_onnx_model, dst)
    data = json.loads(sidecar_path(tiny_onnx_model).read_text())
    data["model_file"] = dst.name
    sidecar_path(dst).write_text(json.dumps(data))
    return dst


def test_sidecar_has_every_design_field(tiny_onnx_model):
    md = load_metadata(tiny_onnx_model)
    raw = json.loads(sidecar_path(tiny_onnx_model).read_text())
    for key in ("schema_version", "format", "model_file", "model_sha256", "model_id", "inputs",
                "outputs", "input_size", "max_depth_m", "normalization", "training_config",
                "source_checkpoint_sha256", "git_commit", "created_utc", "precision"):
        assert key in raw, key
    assert md.schema_version == SCHEMA_VERSION and md.format == "onnx" and md.precision == "fp32"
    assert md.model_sha256 == sha256_file(tiny_onnx_model)
    assert md.model_id == f"tiny_test-{md.model_sha256[:12]}"
    assert md.source_checkpoint_sha256 == sha256_file(tiny_onnx_model.parent / "tiny_fusion.pt")
    assert [(s.name, s.shape, s.dtype, s.view) for s in md.inputs] == [
        ("thermal", [1, 1, 256, 640], "float32", "thermal"),
        ("rgb", [1, 3, 256, 640], "float32", "rgb"),
    ]
    assert [(s.name, s.shape, s.view, s.unit) for s in md.outputs] == [
        ("depth_thermal", [1, 1, 256, 640], "thermal", "m"),
        ("depth_rgb", [1, 1, 256, 640], "rgb", "m"),
    ]
    assert md.input_size == {"height": 256, "width": 640} and md.max_depth_m == 80.0
    assert md.normalization == normalisation_params()  # the shared constants, not a retyped copy
    assert md.training_config["model"]["variant"] == "tiny"
    assert len(md.git_commit.removesuffix("-dirty")) == 40 or md.git_commit == "unknown"
    assert md.created_utc.endswith("+00:00")
    assert md.extra["parity_max_abs_diff_m"] < 1e-3


def test_tampered_model_is_refused(model_copy):
    with open(model_copy, "r+b") as stream:  # flip one byte in the middle of the weights
        stream.seek(model_copy.stat().st_size // 2)
        byte = stream.read(1)
        stream.seek(-1, 1)
        stream.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelMetadataError) as err:
        load_metadata(model_copy)
    message = str(err.value)
    assert "copy.onnx" in message and "does not match" in message
    assert "python -m training.export" in message
    assert load_metadata(model_copy, verify_hash=False).format == "onnx"  # explicit opt-out works


def test_missing_sidecar_and_model_are_refused(model_copy, tmp_path):
    sidecar_path(model_copy).unlink()
    with pytest.raises(ModelMetadataError, match=r"copy\.onnx.*no metadata sidecar.*training\.export"):
        load_metadata(model_copy)
    with pytest.raises(ModelMetadataError, match=r"absent\.onnx does not exist.*training\.export"):
        load_metadata(tmp_path / "absent.onnx")


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: json.dumps({**json.loads(text), "schema_version": 99}), "schema_version 99"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "outputs"}),
         "missing field"),
        (lambda text: json.dumps({**json.loads(text), "format": "pt2"}), "says format 'pt2'"),
        (lambda text: json.dumps({**json.loads(text), "model_file": "other.onnx"}), "describes"),
        (lambda text: "[1, 2]", "not a JSON object"),
    ],
)
def test_malformed_sidecar_is_refused(model_copy, damage, expected):
    car = sidecar_path(model_copy)
    car.write_text(damage(car.read_text()))
    with pytest.raises(ModelMetadataError) as err:
        load_metadata(model_copy)
    assert expected in str(err.value)
    assert "copy.onnx" in str(err.value) and "python -m training.export" in str(err.value)


def _fake_engine(model_copy, tmp_path):
    """An .engine file with an engine sidecar (the bytes are not a real engine: only the
    validator is under test, which must refuse before TensorRT ever sees the file)."""
    engine = tmp_path / "copy.engine"
    engine.write_bytes(b"not-a-real-engine" * 64)
    md = dataclasses.replace(
        load_metadata(model_copy), format="engine", model_file=engine.name,
        model_sha256=sha256_file(engine), precision="fp16",
        tensorrt={"version": "10.3.0", "gpu_name": "NVIDIA Jetson AGX Orin",
                  "compute_capability": "8.7", "source_onnx_sha256": sha256_file(model_copy)},
    )
    write_metadata(md, engine)
    return engine


def test_foreign_engine_is_refused(model_copy, tmp_path):
    engine = _fake_engine(model_copy, tmp_path)
    md = load_metadata(engine)
    assert md.tensorrt["compute_capability"] == "8.7"
    check_engine_compatible(md, "10.3.0", "NVIDIA Jetson AGX Orin", (8, 7), engine)  # home: ok
    with pytest.raises(ModelMetadataError) as err:
        check_engine_compatible(md, "10.8.0", "NVIDIA H100 80GB HBM3", (9, 0), engine)
    message = str(err.value)
    assert "copy.engine" in message and "TensorRT 10.3.0 (this machine has 10.8.0)" in message
    assert "compute capability 8.7 (this GPU is 9.0)" in message
    assert "python -m training.build_engine --onnx" in message
    with pytest.raises(ModelMetadataError, match="TensorRT 10.3.0 \\(this machine has 10.4.0\\)"):
        check_engine_compatible(md, "10.4.0", "NVIDIA Jetson AGX Orin", "8.7", engine)


def test_engine_sidecar_without_tensorrt_block_is_malformed(model_copy, tmp_path):
    engine = _fake_engine(model_copy, tmp_path)
    data = json.loads(sidecar_path(engine).read_text())
    data["tensorrt"] = None
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(ModelMetadataError, match="tensorrt.*training\\.build_engine"):
        load_metadata(engine)


def test_write_metadata_is_atomic_and_round_trips(model_copy):
    md = load_metadata(model_copy)
    write_metadata(md, model_copy)
    assert [p.name for p in model_copy.parent.iterdir() if p.suffix == ".tmp"] == []
    assert load_metadata(model_copy) == md


def test_plan_is_an_engine_whose_rebuild_command_keeps_the_name(tmp_path):
    from depth_fusion_ros.metadata import format_for_path, rebuild_command

    plan = tmp_path / "dmcf.plan"
    assert format_for_path(plan) == "engine"
    command = rebuild_command(plan)
    assert f"--onnx {tmp_path / 'dmcf.onnx'} --out {plan}" in command
    with pytest.raises(ModelMetadataError, match=r"dmcf\.plan does not exist.*build_engine"):
        load_metadata(plan)
