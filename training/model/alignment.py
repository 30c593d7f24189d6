"""Calibrated view alignment for the DMCF cross-attention (`model.align_views`).

DMCF's cross-attention compares a thermal token with the RGB tokens of the *same window*, and
both images are only resized to one network size: pixel (u, v) of one is not the same ray as
pixel (u, v) of the other when the cameras differ in place, pitch and field of view (MS2's do,
and so do the synthetic rig's: at 64x128 only 1 % of the thermal pixels see, within 1 %, the
depth the RGB pixel at the same position sees). With `align_views`, before every cross-attention
the other modality's tokens are resampled into this modality's pixel grid with the homography
at infinite depth,

    H = A_rgb^-1 K_rgb R_thr2rgb K_thr^-1 A_thr,

where A maps the network's normalised coordinates (grid_sample's, align_corners=False: -1 and +1
are the outer pixel edges) to the camera's pixel coordinates. The translation between the
cameras (parallax, tens of cm) is left to the attention window. Thermal tokens outside the RGB
field of view get zeros. H is a property of the rig: training resolves it from the data set's
calibration (`training.train`), stores it in the config (`model.view_homography`) and every
export bakes it in; a model trained with it is bound to its rig's cameras.

`model.align_inputs` applies the same homography to the input images instead: the thermal view
is predicted from the pair (thermal image, RGB image resampled onto the thermal rays) and the RGB
view from (thermal image resampled onto the RGB rays, RGB image), so the shared encoder sees
both modalities of a pair at one scale (an object is 1.3-1.7x larger in the RGB image of the
MS2-like rig than in the thermal one, which token resampling cannot undo). It costs one more
pass of the encoder and the DMCF modules per view.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .config import check_homography


def pixel_from_normalised(width: int, height: int):
    """[3, 3] A with pixel = A @ (x, y, 1) for grid_sample's normalised x, y (align_corners
    False): x = -1 is the left edge of pixel 0, u = (x + 1) / 2 * width - 0.5."""
    import numpy as np  # here, not at import: building a model needs torch only

    return np.array([[width / 2.0, 0.0, width / 2.0 - 0.5],
                     [0.0, height / 2.0, height / 2.0 - 0.5],
                     [0.0, 0.0, 1.0]])


def view_homography(K_thr, thr_size: tuple[int, int], K_rgb, rgb_size: tuple[int, int],
                    R_thr2rgb):
    """Homography (at infinite depth) from thermal to RGB normalised image coordinates.

    Args:
        K_thr, K_rgb: [3, 3] intrinsics at the camera image sizes.
        thr_size, rgb_size: (width, height) of the camera images.
        R_thr2rgb: [3, 3] rotation of thermal-camera coordinates into RGB-camera coordinates.
    Returns:
        [3, 3] float64 numpy H, scaled so that H[2, 2] = 1.
    """
    import numpy as np

    h = (np.linalg.inv(pixel_from_normalised(*rgb_size)) @ np.asarray(K_rgb, np.float64)
         @ np.asarray(R_thr2rgb, np.float64) @ np.linalg.inv(np.asarray(K_thr, np.float64))
         @ pixel_from_normalised(*thr_size))
    return h / h[2, 2]


def sampling_grid(h_matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Where each pixel centre of a height x width map lands under H: [1, height, width, 2]
    normalised (x, y), as grid_sample reads it. Built from Python sizes only, so an ONNX
    export sees a constant-shaped computation."""
    ys = (torch.arange(height, dtype=h_matrix.dtype, device=h_matrix.device) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=h_matrix.dtype, device=h_matrix.device) * 2 + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [h, w]
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1)  # [h, w, 3]
    mapped = points @ h_matrix.transpose(0, 1)  # [h, w, 3]
    return (mapped[..., :2] / mapped[..., 2:]).unsqueeze(0)  # [1, h, w, 2]


