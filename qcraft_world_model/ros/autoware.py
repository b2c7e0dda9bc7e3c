"""PredictedAgents → Autoware's ``autoware_perception_msgs/PredictedObjects``.

Published only where that package is importable (an Autoware install); its
message module is passed in, so this file imports nothing from Autoware and
the mapping is tested here against a stand-in package built from the same
field list (test/interfaces/autoware_perception_msgs).
"""

from __future__ import annotations

from types import ModuleType

from geometry_msgs.msg import AccelWithCovariance, PoseWithCovariance, TwistWithCovariance
from unique_identifier_msgs.msg import UUID

from qcraft_world_model.msg import PredictedAgents

#: Marks the second half of every object UUID (the first half is the node's track id).
UUID_SUFFIX = b"qcraftwm"


def load_autoware_messages() -> ModuleType | None:
    """``autoware_perception_msgs.msg`` when installed, else None."""
    try:
        import autoware_perception_msgs.msg as messages
    except ImportError:
        return None
    return messages


def object_uuid(object_id: int) -> UUID:
    return UUID(uuid=list(object_id.to_bytes(8, "little") + UUID_SUFFIX))


def to_predicted_objects(agents: PredictedAgents, autoware: ModuleType) -> object:
    """The same predictions in Autoware's message (labels share Autoware's numbering already).

    Autoware reads ``PredictedPath.path[i]`` as the pose at ``i * time_step`` from the header
    stamp, ``path[0]`` being the object now (its ``predicted_path_utils`` interpolate so);
    our ``AgentPath.poses[0]`` is one step ahead, so the current pose is put first.
    """
    objects = []
    for agent in agents.agents:
        paths = [autoware.PredictedPath(path=[agent.pose, *path.poses], time_step=agent.time_step,
                                        confidence=path.confidence) for path in agent.paths]
        kinematics = autoware.PredictedObjectKinematics(
            initial_pose_with_covariance=PoseWithCovariance(pose=agent.pose,
                                                            covariance=list(agent.pose_covariance)),
            initial_twist_with_covariance=TwistWithCovariance(twist=agent.twist,
                                                              covariance=list(agent.twist_covariance)),
            initial_acceleration_with_covariance=AccelWithCovariance(),
            predicted_paths=paths)
        objects.append(autoware.PredictedObject(
            object_id=object_uuid(agent.object_id), existence_probability=agent.existence_probability,
            classification=[autoware.ObjectClassification(label=agent.label, probability=agent.label_probability)],
            kinematics=kinematics,
            shape=autoware.Shape(type=autoware.Shape.BOUNDING_BOX, dimensions=agent.dimensions)))
    return autoware.PredictedObjects(header=agents.header, objects=objects)
