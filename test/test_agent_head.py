"""The agent head's targets, decoder and camera geometry agree: ground truth → maps → the same agents."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.model.agent_decode import MotionPrior, decode_agents
from qcraft_world_model.model.detection import CLASS_GROUPS, AgentPrediction
from qcraft_world_model.model.geometry import CameraGeometry
from qcraft_world_model.train.agent_targets import dense_targets

STRIDE, SIZE, MODES, STEPS_S = 4, 128, 3, (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
#: The ego drives at 9 m/s while it sees the scene (and drifts left a little).
EGO_VELOCITY = np.array([[9.0, 0.3]])


def targets_for(truth: dict[str, np.ndarray], geometry, ego_velocity: np.ndarray = EGO_VELOCITY):  # noqa: ANN001
    return dense_targets(truth["position"], truth["heading"], truth["velocity"], truth["size"], truth["label"],
                         truth["mask"], truth["future"], truth["future_valid"], geometry, STRIDE, ego_velocity,
                         np.array(STEPS_S))


def scene() -> dict[str, np.ndarray]:
    """Three agents ahead: a car, a truck crossing, a pedestrian; moving at constant velocity."""
    position = np.array([[12.0, 2.0], [25.0, -4.0], [8.0, -3.0]])
    heading = np.array([0.1, math.pi / 2, math.pi])
    velocity = np.array([[8.0, 0.8], [0.0, 5.0], [-1.2, 0.0]])
    t = np.array(STEPS_S)
    return {"position": position[None], "heading": heading[None], "velocity": velocity[None],
            "size": np.array([[[4.5, 1.8, 1.5], [12.0, 2.5, 3.5], [0.6, 0.6, 1.8]]]),
            "label": np.array([[1, 2, 7]]), "mask": np.ones((1, 3), bool),
            "future": (position[:, None] + velocity[:, None] * t[None, :, None])[None],
            "future_valid": np.ones((1, 3, len(t)), bool)}


def perfect_maps(targets, cameras: int = 1, size_hw: tuple[int, int] = (SIZE, SIZE)  # noqa: ANN001
                 ) -> AgentPrediction:
    """The maps a perfect head would output for these targets (AgentTargets) on frames of ``size_hw``."""
    h, w = size_hw[0] // STRIDE, size_hw[1] // STRIDE
    maps = {name: torch.zeros(1, cameras, channels, h, w) for name, channels in
            (("heatmap", len(CLASS_GROUPS)), ("offset", 2), ("log_depth", 1), ("heading", 2), ("log_size", 3),
             ("velocity", 2), ("paths", MODES * len(STEPS_S) * 2), ("mode_logits", MODES), ("class_logits", 8))}
    maps["heatmap"][:] = -10.0
    maps["ego_velocity"] = targets.ego_velocity.clone()
    for i, (b, c, row, col) in enumerate(targets.index.tolist()):
        group = [0, 0, 0, 0, 0, 2, 2, 1][int(targets.label[i])]
        maps["heatmap"][b, c, group, row, col] = 10.0
        maps["offset"][b, c, :, row, col] = targets.offset[i]
        maps["log_depth"][b, c, 0, row, col] = targets.log_depth[i]
        maps["heading"][b, c, :, row, col] = torch.stack([targets.heading[i].cos(), targets.heading[i].sin()])
        maps["log_size"][b, c, :, row, col] = targets.log_size[i]
        maps["velocity"][b, c, :, row, col] = targets.velocity[i]
        paths = targets.future[i][None].repeat(MODES, 1, 1)
        paths[1:] += 5.0  # the other modes are wrong; the first is the most likely
        maps["paths"][b, c, :, row, col] = paths.flatten()
        maps["mode_logits"][b, c, :, row, col] = torch.tensor([3.0, 0.0, 0.0])
        maps["class_logits"][b, c, int(targets.label[i]), row, col] = 5.0
    return AgentPrediction(**maps)


@pytest.mark.parametrize("camera", [
    PinholeCamera("front"),
    PinholeCamera("front", x=1.9, z=1.4, pitch_down_deg=9.0, hfov_deg=100.0),  # mounted elsewhere
    PinholeCamera("front", x=0.3, z=2.2, pitch_down_deg=1.0, hfov_deg=70.0),
    PinholeCamera("front", width=256, height=128),  # the aspect of real cameras (lite-wide)
])
def test_targets_decode_back_to_the_ground_truth_for_any_mount(camera: PinholeCamera) -> None:
    truth = scene()
    geometry = [[camera.geometry()]]
    targets = targets_for(truth, geometry)
    assert len(targets.index) == 3
    # Rows index the image's height, columns its width, whatever the aspect.
    assert targets.index[:, 2].max() < camera.height // STRIDE and targets.index[:, 3].max() < camera.width // STRIDE
    (agents,) = decode_agents(perfect_maps(targets, size_hw=(camera.height, camera.width)), geometry, STRIDE,
                              STEPS_S, threshold=0.5,
                              ego_velocity=EGO_VELOCITY)
    assert len(agents) == 3
    order = [int(np.argmin(np.linalg.norm(truth["position"][0] - p, axis=1))) for p in agents.position]
    assert sorted(order) == [0, 1, 2]
    for d, g in enumerate(order):
        # The ground lift is exact for points on the ground: only float error remains.
        np.testing.assert_allclose(agents.position[d], truth["position"][0, g], atol=1e-3)
        assert abs(math.remainder(agents.heading[d] - truth["heading"][0, g], 2 * math.pi)) < 1e-4
        np.testing.assert_allclose(agents.velocity[d], truth["velocity"][0, g], atol=1e-4)
        np.testing.assert_allclose(agents.size[d], truth["size"][0, g], rtol=1e-4)
        np.testing.assert_allclose(agents.paths[d, 0], truth["future"][0, g], atol=1e-3)
        assert agents.label[d] == truth["label"][0, g]
        assert agents.mode_prob[d, 0] > agents.mode_prob[d, 1]
        # Position uncertainty grows with range, and is a proper covariance.
        assert np.all(np.linalg.eigvalsh(agents.position_cov[d]) > 0)
    ranges = np.linalg.norm(agents.position, axis=1)
    spreads = np.trace(agents.position_cov, axis1=1, axis2=2)
    assert spreads[np.argmax(ranges)] > spreads[np.argmin(ranges)]


def test_a_car_cut_by_the_image_edge_is_a_target_on_the_edge_and_decodes_near_it() -> None:
    """A car centred 4 degrees outside a 90-degree lens at 12 m, half of it in view, gets its peak on the
    border column and comes back within LET's 2 m lateral tolerance, moving the way it moves; one
    beside the ego with a box corner behind the camera and one so far out that the edge ray would place
    it 3.9 m off are not targets. A car close beside the ego, standing below the image's bottom edge,
    is a target on the bottom-left corner cell."""
    camera = PinholeCamera("front", width=256, height=128)
    geometry = camera.geometry()
    sensor = geometry.translation[:2]
    bearing = math.radians(-49.0)
    cut = sensor + 12.0 * np.array([math.cos(bearing), math.sin(bearing)])
    beside = np.array([1.0, -2.5])  # alongside the ego: part of it in front, part behind the camera
    sliver = sensor + 12.0 * np.array([math.cos(math.radians(-58.0)), math.sin(math.radians(-58.0))])
    near = sensor + 4.2 * np.array([math.cos(math.radians(49.0)), math.sin(math.radians(49.0))])
    position = np.stack([cut, beside, sliver, near])
    velocity = np.array([[6.0, 0.0]] * 4)
    t = np.array(STEPS_S)
    truth = {"position": position[None], "heading": np.zeros((1, 4)), "velocity": velocity[None],
             "size": np.array([[[4.5, 1.8, 1.5]] * 4]), "label": np.ones((1, 4), int), "mask": np.ones((1, 4), bool),
             "future": (position[:, None] + velocity[:, None] * t[None, :, None])[None],
             "future_valid": np.ones((1, 4, len(t)), bool)}
    targets = targets_for(truth, [[geometry]])
    assert len(targets.index) == 2  # the cut car and the near one
    cells = {(int(r), int(c)) for r, c in targets.index[:, 2:].tolist()}
    row = int(geometry.project(np.array([[*cut, 0.0]]))[0][0, 1] // STRIDE)
    assert (row, 256 // STRIDE - 1) in cells  # right border (negative y is right), at its own row
    assert (128 // STRIDE - 1, 0) in cells  # bottom-left corner
    (agents,) = decode_agents(perfect_maps(targets, size_hw=(128, 256)), [[geometry]], STRIDE, STEPS_S,
                              threshold=0.5, ego_velocity=EGO_VELOCITY)
    assert len(agents) == 2
    for g in (0, 3):
        d = int(np.argmin(np.linalg.norm(agents.position - position[g], axis=1)))
        sight = position[g] - sensor
        delta = agents.position[d] - position[g]
        across = abs(delta[0] * sight[1] - delta[1] * sight[0]) / np.linalg.norm(sight)
        assert 0.05 < np.linalg.norm(delta) < 1.5 and across < 2.0  # on the edge ray: near, not exact
        np.testing.assert_allclose(agents.velocity[d], velocity[g], atol=1e-4)
        np.testing.assert_allclose(agents.paths[d, 0] - agents.position[d], truth["future"][0, g] - position[g],
                                   atol=1e-3)


def test_rendered_visibility_decides_the_targets_where_the_clips_have_it() -> None:
    """A car right behind a truck is hidden by the box raster (the truck's bounding rectangle covers
    it) though the rendered frame may show it over the truck's bonnet: with a rendered visible share it
    is a target when that share is high and not when it is low, whatever the raster says; a car
    the raster sees but a building hides (rendered share 0.1) is not a target either."""
    camera = PinholeCamera("front", width=256, height=128)
    geometry = [[camera.geometry()]]
    position = np.array([[10.0, 0.0], [16.0, 0.3], [20.0, 12.0]])  # the truck, the car behind it, a car aside
    velocity = np.zeros((3, 2))
    t = np.array(STEPS_S)
    truth = {"position": position[None], "heading": np.zeros((1, 3)), "velocity": velocity[None],
             "size": np.array([[[12.0, 2.5, 3.5], [4.5, 1.8, 1.5], [4.5, 1.8, 1.5]]]),
             "label": np.array([[2, 1, 1]]), "mask": np.ones((1, 3), bool),
             "future": np.repeat(position[:, None], len(t), axis=1)[None],
             "future_valid": np.ones((1, 3, len(t)), bool)}

    def depths(visibility: np.ndarray | None) -> list[float]:
        targets = dense_targets(truth["position"], truth["heading"], truth["velocity"], truth["size"],
                                truth["label"], truth["mask"], truth["future"], truth["future_valid"], geometry,
                                STRIDE, EGO_VELOCITY, t, visibility)
        return sorted(round(float(d)) for d in targets.log_depth.exp())

    seen = depths(np.array([[[1.0], [0.6], [1.0]]]))  # rendered: 60 % of the car behind shows
    assert len(seen) == 3
    truck, behind, aside = seen  # nearest first: optical depths grow with x here
    assert depths(None) == [truck, aside]  # the raster hides the car behind the truck
    assert depths(np.array([[[1.0], [0.6], [0.1]]])) == [truck, behind]  # a wall hides the car aside
    assert depths(np.array([[[1.0], [0.1], [1.0]]])) == [truck, aside]


def test_motion_targets_are_relative_to_the_ego_and_decode_with_either_ego_velocity() -> None:
    """A parked car seen from a moving ego is a target moving at minus the ego's velocity; the decoder
    adds the ego's velocity back, from odometry or, without it, from the head's own estimate."""
    truth = scene()
    truth["velocity"][0, 0] = 0.0
    truth["future"][0, 0] = truth["position"][0, 0]  # car 0 is parked
    geometry = [[PinholeCamera("front").geometry()]]
    targets = targets_for(truth, geometry)
    pixel, _ = geometry[0][0].project(np.array([[*truth["position"][0, 0], 0.0]]))
    cell = [0, 0, int(pixel[0, 1] // STRIDE), int(pixel[0, 0] // STRIDE)]
    parked = targets.index.tolist().index(cell)
    relative_speed = float(targets.velocity[parked].norm())
    assert relative_speed == pytest.approx(float(np.linalg.norm(EGO_VELOCITY)), rel=1e-5)
    maps = perfect_maps(targets)
    (odometry,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5, ego_velocity=EGO_VELOCITY)
    (estimate,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5)  # the head's estimate is exact here
    for agents in (odometry, estimate):
        car = int(np.argmin(np.linalg.norm(agents.position - truth["position"][0, 0], axis=1)))
        np.testing.assert_allclose(agents.velocity[car], [0.0, 0.0], atol=1e-4)
        np.testing.assert_allclose(agents.paths[car, 0], truth["future"][0, 0], atol=1e-3)
    # A wrong ego velocity moves every path by exactly its error times the time ahead.
    (wrong,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5, ego_velocity=EGO_VELOCITY + [1.0, 0.0])
    np.testing.assert_allclose(wrong.paths[:, 0, :, 0] - odometry.paths[:, 0, :, 0],
                               np.broadcast_to(np.array(STEPS_S), (len(wrong), len(STEPS_S))), atol=1e-3)
    # A non-finite odometry row (a dropped message) falls back to the estimate.
    (fallback,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5, ego_velocity=np.array([[np.nan, 0]]))
    np.testing.assert_allclose(fallback.paths, odometry.paths, atol=1e-6)


def test_a_motion_prior_scales_each_groups_ground_motion_and_nothing_else() -> None:
    """Gain k for a group: its velocity and every path's displacement from where it is now are k times the
    head's (the ego's own motion taken out first), the modes' velocity covariance k times; other groups,
    positions and everything else stay. Gains outside 0..1.5, or not one per group, are refused."""
    truth = scene()
    geometry = [[PinholeCamera("front").geometry()]]
    maps = perfect_maps(targets_for(truth, geometry))
    (plain,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5, ego_velocity=EGO_VELOCITY)
    gain = (1.0, 0.25, 0.8)  # car, pedestrian, bicycle
    (shrunk,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5, ego_velocity=EGO_VELOCITY,
                              prior=MotionPrior(gain))
    assert len(shrunk) == len(plain) == 3
    np.testing.assert_allclose(shrunk.position, plain.position)
    np.testing.assert_allclose(shrunk.score, plain.score)
    walker = int(np.flatnonzero(plain.label == 7)[0])
    cars = plain.label != 7
    np.testing.assert_allclose(shrunk.velocity[walker], 0.25 * plain.velocity[walker], atol=1e-9)
    np.testing.assert_allclose(shrunk.paths[walker] - shrunk.position[walker],
                               0.25 * (plain.paths[walker] - plain.position[walker]), atol=1e-9)
    floor = np.eye(2) * 0.01  # kept whatever the gain: a proper covariance for a planner
    np.testing.assert_allclose(shrunk.velocity_cov[walker] - floor, 0.25 * (plain.velocity_cov[walker] - floor),
                               atol=1e-9)
    (still,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5, ego_velocity=EGO_VELOCITY,
                             prior=MotionPrior((0.0, 0.0, 0.0)))
    np.testing.assert_allclose(still.velocity, 0.0)
    np.testing.assert_allclose(still.velocity_cov, np.broadcast_to(floor, still.velocity_cov.shape))
    np.testing.assert_allclose(shrunk.velocity[cars], plain.velocity[cars])
    np.testing.assert_allclose(shrunk.paths[cars], plain.paths[cars])
    # The walker's truth walks at 1.2 m/s: the head's (perfect) motion shrunk is a quarter of it.
    assert np.linalg.norm(shrunk.velocity[walker]) == pytest.approx(0.25 * 1.2, rel=1e-3)
    (identity,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5, ego_velocity=EGO_VELOCITY,
                                prior=MotionPrior())
    np.testing.assert_array_equal(identity.paths, plain.paths)
    assert MotionPrior((np.float32(0.5), 1, 1.0)).gain == (0.5, 1.0, 1.0) and MotionPrior().is_identity()
    for bad in ((1.0, 0.5), (1.0, -0.1, 1.0), (1.0, float("nan"), 1.0), (1.0, 2.0, 1.0), (1.0, True, 1.0)):
        with pytest.raises(ValueError, match="motion prior holds 3 gains"):
            MotionPrior(bad)


def test_flipped_image_targets_mirror_the_agents() -> None:
    truth = scene()
    camera = PinholeCamera("front").geometry()
    plain = targets_for(truth, [[camera]])
    flip = np.array([1.0, -1.0])
    mirrored = targets_for({**truth, "position": truth["position"] * flip, "heading": -truth["heading"],
                            "velocity": truth["velocity"] * flip, "future": truth["future"] * flip},
                           [[camera.mirrored()]], EGO_VELOCITY * flip)
    np.testing.assert_allclose(mirrored.heatmap.numpy(), plain.heatmap.flip(-1).numpy(), atol=1e-6)
    # Mirroring the image mirrors the motion targets: the lateral component changes sign.
    order = np.lexsort((mirrored.index[:, 3].numpy(),))
    plain_order = np.lexsort((-plain.index[:, 3].numpy(),))
    np.testing.assert_allclose(mirrored.velocity.numpy()[order], plain.velocity.numpy()[plain_order] * flip,
                               atol=1e-5)


def test_geometry_projects_like_the_rig_and_lifts_ground_points_back() -> None:
    camera = PinholeCamera("front", x=1.0, y=0.3, z=1.5, yaw_deg=10.0, pitch_down_deg=6.0)
    geometry = camera.geometry()
    points = np.array([[10.0, 1.0, 0.0], [30.0, -5.0, 0.0], [6.0, 2.0, 1.0]])
    np.testing.assert_allclose(geometry.project(points)[0], camera.project(points)[0], atol=1e-9)
    pixels, depth = geometry.project(points[:2])
    np.testing.assert_allclose(geometry.lift(pixels, depth), points[:2], atol=1e-9)
    # Above the horizon the ray never meets the ground: the point at the given depth is used.
    sky = np.array([[64.0, 2.0]])
    lifted = geometry.lift(sky, np.array([40.0]))
    assert lifted[0, 2] > 0 and np.isclose(geometry.project(lifted)[1][0], 40.0)


def test_geometry_follows_the_ingest_resize() -> None:
    native = CameraGeometry.from_mount(1280, 720, 900.0, 900.0, 640.0, 360.0, 1.2, 0.0, 1.6, 0.0, 4.0)
    point = np.array([[20.0, 3.0, 0.0]])
    pixel = native.project(point)[0][0]
    stretched = native.resized(128, 128, "stretch").project(point)[0][0]
    np.testing.assert_allclose(stretched, pixel * [128 / 1280, 128 / 720], atol=1e-9)
    crop = native.resized(128, 128, "center_crop").project(point)[0][0]
    scale = 128 / 720
    np.testing.assert_allclose(crop, [(pixel[0] - (1280 - 720) / 2) * scale, pixel[1] * scale], atol=1e-9)


def test_range_error_bound_grows_with_distance_and_shrinks_with_focal_length() -> None:
    from qcraft_world_model.eval.bound import bound_table, range_error

    small, large = PinholeCamera("front", 128, 128).geometry(), PinholeCamera("front", 256, 256).geometry()
    errors = [range_error(small, d, 1.0) for d in (10.0, 20.0, 30.0)]
    assert errors[0] < errors[1] < errors[2]
    assert range_error(large, 20.0, 1.0) == pytest.approx(range_error(small, 20.0, 0.5), rel=1e-6)
    # Flat ground, camera h high, pitched p down: a point d ahead is seen atan(h/d) - p below the optical axis.
    h, d, f, p = 1.6, 10.0, small.fy, math.radians(4.0)
    v = f * math.tan(math.atan(h / d) - p)
    near = h / math.tan(math.atan((v + 1.0) / f) + p)
    far = h / math.tan(math.atan((v - 1.0) / f) + p)
    assert range_error(small, d, 1.0) == pytest.approx(max(d - near, far - d), rel=1e-9)
    assert [row["band"] for row in bound_table(small)] == ["0-10", "10-20", "20-30", "30-50"]


def test_node_camera_geometry_from_camera_info_and_from_parameters() -> None:
    from types import SimpleNamespace

    from qcraft_world_model.ingest.config import IngestConfig
    from qcraft_world_model.ros.camera_geometry import CameraInfoError, camera_geometry

    config = IngestConfig.from_parameters({"cameras.front.topic": "/cam", "cameras.front.mount.x": 1.9,
                                           "image.width": 128, "image.height": 128,
                                           "cameras.front.mount.pitch_down_deg": 9.0, "cameras.front.hfov_deg": 100.0})
    (camera,) = config.cameras
    from_params = camera_geometry(camera, config.image)
    rig = PinholeCamera("front", x=1.9, pitch_down_deg=9.0, hfov_deg=100.0).geometry()
    point = np.array([[20.0, 2.0, 0.0]])
    np.testing.assert_allclose(from_params.project(point)[0], rig.project(point)[0], atol=1e-9)
    # A 1280x720 CameraInfo, stretched to the model's 128x128 like the images are.
    info = SimpleNamespace(width=1280, height=720, k=[900.0, 0, 640.0, 0, 900.0, 360.0, 0, 0, 1])
    from_info = camera_geometry(camera, config.image, info)
    assert (from_info.fx, from_info.fy) == pytest.approx((90.0, 160.0))
    with pytest.raises(CameraInfoError, match="no usable intrinsics"):
        camera_geometry(camera, config.image, SimpleNamespace(width=0, height=0, k=[0.0] * 9))


def test_non_finite_outputs_decode_to_no_agent() -> None:
    truth = scene()
    geometry = [[PinholeCamera("front").geometry()]]
    targets = targets_for(truth, geometry)
    maps = perfect_maps(targets)
    b, c, row, col = targets.index[0].tolist()
    maps.paths[b, c, :, row, col] = float("nan")
    (agents,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5)
    assert len(agents) == 2 and np.isfinite(agents.paths).all()
    maps.heatmap[:] = float("nan")
    (agents,) = decode_agents(maps, geometry, STRIDE, STEPS_S, threshold=0.5)
    assert len(agents) == 0
