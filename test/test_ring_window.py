"""The per-camera ring window: order, duplicates, gaps, resets, completeness."""

from __future__ import annotations

import pytest

from qcraft_world_model.ingest import PushOutcome, RingWindow

MS = 1_000_000
PERIOD = 100 * MS


def filled(n: int, start: int = 0, capacity: int = 16) -> RingWindow[int]:
    window: RingWindow[int] = RingWindow(capacity=capacity, period_ns=PERIOD)
    for i in range(n):
        assert window.push(start + i * PERIOD, i) is PushOutcome.ACCEPTED
    return window


def test_window_keeps_the_newest_frames_oldest_first() -> None:
    window = filled(20)
    assert len(window) == 16 and window.is_full
    assert window.items() == list(range(4, 20))
    assert window.stamps() == [i * PERIOD for i in range(4, 20)]


def test_window_complete_only_when_full_and_gap_free() -> None:
    window = filled(15)
    assert not window.is_complete
    window.push(15 * PERIOD, 15)
    assert window.is_complete


def test_window_rejects_duplicate_stamp() -> None:
    window = filled(3)
    assert window.push(2 * PERIOD, 99) is PushOutcome.REJECTED_DUPLICATE
    assert window.items() == [0, 1, 2] and window.stats.duplicates == 1


def test_window_rejects_out_of_order_stamp() -> None:
    window = filled(3)
    assert window.push(2 * PERIOD - 5 * MS, 99) is PushOutcome.REJECTED_OUT_OF_ORDER
    assert window.items() == [0, 1, 2] and window.stats.out_of_order == 1


def test_window_reports_gap_and_missing_frames() -> None:
    window = filled(3)
    outcome = window.push(2 * PERIOD + 4 * PERIOD, 3)  # frames at 3, 4, 5 periods lost
    assert outcome is PushOutcome.ACCEPTED_AFTER_GAP and outcome.accepted
    assert window.stats.gaps == 1 and window.stats.missing_frames == 3
    assert not window.is_contiguous


def test_jitter_below_gap_factor_is_not_a_gap() -> None:
    window = filled(2)
    assert window.push(PERIOD + int(1.4 * PERIOD), 2) is PushOutcome.ACCEPTED
    assert window.stats.gaps == 0


def test_gap_leaves_the_window_once_its_frames_roll_out() -> None:
    window = filled(3, capacity=4)
    window.push(10 * PERIOD, 3)  # gap into the 4th frame
    assert window.is_full and not window.is_complete
    for i in range(11, 14):
        window.push(i * PERIOD, i)
    assert window.stamps()[0] == 10 * PERIOD and window.is_complete


def test_large_backward_jump_resets_window() -> None:
    window = filled(16, start=100 * PERIOD)
    assert window.push(0, 0) is PushOutcome.ACCEPTED_AFTER_RESET
    assert window.items() == [0] and window.stats.resets == 1 and not window.is_full


@pytest.mark.parametrize("kwargs", [{"capacity": 0}, {"period_ns": 0}, {"gap_factor": 1.0}])
def test_invalid_window_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RingWindow(**kwargs)


def test_nearest_frame_to_a_time() -> None:
    window = filled(5)
    assert window.nearest(int(2.4 * PERIOD)) == (2 * PERIOD, 2)
    assert RingWindow().nearest(0) is None


def test_short_gap_is_bridged_by_repeating_the_previous_frame() -> None:
    window: RingWindow[int] = RingWindow(capacity=16, period_ns=PERIOD, max_fill_frames=2)
    for i in range(10):
        window.push(i * PERIOD, i)
    assert window.push(12 * PERIOD, 12) is PushOutcome.ACCEPTED_AFTER_GAP  # frames 10 and 11 lost
    assert window.items()[-3:] == [9, 9, 12] and window.stamps()[-3:] == [10 * PERIOD, 11 * PERIOD, 12 * PERIOD]
    assert window.is_contiguous and window.stats.filled_frames == 2 and window.stats.gaps == 1
    window.push(16 * PERIOD, 16)  # three lost: too long to bridge
    assert not window.is_contiguous and window.stats.filled_frames == 2
