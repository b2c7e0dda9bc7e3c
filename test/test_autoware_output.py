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
    assert obj.kinematics.initial_twist_with_covariance.twist.linear.x == pytest.approx(1.2)
    (predicted,) = obj.kinematics.predicted_paths
    assert predicted.time_step == agent.time_step and predicted.confidence == pytest.approx(0.75)
    assert [p.position.x for p in predicted.path] == [float(i) for i in range(6)]
    assert obj.shape.type == autoware.Shape.BOUNDING_BOX and obj.shape.dimensions.z == pytest.approx(1.7)


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
