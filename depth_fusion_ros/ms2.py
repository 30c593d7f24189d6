"""Reader for the MS2 (Multi-Spectral Stereo) dataset layout, shared by the training loader and
`ms2_to_bag` (numpy/OpenCV only). Its one writer is `ms2_writer.py` beside it (`bag_to_ms2` and the
synthetic generator write through it), so both sides share these paths and units.

Layout and conventions follow Shin, Park, Kweon, "Deep Depth Estimation from Thermal Image",
CVPR 2023, and the dataset's public loader code:

    <root>/sync_data/<seq>/{rgb,thr}/img_left/NNNNNN.png     images (frame names shared)
    <root>/sync_data/<seq>/{rgb,thr}/img_left_timestamp.txt  optional per-frame stamps
    <root>/sync_data/<seq>/calib.npy                         pickled dict, translations in mm
    <root>/proj_depth/<seq>/{rgb,thr}/depth_filtered/NNNNNN.png  uint16, metres * 256, 0 = none
    <root>/{train,val,test_day,test_night,test_rainy}_list.txt   one sequence name per line
    <root>/sync_data/<seq>/gps_imu/data/NNNNNN.txt           optional GNSS/IMU record per frame:
        one number per line, the velocity (m/s) on lines 8-10 (as MS2's static-frame filter reads it)
    <root>/conditions.txt                                    optional, this project's: one
        `<seq> <day|night|rain>` per line (MS2 does not store the condition of train sequences)

Every error a user can hit names the file it was looking for (and the list file or sequence it
came from) so a broken download or a wrong `--data-root` is obvious.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SPLITS = ("train", "val", "test_day", "test_night", "test_rainy")
TEST_SPLITS = ("test_day", "test_night", "test_rainy")  # split "test" is their union
VIEWS = ("thr", "rgb")
DEPTH_SCALE = 256.0  # MS2 depth PNGs hold metres * 256
CONDITIONS = ("day", "night", "rain")
TEST_SPLIT_CONDITION = {"test_day": "day", "test_night": "night", "test_rainy": "rain"}
GPS_VELOCITY_LINES = slice(7, 10)  # 0-based lines 7..9: velocity components in m/s
THERMAL_HW = (256, 640)
RGB_HW = (384, 1224)

# Keys this project needs from calib.npy; the real files also hold K_nirL and the right cameras.
REQUIRED_CALIB_KEYS = ("K_rgbL", "K_thrL", "R_nir2thr", "T_nir2thr", "R_nir2rgb", "T_nir2rgb")
OPTIONAL_CALIB_KEYS = ("K_nirL", "R_rgbR", "T_rgbR", "R_nirR", "T_nirR", "R_thrR", "T_thrR")


class MS2FormatError(FileNotFoundError):
    """A file of the MS2 layout is missing or malformed; the message names the path."""


def split_list_path(root: str | Path, split: str) -> Path:
    """Path of the list file for one of `SPLITS`."""
    return Path(root) / f"{split}_list.txt"


def read_split(root: str | Path, split: str) -> list[str]:
    """Sequence names of a split, in list-file order.

    Args:
        root: dataset root (holds `sync_data/`, `proj_depth/` and the `*_list.txt` files).
        split: one of `SPLITS`, or "test" for test_day + test_night + test_rainy (those present).
    Returns:
        sequence names, e.g. ["_2021-08-06-11-23-45", ...]; empty if the list file is empty.
    """
    if split == "test":
        present = [s for s in TEST_SPLITS if split_list_path(root, s).is_file()]
        if not present:
            names = ", ".join(str(split_list_path(root, s)) for s in TEST_SPLITS)
            raise MS2FormatError(f"split 'test' needs at least one of {names}; none exists "
                                 f"(is {root} an MS2 dataset root?)")
        return [seq for s in present for seq in read_split(root, s)]
    if split not in SPLITS:
        raise ValueError(f"unknown MS2 split {split!r}; expected one of {SPLITS + ('test',)}")
    path = split_list_path(root, split)
    if not path.is_file():
        raise MS2FormatError(f"MS2 split list {path} does not exist (is {root} an MS2 dataset "
                             f"root? a half-written synthetic dataset has no list files)")
    names = [line.strip() for line in path.read_text().splitlines()]
    return [n for n in names if n and not n.startswith("#")]  # an empty list is a valid split


def image_path(root: str | Path, seq: str, view: str, frame: str) -> Path:
    """`sync_data/<seq>/<view>/img_left/<frame>.png`."""
    _check_view(view)
    return Path(root) / "sync_data" / seq / view / "img_left" / f"{frame}.png"


def depth_path(root: str | Path, seq: str, view: str, frame: str,
               kind: str = "depth_filtered") -> Path:
    """`proj_depth/<seq>/<view>/<kind>/<frame>.png`."""
    _check_view(view)
    return Path(root) / "proj_depth" / seq / view / kind / f"{frame}.png"


def list_frames(root: str | Path, seq: str) -> list[str]:
    """Sorted frame names ("000000", ...) of a sequence, from `sync_data/<seq>/thr/img_left`."""
    folder = Path(root) / "sync_data" / seq / "thr" / "img_left"
    if not folder.is_dir():
        raise MS2FormatError(f"MS2 sequence {seq!r}: thermal image folder {folder} does not exist")
    frames = sorted(p.stem for p in folder.glob("*.png"))
    if not frames:
        raise MS2FormatError(f"MS2 sequence {seq!r}: no PNG frames in {folder}")
    return frames


def load_calib(root: str | Path, seq: str) -> dict[str, np.ndarray]:
    """The sequence's `calib.npy` as a dict of float64 arrays (K 3x3, R 3x3, T (3,) in mm)."""
    path = Path(root) / "sync_data" / seq / "calib.npy"
    if not path.is_file():
        raise MS2FormatError(f"MS2 sequence {seq!r}: calibration file {path} does not exist")
    try:
        raw = np.load(path, allow_pickle=True).item()
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises almost anything
        raise MS2FormatError(f"calibration file {path} cannot be read as a pickled dict "
                             f"({type(exc).__name__}: {exc}); the file is damaged or truncated, "
                             f"restore it from the MS2 download") from exc
    if not isinstance(raw, dict):
        raise MS2FormatError(f"calibration file {path} holds {type(raw).__name__}, not a dict")
    missing = [k for k in REQUIRED_CALIB_KEYS if k not in raw]
    if missing:
        raise MS2FormatError(f"calibration file {path} lacks keys {missing} "
                             f"(has {sorted(raw)}); MS2 calib.npy needs {list(REQUIRED_CALIB_KEYS)}")
    calib = {}
    for key in REQUIRED_CALIB_KEYS + OPTIONAL_CALIB_KEYS:
        if key not in raw:
            continue
        value = np.asarray(raw[key], dtype=np.float64)
        shape = (3,) if key.startswith("T_") else (3, 3)
        if value.size != int(np.prod(shape)):
            raise MS2FormatError(f"calibration file {path}: {key} has shape {value.shape}, "
                                 f"expected {shape}")
        calib[key] = value.reshape(shape)
    _check_calib_values(path, calib)
    return calib


