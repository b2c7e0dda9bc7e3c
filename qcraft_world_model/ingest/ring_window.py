"""A per-camera ring window of the last N timestamped frames (or frame embeddings).

The model reads 16 evenly spaced frames per camera. The window keeps them in
capture order, refuses what would break that order, and says when the frames
it holds are a usable sequence. It stores any item (a decoded frame, or the
stem's cached embedding of it), so one decode/stem pass per frame suffices.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")

NS_PER_S = 1_000_000_000


class PushOutcome(enum.Enum):
    """What :meth:`RingWindow.push` did with a frame."""

    ACCEPTED = "accepted"
    #: Accepted, but the time since the previous frame shows missing frames.
    ACCEPTED_AFTER_GAP = "accepted_after_gap"
    #: Accepted after clearing the window: time jumped far backwards (a bag
    #: that loops, a simulator restart); the old frames belong to another past.
    ACCEPTED_AFTER_RESET = "accepted_after_reset"
    #: Refused: same stamp as the newest frame (a duplicate delivery).
    REJECTED_DUPLICATE = "rejected_duplicate"
    #: Refused: older than the newest frame, by less than a reset jump.
    REJECTED_OUT_OF_ORDER = "rejected_out_of_order"

    @property
    def accepted(self) -> bool:
        return self.name.startswith("ACCEPTED")


@dataclass
class WindowStats:
    """Counters since construction (never reset by :meth:`RingWindow.clear`)."""

    accepted: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    resets: int = 0
    gaps: int = 0
    #: Frames estimated missing across all gaps, from the expected period.
    missing_frames: int = 0
    #: Missing frames stood in for by repeating the previous frame (short gaps only).
    filled_frames: int = 0


@dataclass
class RingWindow(Generic[ItemT]):
    """The last ``capacity`` frames of one camera, oldest first.

    ``period_ns`` is the camera's nominal frame period; a step longer than
    ``gap_factor`` periods counts as a gap. A gap of at most ``max_fill_frames``
    missing frames (a dropped or corrupt frame) is bridged by repeating the
    previous frame at the expected stamps, so one bad frame does not cost a
    whole window; longer gaps break the sequence. A backwards step of more than
    ``reset_after_backward_ns`` clears the window instead of being refused.
    """

    capacity: int = 16
    period_ns: int = NS_PER_S // 10
    gap_factor: float = 1.5
    reset_after_backward_ns: int = NS_PER_S
    max_fill_frames: int = 0
    stats: WindowStats = field(default_factory=WindowStats)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        if self.period_ns <= 0:
            raise ValueError(f"period_ns must be positive, got {self.period_ns}")
        if self.gap_factor <= 1.0:
            raise ValueError(f"gap_factor must exceed 1, got {self.gap_factor}")
        self._stamps: deque[int] = deque(maxlen=self.capacity)
        self._items: deque[ItemT] = deque(maxlen=self.capacity)
        # Whether the step *into* each held frame was a gap (index-aligned).
        self._gap_before: deque[bool] = deque(maxlen=self.capacity)

    def push(self, stamp_ns: int, item: ItemT) -> PushOutcome:
        """Append a frame captured at ``stamp_ns``; the oldest falls out when full."""
        outcome = PushOutcome.ACCEPTED
        gap = False
        if self._stamps:
            newest = self._stamps[-1]
            if stamp_ns == newest:
                self.stats.duplicates += 1
                return PushOutcome.REJECTED_DUPLICATE
            if stamp_ns < newest:
                if newest - stamp_ns <= self.reset_after_backward_ns:
                    self.stats.out_of_order += 1
                    return PushOutcome.REJECTED_OUT_OF_ORDER
                self.clear()
                self.stats.resets += 1
                outcome = PushOutcome.ACCEPTED_AFTER_RESET
            else:
                step = stamp_ns - newest
                if step > self.gap_factor * self.period_ns:
                    missing = max(1, round(step / self.period_ns) - 1)
                    self.stats.gaps += 1
                    self.stats.missing_frames += missing
                    outcome = PushOutcome.ACCEPTED_AFTER_GAP
                    if missing <= self.max_fill_frames:
                        self._fill(missing, step)
                    else:
                        gap = True
        self._stamps.append(stamp_ns)
        self._items.append(item)
        self._gap_before.append(gap)
        self.stats.accepted += 1
        return outcome

    def _fill(self, missing: int, step: int) -> None:
        """Repeat the newest frame at evenly spaced stamps between it and the next one."""
        newest_stamp, newest_item = self._stamps[-1], self._items[-1]
        for k in range(1, missing + 1):
            self._stamps.append(newest_stamp + round(k * step / (missing + 1)))
            self._items.append(newest_item)
            self._gap_before.append(False)
        self.stats.filled_frames += missing

    def clear(self) -> None:
        """Drop every held frame (counters are kept)."""
        self._stamps.clear()
        self._items.clear()
        self._gap_before.clear()

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def is_full(self) -> bool:
        """All ``capacity`` slots hold a frame."""
        return len(self._stamps) == self.capacity

    @property
    def is_contiguous(self) -> bool:
        """No gap between any two held frames (the first frame's own past is irrelevant)."""
        return not any(list(self._gap_before)[1:])

    @property
    def is_complete(self) -> bool:
        """Full and gap-free: a sequence the model can read as evenly spaced."""
        return self.is_full and self.is_contiguous

    @property
    def newest_stamp_ns(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    def stamps(self) -> list[int]:
        """Held stamps, oldest first."""
        return list(self._stamps)

    def items(self) -> list[ItemT]:
        """Held items, oldest first."""
        return list(self._items)

    def nearest(self, stamp_ns: int) -> tuple[int, ItemT] | None:
        """The held frame closest in time to ``stamp_ns`` (None when empty)."""
        if not self._stamps:
            return None
        index = min(range(len(self._stamps)), key=lambda i: abs(self._stamps[i] - stamp_ns))
        return self._stamps[index], self._items[index]
