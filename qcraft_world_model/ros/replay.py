"""``qcraft-wm replay BAG``: play a bag into DDS at its recorded rate and record what the predictor answers.

The player publishes every message of the bag (camera images, camera info, tf,
ground truth, odometry) as the serialized bytes it was recorded as, paced by
the bag's log times divided by ``rate``, and publishes ``/clock`` with the bag
time so nodes running with ``use_sim_time`` follow it. Meanwhile it subscribes
to the predictor's outputs and records them, stamped with the bag time at which
they arrived, into a new bag together with the replayed input. That bag holds
everything ``qcraft-wm evaluate --recorded`` needs: the ground truth, the
camera frames and the live predictions.

Like ``ros2 bag play`` it waits until the predictor subscribes to the cameras
before it starts, so nothing is lost to discovery. The bag clock runs from the
first played message: what the predictor says while the player waits is
stamped with that time, and a replay's own outputs in the input (replaying a
replay) neither start the clock nor delay the playback.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from qcraft_world_model.data.rosbag_io import BagError, BagWriter, bag_time_span, bag_topics, first_log_time, read_raw

#: The predictor's topics recorded by default (under its namespace), besides /diagnostics.
OUTPUT_PREFIX = "/predictor/"
CLOCK_TOPIC = "/clock"


@dataclass
class ReplayResult:
    """What a replay did."""

    bag: str
    out: str
    rate: float
    published: int = 0
    seconds: float = 0.0
    #: topic → messages recorded from the predictor (and /diagnostics).
    recorded: dict[str, int] = field(default_factory=dict)
    #: topic → type of input topics not played because their Python bindings are missing here.
    not_played: dict[str, str] = field(default_factory=dict)
    #: topic → type of outputs not written because the bag's type store has no definition for them.
    skipped: dict[str, str] = field(default_factory=dict)
    #: One line per topic left out of the output bag, saying why (outputs not recordable here, an
    #: earlier replay's outputs in the input).
    dropped: list[str] = field(default_factory=list)


def message_class(msgtype: str) -> Any:
    """The rclpy class of ``pkg/msg/Name`` (the package's Python bindings must be importable)."""
    package, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as err:
        raise LookupError(f"cannot publish {msgtype}: its Python bindings are not importable ({err}); "
                           "source the workspace that provides it") from err


class _Recorder:
    """Subscribes (raw bytes) to every topic under a prefix as it appears, and keeps what arrives."""

    def __init__(self, node: rclpy.node.Node, prefixes: tuple[str, ...], clock_ns,  # noqa: ANN001
                 result: ReplayResult) -> None:
        self.node, self.prefixes, self.clock_ns, self.result = node, prefixes, clock_ns, result
        self.types: dict[str, str] = {}
        self.messages: list[tuple[str, int, bytes]] = []
        self._lock = threading.Lock()
        self._subscriptions: list = []

    def discover(self) -> None:
        """Subscribe to output topics that appeared since the last call."""
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self.types or not topic.startswith(self.prefixes) or not types:
                continue
            self.types[topic] = types[0]
            try:
                kind = message_class(types[0])
            except LookupError as err:  # an output type without bindings here: say so, record the rest
                self.node.get_logger().warn(f"not recording {topic}: {err}")
                self.result.dropped.append(f"not recorded: {topic} ({types[0]}): no Python bindings for its "
                                           "type here to subscribe with")
                continue
            reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            self._subscriptions.append(self.node.create_subscription(
                kind, topic, lambda data, t=topic: self._keep(t, data), reliable, raw=True))

    def _keep(self, topic: str, data: bytes) -> None:
        with self._lock:
            self.messages.append((topic, self.clock_ns(), data))

    def take(self) -> list[tuple[str, int, bytes]]:
        """(topic, bag time ns, CDR bytes) of what arrived since the last call, oldest first."""
        with self._lock:
            taken, self.messages = self.messages, []
        return taken


def replay_bag(bag: str | Path, out: str | Path, rate: float = 1.0, record: tuple[str, ...] = (OUTPUT_PREFIX,
               "/diagnostics"), wait_for_subscriber_s: float = 120.0, settle_s: float = 2.0,
               overwrite: bool = False, progress: bool = True, domain_id: int | None = None,
               predictor_failed: Callable[[], str | None] | None = None) -> ReplayResult:
    """Play ``bag`` into DDS, record the predictor's outputs (topics starting with ``record``) into ``out``.

    Waits up to ``wait_for_subscriber_s`` for a subscriber on the bag's camera
    topics, then plays; after the last message it keeps recording for
    ``settle_s`` (the last windows are still being predicted). ``domain_id``:
    default ROS_DOMAIN_ID. Runs in its own rclpy context. ``predictor_failed``: when
    the caller started the predictor, a check that returns why it died (None while it
    runs), so waiting for it ends with that reason instead of a timeout.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    topics = bag_topics(bag)
    # Outputs of an earlier replay (and its /clock) are neither played nor copied: the new bag would
    # otherwise hold two predictors' answers.
    played = {t: k for t, k in topics.items() if not (t.startswith(record) or t == CLOCK_TOPIC)}
    cameras = [t for t, kind in played.items() if kind in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")]
    if not cameras:
        raise BagError(f"bag {bag} has no camera topics to play")
    # Refuses an existing output, or the input itself, before anything is played.
    writer = BagWriter(out, overwrite=overwrite, inputs=(bag,))
    first = first_log_time(bag, played)
    if first is None:
        raise BagError(f"bag {bag} holds no messages on the topics it would play")
    result = ReplayResult(bag=str(bag), out=str(out), rate=rate)
    result.dropped += [f"not copied: {topic} ({kind}): an earlier replay's output, replaced by this one's"
                       for topic, kind in sorted(topics.items()) if topic not in played]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        node = rclpy.create_node("qcraft_wm_replay", context=context)
        try:
            publishers = _publishers(node, played, cameras, result)
            # The bag clock from the start: answers arriving before the first message is played are
            # stamped with its time, not 0 (a bag starting in 1970 makes replaying it sleep for decades).
            bag_now = {"ns": first}
            recorder = _Recorder(node, record, lambda: bag_now["ns"], result)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            spinning = threading.Event()
            spinning.set()

            def spin() -> None:
                while spinning.is_set():
                    executor.spin_once(timeout_sec=0.02)

            spinner = threading.Thread(target=spin, name="replay-spin", daemon=True)
            spinner.start()
            with writer:
                try:
                    _wait_for_subscriber(publishers, cameras, recorder, wait_for_subscriber_s, predictor_failed)
                    _play(bag, list(played), first, publishers, node, bag_now, recorder, writer, rate, result,
                          progress)
                    end = time.monotonic() + settle_s
                    while time.monotonic() < end:
                        recorder.discover()
                        time.sleep(0.05)
                finally:
                    spinning.clear()  # stop spinning before the context goes, also when waiting failed
                    spinner.join(timeout=5)
                    executor.shutdown()
                _write_recorded(recorder, writer, result)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return result


def _publishers(node: rclpy.node.Node, played: dict[str, str], cameras: list[str], result: ReplayResult) -> dict:
    """A publisher per played topic whose type has Python bindings here (cameras must have them)."""
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publishers = {}
    for topic, kind in played.items():
        try:
            publishers[topic] = node.create_publisher(message_class(kind), topic,
                                                      latched if topic == "/tf_static" else reliable)
        except LookupError:  # e.g. tf2_msgs on a machine without it: play the rest
            if topic in cameras:
                raise
            result.not_played[topic] = kind
    if result.not_played:
        node.get_logger().warn(
            f"not playing {', '.join(sorted(result.not_played))}: no Python bindings for "
            f"{', '.join(sorted(set(result.not_played.values())))} here (source a workspace that has them); "
            "they are still copied into the output bag")
    return publishers


def _wait_for_subscriber(publishers: dict, cameras: list[str], recorder: _Recorder, seconds: float,
                         predictor_failed: Callable[[], str | None] | None) -> None:
    deadline = time.monotonic() + seconds
    while not all(publishers[t].get_subscription_count() for t in cameras):
        failure = predictor_failed() if predictor_failed else None
        if failure:
            raise ChildProcessError(f"the predictor failed before subscribing: {failure}")
        if time.monotonic() > deadline:
            silent = [t for t in cameras if not publishers[t].get_subscription_count()]
            raise TimeoutError(f"nobody subscribed to {', '.join(silent)} within {seconds:g} s: is the predictor "
                               "running, active, on the same ROS_DOMAIN_ID, with these camera topics?")
        recorder.discover()
        time.sleep(0.1)
    recorder.discover()


def _play(bag: str | Path, topics: list[str], first: int, publishers: dict, node: rclpy.node.Node, bag_now: dict,
          recorder: _Recorder, writer: BagWriter, rate: float, result: ReplayResult, progress: bool) -> None:
    """Publish every message on ``topics`` at its (scaled) time after ``first``, the earliest of them,
    streaming from the bag, and write it and what the predictor answered so far to the output bag, in
    bag-time order."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock
    from tqdm import tqdm

    clock = node.create_publisher(Clock, CLOCK_TOPIC, 10)
    # The bag's end bounds the progress bar only; pacing counts from the first played message.
    last = max(first, bag_time_span(bag)[1])
    start = time.monotonic()
    bar = tqdm(total=(last - first) / 1e9, unit="s", desc="replay", disable=not progress,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} bag s", mininterval=1.0)
    last_discover = 0.0
    for topic, kind, log_time, raw in read_raw(bag, topics=topics):
        due = start + (log_time - first) / 1e9 / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        _write_recorded(recorder, writer, result)  # answers so far: stamped at or before this message
        bag_now["ns"] = log_time
        clock.publish(Clock(clock=Time(sec=log_time // 1_000_000_000, nanosec=log_time % 1_000_000_000)))
        data = bytes(raw)
        publisher = publishers.get(topic)  # None: no bindings here (ReplayResult.not_played), still copied
        if publisher is not None:
            publisher.publish(data)  # serialized bytes: republished exactly as recorded
            result.published += 1
        writer.write_raw(topic, kind, data, log_time)
        bar.update((log_time - first) / 1e9 - bar.n)  # tqdm redraws at most every mininterval
        if time.monotonic() - last_discover > 1.0:
            recorder.discover()  # outputs whose publishers appear late (e.g. per camera)
            last_discover = time.monotonic()
    bar.close()
    result.seconds = time.monotonic() - start


def _write_recorded(recorder: _Recorder, writer: BagWriter, result: ReplayResult) -> None:
    """Append what the predictor published since the last call to the output bag."""
    known = writer.typestore.fielddefs
    for topic, log_time, data in recorder.take():
        kind = recorder.types[topic]
        if kind not in known:  # e.g. Autoware's types on an Autoware install: no definition to store
            if topic not in result.skipped:
                result.dropped.append(f"not recorded: {topic} ({kind}): the output bag has no message "
                                      "definition for its type")
            result.skipped[topic] = kind
            continue
        writer.write_raw(topic, kind, data, log_time)
        result.recorded[topic] = result.recorded.get(topic, 0) + 1
