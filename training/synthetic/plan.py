"""Which synthetic sequences to generate: names, splits, kinds and per-sequence seeds."""
from __future__ import annotations

import numpy as np

from .render import SequenceSpec
from .sensors import KINDS
from .thermal import DEFAULT_ATTENUATION_M

DEFAULT_COUNTS = {"train": 6, "val": 1, "test_day": 1, "test_night": 1, "test_rainy": 0}
TEST_KIND = {"test_day": "day", "test_night": "night", "test_rainy": "rain"}


def split_counts(sequences: int | None, given: dict[str, int | None]) -> dict[str, int]:
    """Sequences per split.

    No option: DEFAULT_COUNTS (6 train, 1 val, 1 test_day, 1 test_night). Only `--sequences N`:
    1 val (N >= 2), 1 test_day (N >= 3), 1 test_night (N >= 4), the rest train. Split counts
    given: those, the others from DEFAULT_COUNTS, except train which absorbs `--sequences` if given.
    """
    if all(v is None for v in given.values()):
        if sequences is None:
            return dict(DEFAULT_COUNTS)
        counts = {"val": int(sequences >= 2), "test_day": int(sequences >= 3),
                  "test_night": int(sequences >= 4), "test_rainy": 0}
        return {"train": sequences - sum(counts.values()), **counts}
    counts = {k: (DEFAULT_COUNTS[k] if v is None else v) for k, v in given.items()}
    if sequences is not None and given.get("train") is None:
        counts["train"] = sequences - sum(v for k, v in counts.items() if k != "train")
    if any(v < 0 for v in counts.values()):
        raise ValueError(f"negative sequence count in {counts}: --sequences {sequences} is "
                         f"smaller than the split counts given")
    if sequences is not None and sum(counts.values()) != sequences:
        raise ValueError(f"--sequences {sequences} does not match the split counts {counts} "
                         f"(sum {sum(counts.values())}); give one or make them agree")
    return counts


def plan_sequences(counts: dict[str, int], frames: int, seed: int,
                   kinds: tuple[str, ...] = KINDS,
                   thermal_attenuation_m: float = DEFAULT_ATTENUATION_M,
                   aligned_cameras: bool = False,
                   matched_fov: bool = False) -> list[SequenceSpec]:
    """Sequence specs; train/val cycle through `kinds` (mixed), test splits have their own kind.
    Each sequence's seed derives from (seed, index) only, so any subset renders identically."""
    if not thermal_attenuation_m > 0:
        raise ValueError(f"--thermal-attenuation-m must be > 0, got {thermal_attenuation_m}")
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"--kinds must be a comma list of {KINDS}, got {list(kinds)}")
    if frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    specs, cycle = [], 0
    for split in ("train", "val", "test_day", "test_night", "test_rainy"):
        for _ in range(counts.get(split, 0)):
            if split in TEST_KIND:
                kind = TEST_KIND[split]
            elif split == "val" and "day" in kinds:
                kind = "day"
            else:
                kind, cycle = kinds[cycle % len(kinds)], cycle + 1
            index = len(specs)
            sub_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
            specs.append(SequenceSpec(name=f"syn{index:03d}_{kind}", split=split, kind=kind,
                                      frames=frames, seed=sub_seed,
                                      thermal_attenuation_m=float(thermal_attenuation_m),
                                      aligned_cameras=bool(aligned_cameras),
                                      matched_fov=bool(matched_fov)))
    if not specs:
        raise ValueError("nothing to generate: all split counts are 0")
    return specs
