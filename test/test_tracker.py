"""Tracks across predictions: ids stay with agents, new agents get new ids, old ones end."""

from __future__ import annotations

import numpy as np

from qcraft_world_model.model.agent_decode import DecodedAgents
from qcraft_world_model.runtime.tracker import AgentTracker

NS = 100_000_000  # 10 Hz


def agents(positions, scores=None, labels=None) -> DecodedAgents:  # noqa: ANN001
    out = DecodedAgents.empty(3, 6)
    n = len(positions)
    base = {k: np.zeros((n, *v.shape[1:]), v.dtype) for k, v in vars(out).items()}
    base["position"] = np.asarray(positions, float).reshape(n, 2)
    base["score"] = np.full(n, 0.8) if scores is None else np.asarray(scores, float)
    base["label"] = np.ones(n, np.int64) if labels is None else np.asarray(labels)
    return DecodedAgents(**base)


def test_ids_follow_agents_that_move_through_the_ego_frame() -> None:
    tracker = AgentTracker()
    ids = []
    for step in range(10):
        # One agent overtakes at 2 m/s relative, one is approached at 15 m/s (the ego drives towards it);
        # the order of the detections changes every frame.
        a, b = [10 + 0.2 * step, 3.0], [40 - 1.5 * step, -2.0]
        pair = [a, b] if step % 2 else [b, a]
        got, existence = tracker.update(agents(pair), step * NS)
        ids.append(dict(zip([tuple(p) for p in pair], got.tolist())))
        assert np.all(existence > 0)
    first = {round(p[1]): i for p, i in ids[0].items()}
    for frame in ids[1:]:
        assert {round(p[1]): i for p, i in frame.items()} == first


def test_new_agents_get_new_ids_and_lost_ones_end() -> None:
    tracker = AgentTracker()
    (first,), _ = tracker.update(agents([[10, 0]]), 0)
    got, _ = tracker.update(agents([[10.1, 0], [20, 5]]), NS)
    assert got[0] == first and got[1] != first
    for step in range(2, 6):
        tracker.update(agents([]), step * NS)
    (again,), _ = tracker.update(agents([[10.1, 0]]), 6 * NS)
    assert again not in (first, got[1])


def test_existence_rises_with_repeated_sightings_and_classes_are_kept_apart() -> None:
    tracker = AgentTracker()
    _, existence = tracker.update(agents([[10, 0]], scores=[0.4]), 0)
    for step in range(1, 5):
        _, later = tracker.update(agents([[10, 0]], scores=[0.9]), step * NS)
    assert later[0] > existence[0]
    (car,), _ = tracker.update(agents([[10, 0]]), 5 * NS)
    (pedestrian,), _ = tracker.update(agents([[10, 0]], labels=[7]), 6 * NS)
    assert pedestrian != car


def test_time_going_back_restarts_the_tracks() -> None:
    tracker = AgentTracker()
    (first,), _ = tracker.update(agents([[10, 0]]), 5 * NS)
    (after_loop,), _ = tracker.update(agents([[10, 0]]), 1 * NS)
    assert after_loop != first
