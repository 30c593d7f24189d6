"""The TensorRT engine builder (`backends.tensorrt_build`, `python -m training.build_engine`).

What needs neither TensorRT nor a GPU runs everywhere: the accuracy comparison and its limits,
argument checks, `.plan` names, the engine sidecar, failure messages, int8 calibration frames
and the ONNX-keyed calibration cache. Building and running engines needs TensorRT 10 and a CUDA
GPU; those tests are skipped with that reason elsewhere.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from model_fixtures import tensorrt_10_available

from depth_fusion_ros.backends import accuracy, create_backend
from depth_fusion_ros.backends.accuracy import (
    ACCURACY_LIMITS,
    CONFIDENCE_LIMITS,
    AccuracyLimits,
    compare_depths,
    compare_outputs,
    sample_inputs,
)
from depth_fusion_ros.backends.tensorrt_build import (
    EngineAccuracyError,
    build_engine,
    check_build_prerequisites,
    check_request,
    engine_metadata,
    explain_build_failure,
    fp32_layer_indices,
)
from depth_fusion_ros.backends.tensorrt_calibration import (
    CALIB_HEADER,
    calibration_batches,
    calibration_identity,
    pack_calibration_cache,
    pick_frames,
    unpack_calibration_cache,
)
from depth_fusion_ros.metadata import (
    check_engine_compatible,
    load_metadata,
    rebuild_command,
    sha256_file,
    sidecar_path,
    write_metadata,
)
from training import build_engine as cli
from training import export as export_mod

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
TENSORRT_10 = tensorrt_10_available()


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


needs_trt = pytest.mark.skipif(not (TENSORRT_10 and _cuda_count() > 0),
                               reason="needs the tensorrt package (TensorRT 10) and a CUDA GPU")


def test_builder_modules_import_no_torch_or_tensorrt():
    """The node may import the builder; torch / tensorrt / onnxruntime load only for a build."""
    import subprocess
    import sys

    code = ("import sys, depth_fusion_ros.backends.tensorrt_build, "
            "depth_fusion_ros.backends.tensorrt_calibration, depth_fusion_ros.backends.accuracy, "
            "depth_fusion_ros.backends.torch_backend, depth_fusion_ros.backends.tensorrt_backend; "
            "print(sorted(m for m in ('torch', 'tensorrt', 'onnxruntime') if m in sys.modules))")
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True, cwd=repo)
    assert result.stdout.strip() == "[]"


# ---- accuracy comparison (pure numpy) ---------------------------------------------------------

def _maps(value_thermal: float, value_rgb: float) -> dict[str, np.ndarray]:
    return {"thermal": np.full((4, 4), value_thermal, np.float32),
            "rgb": np.full((4, 4), value_rgb, np.float32)}


def test_compare_depths_reports_max_mean_and_passes_within_limits():
    reference = _maps(10.0, 20.0)
    candidate = _maps(10.0, 20.01)
    candidate["thermal"][1, 2] = 10.5
    report = compare_depths([(reference, candidate)], "fp16")
    assert report.passed and report.non_finite == 0 and report.n_inputs == 1
    assert report.max_abs_diff_m == pytest.approx(0.5)
    assert report.mean_abs_diff_m == pytest.approx((0.5 + 16 * 0.01) / 32, rel=1e-4)
    assert report.per_view["thermal"]["max_abs_diff_m"] == pytest.approx(0.5)
    assert report.per_view["thermal"]["mean_abs_diff_m"] == pytest.approx(0.5 / 16)
    assert report.per_view["rgb"]["max_abs_diff_m"] == pytest.approx(0.01, rel=1e-3)
    assert "max |diff| 0.5 m (limit 1)" in report.message and "FAILED" not in report.message
    as_dict = report.to_dict()
    assert as_dict["limits"] == {"max_abs_m": 1.0, "mean_abs_m": 0.1}
    json.dumps(as_dict)  # the sidecar stores it


def test_compare_depths_fails_above_the_fp32_limits_and_on_non_finite_depth():
    reference, candidate = _maps(10.0, 20.0), _maps(10.0, 20.0)
    candidate["thermal"][0, 0] = 10.5
    report = compare_depths([(reference, candidate)], "fp32", label="m.engine")
    assert not report.passed
    assert "m.engine (fp32) vs ONNX Runtime fp32 on 1 input(s)" in report.message
    assert ("FAILED, depth max |diff| 0.5 m > 0.001 m; depth mean |diff| 0.0156 m > 0.0001 m"
            in report.message)
    candidate = _maps(10.0, 20.0)
    candidate["rgb"][3, 3] = np.nan
    pairs = [(_maps(10.0, 20.0), _maps(10.0, 20.0)), (_maps(10.0, 20.0), candidate)]
    report = compare_depths(pairs, "int8")
    assert not report.passed and report.non_finite == 1 and report.n_inputs == 2
    assert "1 non-finite depth value(s)" in report.message
    reference = _maps(10.0, 20.0)
    reference["rgb"][0, 0] = np.nan  # invalid in the reference: not compared
    assert compare_depths([(reference, _maps(10.0, 20.0))], "fp32").passed


def test_compare_depths_rejects_caller_errors():
    with pytest.raises(ValueError, match="at least one"):
        compare_depths([], "fp32")
    with pytest.raises(ValueError, match="views"):
        compare_depths([(_maps(1, 1), {"thermal": np.ones((4, 4))})], "fp32")
    with pytest.raises(ValueError, match="shape"):
        compare_depths([(_maps(1, 1), {"thermal": np.ones((4, 5)), "rgb": np.ones((4, 4))})],
                       "fp32")
    custom = compare_depths([(_maps(1, 1), _maps(1.2, 1))], "fp16", AccuracyLimits(0.1, 0.01))
    assert not custom.passed and custom.limits == AccuracyLimits(0.1, 0.01)


def _outputs(depth: float, confidence: float | None) -> dict:
    """Backend.infer_outputs' layout: depth and (with the head) confidence maps per view."""
    return {"depth": _maps(depth, depth),
            "confidence": {} if confidence is None else _maps(confidence, confidence)}


