"""Random street layouts: road with lane marks, kerbs and sidewalks, building facades on both
sides, parked and moving cars, poles and pedestrians (all as axis-aligned boxes or planes).

World frame: x right, y down, z forward, ground at y = 0 (heights are negative y).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Object ids of the per-pixel id buffer; boxes follow from FIRST_BOX_ID.
SKY, ROAD, SIDEWALK, KERB, WALL_LEFT, WALL_RIGHT = range(6)
FIRST_BOX_ID = 6
# Box kinds.
CAR_BODY, CAR_CABIN, POLE, PERSON = range(4)
WALL_BIN_M = 0.5  # facade lookup tables are sampled every 0.5 m along z


@dataclass
class Boxes:
    """N axis-aligned boxes. Positions at time 0; `velocity_mps` moves them along z."""

    min_m: np.ndarray          # [N, 3]
    max_m: np.ndarray          # [N, 3]
    velocity_mps: np.ndarray   # [N] along z
    kind: np.ndarray           # [N] int (CAR_BODY, ...)
    colour: np.ndarray         # [N, 3] float albedo 0..1 (RGB order)
    temp_counts: np.ndarray    # [N] thermal counts of the body
    face_z_counts: np.ndarray  # [N] extra counts on the faces looking along z (engine, exhaust)


@dataclass
class Scene:
    """One sequence's static layout plus its boxes, and the vehicle's motion."""

    road_half_m: float
    kerb_m: float
    wall_x_m: tuple[float, float]  # (left < 0, right > 0)
    wall_z0_m: float
    wall_height_m: np.ndarray      # [2, n_bins] facade height per 0.5 m bin, 0 = gap
    wall_segment: np.ndarray       # [2, n_bins] int segment index (colour / temperature)
    wall_colour: np.ndarray        # [n_segments, 3]
    wall_temp_counts: np.ndarray   # [n_segments]
    boxes: Boxes
    speed_mps: float
    lane_x_m: float

    def vehicle_position(self, time_s: float) -> np.ndarray:
        """Vehicle origin (on the road) at `time_s` since the sequence start, metres."""
        # Straight along z at a constant lateral offset: this is what lets the renderer cache
        # the static street per camera (raycast.StaticLayer).
        return np.array([self.lane_x_m, 0.0, self.speed_mps * time_s])


def _facades(rng: np.random.Generator, z0: float, length_m: float, day: bool):
    n_bins = int(np.ceil(length_m / WALL_BIN_M))
    heights = np.zeros((2, n_bins), np.float32)
    segment = np.zeros((2, n_bins), np.int32)
    colours, temps = [], []
    for side in range(2):
        b = 0
        while b < n_bins:
            n = int(rng.uniform(8.0, 30.0) / WALL_BIN_M)
            gap = rng.random() < 0.12
            heights[side, b:b + n] = 0.0 if gap else rng.uniform(4.0, 24.0)
            segment[side, b:b + n] = len(colours)
            colours.append(rng.uniform(0.25, 0.85, 3) * np.array([1.0, 0.95, 0.9]))
            temps.append(rng.uniform(4300, 4900) if day else rng.uniform(3900, 4300))
            b += n
    return heights, segment, np.array(colours, np.float32), np.array(temps, np.float32)


def _car(rng, x: float, z: float, facing_hot: float, velocity: float, day: bool) -> list[tuple]:
    length, width = rng.uniform(4.0, 4.9), rng.uniform(1.7, 1.95)
    body_h, cabin_h = rng.uniform(0.9, 1.1), rng.uniform(0.45, 0.65)
    colour = rng.uniform(0.05, 0.9, 3)
    temp = rng.uniform(4200, 4600) if day else rng.uniform(3900, 4200)
    body = ((x - width / 2, -body_h, z), (x + width / 2, 0.0, z + length))
    cabin = ((x - width / 2 + 0.1, -body_h - cabin_h, z + 0.25 * length),
             (x + width / 2 - 0.1, -body_h, z + 0.8 * length))
    return [(*body, velocity, CAR_BODY, colour, temp, facing_hot),
            (*cabin, velocity, CAR_CABIN, colour * 0.4, temp - 150, 0.0)]


def _street_furniture(rng, road_half: float, z0: float, z1: float, day: bool) -> list[tuple]:
    items = []
    for side in (-1.0, 1.0):
        z = z0 + rng.uniform(0, 10)
        while z < z1:  # parked cars along the kerb, cool (engines off)
            if rng.random() < 0.6:
                items += _car(rng, side * (road_half - 1.2), z, 0.0, 0.0, day)
            z += rng.uniform(5.5, 16.0)
        z = z0 + rng.uniform(0, 15)
        while z < z1:  # poles at the kerb
            x = side * (road_half + 0.5)
            items.append(((x - 0.12, -rng.uniform(5.0, 8.0), z), (x + 0.12, 0.0, z + 0.24), 0.0,
                          POLE, np.array([0.45, 0.45, 0.47]), 4100.0 if day else 3850.0, 0.0))
            z += rng.uniform(18.0, 32.0)
        z = z0 + rng.uniform(0, 8)
        while z < z1:  # pedestrians on the sidewalk: warm (~5500 counts) day and night
            x = side * (road_half + rng.uniform(1.0, 2.5))
            h = rng.uniform(1.55, 1.9)
            items.append(((x - 0.25, -h, z), (x + 0.25, 0.0, z + 0.35), 0.0, PERSON,
                          rng.uniform(0.1, 0.8, 3), rng.uniform(5300, 5800), 0.0))
            z += rng.uniform(6.0, 25.0)
    return items


def make_scene(rng: np.random.Generator, duration_s: float, day: bool) -> Scene:
    """A random street long enough for `duration_s` of driving plus 160 m of view ahead."""
    speed = rng.uniform(6.0, 12.0)
    road_half = rng.uniform(5.5, 8.0)
    sidewalk = rng.uniform(2.5, 4.5)
    z0, length = -30.0, speed * duration_s + 200.0
    heights, segment, colours, temps = _facades(rng, z0, length, day)
    items = _street_furniture(rng, road_half, z0 + 25.0, z0 + length, day)
    z = rng.uniform(12.0, 30.0)
    while z < length:  # traffic ahead in our lane (hot exhaust/rear faces) and oncoming (hot fronts)
        lane = 1.75 if rng.random() < 0.5 else -1.75
        velocity = speed * rng.uniform(0.7, 1.0) if lane > 0 else -rng.uniform(5.0, 12.0)
        items += _car(rng, lane, z, rng.uniform(500, 900), velocity, day)
        z += rng.uniform(20.0, 60.0)
    boxes = Boxes(
        min_m=np.array([i[0] for i in items], np.float32).reshape(-1, 3),
        max_m=np.array([i[1] for i in items], np.float32).reshape(-1, 3),
        velocity_mps=np.array([i[2] for i in items], np.float32),
        kind=np.array([i[3] for i in items], np.int32),
        colour=np.array([i[4] for i in items], np.float32).reshape(-1, 3),
        temp_counts=np.array([i[5] for i in items], np.float32),
        face_z_counts=np.array([i[6] for i in items], np.float32),
    )
    return Scene(road_half_m=road_half, kerb_m=0.15,
                 wall_x_m=(-(road_half + sidewalk), road_half + sidewalk), wall_z0_m=z0,
                 wall_height_m=heights, wall_segment=segment, wall_colour=colours,
                 wall_temp_counts=temps, boxes=boxes, speed_mps=speed, lane_x_m=rng.uniform(1.4, 2.1))
