"""Camera geometry the agent head is decoded with: pixels ↔ rays ↔ the ground plane.

The agent head predicts in the camera's own terms (where in the image, how far
along the ray); this module places those predictions in the ego frame with the
camera's intrinsics and extrinsics. Keeping that step outside the network is
what lets a model trained on one mount serve a camera mounted elsewhere: the
node reads the mount from CameraInfo and tf (or parameters), evaluation from the
bag, training from the rig.

Frames: the ego frame is ROS ``base_link`` (x forward, y left, z up, origin on
the ground at the ego's box centre); optical frames are ROS's (z forward, x
right, y down). Pitch is positive looking down. Pure NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


def rotation_ego_from_camera_body(yaw_deg: float, pitch_down_deg: float) -> np.ndarray:
    """Rotation taking camera-body vectors (x forward, y left, z up) into the ego frame."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_down_deg)
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    ry = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
    return rz @ ry


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3, 3) rotation of a quaternion (normalised here: publishers round); ValueError for a zero or
    non-finite one. The one conversion for tf transforms, in bags and live."""
    q = np.array([x, y, z, w], np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"quaternion ({x}, {y}, {z}, {w}) is not a rotation")
    x, y, z, w = q / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


#: Optical axes expressed in the camera body frame: body = OPTICAL_TO_BODY @ optical.
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class CameraGeometry:
    """Intrinsics (pixels of the image the model reads) and the mount in the ego frame."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    #: (3, 3) rotation ego ← optical, and the optical centre in the ego frame (metres).
    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def from_mount(cls, width: int, height: int, fx: float, fy: float, cx: float, cy: float, x: float, y: float,
                   z: float, yaw_deg: float, pitch_down_deg: float) -> CameraGeometry:
        rotation = rotation_ego_from_camera_body(yaw_deg, pitch_down_deg) @ OPTICAL_TO_BODY
        return cls(width, height, fx, fy, cx, cy, rotation, np.array([x, y, z], np.float64))

    def resized(self, width: int, height: int, mode: str = "stretch") -> CameraGeometry:
        """The same camera seen through the ingest's resize (``stretch`` or ``center_crop``)."""
        if mode == "center_crop":
            scale = max(width / self.width, height / self.height)
            crop_x = (self.width * scale - width) / 2
            crop_y = (self.height * scale - height) / 2
            return replace(self, width=width, height=height, fx=self.fx * scale, fy=self.fy * scale,
                           cx=self.cx * scale - crop_x, cy=self.cy * scale - crop_y)
        sx, sy = width / self.width, height / self.height
        return replace(self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx,
                       cy=self.cy * sy)

    def mirrored(self) -> CameraGeometry:
        """The camera of a left-right mirrored image (ego y → −y): for flip augmentation."""
        flip = np.diag([1.0, -1.0, 1.0])
        image_flip = np.diag([-1.0, 1.0, 1.0])  # optical x → −x
        return replace(self, cx=self.width - self.cx, rotation=flip @ self.rotation @ image_flip,
                       translation=flip @ self.translation)

    def project(self, points_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) ego points → (N, 2) pixels (u right, v down; pixel centres at +0.5) and (N,) optical depths."""
        optical = (np.asarray(points_ego, np.float64) - self.translation) @ self.rotation
        depth = optical[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            pixels = np.stack([self.fx * optical[:, 0] / depth + self.cx, self.fy * optical[:, 1] / depth + self.cy],
                              axis=1)
        pixels[depth <= 1e-6] = np.nan
        return pixels, depth

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) pixels → (N, 3) ego-frame ray directions with unit optical depth (z_optical = 1)."""
        pixels = np.asarray(pixels, np.float64)
        optical = np.stack([(pixels[:, 0] - self.cx) / self.fx, (pixels[:, 1] - self.cy) / self.fy,
                            np.ones(len(pixels))], axis=1)
        return optical @ self.rotation.T

    def lift(self, pixels: np.ndarray, depth: np.ndarray, max_ground_m: float = 80.0) -> np.ndarray:
        """(N, 2) pixels of ground-contact points → (N, 3) ego points.

        Where the ray meets the ground (z = 0) within ``max_ground_m``, that point:
        the camera's height and pitch fix it better than any appearance cue can.
        Elsewhere (at or above the horizon, beyond the range) the point at the
        predicted optical ``depth`` along the ray.
        """
        rays = self.rays(pixels)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ground = -self.translation[2] / rays[:, 2]
        ground = self.translation + t_ground[:, None] * rays
        on_ground = (rays[:, 2] < -1e-6) & (np.linalg.norm(ground[:, :2] - self.translation[:2], axis=1)
                                            <= max_ground_m)
        along = self.translation + np.asarray(depth, np.float64)[:, None] * rays
        return np.where(on_ground[:, None], ground, along)

    def azimuth(self, points_ego: np.ndarray) -> np.ndarray:
        """(N,) bearing of ego points seen from the camera, radians (0 = ego +x, left positive).

        Heading, velocity and paths are predicted relative to this bearing: what a
        camera sees of an object's motion depends on the angle it is seen at, not on
        where the ego's x axis points.
        """
        points = np.asarray(points_ego, np.float64)
        return np.arctan2(points[:, 1] - self.translation[1], points[:, 0] - self.translation[0])


def box_corners(position: np.ndarray, heading: np.ndarray, size: np.ndarray) -> np.ndarray:
    """(G, 8, 3) ego-frame corners of boxes standing on the ground: (G, 2) centres, (G,) headings,
    (G, 3) length/width/height. Footprint first (rear-right, rear-left, front-right, front-left),
    then the same four at the top; ``[..., [0, 1, 3, 2], :2]`` walks the footprint around."""
    position, heading, size = np.atleast_2d(position), np.atleast_1d(heading), np.atleast_2d(size)
    signs = np.array([[sx, sy] for sx in (-1, 1) for sy in (-1, 1)], np.float64)  # (4, 2)
    local = signs[None] * size[:, None, :2] / 2  # (G, 4, 2)
    footprint = position[:, None, :2] + rotate(local, heading[:, None])
    bottom = np.concatenate([footprint, np.zeros((len(position), 4, 1))], axis=2)
    top = np.concatenate([footprint, np.repeat(size[:, None, 2:3], 4, axis=1)], axis=2)
    return np.concatenate([bottom, top], axis=1)


def rotate(vectors: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(..., 2) vectors rotated by ``angle`` (broadcast over the leading axes), radians counter-clockwise."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)