def _check_calib_values(path: Path, calib: dict[str, np.ndarray]) -> None:
    """Every value finite and every K a pinhole with positive focal lengths, else MS2FormatError."""
    for key, value in calib.items():
        if not np.isfinite(value).all():
            raise MS2FormatError(f"calibration file {path}: {key} has non-finite entries "
                                 f"(NaN or inf): {value.tolist()}; restore the file")
        if key.startswith("K_") and not (value[0, 0] > 0 and value[1, 1] > 0):
            raise MS2FormatError(f"calibration file {path}: {key} has focal lengths fx = "
                                 f"{value[0, 0]}, fy = {value[1, 1]}; both must be > 0 (pixels)")


def read_thermal(root: str | Path, seq: str, frame: str) -> np.ndarray:
    """Thermal raw counts, [256, 640] uint16 (MS2: about 3000-6000)."""
    path = image_path(root, seq, "thr", frame)
    image = _imread(path, cv2.IMREAD_UNCHANGED)
    if image.ndim != 2:
        raise MS2FormatError(f"thermal image {path} has shape {image.shape}, expected [H, W]")
    if image.dtype == np.uint8:
        image = image.astype(np.uint16)  # 8-bit exports still work with the percentile clip
    if image.dtype != np.uint16:
        raise MS2FormatError(f"thermal image {path} is {image.dtype}, expected 16-bit counts")
    return image


