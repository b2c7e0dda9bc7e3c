"""Camera ingest settings: one schema for the parameter file, the node and offline tools.

Parameters use ROS 2's flat dotted names (``window.size``) so the same
dictionary comes from ``rclpy`` (declared parameters) or from a parameter YAML
read here without ROS. Per-camera parameters are keyed by the camera's name
(``cameras.front.topic``), listed in ``cameras.names``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from qcraft_world_model.ingest.image_decode import TargetSize
from qcraft_world_model.ingest.ring_window import NS_PER_S, RingWindow

Transport = Literal["raw", "compressed"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, type, default, unit and allowed range, for docs and checks."""

    name: str
    type: type
    default: Any
    description: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


#: Every ingest parameter except the per-camera ones (see CAMERA_PARAMETERS).
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("cameras.names", list, ["front"], "Cameras to subscribe to, in model order"),
    ParamSpec("image.width", int, 256, "Width the model reads frames at (must equal the model folder's)", "px", 16, 4096),
    ParamSpec("image.height", int, 128, "Height the model reads frames at (must equal the model folder's)", "px", 16, 4096),
    ParamSpec("image.resize_mode", str, "stretch",
              "How a camera's aspect ratio is fitted to the model's", choices=("stretch", "center_crop")),
    ParamSpec("image.max_input_pixels", int, 4096 * 4096,
              "Camera messages declaring more pixels (width x height) are refused before decoding "
              "(decompression bombs)", "px", 1, 1 << 28),
    ParamSpec("window.size", int, 16, "Frames per camera in the model's input window", "frames", 1, 64),
    ParamSpec("window.rate_hz", float, 10.0, "Nominal camera frame rate", "Hz", 0.1, 1000.0),
    ParamSpec("window.gap_factor", float, 1.5,
              "A step longer than this many frame periods counts as a gap", "periods", 1.01, 100.0),
    ParamSpec("window.max_fill_frames", int, 2,
              "Gaps of up to this many lost frames are bridged by repeating the previous frame", "frames", 0, 8),
    ParamSpec("window.reset_after_backward_s", float, 1.0,
              "A stamp this far behind the newest clears the window (bag loop) instead of being refused",
              "s", 0.0, 3600.0),
    ParamSpec("alignment.tolerance_ms", float, 20.0,
              "Largest stamp difference between cameras of one aligned set", "ms", 0.0, 1000.0),
    ParamSpec("alignment.stale_after_s", float, 0.5,
              "A camera silent this long is reported stale (diagnostics ERROR) and no longer waited for",
              "s", 0.01, 60.0),
)

#: Per-camera parameters, as ``cameras.<name>.<key>``.
CAMERA_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("topic", str, "", "Image topic of the camera (required)"),
    ParamSpec("transport", str, "raw", "Message type on the topic: sensor_msgs/Image (raw) or "
              "sensor_msgs/CompressedImage (compressed)", choices=("raw", "compressed")),
    ParamSpec("frame_id", str, "", "Optical frame of the camera; empty: taken from the messages"),
    ParamSpec("camera_info_topic", str, "",
              "sensor_msgs/CameraInfo topic: the camera's intrinsics; empty: from hfov_deg"),
    ParamSpec("hfov_deg", float, 90.0, "Horizontal field of view, used until (or without) CameraInfo", "deg",
              10.0, 179.0),
    ParamSpec("mount.x", float, 1.2, "Camera position in the ego frame (base_link), forward", "m", -20.0, 20.0),
    ParamSpec("mount.y", float, 0.0, "... to the left", "m", -20.0, 20.0),
    ParamSpec("mount.z", float, 1.6, "... above the ground", "m", 0.1, 10.0),
    ParamSpec("mount.yaw_deg", float, 0.0, "Camera yaw in the ego frame, left positive", "deg", -180.0, 180.0),
    ParamSpec("mount.pitch_down_deg", float, 4.0, "Camera pitch, down positive", "deg", -45.0, 45.0),
)