def test_compare_outputs_checks_confidence_when_the_model_has_it():
    plain = compare_outputs([(_outputs(10.0, None), _outputs(10.0, None))], "fp32")
    assert plain.passed and plain.confidence is None and "confidence" not in plain.message
    candidate = _outputs(10.0, 0.9)
    candidate["confidence"]["rgb"][0, 0] = 0.95  # 0.05 off: above fp16's 0.02
    report = compare_outputs([(_outputs(10.0, 0.9), candidate)], "fp16", label="m.engine")
    assert not report.passed and report.max_abs_diff_m == 0.0  # the depth itself matches
    assert report.confidence["max_abs_diff_m"] == pytest.approx(0.05, rel=1e-5)
    assert report.confidence["limits"] == {"max_abs_m": 0.02, "mean_abs_m": 0.002}
    assert "confidence max |diff| 0.05 > 0.02" in report.message
    assert "m.engine (fp16) vs ONNX Runtime fp32 on 1 input(s): depth max |diff| 0 m" \
        in report.message
    json.dumps(report.to_dict())  # the sidecar stores both
    assert compare_outputs([(_outputs(10.0, 0.9), _outputs(10.0, 0.9))], "int8").passed
    with pytest.raises(ValueError, match="views"):  # the engine lost a confidence output
        compare_outputs([(_outputs(10.0, 0.9), _outputs(10.0, None))], "fp32")


def test_confidence_limits_are_ordered():
    order = [CONFIDENCE_LIMITS[p] for p in ("fp32", "fp16", "int8")]
    assert all(a.max_abs_m < b.max_abs_m and a.mean_abs_m < b.mean_abs_m
               for a, b in zip(order, order[1:], strict=False))


def test_accuracy_limits_are_ordered_and_shared_with_the_export():
    assert set(ACCURACY_LIMITS) == {"fp32", "fp16", "int8"}
    order = [ACCURACY_LIMITS[p] for p in ("fp32", "fp16", "int8")]
    assert [lim.max_abs_m for lim in order] == sorted(lim.max_abs_m for lim in order)
    assert [lim.mean_abs_m for lim in order] == sorted(lim.mean_abs_m for lim in order)
    assert all(lim.mean_abs_m < lim.max_abs_m for lim in order)
    assert export_mod.PARITY_TOLERANCE_M == ACCURACY_LIMITS["fp32"].max_abs_m == 1e-3
    assert export_mod.sample_inputs is sample_inputs  # one definition of the reference inputs


