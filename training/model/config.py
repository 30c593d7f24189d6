"""`ModelConfig`: the typed, YAML-loadable description of one DMCF-SIDE network.

The variant names map to Swin Transformer sizes (Liu et al., ICCV 2021); `tiny` is a small
stand-in for tests and CPU demos. `to_dict()` writes the *resolved* values (e.g. the variant's
default drop-path rate), so a saved config rebuilds exactly the same network.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

MODALITIES = ("fusion", "thermal_only", "rgb_only")
VIEWS = ("thermal", "rgb")


@dataclass(frozen=True)
class SwinSpec:
    """Swin size: patch-embedding width C (stages have C, 2C, 4C, 8C channels), blocks and heads."""

    embed_dim: int
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    drop_path_rate: float  # default for this size when the config leaves it unset


# Sizes from the official Swin configs; drop-path defaults follow Swin's detection/segmentation
# fine-tuning settings (0.2 for T, 0.3 for S/B/L), tiny trains without it.
SWIN_SPECS: dict[str, SwinSpec] = {
    "tiny": SwinSpec(16, (1, 1, 2, 1), (1, 2, 4, 8), 0.0),
    "swin_t": SwinSpec(96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2),
    "swin_s": SwinSpec(96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3),
    "swin_b": SwinSpec(128, (2, 2, 18, 2), (4, 8, 16, 32), 0.3),
    "swin_l": SwinSpec(192, (2, 2, 18, 2), (6, 12, 24, 48), 0.3),
}


def check_homography(values) -> tuple[float, ...]:
    """Nine finite numbers of an invertible, orientation-keeping 3x3 H; raises ValueError.
    (Plain Python: building a model must not need numpy, see bench/gpu_check.py.)"""
    try:
        flat = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        flat = ()
    if len(flat) != 9 or not all(math.isfinite(v) for v in flat):
        raise ValueError(f"model.view_homography must be 9 finite numbers (a row-major 3x3), "
                         f"got {list(values)}")
    a, b, c, d, e, f, g, h, i = flat
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if not det > 1e-9:
        raise ValueError(f"model.view_homography {list(flat)} is singular or mirrors the image "
                         "(determinant <= 0): it cannot map one camera's view onto the other's")
    return flat


@dataclass
class ModelConfig:
    """Everything needed to build a `DMCFSide` network (see DESIGN.md section 3).

    variant: Swin size, one of `SWIN_SPECS`.
    height, width: network input size in pixels (thermal resolution; RGB is resized to it).
    max_depth_m: depth = sigmoid * max_depth_m.
    modality: "fusion" (DMCF-SIDE) or a single-modality baseline "thermal_only" / "rgb_only".
    shared_encoder / shared_decoder / image_concat: the paper's ablation switches.
    shared_dmcf: (fusion) one set of DMCF weights (ConvBlock and attention layers) serves both
        modalities, as in the paper and GMFlow; false gives each modality its own copy, so that
        with `shared_encoder: false`, `shared_decoder: false` and `detach_cross_modal` a view's
        weights are trained by its own loss only and it reads the other camera as an input.
    window_size: Swin window (7 in the ImageNet checkpoints; a different value resizes the
        relative-position tables when pretrained weights are loaded).
    attn_splits: GMFlow-style K per scale (1/4, 1/8, 1/16, 1/32): the map is cut into K x K windows.
    drop_path_rate: stochastic depth of the Swin encoder; None -> the variant's default.
    ffn_expansion: hidden width factor of the Cross-Relation feed-forward (GMFlow uses 4).
    attn_pairs_per_block: 1 = each Cross-Relation block is (self-attn, cross-attn) and the
        second block uses shifted windows (4 attention layers per DMCF); 2 = each block is
        (W-SA, W-CA, SW-SA, SW-CA), the other reading of the paper's text (8 per DMCF).
    zero_init_attention: start every DMCF attention layer as the identity (zero gain on its
        last LayerNorm), so fusion grows from the single-modality solution.
    gated_cross_attention: scale each cross-attention message by a gate computed from the token
        and the message (sigmoid of a linear layer), so a token can take less from an
        uninformative other modality (GMFlow's message always has LayerNorm size).
    modality_batchnorm: in fusion, the DMCF ConvBlocks keep one BatchNorm per modality instead
        of one over the mixed [thermal; rgb] batch (see `dmcf.ModalityBatchNorm2d`).
    detach_cross_modal: the cross-attention treats the other modality's tokens as constants in
        training, so the RGB view's loss cannot reshape the thermal features and vice versa.
    image_gated_cross_attention: scale each cross-attention message by a per-image, per-channel
        gate from both modalities' mean tokens, so a whole uninformative frame can be shut out.
    align_views: (fusion) resample the other modality's tokens onto this modality's rays before
        every cross-attention, with the rig's homography at infinite depth (`alignment`), so a
        window compares the same part of the scene in both cameras.
    align_inputs: (fusion) instead, resample the input images with that homography: each view
        is predicted from its own image and the other image on its rays (`alignment`); twice
        the encoder and DMCF work.
    view_homography: that homography, 9 numbers row-major, thermal -> RGB normalised image
        coordinates; `training.train` fills it in from the data set's calibration when
        align_views or align_inputs is on and it is unset (and the run's config.yaml keeps it).
    uncertainty_head: also predict, per view and pixel, sigma = the expected |log(depth/true)|
        (a Laplacian scale over log-depth); exported as confidence = exp(-sigma).
    use_checkpointing: recompute Swin blocks in backward (saves memory when training large sizes).
    """

    variant: str = "tiny"
    height: int = 256
    width: int = 640
    max_depth_m: float = 80.0
    modality: str = "fusion"
    shared_encoder: bool = True
    shared_decoder: bool = True
    shared_dmcf: bool = True
    image_concat: bool = True
    window_size: int = 7
    attn_splits: tuple[int, int, int, int] = (4, 4, 2, 2)
    drop_path_rate: float | None = None
    mlp_ratio: float = 4.0
    ffn_expansion: int = 4
    attn_pairs_per_block: int = 1
    zero_init_attention: bool = False
    gated_cross_attention: bool = False
    modality_batchnorm: bool = False
    detach_cross_modal: bool = False
    image_gated_cross_attention: bool = False
    align_views: bool = False
    align_inputs: bool = False
    view_homography: tuple[float, ...] | None = None
    uncertainty_head: bool = False
    use_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.variant not in SWIN_SPECS:
            raise ValueError(
                f"model.variant={self.variant!r} is unknown; choose one of {sorted(SWIN_SPECS)}"
            )
        if self.modality not in MODALITIES:
            raise ValueError(f"model.modality={self.modality!r} is unknown; choose one of {MODALITIES}")
        self.attn_splits = tuple(int(k) for k in self.attn_splits)
        if len(self.attn_splits) != 4 or min(self.attn_splits) < 1:
            raise ValueError(
                f"model.attn_splits={self.attn_splits} must be 4 positive integers (1/4..1/32)"
            )
        if self.attn_pairs_per_block not in (1, 2):
            raise ValueError(f"model.attn_pairs_per_block={self.attn_pairs_per_block} must be "
                             "1 (SA+CA per block) or 2 (W-SA, W-CA, SW-SA, SW-CA per block)")
        if self.window_size < 1 or self.max_depth_m <= 0:
            raise ValueError("model.window_size must be >= 1 and model.max_depth_m > 0")
        if self.drop_path_rate is None:
            self.drop_path_rate = SWIN_SPECS[self.variant].drop_path_rate
        if self.view_homography is not None:
            self.view_homography = check_homography(self.view_homography)
        for key in ("align_views", "align_inputs"):
            if getattr(self, key) and self.modality != "fusion":
                raise ValueError(f"model.{key} needs model.modality=fusion (got "
                                 f"{self.modality!r}): a single-modality model has no other view")
        if not self.shared_dmcf and self.modality != "fusion":
            raise ValueError(f"model.shared_dmcf=false needs model.modality=fusion (got "
                             f"{self.modality!r}): a single-modality model has no DMCF attention")
        if self.align_views and self.align_inputs:
            raise ValueError("model.align_views and model.align_inputs are two ways to align "
                             "the cameras; choose one")

    @property
    def spec(self) -> SwinSpec:
        return SWIN_SPECS[self.variant]

    @property
    def output_views(self) -> tuple[str, ...]:
        """Views this network predicts: both for fusion, its own one for a baseline."""
        return {"fusion": VIEWS, "thermal_only": ("thermal",), "rgb_only": ("rgb",)}[self.modality]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ModelConfig:
        """Build from a YAML mapping (the `model:` block of a run config); unknown keys raise."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"model config: unknown key(s) {unknown}; valid keys are {sorted(names)}"
            )
        if "attn_splits" in d:
            d["attn_splits"] = tuple(d["attn_splits"])
        if d.get("view_homography") is not None:
            d["view_homography"] = tuple(d["view_homography"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain, resolved dict (YAML/JSON friendly: tuples become lists)."""
        d = dataclasses.asdict(self)
        d["attn_splits"] = list(self.attn_splits)
        if self.view_homography is not None:
            d["view_homography"] = list(self.view_homography)
        return d
