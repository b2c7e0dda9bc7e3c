"""Pictures people look at: camera frames with projected boxes, bird's-eye views of agents.

OpenCV drawing on uint8 RGB arrays; used for the docs, the demo and reports.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from qcraft_world_model.data.agents import AgentLabel
from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.model.geometry import box_corners

#: One colour per Autoware label (RGB).
LABEL_COLORS: dict[int, tuple[int, int, int]] = {
    AgentLabel.UNKNOWN: (160, 160, 160), AgentLabel.CAR: (60, 140, 255), AgentLabel.TRUCK: (255, 150, 40),
    AgentLabel.BUS: (255, 210, 0), AgentLabel.TRAILER: (200, 120, 60), AgentLabel.MOTORCYCLE: (220, 60, 220),
    AgentLabel.BICYCLE: (40, 200, 200), AgentLabel.PEDESTRIAN: (255, 60, 60),
}


_BOX_EDGES = ((0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def draw_boxes(image: np.ndarray, camera: PinholeCamera, boxes: Sequence[tuple[np.ndarray, int]],
               scale: int = 1) -> np.ndarray:
    """Project 3D boxes (corners, label) into a camera image (upscaled by ``scale`` for thin lines)."""
    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) if scale > 1 \
        else image.copy()
    for corners, label in boxes:
        pixels, depth = camera.project(corners)
        if np.any(depth <= 0.3):
            continue  # partly behind the camera: skip rather than draw nonsense
        points = np.round(pixels * scale).astype(int)
        for a, b in _BOX_EDGES:
            cv2.line(canvas, tuple(points[a]), tuple(points[b]), LABEL_COLORS.get(int(label), (255, 255, 255)), 1,
                     cv2.LINE_AA)
    return canvas


def draw_bev(agents: np.ndarray, valid: np.ndarray, sizes: np.ndarray, labels: np.ndarray, t0: int,
             ego: np.ndarray | None = None, cameras: Sequence[PinholeCamera] = (), extent_m: float = 50.0,
             pixels: int = 400, predictions: np.ndarray | None = None) -> np.ndarray:
    """Bird's-eye view in the t0 ego frame (x up, y left): boxes at t0, past dots, future lines.

    ``agents`` (S, A, >=3) x, y, heading per step; ``valid`` (S, A); ``predictions``
    (A, K, P, 2) optional predicted paths drawn dashed.
    """
    canvas = np.full((pixels, pixels, 3), 28, np.uint8)
    scale = pixels / (2 * extent_m)

    def to_px(xy: np.ndarray) -> np.ndarray:
        return np.stack([pixels / 2 - xy[..., 1] * scale, pixels / 2 - xy[..., 0] * scale], axis=-1).round().astype(int)

    for radius in range(10, int(extent_m) + 1, 10):
        cv2.circle(canvas, (pixels // 2, pixels // 2), int(radius * scale), (55, 55, 55), 1)
    for camera in cameras:
        half = np.radians(camera.hfov_deg / 2)
        for side in (-1, 1):
            angle = np.radians(camera.yaw_deg) + side * half
            end = to_px(np.array([camera.x + np.cos(angle) * extent_m * 1.5, camera.y + np.sin(angle) * extent_m * 1.5]))
            cv2.line(canvas, tuple(to_px(np.array([camera.x, camera.y]))), tuple(end), (90, 90, 120), 1)
    if ego is not None:
        cv2.polylines(canvas, [to_px(ego[:, :2])], False, (200, 200, 200), 1, cv2.LINE_AA)
    _ego_box = box_corners([0.0, 0.0], 0.0, [4.6, 1.9, 0.0])[0, [0, 1, 3, 2], :2]
    cv2.fillPoly(canvas, [to_px(_ego_box)], (230, 230, 230))
    for slot in range(agents.shape[1]):
        if not valid[t0, slot]:
            continue
        color = LABEL_COLORS.get(int(labels[slot]), (255, 255, 255))
        past = agents[: t0 + 1, slot][valid[: t0 + 1, slot]]
        future = agents[t0:, slot][valid[t0:, slot]]
        for point in to_px(past[:, :2]):
            cv2.circle(canvas, tuple(point), 1, color, -1)
        if len(future) > 1:
            cv2.polylines(canvas, [to_px(future[:, :2])], False, color, 1, cv2.LINE_AA)
        x, y, heading = agents[t0, slot, :3]
        corners = box_corners([x, y], heading, [*sizes[slot, :2], 0.0])[0, [0, 1, 3, 2], :2]
        cv2.polylines(canvas, [to_px(corners)], True, color, 1, cv2.LINE_AA)
        if predictions is not None:
            for path in predictions[slot]:
                points = to_px(path)
                for a, b in zip(points[:-1:2], points[1::2]):
                    cv2.line(canvas, tuple(a), tuple(b), (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def label_strip(text: str, width: int, height: int = 18) -> np.ndarray:
    """A dark strip with a caption, to stack above images."""
    strip = np.full((height, width, 3), 20, np.uint8)
    cv2.putText(strip, text, (4, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
    return strip


def draw_ground_paths(canvas: np.ndarray, camera: PinholeCamera, paths: Sequence[np.ndarray],
                      color: tuple[int, int, int], scale: int = 1, thickness: int = 1,
                      endpoint: bool = True) -> np.ndarray:
    """Draw ground-plane polylines ((P, 2) x, y in the ego frame) into an already scaled camera image."""
    for path in paths:
        points = np.c_[path, np.zeros(len(path))]
        pixels, depth = camera.project(points)
        keep = depth > 0.5  # only the part in front of the camera
        if keep.sum() < 2:
            continue
        polyline = np.round(pixels[keep] * scale).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [polyline], False, color, thickness, cv2.LINE_AA)
        if endpoint:
            cv2.circle(canvas, tuple(int(v) for v in polyline[-1, 0]), max(2, thickness + 1), color, -1, cv2.LINE_AA)
    return canvas
