"""Clips cut from an evaluation rosbag: what ``qcraft-wm evaluate`` scores when given a bag.

Reads the topics a scene bag carries (see ``scene_bag.py``): camera images and
camera info, ``/tf_static`` for the mounts, ``/ground_truth/agents`` (in
``base_link`` at each stamp) and ``/localization/odometry`` (map → base_link).
Future agent positions are moved into the t0 ego frame through the odometry,
so a bag yields the same arrays as a generated clip set, through the same
image decoder the node uses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcraft_world_model.data.agents import Pose2D
from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.data.message_types import msgtype
from qcraft_world_model.data.rosbag_io import CAMERA_TYPES, BagError, BagMessage, read_messages, require_type
from qcraft_world_model.data.scene_bag import GROUND_TRUTH_TOPIC, ODOMETRY_TOPIC
from qcraft_world_model.ingest.image_decode import ImageDecodeError, TargetSize, decode_any
from qcraft_world_model.model.geometry import CameraGeometry, rotation_from_quaternion

OPTICAL_FROM_BODY = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])


@dataclass
class BagClips:
    """Arrays shaped like a clip dataset's (see ``episode.Clip``), one row per t0."""

    frames: np.ndarray  # (N, T, C, H, W, 3)
    agents: np.ndarray  # (N, S, A, 5)
    agent_valid: np.ndarray
    agent_size: np.ndarray
    agent_label: np.ndarray
    agent_in_view: np.ndarray
    cameras: tuple[PinholeCamera, ...]
    stamps_ns: np.ndarray  # (N,) t0 stamps
    ego_velocity: np.ndarray  # (N, 2) the odometry's base_link velocity at t0 (x forward, y left), m/s
    ego_pose: np.ndarray  # (N, 3) the odometry's map pose at t0: x, y (m), heading (rad)


def _expected_types(topic: str) -> tuple[str, ...] | None:
    """The message types this module reads ``topic`` as, or None for a topic it does not read."""
    if topic.startswith("/sensing/camera/") and topic.endswith("/image_raw"):
        return CAMERA_TYPES
    if topic.endswith("/camera_info"):
        return ("sensor_msgs/msg/CameraInfo",)
    return {"/tf_static": ("tf2_msgs/msg/TFMessage",), GROUND_TRUTH_TOPIC: (msgtype("GroundTruthAgents"),),
            ODOMETRY_TOPIC: ("nav_msgs/msg/Odometry",)}.get(topic)


def _check_type(bag: str | Path, record: BagMessage) -> None:
    """Refuse a record of a topic read here whose type is not the one its fields are read as."""
    expected = _expected_types(record.topic)
    if expected is not None:
        require_type(bag, record.topic, record.msgtype, expected)


def _yaw(q) -> float:  # noqa: ANN001 - a geometry_msgs/Quaternion
    return math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))


def camera_from_messages(name: str, info, transform, size: int,  # noqa: ANN001
                         height: int | None = None) -> PinholeCamera:
    """A PinholeCamera from CameraInfo and its base_link → optical transform, rescaled to ``size`` wide and
    ``height`` (default: ``size``) tall."""
    q = transform.transform.rotation
    body = rotation_from_quaternion(q.x, q.y, q.z, q.w) @ OPTICAL_FROM_BODY.T
    yaw = math.degrees(math.atan2(body[1, 0], body[0, 0]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -body[2, 0]))))
    # The intrinsics as the images are resized for the model (stretched, like decode_any with the
    # default TargetSize): a 1600x900 camera read at 128x128 has fy = 0.56 fx, and placing agents
    # with an ideal square-pixel pinhole instead put every one at the wrong range.
    height = height or size
    native = CameraGeometry.from_mount(int(info.width), int(info.height), info.k[0], info.k[4], info.k[2],
                                       info.k[5], 0.0, 0.0, 0.0, 0.0, 0.0)
    resized = native.resized(size, height)  # the node's resize of CameraInfo too (ros/camera_geometry.py)
    intrinsics = (resized.fx, resized.fy, resized.cx, resized.cy)
    hfov = math.degrees(2 * math.atan(size / 2 / intrinsics[0]))
    t = transform.transform.translation
    return PinholeCamera(name, size, height, hfov, t.x, t.y, t.z, yaw, pitch, measured_intrinsics=intrinsics)


def bag_cameras(bag: str | Path, image_size: int, image_height: int | None = None) -> tuple[PinholeCamera, ...]:
    """The bag's cameras (CameraInfo + their /tf_static mounts), by name, without decoding any image."""
    infos, mounts = {}, {}
    for record in read_messages(bag):
        if record.message is None:
            continue
        _check_type(bag, record)
        if record.topic.startswith("/sensing/camera/") and record.topic.endswith("/camera_info"):
            infos.setdefault(record.topic.split("/")[3], record.message)
        elif record.topic == "/tf_static":
            for transform in record.message.transforms:
                mounts[transform.child_frame_id] = transform
    names = sorted(n for n in infos if f"camera_{n}_optical" in mounts)
    return tuple(camera_from_messages(n, infos[n], mounts[f"camera_{n}_optical"], image_size, image_height)
                 for n in names)


