"""Plumbing of a training run: resumable data order, per-item seeding, logs, signals, DDP set-up.

Kept out of train.py so the training logic reads on its own.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

LOG = logging.getLogger("training")


class EpochBatchSampler:
    """Endless batches of (epoch, index) keys whose order depends only on (seed, epoch).

    Each epoch's order is DistributedSampler's (shuffle with seed + epoch, sharded by rank, last
    partial batch dropped), so one GPU and G GPUs see the same scheme, and a run resumed at global
    step s starts at epoch s // steps_per_epoch, batch s % steps_per_epoch: exactly where the
    interrupted run was.
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int, rank: int = 0,
                 world: int = 1, start_step: int = 0) -> None:
        self.sampler = DistributedSampler(range(num_items), num_replicas=world, rank=rank,
                                          shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.steps_per_epoch = len(self.sampler) // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{num_items} training frames are fewer than one batch of "
                             f"{batch_size} per rank x {world} ranks: lower optim.batch_size "
                             "or data.step, or add training sequences")
        self.start_step = start_step

    def epoch_order(self, epoch: int) -> list[int]:
        """This rank's frame indices for `epoch`."""
        self.sampler.set_epoch(epoch)
        return list(iter(self.sampler))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, batch = divmod(self.start_step, self.steps_per_epoch)
        while True:
            order = self.epoch_order(epoch)
            for b in range(batch, self.steps_per_epoch):
                chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
                yield [(epoch, index) for index in chunk]
            epoch, batch = epoch + 1, 0


@contextlib.contextmanager
def forked_rng(seed: int):
    """Seed python/numpy/torch RNGs for a block, then restore the caller's states."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededItems(Dataset):
    """Wraps a dataset so item (epoch, index) draws its augmentation from seed(seed, epoch, index).

    This makes augmentation independent of worker count and of where a run was resumed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        item_seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        with forked_rng(item_seed):
            return self.dataset[index]


class RunLog:
    """Scalars to scalars.csv (always) and TensorBoard (if installed); a no-op off rank 0."""

    def __init__(self, run_dir: Path, *, enabled: bool = True, resume_step: int = 0) -> None:
        self.enabled, self.path, self.tb = enabled, run_dir / "scalars.csv", None
        if not enabled:
            return
        if resume_step and self.path.exists():
            self._truncate_after(resume_step)
        new = not self.path.exists()
        self.handle = open(self.path, "a", newline="")
        self.writer = csv.writer(self.handle)
        if new:
            self.writer.writerow(["step", "tag", "value", "wall_time"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step or None)
        except ImportError:  # tensorboard is optional; the CSV has everything
            LOG.info("tensorboard not installed: scalars go to %s only", self.path)

    def _truncate_after(self, step: int) -> None:
        """Drop rows an interrupted run logged after the checkpoint we resume from."""
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with open(self.path, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        now = time.time()
        for tag, value in values.items():
            self.writer.writerow([step, tag, f"{float(value):.6g}", f"{now:.3f}"])
            if self.tb is not None:
                self.tb.add_scalar(tag, float(value), step)
        self.handle.flush()

    def close(self) -> None:
        if self.enabled:
            self.handle.close()
            if self.tb is not None:
                self.tb.close()


class StopFlag:
    """SIGINT / SIGTERM ask the loop to stop after the current step (so last.pt is consistent);
    a second SIGINT raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name
        LOG.warning("%s received: stopping after this step and writing last.pt", self.reason)

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
                self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises torch.distributed when torchrun set WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return torch.distributed.get_rank(), world, device


class _TqdmHandler(logging.Handler):
    """Console log lines that do not break the tqdm progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


def setup_logging(log_file: Path | None) -> None:
    """'training' logger to the console and (rank 0) a readable log file in the run folder."""
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    for handler in list(LOG.handlers):
        LOG.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(fmt)
    LOG.addHandler(console)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        LOG.addHandler(file_handler)
