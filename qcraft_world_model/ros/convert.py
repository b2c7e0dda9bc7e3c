"""World-model outputs → the package's ROS messages."""

from __future__ import annotations

import math

import numpy as np
import torch
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from qcraft_world_model.ingest.image_encode import to_image_msg
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


def agents_message(output: WorldModelOutput, stamp_ns: int, frame_id: str, path_step_s: float, threshold: float,
                   model_id: str, backend: str, inference_ms: float) -> PredictedAgents:
    """PredictedAgents for batch item 0: anchors above ``threshold``, most likely first, paths by mode."""
    pred = output.agents
    exist = pred.existence_logit[0].float().sigmoid()
    classes = pred.class_logits[0].float().softmax(-1)
    modes = pred.mode_logits[0].float().softmax(-1)
    sizes = pred.log_size[0].float().exp()
    agents = []
    for slot in torch.argsort(exist, descending=True).tolist():
        if exist[slot] < threshold:
            break
        x, y = pred.position[0, slot].float().tolist()
        cos, sin = pred.heading[0, slot].float().tolist()
        label = int(classes[slot].argmax())
        paths = []
        for k in torch.argsort(modes[slot], descending=True).tolist():
            points = pred.paths[0, slot, k].float().numpy()
            # Heading along the path: the direction of travel between consecutive points.
            headings = np.arctan2(np.diff(points[:, 1], prepend=y), np.diff(points[:, 0], prepend=x))
            paths.append(AgentPath(confidence=float(modes[slot, k]),
                                   poses=[pose(px, py, h) for (px, py), h in zip(points, headings)]))
        agents.append(AgentTrajectory(
            object_id=slot, label=label, label_probability=float(classes[slot, label]),
            existence_probability=float(exist[slot]), pose=pose(x, y, math.atan2(sin, cos)),
            dimensions=Vector3(x=float(sizes[slot, 0]), y=float(sizes[slot, 1]), z=float(sizes[slot, 2])),
            time_step=duration(path_step_s), paths=paths))
    return PredictedAgents(header=Header(stamp=stamp(stamp_ns), frame_id=frame_id), agents=agents,
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


#: RGBA per Autoware label, for RViz/Foxglove.
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
            markers.append(Marker(
                header=agents.header, ns="paths", id=index * 16 + k, type=Marker.LINE_STRIP, action=Marker.ADD,
                pose=Pose(orientation=Quaternion(w=1.0)), scale=Vector3(x=0.15),
                color=ColorRGBA(r=red, g=green, b=blue, a=max(0.2, path.confidence)),
                points=[agent.pose.position] + [p.position for p in path.poses], lifetime=duration(lifetime_s)))
    return MarkerArray(markers=markers)
