"""Synthetic MS2-format driving data: `python -m training.synthetic --out DIR ...`.

Street scenes ray-cast in numpy for an MS2-like rig (RGB 1224x384 behind the windscreen,
thermal 640x256 on the roof), with LiDAR-like sparse depth per camera, written in the MS2 layout
so that every tool that reads MS2 (the loader, `ms2_to_bag`) reads it unchanged.
"""
from .generate import generate_dataset
from .plan import plan_sequences, split_counts
from .render import SequenceRenderer, SequenceSpec

__all__ = ["SequenceRenderer", "SequenceSpec", "generate_dataset", "plan_sequences", "split_counts"]
