"""The camera-stream policy the node and check-bag share, without DDS: which frames become windows."""

from __future__ import annotations

from qcraft_world_model.ingest.config import IngestConfig
from qcraft_world_model.ingest.stream_policy import StreamPolicy, StreamSettings

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
