"""Traffic agents as plain data: classes, SUMO's units, frames of reference.

SUMO reports a vehicle's position at its *front bumper* and its angle as a
*compass* bearing (degrees, 0 = north, clockwise). Everything downstream uses
box centres and mathematical headings (radians, 0 = +x/east, counter-clockwise),
so the conversion happens once, here.
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass

import numpy as np


class AgentLabel(enum.IntEnum):
    """Autoware's ObjectClassification numbering (also in msg/AgentTrajectory.msg)."""

    UNKNOWN = 0
    CAR = 1
    TRUCK = 2
    BUS = 3
    TRAILER = 4
    MOTORCYCLE = 5
    BICYCLE = 6
    PEDESTRIAN = 7


#: SUMO vehicle classes → labels; anything unlisted is UNKNOWN.
SUMO_VCLASS_LABELS: dict[str, AgentLabel] = {
    "passenger": AgentLabel.CAR, "private": AgentLabel.CAR, "taxi": AgentLabel.CAR,
    "evehicle": AgentLabel.CAR, "emergency": AgentLabel.CAR, "authority": AgentLabel.CAR,
    "army": AgentLabel.CAR, "vip": AgentLabel.CAR, "custom1": AgentLabel.CAR,
    "delivery": AgentLabel.TRUCK, "truck": AgentLabel.TRUCK,
    "trailer": AgentLabel.TRAILER,
    "bus": AgentLabel.BUS, "coach": AgentLabel.BUS, "tram": AgentLabel.BUS,
    "motorcycle": AgentLabel.MOTORCYCLE, "moped": AgentLabel.MOTORCYCLE,
    "bicycle": AgentLabel.BICYCLE, "scooter": AgentLabel.BICYCLE,
    "pedestrian": AgentLabel.PEDESTRIAN,
}


def label_of_vclass(vclass: str) -> AgentLabel:
    return SUMO_VCLASS_LABELS.get(vclass, AgentLabel.UNKNOWN)


def heading_from_sumo_angle(angle_deg: float) -> float:
    """SUMO compass angle (0 = north, clockwise, degrees) → heading (0 = east, CCW, radians in (-pi, pi])."""
    return wrap_angle(math.radians(90.0 - angle_deg))


def wrap_angle(angle: float) -> float:
    """Angle in (-pi, pi]."""
    wrapped = math.atan2(math.sin(angle), math.cos(angle))
    return math.pi if wrapped == -math.pi else wrapped


def center_from_front_bumper(x: float, y: float, heading: float, length: float) -> tuple[float, float]:
    """Box centre of a vehicle whose front bumper is at (x, y), pointing along ``heading``."""
    return x - 0.5 * length * math.cos(heading), y - 0.5 * length * math.sin(heading)


def stable_id(sumo_id: str) -> int:
    """A 63-bit id for a SUMO id string, equal in every process and run.

    Python's ``hash`` is salted per process; a digest is not.
    """
    digest = hashlib.blake2b(sumo_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(frozen=True)
class AgentState:
    """One agent at one instant, map frame (metres, radians), box centre."""

    sumo_id: str
    label: AgentLabel
    x: float
    y: float
    #: Height of the box bottom above the ground (SUMO's z, usually 0).
    z: float
    heading: float
    speed: float
    length: float
    width: float
    height: float

    @property
    def id(self) -> int:
        return stable_id(self.sumo_id)

    @property
    def velocity(self) -> tuple[float, float]:
        return self.speed * math.cos(self.heading), self.speed * math.sin(self.heading)


@dataclass(frozen=True)
class Pose2D:
    """A planar pose in the map frame."""

    x: float
    y: float
    heading: float

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """Map-frame (..., 2) points → this pose's frame (x forward, y left)."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        dx, dy = points[..., 0] - self.x, points[..., 1] - self.y
        return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)

    def heading_to_local(self, heading: np.ndarray | float) -> np.ndarray | float:
        """A map-frame heading expressed in this pose's frame, wrapped to (-pi, pi]."""
        return np.arctan2(np.sin(np.asarray(heading) - self.heading), np.cos(np.asarray(heading) - self.heading))
