"""Approximate time alignment across cameras with jitter, drops and a dead camera."""

from __future__ import annotations

import numpy as np
import pytest

from qcraft_world_model.ingest import ApproximateTimeAligner

MS = 1_000_000
PERIOD = 100 * MS
CAMERAS = ("front", "front_left", "front_right")


def aligner(**kwargs) -> ApproximateTimeAligner[int]:
    settings = {"tolerance_ns": 20 * MS, "stale_after_ns": 500 * MS, **kwargs}
    return ApproximateTimeAligner(CAMERAS, **settings)


def stream(n: int, jitter_ms: float, seed: int = 0, cameras=CAMERAS):
    """(camera, stamp, frame index) for n frames per camera, arrival order shuffled per frame."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        for cam in rng.permutation(cameras):
            stamp = i * PERIOD + int(rng.uniform(-jitter_ms, jitter_ms) * MS)
            events.append((str(cam), stamp, i))
    return events


def test_three_jittered_cameras_align_frame_by_frame() -> None:
    sync = aligner()
    sets = [s for cam, stamp, i in stream(30, jitter_ms=8) for s in sync.add(cam, stamp, i)]
    assert len(sets) >= 29  # the last set may wait for nothing more
    for s in sets:
        assert set(s.frames) == set(CAMERAS) and s.missing == ()
        assert len({item for _, item in s.frames.values()}) == 1  # one frame index per set
        assert s.skew_ns <= 2 * 20 * MS


def test_frame_without_partners_is_dropped_not_matched_wrongly() -> None:
    sync = aligner()
    out = []
    for i in range(5):
        for cam in CAMERAS:
            if cam == "front_left" and i == 2:
                continue  # one lost frame
            out += sync.add(cam, i * PERIOD, i)
    assert [next(iter(s.frames.values()))[1] for s in out] == [0, 1, 3, 4]
    assert sync.stats.unmatched >= 1
    for s in out:
        assert len({item for _, item in s.frames.values()}) == 1


def test_missing_camera_is_flagged_and_others_keep_flowing() -> None:
    sync = aligner()
    sets, released_at = [], []
    for cam, stamp, i in stream(20, jitter_ms=5, cameras=("front", "front_right")):
        new = sync.add(cam, stamp, i)
        sets += new
        released_at += [stamp] * len(new)
    assert sets, "the two live cameras must not wait forever for the dead one"
    assert all(s.missing == ("front_left",) for s in sets)
    assert all(set(s.frames) == {"front", "front_right"} for s in sets)
    # The dead camera is waited for stale_after (500 ms), no longer; the frames
    # queued meanwhile still go out, so none of the first 19 is lost.
    assert min(released_at) > 500 * MS - 5 * MS
    assert sorted(next(iter(s.frames.values()))[1] for s in sets)[:19] == list(range(19))
    assert sync.stale_cameras() == ("front_left",)


def test_camera_that_stops_midway_is_waited_for_then_dropped() -> None:
    sync = aligner()
    sets = []
    for cam, stamp, i in stream(30, jitter_ms=5):
        if cam == "front_left" and i >= 10:
            continue
        sets += sync.add(cam, stamp, i)
    complete = [s for s in sets if not s.missing]
    partial = [s for s in sets if s.missing]
    assert {next(iter(s.frames.values()))[1] for s in complete} >= set(range(9))
    assert partial and all(s.missing == ("front_left",) for s in partial)
    assert max(next(iter(s.frames.values()))[1] for s in partial) >= 25


def test_camera_that_comes_back_is_aligned_again() -> None:
    sync = aligner()
    sets = []
    for cam, stamp, i in stream(40, jitter_ms=5):
        if cam == "front_left" and 10 <= i < 20:
            continue
        sets += sync.add(cam, stamp, i)
    late = [s for s in sets if next(iter(s.frames.values()))[1] >= 25]
    assert late and all(not s.missing for s in late)


def test_unknown_camera_and_bad_settings_are_errors() -> None:
    with pytest.raises(KeyError, match="unknown camera 'rear'"):
        aligner().add("rear", 0, 0)
    with pytest.raises(ValueError):
        ApproximateTimeAligner(("a", "a"), tolerance_ns=1, stale_after_ns=1)