# ---- requests, sidecars and messages that need no TensorRT -------------------------------------

def test_check_request_names_the_problem(tiny_onnx_model, tmp_path):
    source = load_metadata(tiny_onnx_model)
    for name in ("m.engine", "m.plan"):
        check_request(source, tmp_path / name, "fp16")
    with pytest.raises(ValueError, match=r"m\.onnx: an engine file must end in \.engine or \.plan"):
        check_request(source, tmp_path / "m.onnx", "fp16")
    with pytest.raises(ValueError, match="int8 needs calibration data"):
        check_request(source, tmp_path / "m.engine", "int8")
    check_request(source, tmp_path / "m.engine", "int8", building=False)  # describing only
    with pytest.raises(ValueError, match="precision 'bf16'"):
        check_request(source, tmp_path / "m.engine", "bf16")
    with pytest.raises(ValueError, match="workspace 0 GB"):
        check_request(source, tmp_path / "m.engine", "fp16", workspace_gb=0)


def test_build_prerequisites_are_checked_before_building(tmp_path, monkeypatch):
    from depth_fusion_ros.backends import tensorrt_build

    check_build_prerequisites(tmp_path / "m.engine")  # onnxruntime here, folder writable
    with pytest.raises(ValueError, match=f"folder {tmp_path / 'absent'} does not exist"):
        check_build_prerequisites(tmp_path / "absent" / "m.engine")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root may write anyway
        with pytest.raises(ValueError, match=f"folder {locked} is not writable"):
            check_build_prerequisites(locked / "m.engine")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(tensorrt_build.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name))
    with pytest.raises(ImportError, match="'onnxruntime' is not importable: every engine is "
                                          "checked against ONNX Runtime fp32"):
        check_build_prerequisites(tmp_path / "m.engine")


def test_plan_engine_sidecar_round_trips(tiny_onnx_model, tmp_path):
    """The sidecar the builder writes for a `.plan` is one the runtime accepts (bytes stand in
    for the engine: only the metadata path is under test; running engines is GPU-only)."""
    plan = tmp_path / "dmcf.plan"
    plan.write_bytes(b"serialized-engine" * 32)
    source = load_metadata(tiny_onnx_model)
    md = engine_metadata(source, plan, sha256_file(plan), precision="fp16", trt_version="10.3.0",
                         gpu_name="NVIDIA L4", compute_capability="8.9", workspace_gb=2.0,
                         build={"fp32_layers": 64, "timing_cache": {"used": False}})
    write_metadata(md, plan)
    loaded = load_metadata(plan)
    assert loaded.format == "engine" and loaded.model_file == "dmcf.plan"
    assert loaded.precision == "fp16" and loaded.model_id.startswith("tiny_test-fp16-")
    assert loaded.tensorrt["source_onnx_sha256"] == source.model_sha256
    assert loaded.tensorrt["fp32_layers"] == 64 and loaded.tensorrt["workspace_gb"] == 2.0
    check_engine_compatible(loaded, "10.3.0", "NVIDIA L4", "8.9", plan)
    assert "--out " + str(plan) in rebuild_command(plan)


def test_build_failure_messages_name_the_cause():
    oom = explain_build_failure("m.onnx", ["Requested amount of GPU memory (8589934592 bytes) "
                                           "could not be allocated"], 8.0)
    assert "ran out of memory" in oom and "--workspace-gb (now 8)" in oom and "could not be" in oom
    impl = explain_build_failure("m.onnx", ["Could not find any implementation for node /x"], 1.0)
    assert "no TensorRT implementation" in impl
    assert "raise --workspace-gb, try --precision fp32" in impl
    node = explain_build_failure("m.onnx", ["out of memory"], 4.0,
                                 "parameter engine_workspace_gb")  # the node's words
    assert "lower parameter engine_workspace_gb (now 4)" in node
    node = explain_build_failure("m.onnx", ["Could not find any implementation"], 4.0,
                                 "parameter engine_workspace_gb")
    assert "raise parameter engine_workspace_gb, try parameter precision fp32" in node
    calib = explain_build_failure("m.onnx", ["Calibration failure occurred with no scaling"], 1.0)
    assert "int8 calibration failed" in calib
    silent = explain_build_failure("m.onnx", [], None)
    assert silent.startswith("TensorRT failed to build an engine from m.onnx")
    assert "logged no error" in silent


