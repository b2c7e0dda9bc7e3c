"""Does a bag's camera data work with the node? The ingest pipeline, run offline.

Every camera frame in the bag goes through the same decoder, ring windows and
camera-stream policy the node uses, and the result is counted: frames decoded,
errors by kind (with examples), duplicates, out-of-order stamps, gaps, frame
rate, complete 16-frame windows, and exactly the model windows the node would
form (with the cameras it would hold as stale).
First the storage itself is checked: an MCAP chunk failing its CRC is refused
with its byte range, since its frames would decode and be counted as healthy.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcraft_world_model.data.rosbag_io import (
    CAMERA_TYPES,
    BagError,
    bag_topics,
    check_mcap_crcs,
    read_messages,
    require_type,
)
from qcraft_world_model.ingest import CameraConfig, ImageDecodeError, IngestConfig, decode_any
from qcraft_world_model.ingest.stream_policy import StreamPolicy, StreamSettings

MS = 1_000_000


@dataclass
class CameraReport:
    """What one camera topic of a bag looks like to the ingest pipeline."""

    name: str
    topic: str
    msgtype: str
    messages: int = 0
    decoded: int = 0
    #: Error class → count (ImageDecodeError subclasses, or the bag's record errors).
    errors: dict[str, int] = field(default_factory=dict)
    #: Up to three example messages, "stamp: reason".
    error_examples: list[str] = field(default_factory=list)
    duplicates: int = 0
    out_of_order: int = 0
    resets: int = 0
    gaps: int = 0
    missing_frames: int = 0
    #: Frames after which the camera's window held a full, gap-free sequence.
    complete_windows: int = 0
    median_period_ms: float | None = None
    #: Source resolutions seen, "WxH" → count.
    resolutions: dict[str, int] = field(default_factory=dict)


@dataclass
class AlignmentReport:
    """The model windows the node would form from the bag: the node's own stream policy
    (``ingest/stream_policy.py``) fed the bag's frames with arrival = capture time, every window
    taken as published at once (a model infinitely fast; a slower one drops some, never adds)."""

    cameras: list[str]
    #: Windows the node would run the model on, and how many read a stale camera's held window.
    windows: int = 0
    windows_with_stale: int = 0
    #: Camera → windows it was stale (held) in.
    stale_by_camera: dict[str, int] = field(default_factory=dict)
    #: Frames behind the newest across cameras by more than the tolerance: windowed, forming no window.
    late_frames: int = 0
    #: Times every camera went back in time together (the bag loops).
    loops: int = 0
    #: Capture-time spread between the cameras' newest frames within a window.
    skew_ms_p50: float | None = None
    skew_ms_max: float | None = None
    #: Capture stamps of the windows, in order (what a replay into the node publishes at most).
    stamps_ns: list[int] = field(default_factory=list)


@dataclass
class IngestReport:
    bag: str
    cameras: list[CameraReport]
    alignment: AlignmentReport
    #: MCAP chunks whose CRC was verified, and those written without one (damage there goes unseen).
    chunks_verified: int = 0
    chunks_without_crc: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cameras_in_bag(bag: str | Path) -> tuple[CameraConfig, ...]:
    """One camera per Image/CompressedImage topic, named by what sets its topic apart.

    ``/sensing/camera/front/image_raw`` and ``/sensing/camera/left/image_raw/compressed``
    become ``front`` and ``left``: segments shared by all camera topics and
    image_transport suffixes are dropped.
    """
    found = [(topic, msgtype) for topic, msgtype in sorted(bag_topics(bag).items())
             if msgtype in CAMERA_TYPES]
    if not found:
        raise BagError(f"bag {bag} has no sensor_msgs/Image or CompressedImage topic")
    suffixes = {"image_raw", "image_rect", "image_rect_color", "image_color", "image", "compressed"}
    parts = [[p for p in topic.strip("/").split("/") if p not in suffixes] for topic, _ in found]
    shared = set.intersection(*(set(p) for p in parts)) if len(parts) > 1 else set()
    names = ["_".join(p for p in segments if p not in shared) or "_".join(segments) or "camera"
             for segments in parts]
    if len(set(names)) != len(names):  # the heuristic collided: fall back to whole topics
        names = [topic.strip("/").replace("/", "_") for topic, _ in found]
    return tuple(CameraConfig(name=name, topic=topic,
                              transport="compressed" if msgtype == CAMERA_TYPES[1] else "raw")
                 for name, (topic, msgtype) in zip(names, found))


def check_bag(bag: str | Path, config: IngestConfig | None = None,
              on_frame: Callable[[str, int, np.ndarray], None] | None = None, max_hold_s: float = 5.0
              ) -> IngestReport:
    """Run the bag's camera frames through the ingest pipeline and count what happens.

    ``max_hold_s``: the node's ``alignment.max_hold_s`` (its default here).
    ``config`` selects cameras and window settings (default: every camera topic
    in the bag, default settings). ``on_frame(camera, stamp_ns, rgb)`` sees each
    decoded frame, e.g. to draw a contact sheet.
    """
    if config is None:
        found = cameras_in_bag(bag)
        config = IngestConfig.from_parameters({
            "cameras.names": [c.name for c in found],
            **{f"cameras.{c.name}.{key}": value for c in found
               for key, value in (("topic", c.topic), ("transport", c.transport))}})
    topics = bag_topics(bag)
    by_topic = {c.topic: c for c in config.cameras}
    absent = [c.topic for c in config.cameras if c.topic not in topics]
    if absent:
        raise BagError(f"bag {bag} has no topic {', '.join(absent)} (it has: {', '.join(sorted(topics))})")
    for camera in config.cameras:
        require_type(bag, camera.topic, topics[camera.topic], CAMERA_TYPES)
    verified, without_crc = check_mcap_crcs(bag)

    reports = {c.name: CameraReport(c.name, c.topic, topics[c.topic]) for c in config.cameras}
    settings = StreamSettings(tolerance_ns=round(config.alignment_tolerance_ms * MS),
                              stale_after_s=config.stale_after_s, max_hold_s=max_hold_s)
    policy: StreamPolicy[int] = StreamPolicy.create([c.name for c in config.cameras], config.ring_window, settings)
    windows = {name: stream.window for name, stream in policy.streams.items()}
    alignment = AlignmentReport(cameras=[c.name for c in config.cameras],
                                stale_by_camera={c.name: 0 for c in config.cameras})
    periods: dict[str, list[int]] = {c.name: [] for c in config.cameras}
    skews: list[int] = []

    for record in read_messages(bag, topics=by_topic):
        camera = by_topic[record.topic].name
        report = reports[camera]
        report.messages += 1
        if record.message is None:
            _count_error(report, "UndecodableRecord", record.log_time_ns, record.error or "")
            continue
        stamp = record.stamp_ns
        try:
            rgb = decode_any(record.message, config.image, config.max_input_pixels)
        except ImageDecodeError as err:
            _count_error(report, type(err).__name__, stamp, str(err))
            continue
        report.decoded += 1
        size = f"{record.message.width}x{record.message.height}" \
            if hasattr(record.message, "width") else "compressed"
        report.resolutions[size] = report.resolutions.get(size, 0) + 1

        window = windows[camera]
        previous = window.newest_stamp_ns
        # Arrival = capture time: a replay at the recorded rate delivers the frames so.
        outcome, job = policy.push(camera, stamp, stamp, stamp / 1e9)
        if not outcome.accepted:
            continue
        if previous is not None and stamp > previous:
            periods[camera].append(stamp - previous)
        report.complete_windows += window.is_complete
        if on_frame is not None:
            on_frame(camera, stamp, rgb)
        if job is not None:
            policy.published(job.stamp_ns)
            alignment.stamps_ns.append(job.stamp_ns)
            live = [w[-1] for name, w in zip(policy.cameras, job.windows) if name not in job.stale]
            skews.append(max(live) - min(live))
            for name in job.stale:
                alignment.stale_by_camera[name] += 1

    for name, report in reports.items():
        stats = windows[name].stats
        report.duplicates, report.out_of_order = stats.duplicates, stats.out_of_order
        report.resets, report.gaps, report.missing_frames = stats.resets, stats.gaps, stats.missing_frames
        if periods[name]:
            report.median_period_ms = statistics.median(periods[name]) / MS
    alignment.windows, alignment.windows_with_stale = policy.stats.jobs, policy.stats.jobs_with_stale
    alignment.late_frames, alignment.loops = policy.stats.late_frames, policy.stats.loops
    if skews:
        alignment.skew_ms_p50 = float(np.percentile(skews, 50)) / MS
        alignment.skew_ms_max = max(skews) / MS
    return IngestReport(str(bag), list(reports.values()), alignment, verified, without_crc)


def _count_error(report: CameraReport, kind: str, stamp_ns: int, reason: str) -> None:
    report.errors[kind] = report.errors.get(kind, 0) + 1
    if len(report.error_examples) < 3:
        report.error_examples.append(f"{stamp_ns / 1e9:.3f} s: {reason}")


def format_report(report: IngestReport) -> str:
    """A plain-text table for the terminal."""
    header = ("camera", "type", "msgs", "decoded", "errors", "dup", "ooo", "gaps", "lost", "period ms",
              "full windows")
    rows = []
    for cam in report.cameras:
        rows.append((cam.name, cam.msgtype.rsplit("/", 1)[-1], cam.messages, cam.decoded,
                     sum(cam.errors.values()), cam.duplicates, cam.out_of_order, cam.gaps,
                     cam.missing_frames,
                     "-" if cam.median_period_ms is None else f"{cam.median_period_ms:.1f}",
                     cam.complete_windows))
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows)]
    lines = [f"ingest check of {report.bag}",
             "  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)) for row in rows]
    for cam in report.cameras:
        for kind, count in sorted(cam.errors.items()):
            lines.append(f"  {cam.name}: {count} x {kind}")
        lines += [f"    e.g. {example}" for example in cam.error_examples]
    a = report.alignment
    stale = ", ".join(f"{name} {n}" for name, n in a.stale_by_camera.items() if n) or "none"
    skew = "-" if a.skew_ms_p50 is None else f"p50 {a.skew_ms_p50:.1f} ms, max {a.skew_ms_max:.1f} ms"
    lines.append(f"model windows the node would form: {a.windows} ({a.windows_with_stale} reading a stale camera's "
                 f"held window: {stale}); late frames {a.late_frames}; loops {a.loops}; skew {skew}")
    if report.chunks_without_crc:
        lines.append(f"note: {report.chunks_without_crc} MCAP chunk(s) carry no CRC (an older writer): damage "
                     "inside them cannot be detected")
    return "\n".join(lines)