def warp_maps(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Resample [N, C, h, w] maps at `grid` ([1, h, w, 2], bilinear); zeros outside the map."""
    return nn.functional.grid_sample(maps, grid.expand(maps.shape[0], -1, -1, -1),
                                     mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_tokens(tokens: torch.Tensor, grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample [N, h*w, C] row-major tokens at `grid` ([1, h, w, 2]); zeros outside the map."""
    n, _, c = tokens.shape
    maps = tokens.transpose(1, 2).reshape(n, c, height, width)  # [N, C, h, w]
    return warp_maps(maps, grid).flatten(2).transpose(1, 2)  # [N, h*w, C]


class ViewAlignment(nn.Module):
    """Resamples a [rgb; thermal] token batch (the cross-attention's keys and values for the
    [thermal; rgb] queries) into the queries' pixel grids: the RGB half with H (thermal pixel ->
    RGB position), the thermal half with H^-1."""

    def __init__(self, homography: tuple[float, ...]) -> None:
        super().__init__()
        matrix = torch.tensor(check_homography(homography), dtype=torch.float64).view(3, 3)
        # Derived from the config (not learned): kept out of state_dict, so checkpoints of models
        # without alignment and with it have the same keys.
        self.register_buffer("thr_to_rgb", matrix.float(), persistent=False)
        self.register_buffer("rgb_to_thr", torch.linalg.inv(matrix).float(), persistent=False)

    def at(self, height: int, width: int,
           dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
        """The resampling for one map size, its grids built once (a DMCF scale calls this once
        per forward; every Cross-Relation block then reuses them): a function
        [2B, h*w, C] ordered [rgb; thermal] -> the same, each half in the other modality's
        pixel grid."""
        to_thermal_grid, to_rgb_grid = self._grids(height, width, dtype)

        def align(other: torch.Tensor) -> torch.Tensor:
            rgb, thermal = other.chunk(2, dim=0)
            return torch.cat([warp_tokens(rgb, to_thermal_grid, height, width),
                              warp_tokens(thermal, to_rgb_grid, height, width)], dim=0)

        return align

    def images(self, thermal: torch.Tensor,
               rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`model.align_inputs`: the RGB image on the thermal camera's rays and the thermal
        image on the RGB camera's rays, [B, C, H, W] each (zeros, the normalised mean, where the
        other camera does not see)."""
        to_thermal_grid, to_rgb_grid = self._grids(*thermal.shape[-2:], thermal.dtype)
        return warp_maps(rgb, to_thermal_grid.to(rgb.dtype)), warp_maps(thermal, to_rgb_grid)

    def _grids(self, height: int, width: int,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(where a thermal pixel lands in the RGB image, where an RGB pixel lands in the
        thermal image) for a height x width map, as grid_sample grids of `dtype`."""
        return (sampling_grid(self.thr_to_rgb, height, width).to(dtype),
                sampling_grid(self.rgb_to_thr, height, width).to(dtype))


def homography_from_dataset(root, split: str, tolerance: float = 1e-3) -> tuple[float, ...]:
    """`view_homography` of the rig that recorded an MS2-layout data set's `split` sequences.

    From each sequence's calib.npy (K_thrL, K_rgbL and the NIR-hub extrinsics) and the size of
    its first thermal and RGB images. Raises ValueError when the split is empty or when two
    sequences disagree by more than `tolerance` (normalised units): one model, one rig.
    """
    import numpy as np

    from depth_fusion_ros import ms2

    sequences = ms2.read_split(root, split)
    if not sequences:
        raise ValueError(f"model.align_views/align_inputs: split {split!r} of {root} lists no "
                         "sequences to read the rig calibration from")
    first, first_seq = None, None
    for seq in sequences:
        calib = ms2.load_calib(root, seq)
        frame = ms2.list_frames(root, seq)[0]
        thr_hw = ms2.read_thermal(root, seq, frame).shape[:2]
        rgb_hw = ms2.read_rgb(root, seq, frame).shape[:2]
        rotation = ms2.camera_extrinsics(calib)["T_thr2rgb"][:3, :3]
        matrix = view_homography(calib["K_thrL"], (thr_hw[1], thr_hw[0]), calib["K_rgbL"],
                                 (rgb_hw[1], rgb_hw[0]), rotation)
        if first is None:
            first, first_seq = matrix, seq
        elif np.abs(matrix - first).max() > tolerance:
            raise ValueError(f"model.align_views/align_inputs: sequences {first_seq!r} and "
                             f"{seq!r} of {root} were recorded with different camera calibrations (their "
                             "thermal -> RGB homographies differ); train one model per rig, or "
                             "set model.view_homography yourself")
    return tuple(float(v) for v in first.ravel())
