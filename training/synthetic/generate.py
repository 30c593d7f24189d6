"""Generate a whole synthetic MS2-format dataset (all sequences, then the split lists)."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

from tqdm import tqdm

from .render import SequenceSpec
from .writer import write_lists, write_sequence


def _worker(args: tuple[str, SequenceSpec]) -> int:
    root, spec = args
    write_sequence(Path(root), spec)
    return spec.frames


def generate_dataset(out: str | Path, specs: list[SequenceSpec], workers: int = 1,
                     meta: dict | None = None, overwrite: bool = False) -> Path:
    """Write `specs` under `out` in the MS2 layout; the split lists are written last.

    Args:
        out: dataset root; must be absent or empty unless `overwrite`.
        specs: from `plan_sequences`.
        workers: processes rendering sequences in parallel (output is identical for any value).
        meta: extra fields for `synthetic.json` (e.g. the command-line arguments).
    Returns:
        the dataset root.
    """
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {root} exists and is not empty; choose a new directory "
                              f"or pass --overwrite to replace the generated files in it")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train", "val", "test_day", "test_night", "test_rainy"):
        (root / f"{name}_list.txt").unlink(missing_ok=True)  # marks the dataset incomplete
    total = sum(s.frames for s in specs)
    with tqdm(total=total, unit="frame", desc=f"synthetic MS2 -> {root}") as bar:
        if workers <= 1:
            for spec in specs:
                bar.set_postfix_str(spec.name)
                write_sequence(root, spec, progress=bar.update)
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for frames in pool.imap_unordered(_worker, [(str(root), s) for s in specs]):
                    bar.update(frames)
    write_lists(root, specs, meta or {})
    return root
