"""A simulated drive as a rosbag2, the way a test vehicle would record it.

Topics (10 Hz unless noted), all stamped with the same simulated clock:
- ``/sensing/camera/<name>/image_raw`` ``sensor_msgs/Image`` (rgb8) and
  ``/sensing/camera/<name>/camera_info`` ``sensor_msgs/CameraInfo``;
- ``/ground_truth/agents`` ``qcraft_world_model/GroundTruthAgents`` in ``base_link``;
- ``/localization/odometry`` ``nav_msgs/Odometry`` (map → base_link);
- ``/tf`` (map → base_link) and ``/tf_static`` (base_link → each camera's optical frame, once).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcraft_world_model.data.agents import AgentState, Pose2D
from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.data.episode import set_up_scene
from qcraft_world_model.data.message_types import msgtype
from qcraft_world_model.data.renderer import SceneRenderer
from qcraft_world_model.data.rosbag_io import BagWriter
from qcraft_world_model.data.traffic_sim import SimulationError, TrafficSimulation
from qcraft_world_model.ingest.image_encode import image_fields

#: Bag time of simulated t = map begin: a fixed epoch keeps bags byte-reproducible.
BAG_EPOCH_NS = 1_700_000_000 * 1_000_000_000
GROUND_TRUTH_TOPIC = "/ground_truth/agents"
ODOMETRY_TOPIC = "/localization/odometry"


def camera_topic(name: str) -> str:
    return f"/sensing/camera/{name}/image_raw"


def camera_info_topic(name: str) -> str:
    return f"/sensing/camera/{name}/camera_info"


def optical_frame(name: str) -> str:
    return f"camera_{name}_optical"


@dataclass(frozen=True)
class SceneBagConfig:
    map: str
    seed: int
    seconds: float = 60.0
    rig: str = "front"
    #: Frame width, px, and height (None: square).
    image_size: int = 128
    image_height: int | None = None
    rate_hz: float = 10.0
    warmup_s: float = 120.0
    #: Agents within this distance of the ego are written as ground truth.
    radius_m: float = 80.0
    #: How vehicles are drawn (agent_shapes.VEHICLE_SHAPES).
    vehicle_shapes: str = "fixed"


def write_scene_bag(path: str | Path, config: SceneBagConfig, storage: str = "mcap", overwrite: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Simulate and record one drive; returns a summary (frames, duration, ego, cameras)."""
    writer = BagWriter(path, storage=storage, overwrite=overwrite)  # an output it may not replace: refused now
    scene = set_up_scene(config.map, config.seed, config.rig, config.image_size, image_height=config.image_height)
    rng, files, cameras = scene.rng, scene.files, scene.cameras
    step_s = 1.0 / config.rate_hz
    steps = round(config.seconds * config.rate_hz)
    written = 0
    with TrafficSimulation(files, step_length=step_s, radius=config.radius_m) as sim, \
            SceneRenderer(scene.geometry, cameras, scene.style, vehicle_shapes=config.vehicle_shapes) as renderer, \
            writer as bag:
        sim.advance(config.warmup_s)
        # The ego must stay long enough: ask for the route a city car covers in the bag's duration.
        for _ in range(600):
            if sim.choose_ego(rng, max(files.map.min_ego_route_m, 10.0 * config.seconds)) is not None:
                break
            sim.advance(1.0)
        else:
            raise SimulationError(f"map {config.map!r} seed {config.seed}: no vehicle with a long enough "
                                  "route to follow for the bag")
        begin = sim.time
        _write_static_transforms(bag, cameras, BAG_EPOCH_NS)
        for step in range(steps):
            snapshot = sim.step()
            if snapshot is None:
                break  # the ego arrived: the bag ends here
            stamp = BAG_EPOCH_NS + round((snapshot.time - begin) * 1e9)
            images = renderer.render(Pose2D(snapshot.ego.x, snapshot.ego.y, snapshot.ego.heading), snapshot.agents)
            for camera in cameras:
                header = bag.header(stamp, optical_frame(camera.name))
                bag.write(camera_topic(camera.name), "sensor_msgs/msg/Image",
                          bag.typestore.types["sensor_msgs/msg/Image"](
                              header=header, **image_fields(images[camera.name], "rgb8")), stamp)
                bag.write(camera_info_topic(camera.name), "sensor_msgs/msg/CameraInfo",
                          _camera_info(bag, camera, header), stamp)
            bag.write(GROUND_TRUTH_TOPIC, msgtype("GroundTruthAgents"),
                      _ground_truth(bag, snapshot.ego, snapshot.agents, stamp, config), stamp)
            bag.write(ODOMETRY_TOPIC, "nav_msgs/msg/Odometry", _odometry(bag, snapshot.ego, stamp), stamp)
            bag.write("/tf", "tf2_msgs/msg/TFMessage", _tf(bag, [_transform(
                bag, stamp, "map", "base_link", snapshot.ego.x, snapshot.ego.y, 0.0, 0.0, 0.0, snapshot.ego.heading)]),
                stamp)
            written += 1
            if progress:
                progress(written, steps)
        ego_id = sim.ego_id
    return {"bag": str(path), "map": config.map, "seed": config.seed, "frames": written,
            "seconds": written / config.rate_hz, "ego": ego_id, "config": asdict(config),
            "cameras": [c.to_dict() for c in cameras], "data_source": files.map.source}