def test_only_layernorm_and_softmax_are_kept_fp32():
    names = ["CONVOLUTION", "NORMALIZATION", "MATRIX_MULTIPLY", "SOFTMAX", "ELEMENTWISE", "REDUCE"]
    assert fp32_layer_indices(names) == [1, 3]
    assert fp32_layer_indices([]) == []


# ---- int8 calibration data and cache ----------------------------------------------------------

def test_calibration_cache_is_keyed_by_the_onnx_and_the_frames(tmp_path, caplog):
    path = tmp_path / "m.engine.calib"
    blob = b"TRT-10030-EntropyCalibration2\nthermal: 3c010a14\n"
    identity = calibration_identity("a" * 64, tmp_path / "ms2", "train", 200)
    assert identity == {"onnx_sha256": "a" * 64, "data": str((tmp_path / "ms2").resolve()),
                        "split": "train", "frames": 200}
    packed = pack_calibration_cache(identity, blob)
    assert packed.startswith(CALIB_HEADER) and packed.endswith(b"\n" + blob)
    with caplog.at_level(logging.INFO):
        assert unpack_calibration_cache(packed, dict(identity), path) == blob
    assert "reusing calibration cache" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert unpack_calibration_cache(packed, {**identity, "onnx_sha256": "b" * 64},
                                        path) is None
        assert f"onnx_sha256 '{'a' * 64}' (now '{'b' * 64}')" in caplog.text
        caplog.clear()
        # the advice after a failed int8 check: other frames must recalibrate, not reuse
        assert unpack_calibration_cache(packed, {**identity, "frames": 400}, path) is None
        assert "made from other inputs: frames 200 (now 400)" in caplog.text
        assert unpack_calibration_cache(packed, {**identity, "split": "val"}, path) is None
        assert unpack_calibration_cache(blob, identity, path) is None  # pre-header cache
        assert "has no depth_fusion int8 calibration cache v2 header" in caplog.text
        v1 = b"depth_fusion int8 calibration cache v1; onnx_sha256=" + b"a" * 64 + b"\n" + blob
        assert unpack_calibration_cache(v1, identity, path) is None
        assert unpack_calibration_cache(pack_calibration_cache(identity, b""), identity,
                                        path) is None


def test_accuracy_frames_are_never_calibration_frames():
    assert pick_frames(4, 2) == [0, 2] and pick_frames(4, 2, phase=0.5) == [1, 3]
    for total, calib, check in ((1000, 200, 8), (150, 200, 8), (6, 4, 2), (300, 200, 8)):
        calibration = pick_frames(total, calib)
        accuracy = pick_frames(total, check, 0.5, exclude=calibration)
        assert not set(accuracy) & set(calibration)
        assert len(accuracy) == min(check, total - len(calibration))
    assert pick_frames(1000, 8, 0.5, pick_frames(1000, 200)) == [
        63, 188, 313, 438, 563, 688, 813, 938]  # spread over the whole split
    assert pick_frames(3, 5, exclude=[0, 1, 2]) == []


