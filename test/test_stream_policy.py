"""The camera-stream policy the node and check-bag share, without DDS: which frames become windows."""

from __future__ import annotations

import time
from pathlib import Path

from qcraft_world_model.ingest.config import IngestConfig
from qcraft_world_model.ingest.stream_policy import StreamPolicy, StreamSettings

from predictor_params import tiny_model

PERIOD = 100_000_000  # 10 Hz
CAMERAS = ("front", "left", "right")


def policy(max_hold_s: float = 5.0) -> StreamPolicy:
    config = IngestConfig.from_parameters({"cameras.names": list(CAMERAS),
                                           **{f"cameras.{c}.topic": f"/{c}" for c in CAMERAS}})
    return StreamPolicy.create(CAMERAS, config.ring_window, StreamSettings(20_000_000, 0.5, max_hold_s))


def feed(p: StreamPolicy, instants: int, start: int = 0, skip: dict[str, object] | None = None,
         stamp_of=None) -> list:  # noqa: ANN001
    """Every camera at 10 Hz (arrival = capture time); ``stamp_of(camera, k)`` may lie about a stamp."""
    jobs = []
    for k in range(start, start + instants):
        for camera in CAMERAS:
            if skip and camera in skip and k >= skip[camera]:
                continue
            stamp = stamp_of(camera, k) if stamp_of else k * PERIOD
            _, job = p.push(camera, stamp, (camera, k), k * 0.1)
            if job is not None:
                jobs.append(job)
                p.published(job.stamp_ns)
    return jobs


def test_cameras_in_step_give_one_window_per_instant_once_full() -> None:
    jobs = feed(policy(), 40)
    assert [j.stamp_ns for j in jobs] == [k * PERIOD for k in range(15, 40)]
    assert all(not j.stale and [w[-1][1] for w in j.windows] == [j.stamp_ns // PERIOD] * 3 for j in jobs)


def test_a_camera_whose_clock_jumps_back_and_forth_neither_stalls_nor_rewinds_the_others() -> None:
    """One camera alternating t and t - 5 s once made the node publish windows stamped back in time and
    call the healthy cameras stale. Now: no job goes back, the healthy cameras are never stale, and the
    broken camera is the one read from its held window."""
    p = policy(max_hold_s=0.0)
    jobs = feed(p, 30)
    jobs += feed(p, 30, start=30, stamp_of=lambda c, k: k * PERIOD - (5 * 10**9 if c == "left" and k % 2 else 0))
    stamps = [j.stamp_ns for j in jobs]
    assert stamps == sorted(set(stamps)), "a window went back in time"
    assert all(set(j.stale) <= {"left"} for j in jobs)
    assert any(j.stale == ["left"] for j in jobs[15:])
    assert len(jobs) >= 15 + 25, "the healthy cameras kept being served"
    assert p.stats.loops == 0 and p.stats.late_frames > 0


def test_a_bag_that_loops_starts_over_once_every_camera_went_back() -> None:
    p = policy()
    first = feed(p, 30)
    again = feed(p, 30, stamp_of=lambda c, k: k * PERIOD)  # the same stamps again: the bag looped
    assert p.stats.loops == 1
    assert [j.stamp_ns for j in again] == [j.stamp_ns for j in first]


def test_a_silent_camera_is_held_then_stops_the_windows_after_max_hold() -> None:
    p = policy(max_hold_s=1.0)
    jobs = feed(p, 60, skip={"right": 25})
    held = [j for j in jobs if j.stale == ["right"]]
    assert held and held[0].stamp_ns <= 31 * PERIOD, "held once silent for stale_after_s (0.5 s)"
    assert all(j.stamp_ns <= 36 * PERIOD for j in held), "no window after max_hold_s (1 s)"
    assert p.held_too_long == "right"
    assert held[0].windows[2] == held[-1].windows[2], "the held window is its last complete one"


PATTERN_MODEL = tiny_model("tiny3", cameras=3)


def test_check_bag_names_the_windows_the_node_forms_from_the_same_frames(ros, tmp_path: Path) -> None:
    """The bag's frames, played into the running node at their recorded rate over DDS: every window it
    publishes is one check-bag predicted, and the ones it does not are counted as dropped."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from qcraft_world_model.data.rosbag_io import read_raw
    from qcraft_world_model.data.pattern_bag import PatternCamera, PatternSpec, write_test_pattern_bag
    from qcraft_world_model.eval.ingest_check import check_bag

    from test_predictor_node import NodeUnderTest, save_random_model

    rig = (PatternCamera("front", duplicate_frames=(10,), dropped_frames=(15, 16)),
           PatternCamera("front_left", compressed=True, corrupt_frames=(5,)),
           PatternCamera("front_right", truncated_frames=(8,), stops_at=20))
    bag = write_test_pattern_bag(tmp_path / "bag", PatternSpec(cameras=rig, seconds=4.0, width=64, height=48))
    predicted = check_bag(bag).alignment.stamps_ns
    assert len(predicted) >= 15

    rclpy, msgs = ros
    save_random_model(tmp_path, PATTERN_MODEL)
    cameras = "\n".join(f"      {c.name}: {{topic: {c.topic}{', transport: compressed' if c.compressed else ''}}}"
                        for c in rig)
    params = f"""/**:
  ros__parameters:
    cameras:
      names: [front, front_left, front_right]
{cameras}
    image: {{width: 32, height: 32}}
    model: {{path: {tmp_path}/model, backend: torch, precision: fp32}}
"""
    node = NodeUnderTest(rclpy, msgs, tmp_path, params, cameras=("front",))
    types = {c.topic: CompressedImage if c.compressed else Image for c in rig}
    node.publishers = {topic: node.client.create_publisher(kind, topic, 10) for topic, kind in types.items()}
    try:
        node.wait_subscribed()
        records = list(read_raw(bag, topics=list(types)))
        start_log, start = records[0][2], time.monotonic()
        for topic, _, log_time, data in records:  # at the recorded rate, in the bag's order
            while time.monotonic() - start < (log_time - start_log) / 1e9:
                node.spin(0.002)
            node.publishers[topic].publish(deserialize_message(bytes(data), types[topic]))
        node.spin(2.0)
        published = sorted({m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in node.agents})
        status = next(s for array in reversed(node.diagnostics) for s in array.status if s.name.endswith("inference"))
        counts = {v.key: int(v.value) for v in status.values if v.key in ("dropped", "dropped_old")}
    finally:
        node.close()
    # A window is stamped with the frame that completed it; cameras are decoded in parallel lanes, so
    # which camera's frame (jitter: 1 ms) came last can differ from the bag's order: compare instants.
    instants = [round(stamp / PERIOD) for stamp in published]
    expected = [round(stamp / PERIOD) for stamp in predicted]
    assert set(instants) <= set(expected), sorted(set(instants) - set(expected))
    assert len(instants) + counts["dropped"] + counts["dropped_old"] == len(expected), (instants, expected, counts)