# -- message builders ---------------------------------------------------------------


def _quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of intrinsic roll-pitch-yaw (ZYX) angles."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def _pose(bag: BagWriter, x: float, y: float, z: float, yaw: float) -> Any:
    types = bag.typestore.types
    qx, qy, qz, qw = _quaternion(0.0, 0.0, yaw)
    return types["geometry_msgs/msg/Pose"](position=types["geometry_msgs/msg/Point"](x=x, y=y, z=z),
                                           orientation=types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))


def _vector(bag: BagWriter, x: float, y: float, z: float) -> Any:
    return bag.typestore.types["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)


def _ground_truth(bag: BagWriter, ego: AgentState, agents: tuple[AgentState, ...], stamp: int,
                  config: SceneBagConfig) -> Any:
    types = bag.typestore.types
    pose = Pose2D(ego.x, ego.y, ego.heading)
    zero = types["builtin_interfaces/msg/Duration"](sec=0, nanosec=0)
    entries = []
    for agent in agents:
        x, y = pose.to_local(np.array([agent.x, agent.y]))
        heading = float(pose.heading_to_local(agent.heading))
        vx, vy = agent.speed * math.cos(heading), agent.speed * math.sin(heading)
        entries.append(types[msgtype("AgentTrajectory")](
            object_id=agent.id, label=int(agent.label), label_probability=1.0, existence_probability=1.0,
            pose=_pose(bag, float(x), float(y), agent.height / 2, heading),
            dimensions=_vector(bag, agent.length, agent.width, agent.height),
            twist=types["geometry_msgs/msg/Twist"](linear=_vector(bag, vx, vy, 0.0),
                                                   angular=_vector(bag, 0.0, 0.0, 0.0)),
            pose_covariance=np.zeros(36), twist_covariance=np.zeros(36),  # exact ground truth
            time_step=zero, paths=[]))
    return types[msgtype("GroundTruthAgents")](header=bag.header(stamp, "base_link"), agents=entries,
                                               source=f"sumo:{config.map} seed={config.seed}")


def _odometry(bag: BagWriter, ego: AgentState, stamp: int) -> Any:
    types = bag.typestore.types
    covariance = np.zeros(36, np.float64)
    return types["nav_msgs/msg/Odometry"](
        header=bag.header(stamp, "map"), child_frame_id="base_link",
        pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=_pose(bag, ego.x, ego.y, 0.0, ego.heading),
                                                           covariance=covariance),
        twist=types["geometry_msgs/msg/TwistWithCovariance"](
            twist=types["geometry_msgs/msg/Twist"](linear=_vector(bag, ego.speed, 0.0, 0.0),
                                                   angular=_vector(bag, 0.0, 0.0, 0.0)),
            covariance=covariance.copy()))


def _camera_info(bag: BagWriter, camera: PinholeCamera, header: Any) -> Any:
    types = bag.typestore.types
    k = camera.intrinsics()
    projection = np.hstack([k, np.zeros((3, 1))])
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=camera.height, width=camera.width, distortion_model="plumb_bob",
        d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=projection.reshape(-1),
        binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _transform(bag: BagWriter, stamp: int, parent: str, child: str, x: float, y: float, z: float,
               roll: float, pitch: float, yaw: float) -> Any:
    types = bag.typestore.types
    qx, qy, qz, qw = _quaternion(roll, pitch, yaw)
    return types["geometry_msgs/msg/TransformStamped"](
        header=bag.header(stamp, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=_vector(bag, x, y, z),
            rotation=types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw)))


def _tf(bag: BagWriter, transforms: list[Any]) -> Any:
    return bag.typestore.types["tf2_msgs/msg/TFMessage"](transforms=transforms)


def _write_static_transforms(bag: BagWriter, cameras: tuple[PinholeCamera, ...], stamp: int) -> None:
    """base_link → optical frames: the mount (yaw, pitch) then the optical axes (z forward, x right)."""
    transforms = []
    for camera in cameras:
        rotation = camera.geometry().rotation  # ego ← optical
        roll, pitch, yaw = _euler_from_matrix(rotation)
        transforms.append(_transform(bag, stamp, "base_link", optical_frame(camera.name), camera.x, camera.y,
                                     camera.z, roll, pitch, yaw))
    bag.write("/tf_static", "tf2_msgs/msg/TFMessage", _tf(bag, transforms), stamp)


def _euler_from_matrix(rotation: np.ndarray) -> tuple[float, float, float]:
    """Roll, pitch, yaw (ZYX) of a rotation matrix."""
    pitch = math.asin(max(-1.0, min(1.0, -rotation[2, 0])))
    roll = math.atan2(rotation[2, 1], rotation[2, 2])
    yaw = math.atan2(rotation[1, 0], rotation[0, 0])
    return roll, pitch, yaw
