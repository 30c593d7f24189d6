"""INT8 calibration for the TensorRT builder: real MS2 frames, an entropy calibrator and a
calibration cache keyed by the ONNX file's sha256.

A calibration cache holds the activation scales of one network; reused after a re-export it
would silently quantise the new weights with the old ranges. So the cache file starts with a
header line naming the sha256 of the ONNX it was calibrated for, and a cache for another model
is ignored (with a log line) and then overwritten by the new calibration.

tensorrt and torch are imported only inside `make_calibrator`.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from depth_fusion_ros.fileio import atomic_write_bytes

LOG = logging.getLogger(__name__)

CALIB_HEADER = b"depth_fusion int8 calibration cache v1; onnx_sha256="


def calibration_batches(root: str | Path, split: str, n_frames: int, height: int, width: int,
                        phase: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields (thermal [1,1,H,W], rgb [1,3,H,W]) float32 from real MS2 frames, evenly spread.

    Uses the shared reader and preprocessing (depth_fusion_ros.ms2 / preprocess), so the int8
    ranges are calibrated on exactly what the node feeds at runtime. Frame k of n is frame
    int((k + phase) * len / n) of the split: `phase` 0.5 picks frames between those of phase 0
    (the accuracy check uses other frames than the calibration).
    Raises:
        ValueError naming the root and split when the split has no frames.
    """
    from depth_fusion_ros import ms2
    from depth_fusion_ros.preprocess import preprocess_rgb, preprocess_thermal

    frames = [(seq, f) for seq in ms2.read_split(root, split) for f in ms2.list_frames(root, seq)]
    if not frames:
        raise ValueError(f"calibration data {root}: split {split!r} has no frames")
    n = min(max(1, n_frames), len(frames))
    picks = sorted({min(len(frames) - 1, int((k + phase) * len(frames) / n)) for k in range(n)})
    for i in picks:
        seq, frame = frames[i]
        thermal = preprocess_thermal(ms2.read_thermal(root, seq, frame), (height, width))
        rgb = preprocess_rgb(ms2.read_rgb(root, seq, frame), (height, width))
        yield thermal[None], rgb[None]


def pack_calibration_cache(onnx_sha256: str, cache: bytes) -> bytes:
    """TensorRT's calibration cache behind a header line naming the ONNX it belongs to."""
    return CALIB_HEADER + onnx_sha256.encode("ascii") + b"\n" + bytes(cache)


def unpack_calibration_cache(data: bytes, onnx_sha256: str, path: str | Path) -> bytes | None:
    """TensorRT's cache from a file written by `pack_calibration_cache`, or None (logged) when
    the file belongs to another ONNX, predates the header or is damaged."""
    first, sep, cache = data.partition(b"\n")
    if not first.startswith(CALIB_HEADER) or not sep:
        LOG.warning("calibration cache %s has no ONNX sha256 header (older or foreign file); "
                    "ignoring it and calibrating again", path)
        return None
    recorded = first[len(CALIB_HEADER):].decode("ascii", "replace")
    if recorded != onnx_sha256:
        LOG.warning("calibration cache %s was made for another model (ONNX sha256 %s..., this "
                    "one is %s...); ignoring it and calibrating again", path, recorded[:12],
                    onnx_sha256[:12])
        return None
    if not cache:
        LOG.warning("calibration cache %s is empty; calibrating again", path)
        return None
    LOG.info("reusing calibration cache %s (calibrated for this ONNX; delete it to recalibrate "
             "on other frames)", path)
    return cache


def make_calibrator(trt, batches, input_names: dict[str, str], cache_path: Path, onnx_sha256: str,
                    device_index: int):
    """An IInt8EntropyCalibrator2 over `batches` whose buffers live on GPU `device_index` (the
    device the engine is built on). `input_names` maps view -> ONNX input name.

    An exception while producing a batch ends calibration and is kept in `.error` (TensorRT
    cannot carry it across its C++ boundary); the builder raises it after the build.
    """
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by the pybind base class
            self._batches = iter(batches)
            self._device = torch.device("cuda", device_index)
            self._buffers: dict[str, torch.Tensor] = {}
            self.error: BaseException | None = None
            self.n_batches = 0
            self.cache_reused = False

        def get_batch_size(self) -> int:
            return 1  # the ONNX has static [1, ...] inputs

        def get_batch(self, names):
            try:
                thermal, rgb = next(self._batches)
                views = {"thermal": thermal, "rgb": rgb}
                arrays = {name: views[view] for view, name in input_names.items()}
                for name in names:
                    tensor = torch.from_numpy(np.ascontiguousarray(arrays[name], np.float32))
                    self._buffers[name] = tensor.to(self._device)
            except StopIteration:
                return None  # tells TensorRT calibration is complete
            except Exception as exc:  # noqa: BLE001 - kept and re-raised by the builder
                self.error = exc
                return None
            self.n_batches += 1
            return [int(self._buffers[name].data_ptr()) for name in names]

        def read_calibration_cache(self):
            if not cache_path.is_file():
                return None
            cache = unpack_calibration_cache(cache_path.read_bytes(), onnx_sha256, cache_path)
            self.cache_reused = cache is not None
            return cache

        def write_calibration_cache(self, cache) -> None:
            try:  # a lost cache only costs a recalibration; never fail the build for it
                atomic_write_bytes(cache_path, pack_calibration_cache(onnx_sha256, cache))
            except OSError as exc:
                LOG.warning("could not write calibration cache %s: %s", cache_path, exc)

    return EntropyCalibrator()