def clips_from_bag(bag: str | Path, image_size: int, past: int = 16, future_frames: int = 10,
                   future_steps: int = 30, stride: int = 10, max_agents: int = 128,
                   image_height: int | None = None) -> BagClips:
    """Cut every ``stride``-th possible window of the bag into a clip, frames ``image_size`` wide and
    ``image_height`` (default: as wide) tall."""
    frames: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    infos, mounts = {}, {}
    truth, odometry, ego_velocity = {}, {}, {}
    size = TargetSize(image_size, image_height or image_size)
    for record in read_messages(bag):
        topic, message = record.topic, record.message
        if message is None:
            continue
        _check_type(bag, record)
        if topic.startswith("/sensing/camera/") and topic.endswith("/image_raw"):
            try:
                frames[topic.split("/")[3]][record.stamp_ns] = decode_any(message, size)
            except ImageDecodeError:
                continue  # a bad frame: its windows are skipped below
        elif topic.endswith("/camera_info"):
            infos.setdefault(topic.split("/")[3], message)
        elif topic == "/tf_static":
            for transform in message.transforms:
                mounts[transform.child_frame_id] = transform
        elif topic == GROUND_TRUTH_TOPIC:
            truth[record.stamp_ns] = message
        elif topic == ODOMETRY_TOPIC:
            pose = message.pose.pose
            odometry[record.stamp_ns] = Pose2D(pose.position.x, pose.position.y, _yaw(pose.orientation))
            # nav_msgs/Odometry's twist is in its child frame, base_link: forward and left.
            ego_velocity[record.stamp_ns] = (message.twist.twist.linear.x, message.twist.twist.linear.y)
    names = sorted(frames)
    if not names or not truth or not odometry:
        raise BagError(f"bag {bag} lacks camera images, {GROUND_TRUTH_TOPIC} or {ODOMETRY_TOPIC}: "
                       "evaluation needs a scene bag (qcraft-wm generate bag)")
    missing = [n for n in names if n not in infos or f"camera_{n}_optical" not in mounts]
    if missing:
        raise BagError(f"bag {bag}: no camera_info or /tf_static mount for camera(s) {', '.join(missing)}")
    cameras = tuple(camera_from_messages(n, infos[n], mounts[f"camera_{n}_optical"], image_size, image_height)
                    for n in names)
    stamps = sorted(set.intersection(*(set(frames[n]) for n in names), truth, odometry))

    rows = []
    span = past + future_steps
    for start in range(0, len(stamps) - span + 1, stride):
        window = stamps[start:start + span]
        if np.any(np.diff(window) > 1.5 * np.median(np.diff(stamps))):
            continue  # a gap (a bad frame): not an evenly spaced window
        row = _clip(window, past, future_frames, max_agents, names, frames, truth, odometry, cameras)
        pose = odometry[window[past - 1]]
        rows.append({**row, "ego_velocity": np.array(ego_velocity[window[past - 1]], np.float32),
                     "ego_pose": np.array([pose.x, pose.y, pose.heading], np.float64)})
    if not rows:
        raise BagError(f"bag {bag} has {len(stamps)} complete instants, fewer than one window of {span}")
    stacked = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    return BagClips(cameras=cameras, **stacked)


def _clip(window: list[int], past: int, future_frames: int, max_agents: int, names: list[str],
          frames: dict, truth: dict, odometry: dict, cameras: tuple[PinholeCamera, ...]) -> dict[str, np.ndarray]:
    t0 = window[past - 1]
    reference = odometry[t0]
    now = truth[t0].agents
    ordered = sorted(now, key=lambda a: math.hypot(a.pose.position.x, a.pose.position.y))[:max_agents]
    slots = {agent.object_id: i for i, agent in enumerate(ordered)}
    steps = len(window)
    agents = np.zeros((steps, max_agents, 5), np.float32)
    valid = np.zeros((steps, max_agents), bool)
    for s, stamp in enumerate(window):
        pose = odometry[stamp]
        for agent in truth[stamp].agents:
            slot = slots.get(agent.object_id)
            if slot is None:
                continue
            # base_link at `stamp` → map → base_link at t0.
            local = np.array([agent.pose.position.x, agent.pose.position.y])
            c, s_ = math.cos(pose.heading), math.sin(pose.heading)
            world = np.array([pose.x + c * local[0] - s_ * local[1], pose.y + s_ * local[0] + c * local[1]])
            heading = pose.heading + _yaw(agent.pose.orientation)
            xy = reference.to_local(world)
            h = float(reference.heading_to_local(heading))
            speed = math.hypot(agent.twist.linear.x, agent.twist.linear.y)
            agents[s, slot] = (xy[0], xy[1], h, speed * math.cos(h), speed * math.sin(h))
            valid[s, slot] = True
    size = np.zeros((max_agents, 3), np.float32)
    label = np.zeros(max_agents, np.uint8)
    in_view = np.zeros((max_agents, len(cameras)), bool)
    for slot, agent in enumerate(ordered):
        size[slot] = (agent.dimensions.x, agent.dimensions.y, agent.dimensions.z)
        label[slot] = agent.label
        centre = np.array([[agent.pose.position.x, agent.pose.position.y, agent.pose.position.z]])
        for c, camera in enumerate(cameras):
            pixel, depth = camera.project(centre)
            in_view[slot, c] = bool(depth[0] > 0.5 and 0 <= pixel[0, 0] < camera.width
                                    and 0 <= pixel[0, 1] < camera.height)
    images = np.stack([np.stack([frames[n][stamp] for n in names]) for stamp in window[: past + future_frames]])
    return {"frames": images, "agents": agents, "agent_valid": valid, "agent_size": size, "agent_label": label,
            "agent_in_view": in_view, "stamps_ns": np.int64(t0)}
