"""Each camera's geometry for the node: intrinsics from CameraInfo (or the field of view), mount from
``/tf_static`` (or the mount parameters), at the size the model reads.

The agent head places agents with this geometry (``model/geometry.py``), so a camera
mounted elsewhere than on the training rig is a transform on ``/tf_static`` or a change of
parameters, not an error in every agent's position.
"""

from __future__ import annotations

import math
from dataclasses import replace

from qcraft_world_model.ingest.config import CameraConfig
from qcraft_world_model.ingest.image_decode import TargetSize
from qcraft_world_model.model.geometry import CameraGeometry
from qcraft_world_model.ros.static_transforms import Pose


class CameraInfoError(ValueError):
    """A CameraInfo that cannot describe the camera (zero focal length, no size)."""


def camera_geometry(camera: CameraConfig, target: TargetSize, info: object | None = None,
                    optical_pose: Pose | None = None) -> CameraGeometry:
    """The camera as the model sees it: ``info`` (a sensor_msgs/CameraInfo) resized like the ingest
    resizes its images, or an ideal pinhole of ``hfov_deg`` at the model's size; mounted at
    ``optical_pose`` (its optical frame in the ego frame, from /tf_static) or, without one, where the
    ``cameras.<name>.mount.*`` parameters say."""
    mount = (camera.mount_x, camera.mount_y, camera.mount_z, camera.mount_yaw_deg, camera.mount_pitch_down_deg)
    if info is None:
        fx = target.width / 2 / math.tan(math.radians(camera.hfov_deg) / 2)
        geometry = CameraGeometry.from_mount(target.width, target.height, fx, fx, target.width / 2,
                                             target.height / 2, *mount)
    else:
        k = list(info.k)
        if info.width <= 0 or info.height <= 0 or k[0] <= 0 or k[4] <= 0:
            raise CameraInfoError(f"camera {camera.name}: CameraInfo has no usable intrinsics "
                                  f"(size {info.width}x{info.height}, fx {k[0]}, fy {k[4]})")
        native = CameraGeometry.from_mount(int(info.width), int(info.height), k[0], k[4], k[2], k[5], *mount)
        geometry = native.resized(target.width, target.height, target.mode)
    if optical_pose is not None:  # tf's optical frame is the geometry's (z forward, x right, y down)
        geometry = replace(geometry, rotation=optical_pose.rotation.copy(),
                           translation=optical_pose.translation.copy())
    return geometry


def camera_parameters_yaml(camera: object, info_topic: str = "", indent: int = 8) -> str:
    """The per-camera node parameters (mount, field of view, CameraInfo topic) describing ``camera``
    (a ``data.camera_rig.PinholeCamera``), as YAML lines under ``cameras.<name>``: what a parameter
    file for replaying a bag recorded with that camera needs where /tf_static is not played (a ROS
    install without tf2_msgs, or ``tf.static_mounts: false``)."""
    pad = " " * indent
    lines = [f"{pad}hfov_deg: {camera.hfov_deg!r}", f"{pad}mount:"]
    lines += [f"{pad}  {key}: {float(getattr(camera, attr))!r}" for key, attr in
              (("x", "x"), ("y", "y"), ("z", "z"), ("yaw_deg", "yaw_deg"), ("pitch_down_deg", "pitch_down_deg"))]
    if info_topic:
        lines.append(f"{pad}camera_info_topic: {info_topic}")
    return "\n".join(lines) + "\n"
