"""PyTorch dataset over the MS2 layout (real MS2 or `python -m training.synthetic` output).

Inputs go through the very same numpy preprocessing as the ROS node
(`depth_fusion_ros.preprocess`), so training and deployment see identical tensors. Ground truth
is the `depth_filtered` projected LiDAR of each camera (metres, 0 = none): resized to the network
size with nearest neighbour for training (never interpolating across holes), full resolution for
evaluation (the benchmark upsamples the prediction to the GT instead).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from depth_fusion_ros import ms2
from depth_fusion_ros.preprocess import (
    MODALITY_CHANNELS,
    missing_input,
    preprocess_rgb,
    preprocess_thermal,
)

from .augment import AugmentConfig, augment

DROPOUT_MODES = ("replace", "duplicate")  # data.modality_dropout_mode (training/config.py)


class MS2Dataset(Dataset):
    """Frames of an MS2 split as dicts of tensors.

    Item keys: thermal [1,h,w] f32, rgb [3,h,w] f32 (normalised network inputs), gt_thermal and
    gt_rgb [1,h,w] f32 metres if `train` else full resolution [1,Hg,Wg] (thermal 256x640, RGB
    384x1224), has_thermal / has_rgb bool tensors (False when modality dropout blanked that
    input: supervise only present views), seq, frame (str). With modality_dropout_mode
    "duplicate" the drawn sample keeps both cameras and says which one to blank in
    drop_thermal / drop_rgb bool tensors; `add_blanked_copies` then appends the blanked copy to
    the batch.

    Randomness (augmentation, dropout) is drawn from torch's RNG, so it is reproducible under
    `torch.manual_seed` and distinct per DataLoader worker (torch seeds each worker).

    The DMCF paper's data protocol as options: `conditions` keeps only sequences of those
    conditions (e.g. ("day", "night"): no rain; conditions come from `ms2.read_conditions`), and
    `min_speed_mps` drops frames where the vehicle stands still by the speed in each frame's
    GNSS/IMU record (MS2's static-frame filter uses 1 m/s). `skipped` counts what each dropped.
    """

    def __init__(self, root: str | Path, split: str, *, height: int = 256, width: int = 640,
                 train: bool = False, step: int = 1, max_depth_m: float = 80.0,
                 augment: AugmentConfig | None = None, modality_dropout_p: float = 0.0,
                 modality_dropout_of: tuple[str, ...] = ("thermal", "rgb"),
                 modality_dropout_mode: str = "replace",
                 conditions: tuple[str, ...] | None = None, min_speed_mps: float = 0.0):
        if step < 1:
            raise ValueError(f"MS2Dataset step must be >= 1, got {step}")
        if not 0.0 <= modality_dropout_p <= 1.0:
            raise ValueError(f"modality_dropout_p must be in [0, 1], got {modality_dropout_p}")
        modality_dropout_of = tuple(modality_dropout_of)
        if not modality_dropout_of or any(m not in MODALITY_CHANNELS for m in modality_dropout_of):
            raise ValueError(f"modality_dropout_of must name 'thermal' and/or 'rgb', got "
                             f"{modality_dropout_of}")
        self.modality_dropout_of = modality_dropout_of
        if modality_dropout_mode not in DROPOUT_MODES:
            raise ValueError(f"modality_dropout_mode must be one of {DROPOUT_MODES}, got "
                             f"{modality_dropout_mode!r}")
        self.modality_dropout_mode = modality_dropout_mode
        bad = [c for c in conditions or () if c not in ms2.CONDITIONS]
        if bad or (conditions is not None and not conditions):
            raise ValueError(f"conditions {conditions} invalid: choose from {ms2.CONDITIONS}")
        self.root = Path(root)
        self.split, self.out_hw, self.train = split, (height, width), train
        self.max_depth_m = max_depth_m
        self.augment_cfg = augment if train else None
        self.modality_dropout_p = modality_dropout_p if train else 0.0
        self.samples: list[tuple[str, str]] = []
        self.list_file: dict[str, Path] = {}
        self.skipped = {"condition": 0, "static": 0}
        known = ms2.read_conditions(self.root) if conditions else {}
        splits = ms2.TEST_SPLITS if split == "test" else (split,)
        for name in splits:
            if split == "test" and not ms2.split_list_path(self.root, name).is_file():
                continue
            for seq in ms2.read_split(self.root, name):
                self.list_file[seq] = ms2.split_list_path(self.root, name)
                frames = self._guard(seq, ms2.list_frames, self.root, seq)[::step]
                if conditions and self._condition(seq, known) not in conditions:
                    self.skipped["condition"] += len(frames)
                    continue
                if min_speed_mps > 0:
                    moving = [f for f in frames if self._guard(
                        seq, ms2.read_speed_mps, self.root, seq, f) >= min_speed_mps]
                    self.skipped["static"] += len(frames) - len(moving)
                    frames = moving
                self.samples += [(seq, f) for f in frames]
        if not self.samples:
            raise ValueError(f"MS2 split {split!r} under {self.root} has no frames (empty list "
                             f"file {ms2.split_list_path(self.root, split)}? frames dropped by "
                             f"the data protocol: {self.skipped})")

    def _condition(self, seq: str, known: dict[str, str]) -> str:
        if seq not in known:
            raise ms2.MS2FormatError(
                f"sequence {seq!r} (listed in {self.list_file[seq]}) has no known condition, "
                f"needed by data.conditions: add a line '{seq} <{'|'.join(ms2.CONDITIONS)}>' to "
                f"{ms2.conditions_path(self.root)} or drop data.conditions")
        return known[seq]

    def __len__(self) -> int:
        return len(self.samples)

    def _guard(self, seq: str, fn, *args):
        """Call an ms2 reader, adding the list file the sequence came from to any error."""
        try:
            return fn(*args)
        except ms2.MS2FormatError as exc:
            raise ms2.MS2FormatError(f"{exc} (sequence {seq!r} listed in "
                                     f"{self.list_file.get(seq, '?')})") from exc

    def load_raw(self, index: int) -> dict[str, np.ndarray]:
        """Raw arrays: thermal [256,640] u16, rgb [384,1224,3] u8, gt_* [Hg,Wg] f32 metres."""
        seq, frame = self.samples[index]
        gt = {v: self._guard(seq, ms2.read_depth, self.root, seq, v, frame) for v in ms2.VIEWS}
        for depth_m in gt.values():
            depth_m[depth_m > self.max_depth_m] = 0.0  # beyond the trained range = no label
        return {"thermal": self._guard(seq, ms2.read_thermal, self.root, seq, frame),
                "rgb": self._guard(seq, ms2.read_rgb, self.root, seq, frame),
                "gt_thermal": gt["thr"], "gt_rgb": gt["rgb"]}

    def __getitem__(self, index: int) -> dict:
        seq, frame = self.samples[index]
        sample = self.load_raw(index)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        if self.augment_cfg is not None:
            sample = augment(sample, self.augment_cfg, rng)
        thermal = torch.from_numpy(preprocess_thermal(sample["thermal"], self.out_hw))
        rgb = torch.from_numpy(preprocess_rgb(sample["rgb"], self.out_hw))
        has = {"thermal": True, "rgb": True}
        item = {"thermal": thermal, "rgb": rgb}
        duplicate = self.modality_dropout_p > 0 and self.modality_dropout_mode == "duplicate"
        drop = {"thermal": False, "rgb": False}
        if self.modality_dropout_p > 0 and rng.random() < self.modality_dropout_p:
            of = self.modality_dropout_of  # one of them, with equal chance
            blank = of[0] if len(of) == 1 or rng.random() < 0.5 else of[1]
            if duplicate:
                drop[blank] = True  # add_blanked_copies appends the blanked copy
            else:
                has[blank] = False  # replaced exactly as the node replaces a missing camera
                item[blank] = torch.from_numpy(missing_input(blank, self.out_hw))
        for key in ("gt_thermal", "gt_rgb"):
            depth_m = sample[key]
            if self.train and depth_m.shape != self.out_hw:
                depth_m = cv2.resize(depth_m, self.out_hw[::-1], interpolation=cv2.INTER_NEAREST)
            item[key] = torch.from_numpy(np.ascontiguousarray(depth_m, np.float32))[None]
        item["has_thermal"] = torch.tensor(has["thermal"])
        item["has_rgb"] = torch.tensor(has["rgb"])
        if duplicate:
            item["drop_thermal"] = torch.tensor(drop["thermal"])
            item["drop_rgb"] = torch.tensor(drop["rgb"])
        item["seq"], item["frame"] = seq, frame
        return item


def add_blanked_copies(batch: dict) -> dict:
    """A collated batch of modality_dropout_mode "duplicate" with, after its own samples, one copy
    of every sample flagged drop_<camera> (the thermal-blanked copies first, then the RGB ones):
    that camera's input replaced by `missing_input` (as the node replaces a missing camera) and
    has_<camera> False, so only the surviving view is supervised on the copy. Batches without
    drop flags, or with none set, come back unchanged (minus the flags).

    Args:
        batch: collate() output: tensors [B, ...], "seq" and "frame" lists, drop_thermal /
            drop_rgb [B] bool.
    Returns:
        The same keys with B + (number of flagged samples) entries, without drop_* keys, and
        "blanked" [B + n] bool (True on the copies) when the batch had drop flags, so the loss
        can tell the copies from the whole samples (losses.LossConfig.blanked_weight).
    """
    samples = {k: v for k, v in batch.items() if not k.startswith("drop_")}
    flags = [batch[k] for k in batch if k.startswith("drop_")]
    if flags:
        samples["blanked"] = torch.zeros(len(flags[0]), dtype=torch.bool)
    out = samples
    for modality in MODALITY_CHANNELS:
        flag = batch.get(f"drop_{modality}")
        if flag is None or not bool(flag.any()):
            continue
        index = torch.nonzero(flag, as_tuple=False).flatten()  # [n]
        copy = {k: (v[index] if torch.is_tensor(v) else [v[int(i)] for i in index])
                for k, v in samples.items()}
        blank = torch.from_numpy(missing_input(modality, tuple(copy[modality].shape[-2:])))
        copy[modality] = blank.expand_as(copy[modality]).clone()
        copy[f"has_{modality}"] = torch.zeros_like(copy[f"has_{modality}"])
        copy["blanked"] = torch.ones_like(copy["blanked"])
        out = {k: (torch.cat([out[k], copy[k]]) if torch.is_tensor(out[k]) else out[k] + copy[k])
               for k in out}
    return out


def collate(batch: list[dict]) -> dict:
    """Batch items: tensors stacked ([B, ...]), seq/frame as lists of str. Evaluation GT stacks
    too because each view's full-resolution GT has one fixed size."""
    return default_collate(batch)