def test_calibration_and_accuracy_frames_use_shared_preprocessing(tmp_path):
    """Real MS2-layout frames through the shared preprocessing; the accuracy check's frames
    (phase 0.5) are not the calibration frames."""
    from depth_fusion_ros import ms2
    from depth_fusion_ros.preprocess import preprocess_rgb, preprocess_thermal
    from training.synthetic.__main__ import main as synthetic_main

    root = tmp_path / "ms2"
    assert synthetic_main(["--out", str(root), "--sequences", "1", "--frames", "4"]) == 0
    seq = ms2.read_split(root, "train")[0]
    frames = ms2.list_frames(root, seq)
    calib = list(calibration_batches(root, "train", 2, 64, 128))
    check = list(calibration_batches(root, "train", 2, 64, 128, phase=0.5))
    assert len(calib) == len(check) == 2
    thermal, rgb = calib[0]
    assert thermal.shape == (1, 1, 64, 128) and rgb.shape == (1, 3, 64, 128)
    assert thermal.dtype == np.float32 and rgb.dtype == np.float32
    for batch, index in zip(calib + check, (0, 2, 1, 3), strict=True):
        expected = preprocess_thermal(ms2.read_thermal(root, seq, frames[index]), (64, 128))
        np.testing.assert_array_equal(batch[0][0], expected)
    np.testing.assert_array_equal(
        rgb[0], preprocess_rgb(ms2.read_rgb(root, seq, frames[0]), (64, 128)))
    assert -2.1 < float(thermal.min()) < float(thermal.max()) < 2.5  # (0-.45)/.225 .. (1-.45)/.225
    with pytest.raises(ValueError, match="split 'val' has no frames"):
        list(calibration_batches(root, "val", 2, 64, 128))


# ---- command line without TensorRT -------------------------------------------------------------

