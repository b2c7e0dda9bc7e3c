"""Outputs for other tools: Autoware PredictedObjects (against a stand-in built from the documented
field list) and RViz/Foxglove markers."""

from __future__ import annotations

import importlib
import os

import pytest


@pytest.fixture
def autoware(ros):  # noqa: ANN001, ANN201
    if os.environ.get("QCRAFT_WM_REQUIRE_ROS") == "1":
        return importlib.import_module("autoware_perception_msgs.msg")
    return pytest.importorskip("autoware_perception_msgs.msg",
                               reason="needs the test interfaces (make test builds them into install-test/)")


def test_every_field_is_carried_over(ros, autoware) -> None:  # noqa: ANN001
    from builtin_interfaces.msg import Duration, Time
    from geometry_msgs.msg import Point, Pose, Quaternion, Twist, Vector3
    from std_msgs.msg import Header

    from qcraft_world_model.ros.autoware import UUID_SUFFIX, to_predicted_objects

    _, msgs = ros
    path = msgs.AgentPath(confidence=0.75, poses=[Pose(position=Point(x=float(i), y=0.5, z=0.0)) for i in range(6)])
    agent = msgs.AgentTrajectory(
        object_id=7, label=msgs.AgentTrajectory.PEDESTRIAN, label_probability=0.8, existence_probability=0.9,
        pose=Pose(position=Point(x=12.0, y=-3.0, z=0.0), orientation=Quaternion(z=0.6, w=0.8)),
        dimensions=Vector3(x=0.5, y=0.6, z=1.7), twist=Twist(linear=Vector3(x=1.2)),
        pose_covariance=[float(i) for i in range(36)], twist_covariance=[0.5] * 36,
        time_step=Duration(sec=0, nanosec=500_000_000), paths=[path])
    agents = msgs.PredictedAgents(header=Header(stamp=Time(sec=5, nanosec=6), frame_id="base_link"), agents=[agent])
    objects = to_predicted_objects(agents, autoware)
    assert objects.header == agents.header and len(objects.objects) == 1
    (obj,) = objects.objects
    assert bytes(obj.object_id.uuid) == (7).to_bytes(8, "little") + UUID_SUFFIX
    assert obj.existence_probability == pytest.approx(0.9)
    assert obj.classification[0].label == autoware.ObjectClassification.PEDESTRIAN == 7
    assert obj.classification[0].probability == pytest.approx(0.8)
    assert obj.kinematics.initial_pose_with_covariance.pose == agent.pose
    assert list(obj.kinematics.initial_pose_with_covariance.covariance) == [float(i) for i in range(36)]
    assert obj.kinematics.initial_twist_with_covariance.twist.linear.x == pytest.approx(1.2)
    assert list(obj.kinematics.initial_twist_with_covariance.covariance) == [0.5] * 36
    (predicted,) = obj.kinematics.predicted_paths
    assert predicted.time_step == agent.time_step and predicted.confidence == pytest.approx(0.75)
    # Autoware's path[0] is the object now; our poses follow one time_step apart.
    assert predicted.path[0] == agent.pose
    assert [p.position.x for p in predicted.path[1:]] == [float(i) for i in range(6)]
    assert obj.shape.type == autoware.Shape.BOUNDING_BOX and obj.shape.dimensions.z == pytest.approx(1.7)


def _autoware_pose_at(path, time_step_s: float, t: float) -> tuple[float, float]:  # noqa: ANN001
    """Where Autoware's predicted_path_utils put an object at time t: path[i] is at i * time_step,
    linear in between (their resamplePredictedPath / calcInterpolatedPose semantics)."""
    i = min(int(t / time_step_s), len(path) - 2)
    a, b = path[i].position, path[i + 1].position
    w = t / time_step_s - i
    return (a.x + w * (b.x - a.x), a.y + w * (b.y - a.y))


