"""Writer of the MS2 layout, the one counterpart of the reader in `ms2.py` (same paths, units and
file formats). Used by `bag_to_ms2` (own recordings -> MS2) and the synthetic generator.

What it writes per sequence (paths from `ms2.py`):

    sync_data/<seq>/{thr,rgb}/img_left/NNNNNN.png        thermal 16-bit counts, RGB as cv2 writes (BGR)
    sync_data/<seq>/{thr,rgb}/img_left_timestamp.txt     `<frame> <seconds>` lines, ns precision
    sync_data/<seq>/calib.npy                            pickled dict, MS2 keys, translations in mm
    sync_data/<seq>/gps_imu/data/NNNNNN.txt              velocity record (`ms2.format_gps_imu`)
    proj_depth/<seq>/{thr,rgb}/depth_filtered/NNNNNN.png uint16 metres * 256, 0 = none

Crash safety and resuming: a sequence is written into `sync_data/<seq>.partial` and
`proj_depth/<seq>.partial` and renamed by `commit()` (depth first, images last: readers find
frames through `sync_data/<seq>/thr/img_left`), so a sequence folder appears complete or not at
all. Each finished frame is appended to a journal in the partial folder; `resume=True` keeps the
frames it lists (a frame cut off mid-write is not in it and is written again). Split lists and
`conditions.txt` are written last, atomically, by `write_split_lists` / `write_conditions`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from depth_fusion_ros import ms2
from depth_fusion_ros.fileio import atomic_write_text

# Speed over size: Huffman-only deflate with the SUB row filter writes noisy camera frames ~35 %
# faster than OpenCV's default (adaptive filters) for ~5 % more bytes.
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
PARTIAL_SUFFIX = ".partial"
JOURNAL = "frames.journal"  # `<frame> <thr_ns> <rgb_ns>` per finished frame, partial folder only
MAX_DEPTH_PNG_M = 65535 / ms2.DEPTH_SCALE  # 255.996 m: the largest depth a uint16 PNG holds


def depth_to_png(depth_m: np.ndarray) -> np.ndarray:
    """[H, W] metres (0 / NaN / negative = none) -> the MS2 uint16 array (metres * 256, rounded).

    Depths beyond what uint16 holds (> 255.99 m) become 0 (no measurement) rather than wrapping.
    """
    depth = np.nan_to_num(np.asarray(depth_m, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    scaled = np.round(depth * ms2.DEPTH_SCALE)
    return np.where((scaled > 0) & (scaled <= 65535), scaled, 0).astype(np.uint16)


def format_stamp_line(frame: str, stamp_ns: int) -> str:
    """One `<frame> <seconds>` line with all nine decimals (`ms2.read_stamp_file` parses it)."""
    stamp_ns = int(stamp_ns)
    sign = "-" if stamp_ns < 0 else ""
    whole, frac = divmod(abs(stamp_ns), 1_000_000_000)
    return f"{frame} {sign}{whole}.{frac:09d}\n"


def write_png(path: Path, image: np.ndarray) -> None:
    """cv2.imwrite with the fast PNG settings; OSError naming the path when it fails."""
    if not cv2.imwrite(str(path), image, PNG_FAST):
        raise OSError(f"could not write {path} (disk full or no permission?)")


class SequenceWriter:
    """Writes one MS2 sequence under `root` atomically (see the module docstring).

    Args:
        root: dataset root.
        seq: sequence name (a folder name: no path separators).
        resume: keep the frames of an earlier interrupted writer's partial folders.
    """

    def __init__(self, root: str | Path, seq: str, *, resume: bool = False) -> None:
        if not seq or "/" in seq or seq.startswith(".") or seq.endswith(PARTIAL_SUFFIX):
            raise ValueError(f"sequence name {seq!r} is not a usable folder name")
        self.root, self.seq = Path(root), seq
        self.sync_tmp = self.root / "sync_data" / f"{seq}{PARTIAL_SUFFIX}"
        self.depth_tmp = self.root / "proj_depth" / f"{seq}{PARTIAL_SUFFIX}"
        self.stamps: dict[str, dict[str, int]] = {}  # frame -> {"thr": ns, "rgb": ns}
        if resume and (self.sync_tmp / JOURNAL).is_file() and self.depth_tmp.is_dir():
            self.stamps = _read_journal(self.sync_tmp / JOURNAL)
        else:
            self.abort()
        for view in ms2.VIEWS:
            (self.sync_tmp / view / "img_left").mkdir(parents=True, exist_ok=True)
            (self.depth_tmp / view / "depth_filtered").mkdir(parents=True, exist_ok=True)
        self._journal = open(self.sync_tmp / JOURNAL, "a")  # noqa: SIM115 - closed by commit/close

    @property
    def frames(self) -> list[str]:
        """Frames written so far (including those kept from an interrupted run), sorted."""
        return sorted(self.stamps)

    def has_frame(self, frame: str) -> bool:
        return frame in self.stamps

    def write_calib(self, calib: dict[str, np.ndarray]) -> None:
        """`calib.npy`: the MS2 keys (K_*L 3x3, R_* 3x3, T_* (3,) millimetres)."""
        np.save(self.sync_tmp / "calib.npy", calib, allow_pickle=True)

    def write_text(self, name: str, text: str) -> None:
        """An extra file in `sync_data/<seq>/` (e.g. a converter's provenance record)."""
        (self.sync_tmp / name).write_text(text)

    def append_text(self, name: str, line: str) -> None:
        """Append a per-frame line (first token = the frame name) to an extra file in
        `sync_data/<seq>/`; `commit` keeps the last line of each written frame, in frame order,
        so lines of frames cut off by an interruption never survive. `name` ends in .csv (commit
        finds the files of a resumed writer by that)."""
        if not name.endswith(".csv"):
            raise ValueError(f"per-frame file {name!r} must end in .csv")
        with open(self.sync_tmp / name, "a") as stream:
            stream.write(line)

    def write_frame(self, frame: str, *, thermal: np.ndarray, rgb: np.ndarray,
                    depth: dict[str, np.ndarray], stamps_ns: dict[str, int],
                    velocity_mps: np.ndarray | None = None) -> None:
        """One frame of both cameras.

        Args:
            frame: "000000", ... (shared by every modality).
            thermal: [H, W] uint16 counts (uint8 is written as is; the reader widens it).
            rgb: [H, W, 3] uint8 in RGB order (written as BGR, the way cv2 and MS2 store it).
            depth: {"thr": ..., "rgb": ...}, each [H, W] uint16 already metres * 256, or float
                metres (encoded with `depth_to_png`).
            stamps_ns: {"thr": ns, "rgb": ns} header stamps of the two images.
            velocity_mps: (3,) vehicle velocity for the GNSS/IMU record, or None for none.
        """
        name = f"{frame}.png"
        write_png(self.sync_tmp / "rgb" / "img_left" / name, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        write_png(self.sync_tmp / "thr" / "img_left" / name, thermal)
        for view in ms2.VIEWS:
            png = depth[view] if depth[view].dtype == np.uint16 else depth_to_png(depth[view])
            write_png(self.depth_tmp / view / "depth_filtered" / name, png)
        if velocity_mps is not None:
            gps = self.sync_tmp / "gps_imu" / "data"
            gps.mkdir(parents=True, exist_ok=True)
            (gps / f"{frame}.txt").write_text(ms2.format_gps_imu(velocity_mps))
        self._journal.write(f"{frame} {int(stamps_ns['thr'])} {int(stamps_ns['rgb'])}\n")
        self._journal.flush()  # a frame counts as written only once its line is in the journal
        self.stamps[frame] = {v: int(stamps_ns[v]) for v in ms2.VIEWS}

    def commit(self) -> Path:
        """Write the stamp files, move both folders into place; returns `sync_data/<seq>`."""
        if not self.stamps:
            raise ValueError(f"sequence {self.seq!r} has no frames; nothing to commit")
        self._journal.close()
        for view in ms2.VIEWS:
            lines = [format_stamp_line(f, self.stamps[f][view]) for f in self.frames]
            (self.sync_tmp / view / "img_left_timestamp.txt").write_text("".join(lines))
        for name in {p.name for p in self.sync_tmp.glob("*.csv")}:
            lines = {ln.split(" ", 1)[0]: ln for ln in (self.sync_tmp / name).read_text()
                     .splitlines(keepends=True) if ln.endswith("\n")}
            (self.sync_tmp / name).write_text("".join(lines[f] for f in self.frames if f in lines))
        (self.sync_tmp / JOURNAL).unlink()
        # An older sequence of this name (--force) leaves view first, by one atomic rename of
        # its images (they make a sequence visible): a crash from here on never shows its
        # images with the new depth maps; the sequence is then missing and a rerun converts it.
        images = self.sync_tmp.with_name(self.seq)  # sync_data/<seq>
        replaced = self.sync_tmp.with_name(f".{self.seq}.replaced")
        shutil.rmtree(replaced, ignore_errors=True)
        if images.exists():
            images.rename(replaced)
            _fsync_dir(images.parent)
        for tmp in (self.depth_tmp, self.sync_tmp):  # images last: they make the frames visible
            final = tmp.with_name(self.seq)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        _fsync_dir(images.parent)
        shutil.rmtree(replaced, ignore_errors=True)
        return images

    def close(self) -> None:
        """Stop writing but keep the partial folders (an interrupted run resumes from them)."""
        if not self._journal.closed:
            self._journal.close()

    def abort(self) -> None:
        """Remove the partial folders."""
        if hasattr(self, "_journal"):
            self.close()
        for folder in (self.sync_tmp, self.depth_tmp):
            shutil.rmtree(folder, ignore_errors=True)


def _read_journal(path: Path) -> dict[str, dict[str, int]]:
    stamps = {}
    for line in path.read_text().splitlines():
        tokens = line.split()
        if len(tokens) == 3 and all(t.lstrip("-").isdigit() for t in tokens[1:]):
            stamps[tokens[0]] = {"thr": int(tokens[1]), "rgb": int(tokens[2])}
    return stamps  # a torn last line (killed mid-write) is simply not a finished frame


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        return []
    names = [line.strip() for line in path.read_text().splitlines()]
    return [n for n in names if n and not n.startswith("#")]


def write_split_lists(root: str | Path, assignment: dict[str, list[str]], *,
                      merge: bool = False) -> None:
    """Write every split list (`ms2.SPLITS`, empty ones too) atomically.

    Args:
        assignment: split -> sequence names.
        merge: keep the sequences already listed under `root`; a sequence named in `assignment`
            is moved to its new split (a sequence belongs to one split only).
    """
    unknown = [s for s in assignment if s not in ms2.SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; expected {ms2.SPLITS}")
    moved = {seq for names in assignment.values() for seq in names}
    for split in ms2.SPLITS:
        path = ms2.split_list_path(root, split)
        kept = [s for s in _read_list(path) if s not in moved] if merge else []
        names = kept + [s for s in assignment.get(split, []) if s not in kept]
        atomic_write_text(path, "".join(f"{n}\n" for n in names))


def write_conditions(root: str | Path, conditions: dict[str, str], *, merge: bool = False) -> None:
    """`conditions.txt` (`<seq> <day|night|rain>` lines) atomically; `merge` keeps other lines."""
    bad = {s: c for s, c in conditions.items() if c not in ms2.CONDITIONS}
    if bad:
        raise ValueError(f"conditions {bad} invalid: choose from {ms2.CONDITIONS}")
    path = ms2.conditions_path(root)
    lines = []
    if merge and path.is_file():
        lines = [ln for ln in path.read_text().splitlines()
                 if ln.split() and ln.split()[0] not in conditions]
    lines += [f"{seq} {cond}" for seq, cond in conditions.items()]
    atomic_write_text(path, "".join(f"{ln}\n" for ln in lines))
