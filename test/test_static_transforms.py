"""Camera mounts from /tf_static: chains compose to the camera's pose, and the node's geometry uses it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.ingest.config import CameraConfig
from qcraft_world_model.ingest.image_decode import TargetSize
from qcraft_world_model.ros.camera_geometry import camera_geometry
from qcraft_world_model.ros.static_transforms import StaticTransforms


def quaternion(rotation: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in Rotation.from_matrix(rotation).as_quat())  # x, y, z, w


def test_a_chain_of_static_transforms_gives_the_cameras_pose_in_the_base_frame() -> None:
    moved = PinholeCamera("front", width=256, height=128, x=1.9, y=-0.2, z=1.4, yaw_deg=12.0,
                          pitch_down_deg=9.0).geometry()
    link = Rotation.from_euler("xyz", [2.0, -3.0, 40.0], degrees=True).as_matrix()  # rolled, pitched, yawed
    link_t = np.array([1.5, 0.1, 1.2])
    tree = StaticTransforms()
    tree.add("base_link", "camera_link", tuple(link_t), quaternion(link))
    tree.add("/camera_link", "camera_front_optical", tuple(link.T @ (moved.translation - link_t)),
             quaternion(link.T @ moved.rotation))
    pose = tree.lookup("base_link", "camera_front_optical")
    np.testing.assert_allclose(pose.rotation, moved.rotation, atol=1e-9)
    np.testing.assert_allclose(pose.translation, moved.translation, atol=1e-9)
    assert tree.lookup("base_link", "camera_rear_optical") is None  # not published (yet)
    assert tree.lookup("map", "camera_front_optical") is None  # another tree's root
    np.testing.assert_allclose(tree.lookup("base_link", "base_link").rotation, np.eye(3))
    # The node's geometry at that pose projects like the camera itself, intrinsics from the field of view.
    config = CameraConfig(name="front", topic="/x", hfov_deg=90.0)
    geometry = camera_geometry(config, TargetSize(256, 128), optical_pose=pose)
    points = np.array([[12.0, 2.0, 0.0], [25.0, -4.0, 0.5]])
    np.testing.assert_allclose(geometry.project(points)[0], moved.project(points)[0], atol=1e-6)


def test_malformed_and_looping_transforms_are_refused_or_end() -> None:
    tree = StaticTransforms()
    with pytest.raises(ValueError, match="not a rotation"):
        tree.add("base_link", "lidar", (0.0, 0.0, 2.0), (0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="not finite"):
        tree.add("base_link", "lidar", (float("nan"), 0.0, 2.0), (0.0, 0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="two different frame ids"):
        tree.add("a", "a", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))
    tree.add("a", "b", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))
    tree.add("b", "a", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))  # a loop: a broken tree
    assert tree.lookup("base_link", "a") is None
    assert len(tree) == 2