def test_autoware_reads_each_path_point_at_the_time_the_model_predicted_it(ros, autoware) -> None:  # noqa: ANN001
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import Point, Pose

    from qcraft_world_model.ros.autoware import to_predicted_objects

    _, msgs = ros
    # An agent at x = 10 driving at 4 m/s: the model's poses are at +0.5 s, +1.0 s, ...
    poses = [Pose(position=Point(x=10.0 + 4.0 * 0.5 * (k + 1), y=0.0)) for k in range(6)]
    agent = msgs.AgentTrajectory(pose=Pose(position=Point(x=10.0)), time_step=Duration(nanosec=500_000_000),
                                 paths=[msgs.AgentPath(confidence=1.0, poses=poses)])
    (obj,) = to_predicted_objects(msgs.PredictedAgents(agents=[agent]), autoware).objects
    path = obj.kinematics.predicted_paths[0].path
    for t in (0.0, 0.25, 0.5, 1.3, 3.0):
        assert _autoware_pose_at(path, 0.5, t) == pytest.approx((10.0 + 4.0 * t, 0.0))


def test_markers_draw_each_agent_and_path(ros) -> None:  # noqa: ANN001
    from geometry_msgs.msg import Point, Pose, Vector3
    from std_msgs.msg import Header

    from qcraft_world_model.ros.convert import markers_message

    _, msgs = ros
    agent = msgs.AgentTrajectory(label=1, existence_probability=0.9, dimensions=Vector3(x=4.5, y=1.8, z=1.5),
                                 pose=Pose(position=Point(x=10.0)),
                                 paths=[msgs.AgentPath(confidence=0.6, poses=[Pose(position=Point(x=12.0))]),
                                        msgs.AgentPath(confidence=0.4, poses=[Pose(position=Point(x=11.0))])])
    array = markers_message(msgs.PredictedAgents(header=Header(frame_id="base_link"), agents=[agent]))
    kinds = [m.type for m in array.markers]
    assert array.markers[0].action == array.markers[0].DELETEALL
    assert kinds[1:] == [array.markers[1].CUBE, array.markers[1].LINE_STRIP, array.markers[1].LINE_STRIP]
    assert array.markers[1].pose.position.z == pytest.approx(0.75)  # box stands on the ground
    assert [p.x for p in array.markers[2].points] == [10.0, 12.0]


def test_agents_are_published_from_their_group_s_operating_point(ros) -> None:  # noqa: ANN001
    """A car and a pedestrian both at existence 0.4, within their radii: under an operating point of 0.35 for
    cars and 0.5 for pedestrians only the car is published; under one threshold of 0.5 neither; the order
    stays by existence. A car at 0.4 beyond 30 m would need the point's 0.5 there."""
    import numpy as np

    from qcraft_world_model.model.agent_decode import DecodedAgents, OperatingPoint
    from qcraft_world_model.ros.convert import agents_message

    n, modes, steps = 3, 2, 6
    agents = DecodedAgents(
        score=np.array([0.9, 0.4, 0.4]), label=np.array([2, 1, 7]), label_prob=np.ones(n),
        position=np.array([[20.0, 0.0], [10.0, 2.0], [8.0, -2.0]]), heading=np.zeros(n), size=np.ones((n, 3)),
        velocity=np.zeros((n, 2)), paths=np.zeros((n, modes, steps, 2)), mode_prob=np.full((n, modes), 0.5),
        position_cov=np.tile(np.eye(2), (n, 1, 1)), velocity_cov=np.tile(np.eye(2), (n, 1, 1)),
        camera=np.zeros(n, np.int64), pixel=np.zeros((n, 2)))
    existence = np.array([0.9, 0.4, 0.4])

    def published(threshold) -> list[tuple[int, int]]:  # noqa: ANN001
        operating = threshold if isinstance(threshold, OperatingPoint) else OperatingPoint.uniform(threshold)
        message = agents_message(agents, np.array([11, 12, 13]), existence, 5_000_000_000, "base_link", 0.5,
                                 operating, "tiny@test", "torch", 3.0)
        return [(a.object_id, a.label) for a in message.agents]

    _, msgs = ros
    car, truck = msgs.AgentTrajectory.CAR, msgs.AgentTrajectory.TRUCK
    assert published(OperatingPoint((0.35, 0.5, 0.5))) == [(11, truck), (12, car)]
    agents.position[1] = [35.0, 0.0]
    assert published(OperatingPoint((0.35, 0.5, 0.5), (0.5, 0.5, 0.5))) == [(11, truck)]
    agents.position[1] = [10.0, 2.0]
    assert published(0.5) == [(11, truck)]
    assert published(OperatingPoint.uniform(0.3)) == [(11, truck), (12, car), (13, msgs.AgentTrajectory.PEDESTRIAN)]
