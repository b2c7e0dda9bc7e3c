"""A synthetic camera rig with scripted faults, written to a rosbag2.

Not driving data (that is the SUMO scene generator's job): moving boxes on a
gradient, one stream per camera, with the faults a fleet bag really has —
a corrupt JPEG, a truncated raw image, a duplicate stamp, dropped frames,
stamp jitter and a camera that dies. The demo and the tests use it to show
the ingest pipeline keeps serving the healthy cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from qcraft_world_model.data.rosbag_io import COMPRESSED_IMAGE, IMAGE, BagWriter, Storage
from qcraft_world_model.ingest.image_encode import image_fields

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class PatternCamera:
    """One camera of the rig and the faults scripted for it (frame indices)."""

    name: str
    compressed: bool = False
    corrupt_frames: tuple[int, ...] = ()
    truncated_frames: tuple[int, ...] = ()
    duplicate_frames: tuple[int, ...] = ()
    dropped_frames: tuple[int, ...] = ()
    #: First frame index the camera no longer sends (None: runs to the end).
    stops_at: int | None = None

    @property
    def topic(self) -> str:
        return f"/sensing/camera/{self.name}/image_raw" + ("/compressed" if self.compressed else "")

    @property
    def frame_id(self) -> str:
        return f"camera_{self.name}_optical"


def faulty_rig() -> tuple[PatternCamera, ...]:
    """Three cameras, each with some of the faults a fleet bag shows."""
    return (
        PatternCamera("front", duplicate_frames=(30,), dropped_frames=(40, 41, 42)),
        PatternCamera("front_left", compressed=True, corrupt_frames=(12,)),
        PatternCamera("front_right", truncated_frames=(20,), stops_at=45),
    )


@dataclass
class PatternSpec:
    cameras: tuple[PatternCamera, ...] = field(default_factory=faulty_rig)
    seconds: float = 6.0
    rate_hz: float = 10.0
    width: int = 320
    height: int = 240
    #: Uniform stamp jitter per frame, ± milliseconds.
    jitter_ms: float = 5.0
    seed: int = 0
    start_ns: int = 1_700_000_000 * NS_PER_S


def render_pattern(index: int, camera: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of camera number ``camera``: boxes sliding over a gradient."""
    ys, xs = np.mgrid[0:height, 0:width]
    frame = np.stack([(xs * 255 // max(1, width - 1)), (ys * 255 // max(1, height - 1)),
                      np.full_like(xs, 60 + 60 * camera)], axis=-1).astype(np.uint8)
    for box in range(3):
        x = int((index * (4 + 3 * box) + 70 * box + 40 * camera) % (width + 60)) - 60
        y = height // 4 + box * height // 5
        cv2.rectangle(frame, (x, y), (x + 50, y + 30), (255 - 80 * box, 40 * box, 200), thickness=-1)
    return frame


def write_test_pattern_bag(path: str | Path, spec: PatternSpec | None = None,
                           storage: Storage = "mcap", overwrite: bool = False) -> Path:
    """Write the rig's streams, faults included, to a bag at ``path``."""
    spec = spec or PatternSpec()
    rng = np.random.default_rng(spec.seed)
    period_ns = round(NS_PER_S / spec.rate_hz)
    frames = round(spec.seconds * spec.rate_hz)
    last_stamp: dict[str, int] = {}
    with BagWriter(path, storage=storage, overwrite=overwrite) as bag:
        types = bag.typestore.types
        for index in range(frames):
            for number, cam in enumerate(spec.cameras):
                if index in cam.dropped_frames or (cam.stops_at is not None and index >= cam.stops_at):
                    continue
                stamp = spec.start_ns + index * period_ns + round(rng.uniform(-1, 1) * spec.jitter_ms * 1e6)
                if index in cam.duplicate_frames and cam.name in last_stamp:
                    stamp = last_stamp[cam.name]  # a driver re-sending its previous stamp
                last_stamp[cam.name] = stamp
                rgb = render_pattern(index, number, spec.width, spec.height)
                header = bag.header(stamp, cam.frame_id)
                if index in cam.corrupt_frames and cam.compressed:
                    # A JPEG signature followed by garbage, as a torn write leaves it.
                    data = np.frombuffer(b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, 500, np.uint8)),
                                         np.uint8)
                    message = types[COMPRESSED_IMAGE](header=header, format="jpeg", data=data)
                    bag.write(cam.topic, COMPRESSED_IMAGE, message, stamp)
                elif index in cam.truncated_frames and not cam.compressed:
                    fields = image_fields(rgb, "rgb8")
                    fields["data"] = fields["data"][: len(fields["data"]) // 2]
                    bag.write(cam.topic, IMAGE, types[IMAGE](header=header, **fields), stamp)
                else:
                    bag.write_camera_frame(cam.topic, rgb, stamp, cam.frame_id, compressed=cam.compressed)
    return Path(path)
