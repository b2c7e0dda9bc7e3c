"""The predictor node: cameras in, predicted agents and frames out.

A lifecycle node (``autostart`` runs configure + activate itself):
- configure: read and validate parameters, load the model, create the backend and
  warm it up (compilation happens here, not on the first frame), create publishers;
- activate: subscribe to the cameras (sensor-data QoS, depth 1) and start the worker;
- deactivate / cleanup: unsubscribe, stop the worker, release the backend.

Each incoming frame is handed by the subscription callback to its camera's own
decode lane (a thread with a short latest-first queue), which decodes it, runs the
stem (a few milliseconds for lite) and caches the result in the camera's ring
window: a camera sending huge or hostile images costs its own lane time, never the
other cameras'. When every camera holds a complete
window (a stale camera's last one is held: ``ingest/stream_policy.py``, the policy
``qcraft-wm check-bag`` runs too), a job is
handed to the single inference worker through a latest-only slot: a job not yet
started when a newer one arrives is dropped and counted, never queued.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
import torch
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from qcraft_world_model.ingest import ImageDecodeError, IngestConfig, RingWindow, decode_any
from qcraft_world_model.ingest.stream_policy import StreamPolicy, StreamSettings
from qcraft_world_model.ingest.config import CAMERA_PARAMETERS, PARAMETERS, checked
from qcraft_world_model.msg import Float64Stamped, PredictedAgents, PredictedFrames
from qcraft_world_model.model.agent_decode import MotionPrior, OperatingPoint, decode_agents
from qcraft_world_model.model.detection import CLASS_GROUPS
from qcraft_world_model.model.world_model import WorldModelOutput
from qcraft_world_model.ros.autoware import load_autoware_messages, to_predicted_objects
from qcraft_world_model.ros.camera_geometry import camera_geometry
from qcraft_world_model.ros.static_transforms import Pose, StaticTransforms
from qcraft_world_model.runtime.tracker import AgentTracker
from qcraft_world_model.ros.convert import agents_message, frames_message, markers_message
from qcraft_world_model.ros.health import HealthThresholds, arrival_rate_hz, camera_health, inference_health
from qcraft_world_model.ros.parameters import NODE_PARAMETERS, node_values

#: Seconds after activation without a /tf_static chain to a camera before the node warns that it is
#: placing that camera's agents with the mount parameters.
TF_GRACE_S = 5.0
#: Odometry samples kept for matching windows by capture time (10 s at 20 Hz).
ODOMETRY_HISTORY = 200


@dataclass
class _Job:
    """One window per camera, as references to the ring windows' cached items; the worker
    stacks them, so the subscription callback never copies a window that may be dropped."""

    stamp_ns: int
    received: float  # monotonic time the triggering frame arrived
    windows: list[list[tuple[torch.Tensor, torch.Tensor]]]  # per camera: (stem tokens, frame), oldest first
    stale: list[str]  # cameras whose last complete window is held because they are silent

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stem tokens (1, C, T, N, D), newest (1, C, 3, H, W), previous (1, C, 3, H, W))."""
        tokens = torch.stack([torch.stack([t for t, _ in items]) for items in self.windows]).unsqueeze(0)
        newest = torch.stack([items[-1][1] for items in self.windows]).unsqueeze(0)
        previous = torch.stack([items[-2][1] for items in self.windows]).unsqueeze(0)
        return tokens, newest, previous


@dataclass
class _CameraState:
    window: RingWindow
    received: int = 0
    decode_errors: int = 0
    last_error: str = ""
    #: Monotonic time of the last frame (None: none yet).
    last_frame: float | None = None
    #: Recent decode + stem times of this camera's callback, ms.
    ingest_ms: deque = None  # type: ignore[assignment]
    #: Monotonic arrival times of recent frames (for the rate in diagnostics; >= 2 s at 500 Hz).
    arrivals: deque = None  # type: ignore[assignment]
    #: Frames its lane dropped unread because newer ones were waiting (decoding fell behind).
    lane_dropped: int = 0
    #: Frames whose handling failed with an unexpected error (counted, logged; the node goes on).
    callback_errors: int = 0

    def __post_init__(self) -> None:
        self.ingest_ms = deque(maxlen=100)
        self.arrivals = deque(maxlen=1000)