def read_rgb(root: str | Path, seq: str, frame: str) -> np.ndarray:
    """RGB image, [384, 1224, 3] uint8 in RGB channel order (the PNG holds BGR, as cv2 writes)."""
    path = image_path(root, seq, "rgb", frame)
    image = _imread(path, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(image[:, :, ::-1])


def read_depth(root: str | Path, seq: str, view: str, frame: str,
               kind: str = "depth_filtered") -> np.ndarray:
    """Projected LiDAR depth of one view, [H, W] float32 metres, 0 = no measurement."""
    path = depth_path(root, seq, view, frame, kind)
    image = _imread(path, cv2.IMREAD_UNCHANGED)
    if image.dtype != np.uint16 or image.ndim != 2:
        raise MS2FormatError(f"depth map {path} is {image.dtype} {image.shape}, "
                             f"expected [H, W] uint16 (metres * 256)")
    return image.astype(np.float32) / DEPTH_SCALE


def gps_imu_path(root: str | Path, seq: str, frame: str) -> Path:
    """`sync_data/<seq>/gps_imu/data/<frame>.txt`."""
    return Path(root) / "sync_data" / seq / "gps_imu" / "data" / f"{frame}.txt"


def read_speed_mps(root: str | Path, seq: str, frame: str) -> float:
    """Vehicle speed (m/s) of a frame: the norm of the velocity in its GNSS/IMU record."""
    path = gps_imu_path(root, seq, frame)
    if not path.is_file():
        raise MS2FormatError(f"GNSS/IMU record {path} does not exist; the static-frame filter "
                             "(data.min_speed_mps) needs one per frame, or set it to 0")
    lines = path.read_text().split()
    try:
        velocity = np.array([float(v) for v in lines[GPS_VELOCITY_LINES]], np.float64)
    except ValueError as exc:
        raise MS2FormatError(f"GNSS/IMU record {path}: lines 8-10 are not numbers ({exc})") from exc
    if velocity.size != 3 or not np.isfinite(velocity).all():
        raise MS2FormatError(f"GNSS/IMU record {path} has no finite velocity on lines 8-10 "
                             f"(found {lines[GPS_VELOCITY_LINES]})")
    return float(np.linalg.norm(velocity))


def format_gps_imu(velocity_mps: np.ndarray) -> str:
    """A GNSS/IMU record as `read_speed_mps` reads it: 10 lines, velocity on lines 8-10; the
    other fields (position, attitude) are written as 0 (the synthetic data does not model them)."""
    values = np.zeros(10)
    values[GPS_VELOCITY_LINES] = np.asarray(velocity_mps, np.float64).reshape(3)
    return "".join(f"{v:.6f}\n" for v in values)


def conditions_path(root: str | Path) -> Path:
    return Path(root) / "conditions.txt"


def read_conditions(root: str | Path) -> dict[str, str]:
    """Condition (day / night / rain) of each sequence that has a known one: from the test
    split lists (their names say it) and from `conditions.txt` (`<seq> <condition>` per line)."""
    known: dict[str, str] = {}
    for split, condition in TEST_SPLIT_CONDITION.items():
        if split_list_path(root, split).is_file():
            known.update(dict.fromkeys(read_split(root, split), condition))
    path = conditions_path(root)
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            if len(tokens) != 2 or tokens[1] not in CONDITIONS:
                raise MS2FormatError(f"{path} line {number}: expected '<sequence> <condition>' "
                                     f"with a condition in {CONDITIONS}, got {line.strip()!r}")
            known[tokens[0]] = tokens[1]
    return known


def timestamp_path(root: str | Path, seq: str, view: str) -> Path:
    """`sync_data/<seq>/<view>/img_left_timestamp.txt`."""
    _check_view(view)
    return Path(root) / "sync_data" / seq / view / "img_left_timestamp.txt"


def read_timestamps(root: str | Path, seq: str, view: str) -> np.ndarray | None:
    """Stamps of the sequence's stamp file in integer nanoseconds, in line order, or None if the
    sequence has no stamp file. To get the stamp of each frame use `read_stamp_file` and
    `StampFile.for_frames` (a `<frame> <seconds>` file is keyed by its frame column)."""
    table = read_stamp_file(root, seq, view)
    return None if table is None else table.stamps_ns


@dataclass(frozen=True)
class StampFile:
    """One `img_left_timestamp.txt`: stamps in line order, and its frame column if it has one."""

    path: Path
    stamps_ns: np.ndarray  # [N] int64, line order
    frames: tuple[str, ...] | None  # frame ids of `<frame> <seconds>` lines; None for `<seconds>`

    def for_frames(self, frames: list[str]) -> np.ndarray:
        """[len(frames)] int64 stamps of these frame names ("000000", ...).

        With a frame column the stamp of frame f is the one on f's line (ids compared as numbers
        when numeric: "12" is frame "000012"), wherever that line is; plain `<seconds>` lines are
        positional (line i is the i-th frame). A frame with no stamp is an MS2FormatError.
        """
        if self.frames is None:
            if len(self.stamps_ns) < len(frames):
                raise MS2FormatError(f"timestamp file {self.path} has {len(self.stamps_ns)} stamps "
                                     f"for {len(frames)} frames; fix it (a `<frame> <seconds>` "
                                     f"file names each frame's line)")
            return self.stamps_ns[:len(frames)].copy()
        line_of = {_frame_key(f): i for i, f in enumerate(self.frames)}
        missing = [f for f in frames if _frame_key(f) not in line_of]
        if missing:
            raise MS2FormatError(f"timestamp file {self.path} has no line for frame(s) "
                                 f"{missing[:5]}{' ...' if len(missing) > 5 else ''} "
                                 f"({len(missing)} of {len(frames)}); fix or remove the file")
        return self.stamps_ns[[line_of[_frame_key(f)] for f in frames]]


def read_stamp_file(root: str | Path, seq: str, view: str) -> StampFile | None:
    """The view's stamp file parsed, or None if the sequence has none.

    Accepted line formats (one frame per line; blank and `#` lines ignored), the same on every
    line: `<seconds>` or `<frame> <seconds>`, seconds as a decimal (`1628237025.123456789`). A
    bare integer with 16 or more digits is taken as nanoseconds already. Parsing the decimal
    string directly keeps full nanosecond precision (a float64 of epoch seconds only holds ~0.2 us).
    """
    path = timestamp_path(root, seq, view)
    if not path.is_file():
        return None
    stamps, frames, seen, widths = [], [], set(), set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.replace(",", " ").split()
        if not tokens or tokens[0].startswith("#"):
            continue
        try:
            if len(tokens) > 2:
                raise ValueError("too many columns")
            stamps.append(_seconds_to_ns(tokens[-1]))
        except ValueError as exc:
            raise MS2FormatError(f"timestamp file {path} line {number}: cannot parse "
                                 f"{line.strip()!r} as '<seconds>' or '<frame> <seconds>'") from exc
        widths.add(len(tokens))
        if len(widths) > 1:
            raise MS2FormatError(f"timestamp file {path} line {number}: {line.strip()!r} mixes "
                                 f"'<seconds>' and '<frame> <seconds>' lines; use one format")
        if len(tokens) == 2:
            if _frame_key(tokens[0]) in seen:
                raise MS2FormatError(f"timestamp file {path} line {number}: frame {tokens[0]} "
                                     f"appears twice; keep one line per frame")
            seen.add(_frame_key(tokens[0]))
            frames.append(tokens[0])
    return StampFile(path, np.asarray(stamps, dtype=np.int64),
                     tuple(frames) if widths == {2} else None)


def _frame_key(frame: str) -> str:
    """Frame ids compare as numbers when numeric ("12" == "000012"), else as text."""
    return str(int(frame)) if frame.isascii() and frame.isdigit() else frame


def _seconds_to_ns(text: str) -> int:
    if "." not in text and "e" not in text.lower():
        value = int(text)
        return value if len(text.lstrip("-")) >= 16 else value * 1_000_000_000
    if "e" in text.lower():
        return int(round(float(text) * 1e9))
    whole, frac = text.split(".")
    sign = -1 if whole.startswith("-") else 1
    return int(whole or "0") * 1_000_000_000 + sign * int((frac + "000000000")[:9])


def rigid(R: np.ndarray, t_m: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation and a (3,) translation in metres."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t_m, dtype=np.float64).reshape(3)
    return T


def camera_extrinsics(calib: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cross-modal extrinsics as 4x4 matrices in metres, through the NIR hub camera.

    `T_a2b` maps points from camera a's optical frame into camera b's (x_b = T_a2b @ x_a), the
    MS2 convention for `R_nir2thr/T_nir2thr`. Returns T_nir2thr, T_nir2rgb, T_thr2rgb
    (= T_nir2rgb @ inv(T_nir2thr), as in the MS2 code), T_rgb2thr, and each camera's pose in the
    NIR frame (T_thr2nir, T_rgb2nir, T_nir2nir = I); plus left-to-right stereo transforms
    (T_rgbL2rgbR, ...) when the calibration has them.
    """
    out = {
        "T_nir2thr": rigid(calib["R_nir2thr"], np.reshape(calib["T_nir2thr"], 3) / 1000.0),
        "T_nir2rgb": rigid(calib["R_nir2rgb"], np.reshape(calib["T_nir2rgb"], 3) / 1000.0),
    }
    out["T_thr2nir"] = np.linalg.inv(out["T_nir2thr"])
    out["T_rgb2nir"] = np.linalg.inv(out["T_nir2rgb"])
    out["T_nir2nir"] = np.eye(4)
    out["T_thr2rgb"] = out["T_nir2rgb"] @ out["T_thr2nir"]
    out["T_rgb2thr"] = np.linalg.inv(out["T_thr2rgb"])
    for cam in ("rgb", "nir", "thr"):
        if f"R_{cam}R" in calib and f"T_{cam}R" in calib:
            out[f"T_{cam}L2{cam}R"] = rigid(calib[f"R_{cam}R"],
                                           np.reshape(calib[f"T_{cam}R"], 3) / 1000.0)
    return out


def _imread(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise MS2FormatError(f"MS2 file {path} does not exist")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise MS2FormatError(f"MS2 file {path} exists but OpenCV cannot decode it (truncated?)")
    return image


def _check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"MS2 view must be one of {VIEWS} (folder names), got {view!r}")
