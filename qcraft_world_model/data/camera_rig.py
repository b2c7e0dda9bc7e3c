"""Pinhole cameras mounted on the ego: intrinsics, extrinsics, projection.

Frames: the ego frame is ROS ``base_link`` (x forward, y left, z up, origin at
the ego's box centre on the ground); each camera's optical frame is the ROS
convention (z forward, x right, y down). Pitch is positive looking down.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from qcraft_world_model.model.geometry import CameraGeometry, rotation_ego_from_camera_body


@dataclass(frozen=True)
class PinholeCamera:
    """One camera: image size, horizontal field of view, and its mount on the ego."""

    name: str
    width: int = 128
    height: int = 128
    hfov_deg: float = 90.0
    #: Mount position in the ego frame, metres.
    x: float = 1.2
    y: float = 0.0
    z: float = 1.6
    #: Mount orientation: yaw (left positive) and pitch (down positive), degrees.
    yaw_deg: float = 0.0
    pitch_down_deg: float = 4.0
    #: (fx, fy, cx, cy) px of a real camera (a bag's CameraInfo, resized like its images): then these,
    #: not an ideal pinhole of ``hfov_deg`` with square pixels centred in the image.
    measured_intrinsics: tuple[float, float, float, float] | None = None

    @property
    def fx(self) -> float:
        if self.measured_intrinsics is not None:
            return self.measured_intrinsics[0]
        return self.width / 2 / math.tan(math.radians(self.hfov_deg) / 2)

    @property
    def fy(self) -> float:
        return self.fx if self.measured_intrinsics is None else self.measured_intrinsics[1]  # square pixels

    @property
    def cx(self) -> float:
        return self.width / 2 if self.measured_intrinsics is None else self.measured_intrinsics[2]

    @property
    def cy(self) -> float:
        return self.height / 2 if self.measured_intrinsics is None else self.measured_intrinsics[3]

    @property
    def vfov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.height / 2 / self.fy))

    def intrinsics(self) -> np.ndarray:
        """K, the 3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def rotation_ego_from_camera_body(self) -> np.ndarray:
        """Rotation taking camera-body vectors (x fwd, y left, z up) into the ego frame."""
        return rotation_ego_from_camera_body(self.yaw_deg, self.pitch_down_deg)

    def geometry(self) -> CameraGeometry:
        """This camera as the model's decoder sees it (intrinsics + mount)."""
        return CameraGeometry.from_mount(self.width, self.height, self.fx, self.fy, self.cx, self.cy, self.x,
                                         self.y, self.z, self.yaw_deg, self.pitch_down_deg)

    def ego_to_optical(self, points_ego: np.ndarray) -> np.ndarray:
        """Ego-frame (N, 3) points → optical frame (z forward, x right, y down)."""
        geometry = self.geometry()
        return (np.asarray(points_ego, dtype=np.float64) - geometry.translation) @ geometry.rotation

    def project(self, points_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) (u right, v down, pixel centres at +0.5) and depths (N,).

        Points behind the camera get NaN pixels.
        """
        return self.geometry().project(points_ego)

    def to_dict(self) -> dict:
        """Intrinsics and extrinsics for manifests and CameraInfo."""
        return {**asdict(self), "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "K": self.intrinsics().tolist()}


def camera_from_dict(data: dict) -> PinholeCamera:
    """A camera from ``PinholeCamera.to_dict()`` (manifests); derived fields (fx, K, ...) are ignored."""
    names = {f.name for f in fields(PinholeCamera)}
    values = {k: v for k, v in data.items() if k in names}
    if values.get("measured_intrinsics") is not None:
        values["measured_intrinsics"] = tuple(float(v) for v in values["measured_intrinsics"])
    return PinholeCamera(**values)


#: Camera rigs by name: the default single front camera and a three-camera front rig.
RIGS: dict[str, tuple[PinholeCamera, ...]] = {
    "front": (PinholeCamera("front"),),
    "front3": (PinholeCamera("front"),
               PinholeCamera("front_left", x=1.0, y=0.5, yaw_deg=60.0),
               PinholeCamera("front_right", x=1.0, y=-0.5, yaw_deg=-60.0)),
}


def get_rig(name: str, width: int = 128, height: int = 128) -> tuple[PinholeCamera, ...]:
    """A named rig at the given image size."""
    if name not in RIGS:
        raise ValueError(f"unknown camera rig {name!r}; known rigs: {', '.join(RIGS)}")
    return tuple(replace(camera, width=width, height=height) for camera in RIGS[name])


#: Camera mounts a dataset can be rendered with (``EpisodeConfig.mount``):
#: ``standard``: the rig on a vehicle of a similar kind, height and pitch varied a little per scene;
#: ``wide``: the rig on all sorts of vehicles (training): position along the car, height, pitch and
#: field of view varied, so that another vehicle's camera is not a new domain for the model;
#: ``moved``: a fixed different mount (0.7 m further forward, 5 degrees more pitch, 100 degree lens)
#: on top of ``standard``, for the moved-camera evaluation.
MOUNTS = ("standard", "wide", "moved")


def with_mount_jitter(rig: tuple[PinholeCamera, ...], rng: np.random.Generator,
                      mount: str = "standard") -> tuple[PinholeCamera, ...]:
    """The rig on a different vehicle: camera height and pitch varied per scene (more with ``wide``)."""
    if mount not in MOUNTS:
        raise ValueError(f"unknown camera mount {mount!r}; known mounts: {', '.join(MOUNTS)}")
    # The first two draws are the same for every mount, so a 'standard' scene keeps its look and egos.
    dz = float(rng.uniform(-0.25, 0.3))
    dpitch = float(rng.uniform(-2.0, 2.0))
    dx, dfov = 0.0, 0.0
    if mount == "wide":
        dz = float(rng.uniform(-0.45, 0.6))
        dpitch = float(rng.uniform(-3.0, 7.0))
        dx = float(rng.uniform(-0.9, 1.0))
        dfov = float(rng.uniform(-20.0, 20.0))
    elif mount == "moved":
        dx, dpitch = 0.7, dpitch + 5.0
    return tuple(replace(c, x=c.x + dx, z=c.z + dz, pitch_down_deg=c.pitch_down_deg + dpitch,
                         hfov_deg=100.0 if mount == "moved" else c.hfov_deg + dfov) for c in rig)