class ConfigError(ValueError):
    """A parameter is missing, of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class CameraConfig:
    name: str
    topic: str
    transport: Transport = "raw"
    frame_id: str = ""
    #: Where the intrinsics come from (CameraInfo), else the field of view below.
    camera_info_topic: str = ""
    hfov_deg: float = 90.0
    #: The mount in the ego frame (metres, degrees): where agents are placed from (ros/camera_geometry.py).
    mount_x: float = 1.2
    mount_y: float = 0.0
    mount_z: float = 1.6
    mount_yaw_deg: float = 0.0
    mount_pitch_down_deg: float = 4.0


@dataclass(frozen=True)
class IngestConfig:
    """Validated ingest settings."""

    cameras: tuple[CameraConfig, ...]
    image: TargetSize
    #: Largest camera image (width x height) decoded; larger messages are refused unread.
    max_input_pixels: int
    window_size: int
    rate_hz: float
    gap_factor: float
    reset_after_backward_s: float
    max_fill_frames: int
    alignment_tolerance_ms: float
    stale_after_s: float

    @property
    def period_ns(self) -> int:
        return round(NS_PER_S / self.rate_hz)

    def ring_window(self) -> RingWindow:
        """A camera's ring window with these settings: the node and the offline check share it."""
        return RingWindow(capacity=self.window_size, period_ns=self.period_ns, gap_factor=self.gap_factor,
                          reset_after_backward_ns=round(self.reset_after_backward_s * NS_PER_S),
                          max_fill_frames=self.max_fill_frames)

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> IngestConfig:
        """Build from flat dotted parameters; unknown keys are ignored (other subsystems')."""
        values = {spec.name: checked(spec, params.get(spec.name, spec.default), spec.name)
                  for spec in PARAMETERS}
        names = values["cameras.names"]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"cameras.names must be a non-empty list of names, got {names!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"cameras.names has duplicates: {names!r}")
        cameras = []
        for name in names:
            cam = {spec.name: checked(spec, params.get(f"cameras.{name}.{spec.name}", spec.default),
                                       f"cameras.{name}.{spec.name}")
                   for spec in CAMERA_PARAMETERS}
            if not cam["topic"]:
                raise ConfigError(f"cameras.{name}.topic is required (the camera's image topic)")
            cameras.append(CameraConfig(name=name, **{key.replace(".", "_"): value for key, value in cam.items()}))
        topics = [c.topic for c in cameras]
        if len(set(topics)) != len(topics):
            raise ConfigError(f"two cameras share one topic: {topics!r}")
        return cls(
            cameras=tuple(cameras),
            image=TargetSize(values["image.width"], values["image.height"], values["image.resize_mode"]),
            max_input_pixels=values["image.max_input_pixels"],
            window_size=values["window.size"],
            rate_hz=values["window.rate_hz"],
            gap_factor=values["window.gap_factor"],
            reset_after_backward_s=values["window.reset_after_backward_s"],
            max_fill_frames=values["window.max_fill_frames"],
            alignment_tolerance_ms=values["alignment.tolerance_ms"],
            stale_after_s=values["alignment.stale_after_s"],
        )


def load_parameters(path: str | Path, node_name: str = "predictor") -> dict[str, Any]:
    """Read a ROS 2 parameter YAML into flat dotted names, as ``--params-file`` would.

    Parameters under ``/**`` apply to every node; those under ``node_name`` (with
    or without a leading namespace) override them.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read parameter file {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"parameter file {path} is not valid YAML: {err}") from err
    if not isinstance(document, dict):
        raise ConfigError(f"parameter file {path} must map node names to ros__parameters")
    flat: dict[str, Any] = {}
    for key in sorted(document, key=lambda k: k != "/**"):  # wildcard first, node overrides
        if key == "/**" or str(key).rstrip("/").split("/")[-1] == node_name:
            section = document[key]
            if not isinstance(section, dict) or "ros__parameters" not in section:
                raise ConfigError(f"{path}: section {key!r} has no ros__parameters")
            flat.update(_flatten(section["ros__parameters"]))
    return flat


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def checked(spec: ParamSpec, value: Any, name: str) -> Any:
    """``value`` converted to the spec's type, or a ConfigError naming the parameter."""
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is list and isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, spec.type) or isinstance(value, bool) != (spec.type is bool):
        raise ConfigError(f"parameter {name} must be {spec.type.__name__}, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"parameter {name} = {value} is below its minimum {spec.minimum} {spec.unit}".rstrip())
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"parameter {name} = {value} is above its maximum {spec.maximum} {spec.unit}".rstrip())
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"parameter {name} = {value!r} must be one of {', '.join(spec.choices)}")
    return value


_ROS_TYPE_NAMES = {list: "string[]", str: "string", int: "integer", float: "double", bool: "bool"}


def parameter_table_markdown() -> str:
    """The README's parameter table, generated from the schema (a test keeps them equal)."""
    specs = [*PARAMETERS[:1], *(ParamSpec(f"cameras.<name>.{s.name}", s.type, s.default, s.description,
                                          s.unit, s.minimum, s.maximum, s.choices)
                                for s in CAMERA_PARAMETERS), *PARAMETERS[1:]]
    return spec_table_markdown(specs)


def spec_table_markdown(specs: Iterable[ParamSpec]) -> str:
    """A Markdown table of parameter specs: name, type, default, unit, range or choices, meaning."""
    rows = ["| parameter | type | default | unit | range | meaning |", "|---|---|---|---|---|---|"]
    for spec in specs:
        if spec.choices:
            allowed = " \\| ".join(c or '`""`' for c in spec.choices)
        elif spec.minimum is not None:
            allowed = f"{spec.minimum:g} – {spec.maximum:g}"
        else:
            allowed = ""
        default = f"`{str(spec.default).lower() if spec.type is bool else repr(spec.default)}`".replace("'", '"')
        rows.append(f"| `{spec.name}` | {_ROS_TYPE_NAMES[spec.type]} | {default} | {spec.unit} | {allowed} | "
                    f"{spec.description} |")
    return "\n".join(rows)
