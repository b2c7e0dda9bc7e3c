"""World-model outputs → the package's ROS messages."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, Quaternion, Twist, Vector3
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from qcraft_world_model.ingest.image_encode import to_image_msg
from qcraft_world_model.model.agent_decode import DecodedAgents, OperatingPoint
from qcraft_world_model.model.world_model import WorldModelOutput
from qcraft_world_model.msg import AgentPath, AgentTrajectory, PredictedAgents, PredictedFrames

NS = 1_000_000_000


def stamp(ns: int) -> Time:
    return Time(sec=ns // NS, nanosec=ns % NS)


def duration(seconds: float) -> Duration:
    ns = round(seconds * 1e9)
    return Duration(sec=ns // NS, nanosec=ns % NS)


def pose(x: float, y: float, yaw: float) -> Pose:
    return Pose(position=Point(x=float(x), y=float(y), z=0.0),
                orientation=Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)))


#: Variance given to axes the model does not observe (z, roll, pitch; angular rates): "unknown".
UNOBSERVED_VARIANCE = 1e4


def covariance6(xy: np.ndarray, yaw_variance: float = UNOBSERVED_VARIANCE) -> list[float]:
    """A row-major 6x6 covariance with ``xy`` (2, 2) in the x/y block and the rest unobserved."""
    cov = np.diag([0.0, 0.0] + [UNOBSERVED_VARIANCE] * 3 + [yaw_variance])
    cov[:2, :2] = xy
    return cov.ravel().tolist()


def agents_message(agents: DecodedAgents, track_ids: np.ndarray, existence: np.ndarray, stamp_ns: int,
                   frame_id: str, path_step_s: float, operating: OperatingPoint, model_id: str,
                   backend: str, inference_ms: float) -> PredictedAgents:
    """PredictedAgents from one window's decoded, tracked agents: those whose track existence reaches
    ``operating``'s threshold for the agent's class group and range, most likely first; paths most likely
    first."""
    reported = operating.reported(existence, agents.label, agents.position)
    out = []
    for i in np.argsort(-existence, kind="stable"):
        if not reported[i]:
            continue
        x, y = agents.position[i]
        paths = []
        for k in range(agents.paths.shape[1]):
            points = agents.paths[i, k]
            # Heading along the path: the direction of travel between consecutive points.
            headings = np.arctan2(np.diff(points[:, 1], prepend=y), np.diff(points[:, 0], prepend=x))
            paths.append(AgentPath(confidence=float(agents.mode_prob[i, k]),
                                   poses=[pose(px, py, h) for (px, py), h in zip(points, headings)]))
        vx, vy = agents.velocity[i]
        out.append(AgentTrajectory(
            object_id=int(track_ids[i]), label=int(agents.label[i]), label_probability=float(agents.label_prob[i]),
            existence_probability=float(existence[i]), pose=pose(x, y, float(agents.heading[i])),
            dimensions=Vector3(x=float(agents.size[i, 0]), y=float(agents.size[i, 1]), z=float(agents.size[i, 2])),
            twist=Twist(linear=Vector3(x=float(vx), y=float(vy), z=0.0)),
            pose_covariance=covariance6(agents.position_cov[i]),
            twist_covariance=covariance6(agents.velocity_cov[i]),
            time_step=duration(path_step_s), paths=paths))
    return PredictedAgents(header=Header(stamp=stamp(stamp_ns), frame_id=frame_id), agents=out,
                           model_id=model_id, backend=backend, inference_time_ms=float(inference_ms))


def frames_message(output: WorldModelOutput, camera: int, camera_name: str, stamp_ns: int, frame_id: str,
                   steps_s: list[float], model_id: str) -> PredictedFrames:
    """PredictedFrames of one camera; each image stamped with the future time it depicts."""
    images = []
    for step, frame in zip(steps_s, output.frames[0, camera]):
        rgb = (frame.float().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        images.append(to_image_msg(rgb, Header(stamp=stamp(stamp_ns + round(step * 1e9)), frame_id=frame_id), Image))
    spacing = steps_s[1] - steps_s[0] if len(steps_s) > 1 else steps_s[0]
    return PredictedFrames(header=Header(stamp=stamp(stamp_ns), frame_id=frame_id), camera_name=camera_name,
                           time_step=duration(spacing), frames=images, model_id=model_id)


#: RGB per Autoware label, for RViz/Foxglove (alpha follows the existence probability).
_MARKER_COLORS = {0: (0.6, 0.6, 0.6), 1: (0.2, 0.55, 1.0), 2: (1.0, 0.6, 0.15), 3: (1.0, 0.85, 0.0),
                  4: (0.8, 0.5, 0.25), 5: (0.85, 0.25, 0.85), 6: (0.15, 0.8, 0.8), 7: (1.0, 0.25, 0.25)}


def markers_message(agents: PredictedAgents, lifetime_s: float = 0.3) -> MarkerArray:
    """Boxes and predicted paths for RViz/Foxglove: one CUBE per agent, one LINE_STRIP per path.

    A DELETEALL first, so agents that disappeared do not linger.
    """
    markers = [Marker(header=agents.header, action=Marker.DELETEALL)]
    for index, agent in enumerate(agents.agents):
        red, green, blue = _MARKER_COLORS.get(agent.label, _MARKER_COLORS[0])
        box = Marker(header=agents.header, ns="agents", id=index, type=Marker.CUBE, action=Marker.ADD,
                     pose=agent.pose, scale=Vector3(x=max(agent.dimensions.x, 0.1), y=max(agent.dimensions.y, 0.1),
                                                    z=max(agent.dimensions.z, 0.1)),
                     color=ColorRGBA(r=red, g=green, b=blue, a=0.35 + 0.5 * agent.existence_probability),
                     lifetime=duration(lifetime_s))
        box.pose.position.z = box.scale.z / 2
        markers.append(box)
        for k, path in enumerate(agent.paths):
            # One id per (agent, mode): up to 16 modes per agent, so ids never collide within a message.
            markers.append(Marker(
                header=agents.header, ns="paths", id=index * 16 + k, type=Marker.LINE_STRIP, action=Marker.ADD,
                pose=Pose(orientation=Quaternion(w=1.0)), scale=Vector3(x=0.15),
                color=ColorRGBA(r=red, g=green, b=blue, a=max(0.2, path.confidence)),
                points=[agent.pose.position] + [p.position for p in path.poses], lifetime=duration(lifetime_s)))
    return MarkerArray(markers=markers)