def parameter_descriptor(spec: Any) -> ParameterDescriptor:
    """The ROS descriptor of a schema entry (``ingest/config.py`` ParamSpec): description with its unit,
    numeric range, allowed choices."""
    unit = f" [{spec.unit}]" if spec.unit else ""
    constraints = [f"one of: {', '.join(repr(c) if c == '' else c for c in spec.choices)}"] if spec.choices else []
    constraints.append("read at configure: changes apply after cleanup + configure")
    descriptor = ParameterDescriptor(description=spec.description + unit, additional_constraints="; ".join(constraints))
    if spec.minimum is not None and spec.type is float:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.minimum),
                                                              to_value=float(spec.maximum), step=0.0)]
    elif spec.minimum is not None and spec.type is int:
        descriptor.integer_range = [IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)]
    return descriptor


def output_is_finite(output: Any) -> bool:
    """Whether every tensor of a WorldModelOutput (frames, where computed, and agent maps) is finite."""
    tensors = [*([] if output.frames is None else [output.frames]), *vars(output.agents).values()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


#: The frames lane's nice value: predicted frames are for people watching, agents for planners, so
#: frames take only the CPU the agents leave (a thread at nice 10 gets ~10 % of a contended core).
FRAMES_NICE = 10


class _DecodeLane:
    """One camera's decode thread: the executor's callback only queues, so one camera's slow or
    hostile images (a 4096² PNG takes 0.6 s to decode here) never hold up the others' callbacks.
    The node's predicted frames use one too, at a lower priority (``nice``).

    The queue keeps the newest ``depth`` items; older ones are dropped and counted, as a
    sensor-data subscription would drop them.
    """

    def __init__(self, name: str, handle: Any, depth: int = 2, nice: int = 0) -> None:
        self._handle, self._queue = handle, deque(maxlen=depth)
        self._ready = threading.Condition()
        self._running = True
        self.dropped = 0
        self.nice_error: str | None = None
        self._nice = nice
        self._thread = threading.Thread(target=self._run, name=f"decode-{name}", daemon=True)
        self._thread.start()

    def put(self, item: tuple) -> None:
        with self._ready:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(item)
            self._ready.notify()

    def stop(self) -> None:
        with self._ready:
            self._running = False
            self._ready.notify()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        if self._nice:
            try:  # Linux: PRIO_PROCESS with a thread id sets that thread's nice; threads it starts inherit it
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
            except (OSError, AttributeError) as err:
                self.nice_error = f"{type(err).__name__}: {err}"
        while True:
            with self._ready:
                while self._running and not self._queue:
                    self._ready.wait(timeout=0.5)
                if not self._running:
                    return
                item = self._queue.popleft()
            self._handle(*item)


class PredictorNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("predictor", **kwargs)
        # Read before configure (checked with the rest there).
        autostart = next(spec for spec in NODE_PARAMETERS if spec.name == "autostart")
        self.declare_parameter("autostart", autostart.default, parameter_descriptor(autostart))
        self.backend = None
        self._motion_prior = MotionPrior()
        self._operating = OperatingPoint()
        self.config: IngestConfig | None = None
        self._camera_subscriptions: list = []
        self._cameras: dict[str, _CameraState] = {}
        self._lanes: dict[str, _DecodeLane] = {}
        self._frames_lane: _DecodeLane | None = None
        self._frames_deferred = 0  # frames replaced in lanes that were stopped since
        self._diagnostics_timer = None
        self.pub_agents = self.pub_autoware = self.pub_markers = self.pub_diagnostics = None
        self.pub_processing = self.pub_pipeline = None
        self.pub_frames: dict = {}
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pending: _Job | None = None
        self._running = False
        self._worker: threading.Thread | None = None
        self._latencies: deque[float] = deque(maxlen=200)
        #: QCRAFT_WM_FRAMES_WITH_AGENTS=1 decodes frames with the agents, before publishing them (the node's
        #: behaviour before session 9), for an A/B run of the agents' latency (docs/node.md).
        self._frames_with_agents = os.environ.get("QCRAFT_WM_FRAMES_WITH_AGENTS", "0") == "1"
        self._counts = {"published": 0, "dropped": 0, "inference_errors": 0, "ego_motion_odometry": 0,
                        "ego_motion_estimated": 0, "odometry_rejected": 0, "non_finite_outputs": 0,
                        "dropped_old": 0, "tf_rejected": 0, "frames_published": 0, "frame_errors": 0,
                        "non_finite_frames": 0, "frames_too_old": 0}
        #: Per camera, the geometry agents are placed with (from CameraInfo once one arrived).
        self._geometry: dict = {}
        #: The static transform tree from /tf_static, and per camera its CameraInfo and, once the tree reaches
        #: it, its optical frame's pose in output.frame_id with that frame's id (else the mount parameters).
        self._static = StaticTransforms()
        self._camera_infos: dict[str, CameraInfo] = {}
        self._mounts: dict[str, tuple[Pose, str]] = {}
        self._tf_listening, self._tf_warned, self._activated_at = False, set(), 0.0
        self._frame_ids: dict[str, str] = {}
        self._tracker = AgentTracker()
        self._reset_stream_state()

    def _new_streams(self) -> None:
        """Empty windows, one stream policy over them (the check-bag one), and per-camera counters."""
        settings = StreamSettings(tolerance_ns=round(self.config.alignment_tolerance_ms * 1e6),
                                  stale_after_s=self.config.stale_after_s, max_hold_s=self.params["alignment.max_hold_s"])
        self._policy = StreamPolicy.create([c.name for c in self.config.cameras], self.config.ring_window, settings)
        self._cameras = {name: _CameraState(stream.window) for name, stream in self._policy.streams.items()}

    def _reset_stream_state(self) -> None:
        """What the stream so far decided: published stamps, stale cameras (fresh at every activation)."""
        #: Capture time of the last published PredictedFrames.
        self._last_frames_stamp = -(1 << 62)
        self._stale_reported: list[str] = []
        #: Monotonic time of the last publish, or of activation (for "no prediction for N s").
        self._last_publish_time = time.monotonic()
        self._tracker.reset()
        #: Recent odometry (capture time ns, vx, vy in base_link): a window takes the sample nearest its
        #: capture time, not the newest: the worker runs behind the stream, and a replay runs the odometry
        #: ahead of it.
        self._odometry: deque[tuple[int, float, float]] = deque(maxlen=ODOMETRY_HISTORY)

    # -- lifecycle -------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            values = self._read_parameters()
            self.config = IngestConfig.from_parameters(values)
            self.params = node_values(values)  # type, range and choices: a clear error, not a late surprise
            self._limits = HealthThresholds(
                stale_after_s=self.config.stale_after_s, expected_rate_hz=values["window.rate_hz"],
                rate_warn_ratio=self.params["diagnostics.rate_warn_ratio"],
                latency_warn_ms=self.params["diagnostics.latency_warn_ms"],
                latency_error_ms=self.params["diagnostics.latency_error_ms"],
                no_prediction_after_s=self.config.stale_after_s + self.config.window_size / values["window.rate_hz"])
            self._load_backend()
        except Exception as err:  # noqa: BLE001 - configure is the boundary: say why, then refuse
            self.get_logger().error(f"configure failed: {type(err).__name__}: {err}")
            self.backend = None
            return TransitionCallbackReturn.FAILURE
        self.pub_agents = self.create_lifecycle_publisher(PredictedAgents, "~/predicted_agents", 1)
        # Autoware's planners read PredictedObjects (depth 1, like Autoware's own prediction node).
        self.autoware = load_autoware_messages()
        self.pub_autoware = None if self.autoware is None else self.create_lifecycle_publisher(
            self.autoware.PredictedObjects, "~/autoware/predicted_objects", 1)
        self.pub_frames = {c.name: self.create_lifecycle_publisher(PredictedFrames, f"~/predicted_frames/{c.name}", 1)
                           for c in self.config.cameras}
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "~/markers", 1)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 1)
        # Measurements of one window each, stamped with its newest frame (the stamp of its PredictedAgents).
        self.pub_processing = self.create_lifecycle_publisher(Float64Stamped, "~/debug/processing_time_ms", 1)
        self.pub_pipeline = self.create_lifecycle_publisher(Float64Stamped, "~/debug/pipeline_latency_ms", 1)
        self._new_streams()
        self._camera_infos, self._mounts, self._static = {}, {}, StaticTransforms()
        self._frame_ids = {c.name: c.frame_id for c in self.config.cameras if c.frame_id}
        self._geometry = {c.name: camera_geometry(c, self.config.image) for c in self.config.cameras}
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        gains = ", ".join(f"{name} {gain:g}" for name, gain in zip(CLASS_GROUPS, self._motion_prior.gain))
        reported = self._operating.describe()
        self.get_logger().info(f"configured: {self.backend.name}, cameras {[c.name for c in self.config.cameras]}, "
                               f"motion gain {gains}, agents reported from existence {reported}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Nothing from before a deactivation is held over: windows refill from live frames.
        self._new_streams()
        self._reset_stream_state()
        self._lanes = {c.name: _DecodeLane(c.name, self._ingest_guarded) for c in self.config.cameras}
        # Depth 1: frames of a newer window replace those still waiting (counted as frames_deferred).
        self._frames_lane = _DecodeLane("frames", self._publish_frames_guarded, depth=1, nice=FRAMES_NICE)
        for camera in self.config.cameras:
            message_type = CompressedImage if camera.transport == "compressed" else Image
            self._camera_subscriptions.append(self.create_subscription(
                message_type, camera.topic, lambda msg, name=camera.name: self._on_frame(name, msg),
                qos_profile_sensor_data))
            if camera.camera_info_topic:
                self._camera_subscriptions.append(self.create_subscription(
                    CameraInfo, camera.camera_info_topic, lambda msg, c=camera: self._on_camera_info(c, msg),
                    qos_profile_sensor_data))
        if self.params["ego_motion.odometry_topic"]:
            self._camera_subscriptions.append(self.create_subscription(
                Odometry, self.params["ego_motion.odometry_topic"], self._on_odometry, qos_profile_sensor_data))
        self._tf_listening, self._tf_warned, self._activated_at = False, set(), time.monotonic()
        if self.params["tf.static_mounts"]:
            self._tf_listening = self._subscribe_tf_static()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="inference", daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._tf_listening = False  # no missing-mount warnings while inactive
        for subscription in self._camera_subscriptions:
            self.destroy_subscription(subscription)
        self._camera_subscriptions.clear()
        self._stop_worker()  # first: a window it is still predicting may hand frames to the lane
        self._stop_lanes()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Undo configure: the backend, the diagnostics timer and every publisher (a second configure
        creates them again; left alone, every output topic would have two publishers)."""
        self.backend = None
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        for publisher in self._lifecycle_publishers():
            self.destroy_lifecycle_publisher(publisher)
        if self.pub_diagnostics is not None:
            self.destroy_publisher(self.pub_diagnostics)
        self.pub_agents = self.pub_autoware = self.pub_markers = self.pub_diagnostics = None
        self.pub_processing = self.pub_pipeline = None
        self.pub_frames = {}

    def _lifecycle_publishers(self) -> list:
        return [p for p in (self.pub_agents, self.pub_autoware, self.pub_markers, self.pub_processing,
                            self.pub_pipeline, *self.pub_frames.values()) if p is not None]

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._stop_lanes()
        self._release()  # nothing may publish after shutdown (the diagnostics timer did)
        return TransitionCallbackReturn.SUCCESS

    # -- configuration -----------------------------------------------------------

    def _read_parameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            values[spec.name] = self._declare(spec.name, spec)
        for name in values["cameras.names"]:
            for spec in CAMERA_PARAMETERS:
                values[f"cameras.{name}.{spec.name}"] = self._declare(f"cameras.{name}.{spec.name}", spec)
        for spec in NODE_PARAMETERS:
            values[spec.name] = self._declare(spec.name, spec)
        return values

    def _declare(self, name: str, spec: Any) -> Any:
        """Declare ``name`` with its schema entry's description and range (what ``ros2 param describe``
        shows), unless a previous configure did."""
        if not self.has_parameter(name):
            descriptor = parameter_descriptor(spec)
            try:
                if isinstance(spec.default, list):
                    self.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor)
                    value = self.get_parameter(name).value
                    return list(value) if value is not None else spec.default
                self.declare_parameter(name, spec.default, descriptor)
            except (InvalidParameterValueException, InvalidParameterTypeException):
                # rclpy refuses an out-of-range or mistyped override with a message that hardly names
                # it; the schema's own check says what is wrong and what is allowed.
                override = self._parameter_overrides.get(name)
                if override is not None:
                    checked(spec, override.value, name)
                raise
        return self.get_parameter(name).value

    def _load_backend(self) -> None:
        """The model folder's config is checked against the parameters before anything is built (a
        window of 20000 frames once warmed up for 9 minutes into an OOM kill), the weights on load,
        and the warmed-up backend's output for finiteness."""
        from qcraft_world_model.runtime.backends import create_backend
        from qcraft_world_model.runtime.model_folder import (default_model, load_model, load_motion_prior,
                                                             load_operating_point, read_model_config)

        folder = self.params["model.path"] or str(default_model())
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"model.path {folder} is not a folder")
        config = read_model_config(folder)
        wanted = (len(self.config.cameras), self.config.window_size, self.config.image.width, self.config.image.height)
        if (config.cameras, config.window, config.width, config.height) != wanted:
            raise ValueError(f"model {folder} reads {config.cameras} camera(s) x {config.window} frames of "
                             f"{config.width}x{config.height} px; the parameters give {wanted[0]} x "
                             f"{wanted[1]} of {wanted[2]}x{wanted[3]} px (cameras.names, window.size, image.*)")
        model = load_model(folder)
        # The decoder's per-group trust in the head's motion, fitted with the weights (a folder without
        # one decodes the head's motion as it is).
        self._motion_prior = load_motion_prior(folder, model)
        # The score each class group is published from: the folder's, chosen on validation clips for the
        # precision planners were promised, unless the parameters say otherwise.
        stored = load_operating_point(folder, model) if self.params["output.model_operating_point"] else None
        self._operating = stored or OperatingPoint.uniform(self.params["output.existence_threshold"])
        self.backend = create_backend(model, self.params["model.backend"], self.params["model.precision"],
                                      folder=folder, threads=self.params["model.threads"])
        output = self.backend.warm_up()
        if not output_is_finite(output):
            raise ValueError(f"model {folder} on backend {self.backend.name} gives non-finite outputs on a blank "
                             "window: refusing to publish from it")
        self.model_id = f"{model.config.preset}@{Path(folder).name}"

    # -- frames ----------------------------------------------------------------

    def _subscribe_tf_static(self) -> bool:
        """/tf_static as tf2_ros's static listener takes it (reliable, transient local: the transforms
        published before this node started arrive too). Without tf2_msgs (a Python install with no ROS
        distribution) the mount parameters are all there is, and the log says so once."""
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().info("tf2_msgs is not installed: camera mounts come from cameras.<name>.mount.*")
            return False
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._camera_subscriptions.append(self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, qos))
        return True

    def _optical_frame(self, name: str) -> str:
        """The camera's optical frame: cameras.<name>.frame_id, else its images' header, else the convention."""
        return self._frame_ids.get(name) or f"camera_{name}_optical"

    def _on_tf_static(self, msg: Any) -> None:
        """Record the static transforms; every camera whose optical frame now chains up to output.frame_id is
        placed with that pose. A malformed transform is logged and skipped, the rest are used."""
        for transform in msg.transforms:
            t, q = transform.transform.translation, transform.transform.rotation
            try:
                self._static.add(transform.header.frame_id, transform.child_frame_id, (t.x, t.y, t.z),
                                 (q.x, q.y, q.z, q.w))
            except ValueError as err:
                self._counts["tf_rejected"] += 1
                self.get_logger().warn(f"/tf_static: {err}", throttle_duration_sec=10.0)
        self._update_mounts()

    def _update_mounts(self) -> None:
        base = self.params["output.frame_id"]
        for camera in self.config.cameras:
            pose = self._static.lookup(base, self._optical_frame(camera.name))
            if pose is None:
                continue
            before = self._mounts.get(camera.name, (None, ""))[0]
            try:
                geometry = camera_geometry(camera, self.config.image, self._camera_infos.get(camera.name), pose)
            except ValueError as err:  # a CameraInfo that was fine alone cannot fail here; log if it does
                self.get_logger().warn(str(err), throttle_duration_sec=10.0)
                continue
            # The pose only once the geometry built from it is the one agents are placed with.
            self._geometry[camera.name] = geometry
            self._mounts[camera.name] = (pose, self._optical_frame(camera.name))
            if before is None or not np.allclose(before.translation, pose.translation) or \
                    not np.allclose(before.rotation, pose.rotation):
                x, y, z = pose.translation
                self.get_logger().info(f"camera {camera.name}: mount from /tf_static {base} -> "
                                       f"{self._optical_frame(camera.name)} at ({x:.3f}, {y:.3f}, {z:.3f}) m")

    def _warn_missing_mounts(self, now: float) -> None:
        """Once per activation and camera: listening to /tf_static for TF_GRACE_S without a chain to it."""
        if not self._tf_listening or now - self._activated_at < TF_GRACE_S:
            return
        for camera in self.config.cameras:
            if camera.name not in self._mounts and camera.name not in self._tf_warned:
                self._tf_warned.add(camera.name)
                self.get_logger().warn(
                    f"camera {camera.name}: no /tf_static chain {self.params['output.frame_id']} -> "
                    f"{self._optical_frame(camera.name)} after {TF_GRACE_S:g} s: placing its agents at "
                    f"cameras.{camera.name}.mount.* ({len(self._static)} static transforms known)")

    def _mount_source(self, name: str) -> str:
        """Where camera ``name``'s mount comes from, for its diagnostics."""
        if name in self._mounts:
            return f"/tf_static {self.params['output.frame_id']} -> {self._mounts[name][1]}"
        return "parameters (cameras.<name>.mount.*)"

    def _on_camera_info(self, camera: Any, msg: CameraInfo) -> None:
        """Intrinsics from CameraInfo replace the field-of-view guess; a broken one is logged and ignored."""
        try:
            geometry = camera_geometry(camera, self.config.image, msg, self._mounts.get(camera.name, (None,))[0])
        except ValueError as err:
            self.get_logger().warn(str(err), throttle_duration_sec=10.0)
            return
        first = camera.name not in self._camera_infos
        self._camera_infos[camera.name] = msg
        self._geometry[camera.name] = geometry
        if first:
            self.get_logger().info(f"camera {camera.name}: intrinsics from {camera.camera_info_topic} "
                                   f"(fx {geometry.fx:.1f} px at the model's {geometry.width}x{geometry.height})")

    def _on_odometry(self, msg: Odometry) -> None:
        """Keep the velocity with its stamp; a non-finite one is a broken source, counted and ignored."""
        linear = msg.twist.twist.linear
        if not (math.isfinite(linear.x) and math.isfinite(linear.y)):
            self._counts["odometry_rejected"] += 1
            return
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self._odometry.append((stamp_ns, float(linear.x), float(linear.y)))

    def _ego_velocity(self, stamp_ns: int) -> np.ndarray | None:
        """The odometry velocity for a window captured at ``stamp_ns``; None: use the model's estimate."""
        samples = list(self._odometry)  # one copy: the executor appends meanwhile
        odometry = min(samples, key=lambda sample: abs(sample[0] - stamp_ns)) if samples else None
        if odometry is None or abs(odometry[0] - stamp_ns) > self.params["ego_motion.max_age_s"] * 1e9:
            self._counts["ego_motion_estimated"] += 1
            return None
        self._counts["ego_motion_odometry"] += 1
        return np.array([[odometry[1], odometry[2]]])

    def _on_frame(self, camera: str, msg: Any) -> None:
        """The subscription callback: note the arrival, queue the frame on its camera's lane."""
        received = time.monotonic()
        state = self._cameras[camera]
        state.received += 1
        state.last_frame = received
        if camera not in self._frame_ids and msg.header.frame_id:
            self._frame_ids[camera] = msg.header.frame_id  # the optical frame /tf_static is looked up for
            self._update_mounts()
        state.arrivals.append(received)
        lane = self._lanes[camera]
        lane.put((camera, msg, received))
        state.lane_dropped = lane.dropped

    def _ingest_guarded(self, camera: str, msg: Any, received: float) -> None:
        """``_ingest``, where no error of one frame may end the lane (counted, logged, reported)."""
        try:
            self._ingest(camera, msg, received)
        except Exception as err:  # noqa: BLE001 - a frame must never take the node down
            state = self._cameras[camera]
            state.callback_errors += 1
            state.last_error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"camera {camera}: frame not handled: {state.last_error}",
                                    throttle_duration_sec=5.0)

    def _ingest(self, camera: str, msg: Any, received: float) -> None:
        """Decode, stem, window; hand the inference worker a job when every camera is ready."""
        state = self._cameras[camera]
        try:
            rgb = decode_any(msg, self.config.image, self.config.max_input_pixels)
        except ImageDecodeError as err:
            state.decode_errors += 1
            if str(err) != state.last_error:  # a new kind of fault is logged; repeats are only counted
                self.get_logger().warn(f"camera {camera}: {err}")
            state.last_error = str(err)
            return
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        frame = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).unsqueeze(0)  # (1, 1, 3, H, W)
        tokens = self.backend.stem(frame)[0, 0]  # (N, stem_dim), computed once per frame
        state.ingest_ms.append((time.monotonic() - received) * 1e3)
        with self._lock:
            loops = self._policy.stats.loops
            outcome, job = self._policy.push(camera, stamp_ns, (tokens, frame[0, 0]), received)
            if self._policy.stats.loops != loops:
                self._last_frames_stamp = -(1 << 62)  # the bag looped: frames start over too
            if job is not None:
                if self._pending is not None:
                    self._counts["dropped"] += 1  # the worker is busy: the older window is stale now
                self._pending = _Job(job.stamp_ns, job.arrival_s, job.windows, job.stale)
                self._ready.notify()

    # -- inference ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while self._running and self._pending is None:
                    self._ready.wait(timeout=0.5)
                if not self._running:
                    return
                job, self._pending = self._pending, None
                overtaken = job.stamp_ns <= self._policy.watermark_ns
            if overtaken:
                continue  # overtaken by a newer window already out
            if time.monotonic() - job.received > self.params["output.max_age_s"]:
                # Its frame arrived long ago (the process was paused, the machine stalled): a prediction
                # from it would describe a past the planner has already driven through.
                self._counts["dropped_old"] += 1
                continue
            try:
                self._predict(job)
            except Exception as err:  # noqa: BLE001 - one bad window must not kill the worker
                self._counts["inference_errors"] += 1
                self.get_logger().error(f"inference failed: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _predict(self, job: _Job) -> None:
        start = time.monotonic()
        # Frames are decoded only for the windows that publish them (the decoder is a third of a window),
        # and, where the backend can (decodes_frames_later), after the agents are out, on the frames lane
        # at a lower priority: planners should not wait for pictures. A TensorRT engine holds the whole
        # window, so there they come together.
        frames_due = self._frames_due(job.stamp_ns)
        later = frames_due and self.backend.decodes_frames_later and not self._frames_with_agents
        tensors = job.tensors()
        output = self.backend.forward_window(*tensors, frames=frames_due and not later)
        inference_ms = (time.monotonic() - start) * 1e3
        if not output_is_finite(output):
            # Planners must never see NaN; the window is dropped and the fault reported as ERROR.
            self._counts["non_finite_outputs"] += 1
            self.get_logger().error("the model gave non-finite outputs: window dropped", throttle_duration_sec=5.0)
            return
        model = self.backend.config
        path_step = (model.path_steps[1] - model.path_steps[0]) / model.rate_hz
        frame_id = self.params["output.frame_id"]
        rig = [self._geometry[c.name] for c in self.config.cameras]
        steps_s = tuple(k / model.rate_hz for k in model.path_steps)
        decoded = decode_agents(output.agents, [rig], model.detection_stride, steps_s,
                                threshold=min(0.3, self._operating.lowest()),
                                ego_velocity=self._ego_velocity(job.stamp_ns),
                                relative_to_ego=model.agent_motion == "ego_relative",
                                prior=self._motion_prior)[0]
        track_ids, existence = self._tracker.update(decoded, job.stamp_ns)
        agents = agents_message(decoded, track_ids, existence, job.stamp_ns, frame_id, path_step,
                                self._operating, self.model_id, self.backend.name,
                                inference_ms)
        agents.stale_cameras = job.stale
        if job.stale != self._stale_reported:
            if job.stale:
                self.get_logger().warn(f"predicting without live frames from {', '.join(job.stale)}: "
                                       "their last complete window is held")
            else:
                self.get_logger().info("every camera is live again")
            self._stale_reported = job.stale
        self.pub_agents.publish(agents)
        self.pub_markers.publish(markers_message(agents))
        if self.pub_autoware is not None:
            self.pub_autoware.publish(to_predicted_objects(agents, self.autoware))
        latency_ms = (time.monotonic() - job.received) * 1e3
        with self._lock:
            self._policy.published(job.stamp_ns)
        self._last_publish_time = time.monotonic()
        self._counts["published"] += 1
        self._latencies.append(latency_ms)
        self.pub_processing.publish(Float64Stamped(stamp=agents.header.stamp, data=inference_ms))
        self.pub_pipeline.publish(Float64Stamped(stamp=agents.header.stamp, data=latency_ms))
        if frames_due:
            self._last_frames_stamp = job.stamp_ns  # the frames slot is spent by the window that takes it
            if not later:
                self._publish_frames(job, output)
            else:
                lane = self._frames_lane  # one read: a deactivation may clear it meanwhile
                if lane is not None:  # (without one the node is stopping: these frames are dropped)
                    lane.put((job, output, tensors[1], tensors[2]))

    def _publish_frames_guarded(self, job: _Job, output: WorldModelOutput, newest: torch.Tensor,
                                previous: torch.Tensor) -> None:
        """On the frames lane: decode an agents-only window's frames from its tokens, then publish them.
        Nothing may end the lane: every failure is counted (``frame_errors``, ``non_finite_frames``) and
        logged. Frames older than ``output.max_age_s`` by the time the lane reaches them are dropped too."""
        try:
            backend = self.backend
            if backend is None or not self.pub_frames:
                return  # released while this waited
            if time.monotonic() - job.received > self.params["output.max_age_s"]:
                self._count("frames_too_old")
                return
            frames = backend.decode_frames(output, newest, previous)
            if not torch.isfinite(frames).all():
                self._count("non_finite_frames")
                self.get_logger().error("the model gave non-finite frames: not published", throttle_duration_sec=5.0)
                return
            self._publish_frames(job, WorldModelOutput(frames=frames, agents=output.agents))
        except Exception as err:  # noqa: BLE001 - a failed decode or publish must not end the lane
            self._count("frame_errors")
            self.get_logger().error(f"predicted frames failed: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _count(self, name: str) -> None:
        """Count an event from a thread other than the worker (which owns the other counts)."""
        with self._lock:
            self._counts[name] += 1

    def _publish_frames(self, job: _Job, output: WorldModelOutput) -> None:
        """The window's PredictedFrames, one message per live camera."""
        model = self.backend.config
        steps = [k / model.rate_hz for k in model.future_frames]
        live = [(index, camera) for index, camera in enumerate(self.config.cameras) if camera.name not in job.stale]
        for index, camera in live:  # frames predicted from held images would look live; say nothing instead
            self.pub_frames[camera.name].publish(frames_message(
                output, index, camera.name, job.stamp_ns, camera.frame_id or f"camera_{camera.name}_optical",
                steps, self.model_id))
        if live:
            self._count("frames_published")

    def _frames_due(self, stamp_ns: int) -> bool:
        """PredictedFrames are large: publish them at most ``output.frames_max_rate_hz`` (by capture time,
        so a replay at any speed thins them the same way), with 10 % slack for stamp jitter."""
        if not self.params["output.publish_frames"]:
            return False
        rate = self.params["output.frames_max_rate_hz"]
        # (a stamp behind the last one is a looping bag: publish and start over)
        return not (rate > 0 and 0 <= stamp_ns - self._last_frames_stamp < 0.9e9 / rate)

    def _stop_lanes(self) -> None:
        for lane in self._lanes.values():
            lane.stop()
        self._lanes = {}
        if self._frames_lane is not None:
            self._frames_lane.stop()
            self._frames_deferred += self._frames_lane.dropped
            self._frames_lane = None

    def _stop_worker(self) -> None:
        with self._lock:
            self._running = False
            self._ready.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None

    # -- diagnostics ---------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        statuses = []
        now = time.monotonic()
        self._warn_missing_mounts(now)
        limits = self._limits
        for name, state in self._cameras.items():
            stats = state.window.stats
            silent = None if state.last_frame is None else now - state.last_frame
            rate = arrival_rate_hz(list(state.arrivals), now)
            level, message = camera_health(silent, rate, state.decode_errors + state.callback_errors, stats.gaps,
                                           limits)
            values = {"received": state.received, "rate_hz": "-" if rate is None else f"{rate:.1f}",
                      "decode_errors": state.decode_errors, "lane_dropped": state.lane_dropped,
                      "callback_errors": state.callback_errors, "gaps": stats.gaps,
                      "missing_frames": stats.missing_frames, "filled_frames": stats.filled_frames,
                      "duplicates": stats.duplicates, "out_of_order": stats.out_of_order,
                      "window_complete": state.window.is_complete,
                      "ingest_ms_p50": f"{statistics.median(state.ingest_ms):.1f}" if state.ingest_ms else "-",
                      "mount": self._mount_source(name),
                      "last_error": state.last_error}
            statuses.append(DiagnosticStatus(level=bytes([level]), name=f"qcraft_world_model: camera {name}",
                                             message=message,
                                             values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))
        latency = sorted(self._latencies)
        p95 = latency[int(0.95 * (len(latency) - 1))] if latency else None
        lane = self._frames_lane
        values = {**self._counts, "frames_deferred": self._frames_deferred + (lane.dropped if lane else 0),
                  "frames_lane": "-" if lane is None else (lane.nice_error or f"nice {FRAMES_NICE}"),
                  "backend": self.backend.name if self.backend else "-",
                  "latency_ms_p50": f"{statistics.median(latency):.1f}" if latency else "-",
                  "latency_ms_p95": "-" if p95 is None else f"{p95:.1f}"}
        stale_cameras = list(self._stale_reported)  # one copy: the worker may replace it meanwhile
        values["stale_cameras"] = ",".join(stale_cameras)
        level, message = inference_health(p95, stale_cameras, self._counts["inference_errors"], limits,
                                          silent_s=now - self._last_publish_time, held_too_long=self._policy.held_too_long,
                                          non_finite=self._counts["non_finite_outputs"])
        statuses.append(DiagnosticStatus(level=bytes([level]), name="qcraft_world_model: inference",
                                         message=message,
                                         values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))
        self.pub_diagnostics.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                     status=statuses))


def main(argv: list[str] | None = None) -> int:
    """``ros2 run qcraft_world_model predictor`` (or run directly with ``--ros-args --params-file ...``)."""
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = PredictorNode()
    # One executor thread: the callbacks only queue frames on their camera's decode lane; decoding
    # and the stem run in the lanes, inference in its own worker thread. rclpy's MultiThreadedExecutor
    # (the other way to keep one camera from holding up the rest) busy-waits while a ready
    # subscription's callback group is busy, holding the GIL; with three cameras that starved the
    # callbacks until most frames were lost (py-spy: MainThread active in wait_for_ready_callbacks).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    if node.get_parameter("autostart").value:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal("configure failed; exiting")
            node.destroy_node()
            rclpy.try_shutdown()
            return 1
        node.trigger_activate()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
