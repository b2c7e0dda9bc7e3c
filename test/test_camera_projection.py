"""Camera geometry: the pinhole model, and that rendered agents land where they project."""

from __future__ import annotations

import numpy as np
import pytest

from qcraft_world_model.data.agents import AgentLabel, AgentState, Pose2D
from qcraft_world_model.data.camera_rig import PinholeCamera, get_rig
from qcraft_world_model.data.renderer import SceneRenderer, SceneStyle
from qcraft_world_model.data.scene_geometry import SceneGeometry


def test_point_ahead_projects_to_the_principal_point() -> None:
    camera = PinholeCamera("front", pitch_down_deg=0.0)
    pixel, depth = camera.project(np.array([[20.0 + camera.x, 0.0, camera.z]]))
    np.testing.assert_allclose(pixel[0], [camera.cx, camera.cy], atol=1e-9)
    assert depth[0] == pytest.approx(20.0)


def test_left_and_up_go_to_smaller_u_and_v() -> None:
    camera = PinholeCamera("front", pitch_down_deg=0.0)
    (left, up), _ = camera.project(np.array([[10.0, 2.0, camera.z], [10.0, 0.0, camera.z + 2.0]]))
    assert left[0] < camera.cx and left[1] == pytest.approx(camera.cy)
    assert up[1] < camera.cy and up[0] == pytest.approx(camera.cx)


def test_yawed_camera_sees_its_own_axis_in_the_centre() -> None:
    camera = PinholeCamera("left", yaw_deg=60.0, pitch_down_deg=0.0, x=0.0, y=0.0)
    direction = np.array([np.cos(np.radians(60)), np.sin(np.radians(60)), 0.0]) * 15 + [0, 0, camera.z]
    pixel, _ = camera.project(direction[None])
    np.testing.assert_allclose(pixel[0], [camera.cx, camera.cy], atol=1e-9)


def test_points_behind_the_camera_do_not_project() -> None:
    pixel, depth = PinholeCamera("front").project(np.array([[-5.0, 0.0, 1.0]]))
    assert depth[0] < 0 and np.isnan(pixel).all()


def test_field_of_view_edges() -> None:
    camera = PinholeCamera("front", hfov_deg=90.0, pitch_down_deg=0.0, x=0.0)
    pixel, _ = camera.project(np.array([[10.0, -10.0, camera.z]]))  # 45 deg to the right
    assert pixel[0, 0] == pytest.approx(camera.width)


RED_STYLE = SceneStyle(palette=((1.0, 0.0, 0.0),), sky=(0.0, 0.0, 1.0), ground=(0.0, 1.0, 0.0), sun=0.0,
                       ambient=1.0, fog_start_m=900.0, fog_end_m=1000.0)


@pytest.mark.parametrize("rig", ["front", "front3"])
def test_agent_renders_where_its_ground_truth_projects(rig: str) -> None:
    cameras = get_rig(rig, 96, 96)
    empty = SceneGeometry([], (0, 0, 1, 1), 100.0)
    ego = Pose2D(100.0, 50.0, 0.7)  # anywhere in the map, at an angle
    placements = [(12.0, 0.0), (20.0, 4.0), (9.0, -3.0), (6.0, 9.0), (6.0, -9.0)]
    with SceneRenderer(empty, cameras, RED_STYLE) as renderer:
        hits = 0
        for forward, left in placements:
            heading = 0.3
            world = np.array([ego.x, ego.y]) + forward * np.array([np.cos(ego.heading), np.sin(ego.heading)]) + \
                left * np.array([-np.sin(ego.heading), np.cos(ego.heading)])
            truck = AgentState("t", AgentLabel.TRAILER, world[0], world[1], 0.0, ego.heading + heading, 0.0,
                               4.0, 2.0, 3.0)
            images = renderer.render(ego, [truck])
            centre = np.array([[forward, left, 1.6]])  # inside the box, ego frame
            above = np.array([[forward, left, 4.5]])  # 1.5 m over its roof
            for camera in cameras:
                (pixel,), (depth,) = camera.project(centre)
                if not (depth > 0 and 2 <= pixel[0] < camera.width - 2 and 2 <= pixel[1] < camera.height - 2):
                    continue
                hits += 1
                u, v = int(pixel[0]), int(pixel[1])
                assert tuple(images[camera.name][v, u]) == pytest.approx((255, 0, 0), abs=30), \
                    f"{camera.name}: box centre at ({u}, {v}) not drawn red"
                (roof,), _ = camera.project(above)
                ru, rv = int(roof[0]), int(roof[1])
                if 0 <= ru < camera.width and 0 <= rv < camera.height:
                    assert images[camera.name][rv, ru][0] < 100, f"{camera.name}: red above the box"
        # The front camera alone misses the two placements 56 degrees off its axis.
        assert hits >= (len(placements) if rig == "front3" else 3)


def test_static_transform_in_a_bag_matches_the_projection_model() -> None:
    from qcraft_world_model.data.scene_bag import _euler_from_matrix, _quaternion

    camera = PinholeCamera("front_left", x=1.0, y=0.5, yaw_deg=60.0, pitch_down_deg=5.0)
    rotation = camera.rotation_ego_from_camera_body() @ np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    x, y, z, w = _quaternion(*_euler_from_matrix(rotation))
    # Rotation matrix of the quaternion written to /tf_static.
    from_quaternion = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    point_ego = np.array([[12.0, 7.0, 0.5]])
    optical_via_tf = (point_ego - [camera.x, camera.y, camera.z]) @ from_quaternion
    np.testing.assert_allclose(optical_via_tf, camera.ego_to_optical(point_ego), atol=1e-9)