def test_build_engine_help_prints_trtexec(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "trtexec --onnx=model.onnx --saveEngine=model.engine" in out
    assert "--memPoolSize=workspace:" in out and "--sidecar-only" in out and ".plan" in out


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the messages shown when tensorrt is missing")
def test_cli_accepts_plan_and_says_what_to_install(tiny_onnx_model, tmp_path, capsys):
    for name in ("m.engine", "m.plan"):
        code = cli.main(["--onnx", str(tiny_onnx_model), "--out", str(tmp_path / name)])
        assert code == 3, name  # past the name check, stopped at the import
        assert "'tensorrt' (TensorRT 10) is not importable" in capsys.readouterr().err
    assert cli.main(["--onnx", str(tiny_onnx_model), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "must end in .engine or .plan" in capsys.readouterr().err
    assert cli.main(["--onnx", str(tiny_onnx_model), "--out", str(tmp_path / "m.plan"),
                     "--sidecar-only"]) == 2
    assert "m.plan does not exist" in capsys.readouterr().err
    assert cli.main(["--onnx", str(tiny_onnx_model), "--out", str(tmp_path / "m.engine"),
                     "--precision", "int8"]) == 2
    assert "int8 needs calibration data" in capsys.readouterr().err
    assert cli.main(["--onnx", str(tiny_onnx_model), "--out",
                     str(tmp_path / "no_such_folder" / "m.engine")]) == 2  # before the import
    assert "folder " + str(tmp_path / "no_such_folder") + " does not exist" \
        in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ImportError, match="TensorRT 10"):
        build_engine(tiny_onnx_model, tmp_path / "lib.plan", precision="fp32")


# ---- GPU + TensorRT 10 only --------------------------------------------------------------------

def _fp32_layer_count(onnx_path) -> int:
    ops = [node.op_type for node in onnx.load(str(onnx_path)).graph.node]
    return ops.count("LayerNormalization") + ops.count("Softmax")


@needs_trt
def test_engines_match_onnxruntime_and_share_a_timing_cache(tiny_onnx_model, tmp_path, caplog):
    timing = tmp_path / "timing.cache"
    feeds = sample_inputs(256, 640)
    reference = create_backend(tiny_onnx_model, backend="onnxruntime", device="cpu")
    expected = reference.infer(feeds["thermal"], feeds["rgb"])
    for precision, name in (("fp32", "tiny.engine"), ("fp16", "tiny.plan")):
        engine = tmp_path / name
        with caplog.at_level(logging.INFO):
            md = build_engine(tiny_onnx_model, engine, precision=precision, workspace_gb=1,
                              timing_cache=timing)
        assert load_metadata(engine) == md and md.precision == precision
        checked = md.tensorrt["accuracy"]
        limits = ACCURACY_LIMITS[precision]
        assert checked["passed"] and checked["max_abs_diff_m"] <= limits.max_abs_m
        assert md.tensorrt["timing_cache"]["used"] == (precision == "fp16")  # written by fp32
        assert engine.stat().st_mtime_ns <= timing.stat().st_mtime_ns  # engine first, cache last
        if precision == "fp16":
            assert md.tensorrt["fp32_layers"] == _fp32_layer_count(tiny_onnx_model)
            assert "timing cache" in caplog.text and "loaded" in caplog.text
        backend = create_backend(engine, device="cuda")
        depth = backend.infer(feeds["thermal"], feeds["rgb"])
        for view in ("thermal", "rgb"):
            assert float(np.max(np.abs(depth[view] - expected[view]))) <= limits.max_abs_m


@needs_trt
def test_engine_output_missing_from_sidecar_is_a_startup_error(tiny_onnx_model, tmp_path):
    engine = tmp_path / "tiny.engine"
    build_engine(tiny_onnx_model, engine, precision="fp32", workspace_gb=1)
    data = json.loads(sidecar_path(engine).read_text())
    data["outputs"][1]["name"] = "depth_rgb_renamed"
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(ValueError) as err:
        create_backend(engine, device="cuda")
    assert "sidecar output 'depth_rgb_renamed' is not an engine tensor" in str(err.value)
    assert "engine tensor 'depth_rgb' is not in the sidecar" in str(err.value)


@needs_trt
def test_engine_above_the_accuracy_limit_is_not_written(tiny_onnx_model, tmp_path, monkeypatch):
    monkeypatch.setitem(accuracy.ACCURACY_LIMITS, "fp32", AccuracyLimits(-1.0, -1.0))
    engine, timing = tmp_path / "strict.engine", tmp_path / "timing.cache"
    with pytest.raises(EngineAccuracyError, match="FAILED.*strict.engine was not written"):
        build_engine(tiny_onnx_model, engine, precision="fp32", workspace_gb=1,
                     timing_cache=timing)
    assert not engine.exists() and not sidecar_path(engine).exists()
    assert timing.stat().st_size > 0  # the tactic timings are kept for the next try


@pytest.mark.skipif(not (TENSORRT_10 and _cuda_count() > 1),
                    reason="needs TensorRT 10 and at least two CUDA GPUs")
def test_engine_is_built_on_the_requested_gpu(tiny_onnx_model, tmp_path):
    import torch

    engine = tmp_path / "gpu1.engine"
    md = build_engine(tiny_onnx_model, engine, precision="fp16", device="cuda:1", workspace_gb=1)
    major, minor = torch.cuda.get_device_capability(1)
    assert md.tensorrt["gpu_name"] == torch.cuda.get_device_name(1)
    assert md.tensorrt["compute_capability"] == f"{major}.{minor}"
    backend = create_backend(engine, device="cuda:1")
    assert backend.device == "cuda:1"


@needs_trt
def test_int8_calibration_cache_names_the_onnx(tiny_onnx_model, tmp_path):
    from training.synthetic.__main__ import main as synthetic_main

    root = tmp_path / "ms2"
    assert synthetic_main(["--out", str(root), "--sequences", "1", "--frames", "6"]) == 0
    engine = tmp_path / "tiny_int8.engine"
    try:
        md = build_engine(tiny_onnx_model, engine, precision="int8", workspace_gb=1,
                          calib_data=root, calib_frames=4, accuracy_frames=2)
        checked = md.tensorrt["accuracy"]
        assert md.tensorrt["calibration"]["frames"] == 4
        assert not md.tensorrt["calibration"]["cache_reused"]
    except EngineAccuracyError as exc:
        # An untrained network on 4 frames may quantise beyond the int8 limits; the refusal is
        # then the builder working, and the cache (written during calibration) is under test.
        checked = exc.report.to_dict()
        assert not engine.exists()
    assert checked["n_inputs"] == 3  # the sample input + 2 real frames
    sha = load_metadata(tiny_onnx_model).model_sha256
    cache = tmp_path / "tiny_int8.engine.calib"
    header = json.loads(cache.read_bytes().split(b"\n", 1)[0][len(CALIB_HEADER):])
    assert header == calibration_identity(sha, root, "train", 4)
