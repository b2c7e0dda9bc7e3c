"""Camera mounts from ``/tf_static``: the static transform tree, and a camera's pose in the ego frame.

Planners' vehicles publish their sensor mounts on ``/tf_static`` (robot_state_publisher from the
URDF, or a static_transform_publisher), often as a chain: base_link → camera_link → the camera's
optical frame. The node composes the chain from its ``output.frame_id`` to each camera's optical
frame and places agents with that pose, so a camera mounted elsewhere needs no parameter at all.
Pure NumPy (the node hands over plain numbers), so it is tested without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcraft_world_model.model.geometry import rotation_from_quaternion

#: Longest chain followed from a camera up to the base frame (a loop in a broken tree ends here).
MAX_CHAIN = 32


@dataclass(frozen=True)
class Pose:
    """A frame in a parent frame: points p_child map to ``rotation @ p_child + translation``."""

    rotation: np.ndarray  # (3, 3) parent ← child
    translation: np.ndarray  # (3,) the child's origin in the parent, metres

    def then(self, inner: Pose) -> Pose:
        """This pose (parent ← child) composed with ``inner`` (child ← grandchild): parent ← grandchild."""
        return Pose(self.rotation @ inner.rotation, self.rotation @ inner.translation + self.translation)


class StaticTransforms:
    """The latest static transform of every child frame (tf's rule: a frame has one parent)."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, Pose]] = {}

    def add(self, parent: str, child: str, translation: tuple[float, float, float],
            quaternion: tuple[float, float, float, float]) -> None:
        """Record parent → child; a non-finite translation or a zero quaternion raises ValueError."""
        t = np.array(translation, np.float64)
        if not np.isfinite(t).all():
            raise ValueError(f"transform {parent} → {child}: translation {tuple(t)} is not finite")
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} → {child!r}: needs two different frame ids")
        self._parent[child.lstrip("/")] = (parent.lstrip("/"), Pose(rotation_from_quaternion(*quaternion), t))

    def __len__(self) -> int:
        return len(self._parent)

    def lookup(self, base: str, frame: str) -> Pose | None:
        """``frame``'s pose in ``base`` (base ← frame) by following parents up from ``frame``; None when
        the chain does not reach ``base`` (a transform not published yet, or another tree)."""
        base, frame = base.lstrip("/"), frame.lstrip("/")
        pose = Pose(np.eye(3), np.zeros(3))
        current = frame
        for _ in range(MAX_CHAIN):
            if current == base:
                return pose
            if current not in self._parent:
                return None
            parent, step = self._parent[current]
            pose = step.then(pose)
            current = parent
        return None
