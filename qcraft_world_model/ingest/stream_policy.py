"""The one camera-stream policy: which frames form which model windows, for the node and check-bag.

Each camera keeps a ring window (``ring_window.py``). A frame that completes its camera's window
at capture time t forms a job when every other camera also holds a complete window ending within
``alignment.tolerance_ms`` of t. A camera that went quiet does not hold the others up:

- **silent** by capture time — its newest frame is more than ``alignment.stale_after_s`` behind the
  newest frame of *any* camera (judged against the newest stamp across cameras, not the triggering
  frame's, so one camera whose clock jumps back cannot make the healthy ones look stale), or by
  arrival time (no frame for ``stale_after_s`` on the monotonic clock);
- its last complete window is **held** and read again (the job names it stale) for at most
  ``alignment.max_hold_s``, after which jobs stop (the caller reports ERROR);
- a camera that never filled a window is waited for.

Time going back: a frame behind the newest frame across cameras by more than the tolerance is
late — it is windowed but forms no job. The output watermark (the capture time of the last
published window; nothing at or before it is published again) is reset only when *every* camera
has gone back behind it — a bag that loops — never because one camera's clock jumped.

Pure Python, no rclpy: the node (``ros/node.py``) feeds it live frames with monotonic arrival
times; ``qcraft-wm check-bag`` feeds it a bag's frames with arrival = capture time, so it predicts
exactly the windows the node would form from that bag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from qcraft_world_model.ingest.ring_window import PushOutcome, RingWindow

ItemT = TypeVar("ItemT")
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class StreamSettings:
    """The alignment parameters (``alignment.*`` in the node's parameters)."""

    tolerance_ns: int
    stale_after_s: float
    #: 0: hold a silent camera's window without limit.
    max_hold_s: float


@dataclass
class CameraStream(Generic[ItemT]):
    """One camera's window and what the policy remembers about it."""

    window: RingWindow[ItemT]
    #: The last complete window a job used: what is read while the camera is silent.
    held: list[ItemT] | None = None
    #: The camera went silent and has not delivered a complete window since.
    recovering: bool = False
    #: Arrival time (seconds, the caller's clock) of its last frame; None: none yet.
    last_arrival_s: float | None = None


@dataclass(frozen=True)
class Job(Generic[ItemT]):
    """One window per camera (configuration order), to run the model on."""

    stamp_ns: int
    #: Arrival time of the frame that completed it (the caller's clock).
    arrival_s: float
    windows: list[list[ItemT]]
    #: Cameras whose held window is read because they are silent.
    stale: list[str]


@dataclass
class PolicyStats:
    jobs: int = 0
    jobs_with_stale: int = 0
    #: Frames behind the newest across cameras: windowed, but forming no job.
    late_frames: int = 0
    #: Times every camera went back in time together (a bag loop) and the watermark was reset.
    loops: int = 0


@dataclass
class StreamPolicy(Generic[ItemT]):
    """Frames in (camera, capture stamp, item, arrival time), jobs out."""

    cameras: Sequence[str]
    streams: dict[str, CameraStream[ItemT]]
    settings: StreamSettings
    #: Capture time of the last published window: nothing at or before it forms a job.
    watermark_ns: int = -1
    #: A camera held longer than max_hold_s (jobs stop until it returns), or None.
    held_too_long: str | None = None
    stats: PolicyStats = field(default_factory=PolicyStats)

    @classmethod
    def create(cls, cameras: Sequence[str], new_window, settings: StreamSettings) -> StreamPolicy:  # noqa: ANN001
        """``new_window()`` makes one camera's empty RingWindow (``IngestConfig.ring_window``)."""
        return cls(list(cameras), {name: CameraStream(new_window()) for name in cameras}, settings)

    def newest_ns(self) -> int | None:
        """The newest capture stamp across cameras."""
        stamps = [s.window.newest_stamp_ns for s in self.streams.values() if s.window.newest_stamp_ns is not None]
        return max(stamps) if stamps else None

    def push(self, camera: str, stamp_ns: int, item: ItemT, arrival_s: float) -> tuple[PushOutcome, Job | None]:
        """Window one frame; the job it completes, if any."""
        stream = self.streams[camera]
        stream.last_arrival_s = arrival_s
        outcome = stream.window.push(stamp_ns, item)
        if not outcome.accepted:
            return outcome, None
        if self.watermark_ns >= 0 and all(s.window.newest_stamp_ns is not None
                                          and s.window.newest_stamp_ns < self.watermark_ns
                                          for s in self.streams.values()):
            # Every camera is behind what was published: the stream itself went back (a bag loop).
            self.watermark_ns = -1
            self.stats.loops += 1
        newest = self.newest_ns()
        if newest is not None and stamp_ns < newest - self.settings.tolerance_ns:
            self.stats.late_frames += 1
            return outcome, None
        if stamp_ns <= self.watermark_ns:
            return outcome, None
        job = self._job(stamp_ns, arrival_s, newest)
        if job is not None:
            self.stats.jobs += 1
            self.stats.jobs_with_stale += bool(job.stale)
        return outcome, job

    def published(self, stamp_ns: int) -> None:
        """A job's window went out: nothing at or before it forms a job again (until a loop)."""
        self.watermark_ns = max(self.watermark_ns, stamp_ns)

    def _job(self, stamp_ns: int, arrival_s: float, newest_all: int) -> Job | None:
        """``newest_all``: the newest stamp across cameras, against which silence is judged."""
        settings = self.settings
        stale_after_ns = settings.stale_after_s * NS_PER_S
        windows, stale = [], []
        for name in self.cameras:
            stream = self.streams[name]
            window = stream.window
            newest = window.newest_stamp_ns
            if window.is_complete and abs(newest - stamp_ns) <= settings.tolerance_ns:
                stream.held, stream.recovering = window.items(), False
                windows.append(stream.held)
                continue
            silent = (newest is not None and newest_all - newest > stale_after_ns) or (
                stream.last_arrival_s is not None and arrival_s - stream.last_arrival_s > settings.stale_after_s)
            if stream.held is None or not (stream.recovering or silent):
                return None  # not there yet: its frame for this instant may still be on the way
            if settings.max_hold_s > 0 and stream.last_arrival_s is not None \
                    and arrival_s - stream.last_arrival_s > settings.max_hold_s:
                self.held_too_long = name
                return None  # frozen images for this long are no longer a prediction: stop, say so
            stream.recovering = True
            windows.append(stream.held)
            stale.append(name)
        self.held_too_long = None
        return Job(stamp_ns, arrival_s, windows, stale)

    def reset(self) -> None:
        """Forget everything (a lifecycle re-activation): windows refill from live frames."""
        for stream in self.streams.values():
            stream.window.clear()
            stream.held, stream.recovering, stream.last_arrival_s = None, False, None
        self.watermark_ns, self.held_too_long = -1, None
