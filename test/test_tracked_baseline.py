"""Constant velocity on the model's own tracks: the tracker, run in the map frame through odometry,
recovers an agent's ground velocity while the ego drives and turns."""

from __future__ import annotations

import numpy as np

from qcraft_world_model.eval.tracked import tracked_velocity
from qcraft_world_model.model.agent_decode import DecodedAgents
from qcraft_world_model.runtime.tracker import AgentTracker


def _agents(position: np.ndarray, score: float) -> DecodedAgents:
    empty = DecodedAgents.empty(modes=1, steps=1)
    fields = {k: np.zeros((1, *v.shape[1:]), v.dtype) for k, v in vars(empty).items()}
    fields.update(score=np.array([score]), label=np.array([1]), position=position[None].astype(np.float64))
    return DecodedAgents(**fields)


def test_track_velocity_is_the_ground_velocity_in_the_ego_frame() -> None:
    tracker = AgentTracker()
    agent_velocity = np.array([3.0, -2.0])  # map frame, m/s
    for step in range(20):
        t = step * 0.1
        heading = 0.3 + 0.05 * t  # the ego turns a little while it drives at 10 m/s
        ego = np.array([10.0 * t * np.cos(heading), 10.0 * t * np.sin(heading)])
        agent = np.array([25.0, 5.0]) + agent_velocity * t
        c, s = np.cos(heading), np.sin(heading)
        local = np.array([[c, s], [-s, c]]) @ (agent - ego)
        velocity, seen, continued = tracked_velocity(tracker, _agents(local, 0.9), np.array([*ego, heading]),
                                                     round(t * 1e9) + 1)
        assert (seen, continued) == (1, int(step > 0))
    expected = np.array([[c, s], [-s, c]]) @ agent_velocity
    np.testing.assert_allclose(velocity[0], expected, atol=1e-6)


def test_unconfident_detections_keep_the_heads_velocity_and_no_track() -> None:
    tracker = AgentTracker()
    agents = _agents(np.array([10.0, 0.0]), 0.2)
    agents.velocity[:] = [4.0, 1.0]
    velocity, seen, continued = tracked_velocity(tracker, agents, np.zeros(3), 1)
    assert (seen, continued) == (0, 0) and not tracker.tracks
    np.testing.assert_array_equal(velocity, [[4.0, 1.0]])
