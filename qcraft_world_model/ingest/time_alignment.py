"""Approximate time alignment of several cameras (message_filters is not pip-installable).

Cameras are not triggered together: their stamps jitter by a few milliseconds
and a camera can stop. The aligner groups one frame per camera whose stamps lie
within ``tolerance_ns`` of a reference frame, and stops waiting for a camera
that has been silent for ``stale_after_ns`` (measured on the stamps of the
others, so it works the same on a replayed bag as live): its sets then go out
without it, listing it as missing, so the other cameras keep being served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class AlignedSet(Generic[ItemT]):
    """One frame per present camera, close in time."""

    #: Stamp of the frame the others were matched against (the oldest pending).
    reference_ns: int
    #: camera name → (stamp, item), for the cameras present in this set.
    frames: dict[str, tuple[int, ItemT]]
    #: Cameras that were stale and not waited for, in configuration order.
    missing: tuple[str, ...]

    @property
    def skew_ns(self) -> int:
        """Spread between the newest and the oldest frame of the set."""
        stamps = [stamp for stamp, _ in self.frames.values()]
        return max(stamps) - min(stamps)


@dataclass
class AlignerStats:
    """Counters for diagnostics."""

    sets: int = 0
    sets_with_missing: int = 0
    #: Frames dropped because no other camera had a frame close enough.
    unmatched: int = 0
    #: Frames dropped because a camera's queue overflowed while waiting.
    overflow: int = 0


@dataclass
class ApproximateTimeAligner(Generic[ItemT]):
    """Group frames from ``cameras`` into sets with stamps within ``tolerance_ns``."""

    cameras: Sequence[str]
    tolerance_ns: int
    stale_after_ns: int
    queue_size: int = 8
    stats: AlignerStats = field(default_factory=AlignerStats)

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"camera names must be unique, got {list(self.cameras)}")
        if self.tolerance_ns < 0 or self.stale_after_ns <= 0 or self.queue_size < 1:
            raise ValueError("tolerance_ns must be >= 0, stale_after_ns > 0 and queue_size >= 1")
        self.cameras = tuple(self.cameras)
        self._queues: dict[str, deque[tuple[int, ItemT]]] = {
            name: deque() for name in self.cameras}
        self._latest: dict[str, int | None] = {name: None for name in self.cameras}
        self._first_ns: int | None = None

    def add(self, camera: str, stamp_ns: int, item: ItemT) -> list[AlignedSet[ItemT]]:
        """Queue a frame; return the sets it completed, oldest first (often none)."""
        if camera not in self._queues:
            raise KeyError(f"unknown camera {camera!r}; configured: {list(self.cameras)}")
        latest = self._latest[camera]
        if latest is not None and stamp_ns <= latest:
            # Order is the ring window's job; here an old frame can only confuse matching.
            return []
        queue = self._queues[camera]
        queue.append((stamp_ns, item))
        if len(queue) > self.queue_size:
            queue.popleft()
            self.stats.overflow += 1
        self._latest[camera] = stamp_ns
        if self._first_ns is None:
            self._first_ns = stamp_ns
        return self._collect()

    def stale_cameras(self) -> tuple[str, ...]:
        """Cameras silent for longer than ``stale_after_ns`` by the others' clock."""
        newest = max((s for s in self._latest.values() if s is not None), default=None)
        if newest is None:
            return ()
        stale = []
        for name in self.cameras:
            last = self._latest[name]
            since = last if last is not None else self._first_ns
            if since is not None and newest - since > self.stale_after_ns:
                stale.append(name)
        return tuple(stale)

    def _collect(self) -> list[AlignedSet[ItemT]]:
        sets: list[AlignedSet[ItemT]] = []
        stale = self.stale_cameras()
        active = [name for name in self.cameras if name not in stale]
        for name in stale:
            self._queues[name].clear()
        while True:
            heads = [(self._queues[name][0][0], name) for name in active if self._queues[name]]
            if not heads:
                return sets
            ref_ns, ref_cam = min(heads)
            chosen: dict[str, tuple[int, ItemT]] = {ref_cam: self._queues[ref_cam][0]}
            verdict = "match"
            for name in active:
                if name == ref_cam:
                    continue
                near = [entry for entry in self._queues[name]
                        if abs(entry[0] - ref_ns) <= self.tolerance_ns]
                if near:
                    chosen[name] = min(near, key=lambda entry: abs(entry[0] - ref_ns))
                    continue
                latest = self._latest[name]
                if latest is None or latest < ref_ns + self.tolerance_ns:
                    verdict = "wait"  # a frame close to ref may still arrive
                    break
                verdict = "unmatchable"
            if verdict == "wait":
                return sets
            if verdict == "unmatchable":
                self._queues[ref_cam].popleft()
                self.stats.unmatched += 1
                continue
            for name, (stamp, _) in chosen.items():
                queue = self._queues[name]
                while queue and queue[0][0] <= stamp:
                    queue.popleft()
            sets.append(AlignedSet(reference_ns=ref_ns, frames=chosen, missing=stale))
            self.stats.sets += 1
            self.stats.sets_with_missing += bool(stale)
