"""INT8 calibration for the TensorRT builder: real MS2 frames, an entropy calibrator and a
calibration cache keyed by the ONNX file's sha256 and the calibration frames.

A calibration cache holds the activation scales of one network on some frames; reused after a
re-export it would silently quantise the new weights with the old ranges, and reused after the
user asked for other frames (--calib-data / --calib-split / --calib-frames) it would ignore them.
So the cache file starts with a header line naming the ONNX sha256, data root, split and frame
count (`calibration_identity`), and a cache made from anything else is ignored (with a log line
naming what differs) and then overwritten by the new calibration.

tensorrt and torch are imported only inside `make_calibrator`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np

from depth_fusion_ros.fileio import atomic_write_bytes

LOG = logging.getLogger(__name__)

CALIB_HEADER = b"depth_fusion int8 calibration cache v2; "


def pick_frames(total: int, n_frames: int, phase: float = 0.0,
                exclude: Collection[int] = ()) -> list[int]:
    """`n_frames` indices of range(total) spread evenly, none of them in `exclude`.

    Pick k of n is candidate int((k + phase) * len / n) of the frames left after `exclude`:
    phase 0.5 falls between the picks of phase 0. Returns [] when no frame is left.
    """
    excluded = set(exclude)
    candidates = [i for i in range(total) if i not in excluded]
    if not candidates:
        return []
    n = min(max(1, n_frames), len(candidates))
    return sorted({candidates[min(len(candidates) - 1, int((k + phase) * len(candidates) / n))]
                   for k in range(n)})


def split_frames(root: str | Path, split: str) -> list[tuple[str, str]]:
    """(sequence, frame) of every frame of an MS2 split, in order; ValueError naming the root
    and split when it has none."""
    from depth_fusion_ros import ms2

    frames = [(seq, f) for seq in ms2.read_split(root, split) for f in ms2.list_frames(root, seq)]
    if not frames:
        raise ValueError(f"calibration data {root}: split {split!r} has no frames")
    return frames


def calibration_batches(root: str | Path, split: str, n_frames: int, height: int, width: int,
                        phase: float = 0.0,
                        exclude_calibration: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields (thermal [1,1,H,W], rgb [1,3,H,W]) float32 from real MS2 frames, evenly spread.

    Uses the shared reader and preprocessing (depth_fusion_ros.ms2 / preprocess), so the int8
    ranges are calibrated on exactly what the node feeds at runtime. Frames are `pick_frames` of
    the split's frames in order. exclude_calibration > 0: leave out the frames a calibration on
    that many frames of this split uses (the accuracy check must not judge int8 on its own
    calibration data); this may leave fewer frames than asked, or none.
    Raises:
        ValueError naming the root and split when the split has no frames.
    """
    from depth_fusion_ros import ms2
    from depth_fusion_ros.preprocess import preprocess_rgb, preprocess_thermal

    frames = split_frames(root, split)
    exclude = pick_frames(len(frames), exclude_calibration) if exclude_calibration > 0 else []
    for i in pick_frames(len(frames), n_frames, phase, exclude):
        seq, frame = frames[i]
        thermal = preprocess_thermal(ms2.read_thermal(root, seq, frame), (height, width))
        rgb = preprocess_rgb(ms2.read_rgb(root, seq, frame), (height, width))
        yield thermal[None], rgb[None]


def calibration_identity(onnx_sha256: str, data: str | Path, split: str,
                         frames: int) -> dict:
    """What a calibration cache was made from: the ONNX, and the frames' root, split and count.
    A cache is reused only for the same identity (other frames give other scales)."""
    return {"onnx_sha256": onnx_sha256, "data": str(Path(data).resolve()), "split": split,
            "frames": int(frames)}


def pack_calibration_cache(identity: dict, cache: bytes) -> bytes:
    """TensorRT's calibration cache behind a header line naming what it was made from."""
    return CALIB_HEADER + json.dumps(identity, sort_keys=True).encode() + b"\n" + bytes(cache)


def unpack_calibration_cache(data: bytes, identity: dict, path: str | Path) -> bytes | None:
    """TensorRT's cache from a file written by `pack_calibration_cache`, or None (logged) when
    the file was made from another ONNX or other frames, predates this header or is damaged."""
    first, sep, cache = data.partition(b"\n")
    recorded = None
    if first.startswith(CALIB_HEADER) and sep:
        try:
            recorded = json.loads(first[len(CALIB_HEADER):])
        except ValueError:
            recorded = None
    if not isinstance(recorded, dict):
        LOG.warning("calibration cache %s has no %s header (older or foreign file); ignoring it "
                    "and calibrating again", path, CALIB_HEADER.decode().split(";")[0])
        return None
    differs = [key for key in sorted(identity) if recorded.get(key) != identity[key]]
    if differs:
        said = ", ".join(f"{key} {recorded.get(key)!r} (now {identity[key]!r})" for key in differs)
        LOG.warning("calibration cache %s was made from other inputs: %s; ignoring it and "
                    "calibrating again", path, said)
        return None
    if not cache:
        LOG.warning("calibration cache %s is empty; calibrating again", path)
        return None
    LOG.info("reusing calibration cache %s (same ONNX, data, split and frame count; delete it "
             "to recalibrate)", path)
    return cache


def make_calibrator(trt, batches, input_names: dict[str, str], cache_path: Path, identity: dict,
                    device_index: int):
    """An IInt8EntropyCalibrator2 over `batches` whose buffers live on GPU `device_index` (the
    device the engine is built on). `input_names` maps view -> ONNX input name; `identity`
    (`calibration_identity`) decides whether the cache file can be reused.

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
            cache = unpack_calibration_cache(cache_path.read_bytes(), identity, cache_path)
            self.cache_reused = cache is not None
            return cache

        def write_calibration_cache(self, cache) -> None:
            try:  # a lost cache only costs a recalibration; never fail the build for it
                atomic_write_bytes(cache_path, pack_calibration_cache(identity, cache))
            except OSError as exc:
                LOG.warning("could not write calibration cache %s: %s", cache_path, exc)

    return EntropyCalibrator()
