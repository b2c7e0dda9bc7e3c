"""Tracks across predictions: stable ids, existence from history, for planners.

A window's detections carry no identity. Planners need one (Autoware keys objects by
UUID), and a single frame's score is a noisy existence estimate. Each prediction's
agents are associated with the live tracks by the Hungarian method on ego-frame
distance to where each track is expected now, gated; an unmatched detection starts a
track, a track unmatched for ``max_misses`` predictions ends.

Everything is in the ego frame, which moves with the car: a track's expected
position uses its *apparent* velocity (its own displacement in the ego frame per
second, smoothed), so association needs no odometry. Pure NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from qcraft_world_model.model.agent_decode import DecodedAgents
from qcraft_world_model.model.detection import GROUP_OF_LABEL


@dataclass(frozen=True)
class TrackerConfig:
    #: Largest distance (m) between a track's expected position and a detection it may take.
    gate_m: float = 3.0
    #: ... growing with the track's apparent speed: + this many seconds of it.
    gate_s: float = 0.3
    #: A track not seen for this many predictions in a row ends.
    max_misses: int = 3
    #: Existence update weight of a new observation (exponential smoothing of peak scores).
    existence_gain: float = 0.5
    #: Existence factor per prediction a track is not seen.
    existence_decay: float = 0.6
    #: Smoothing of the apparent velocity (alpha-beta filter's beta, per observation).
    velocity_gain: float = 0.4


@dataclass
class Track:
    track_id: int
    group: int
    position: np.ndarray  # (2,) ego frame at the last update
    apparent_velocity: np.ndarray  # (2,) m/s, displacement in the ego frame
    existence: float
    stamp_ns: int
    hits: int = 1
    misses: int = 0


@dataclass
class AgentTracker:
    config: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (the stream restarted: a bag loop, a reconfigure)."""
        self.tracks = []

    def update(self, agents: DecodedAgents, stamp_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Associate one prediction's agents; returns per agent its track id and track existence.

        A prediction older than the newest one seen resets the tracker (time went back).
        """
        if self.tracks and stamp_ns <= max(t.stamp_ns for t in self.tracks):
            self.reset()
        groups = np.array([GROUP_OF_LABEL[int(label)] for label in agents.label], np.int64).reshape(-1)
        ids = np.zeros(len(agents), np.uint64)
        existence = np.zeros(len(agents))
        pairs = self._associate(agents, groups, stamp_ns)
        matched_tracks = set()
        for a, t in pairs:
            track = self.tracks[t]
            dt = (stamp_ns - track.stamp_ns) / 1e9
            measured = (agents.position[a] - track.position) / dt
            gain = self.config.velocity_gain if track.hits > 1 else 1.0
            track.apparent_velocity = (1 - gain) * track.apparent_velocity + gain * measured
            track.position = agents.position[a].copy()
            track.existence = (1 - self.config.existence_gain) * track.existence + \
                self.config.existence_gain * float(agents.score[a])
            track.stamp_ns, track.hits, track.misses = stamp_ns, track.hits + 1, 0
            ids[a], existence[a] = track.track_id, track.existence
            matched_tracks.add(t)
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.misses += 1
                track.existence *= self.config.existence_decay
        self.tracks = [t for t in self.tracks if t.misses < self.config.max_misses]
        matched_agents = {a for a, _ in pairs}
        for a in range(len(agents)):
            if a in matched_agents:
                continue
            track = Track(self._next_id, int(groups[a]), agents.position[a].copy(), np.zeros(2),
                          float(agents.score[a]), stamp_ns)
            self._next_id += 1
            self.tracks.append(track)
            ids[a], existence[a] = track.track_id, track.existence
        return ids, existence

    def _associate(self, agents: DecodedAgents, groups: np.ndarray, stamp_ns: int) -> list[tuple[int, int]]:
        if not self.tracks or len(agents) == 0:
            return []
        expected, gates, track_groups = [], [], []
        for track in self.tracks:
            dt = (stamp_ns - track.stamp_ns) / 1e9
            expected.append(track.position + track.apparent_velocity * dt)
            gates.append(self.config.gate_m + self.config.gate_s * float(np.linalg.norm(track.apparent_velocity)))
            track_groups.append(track.group)
        distance = np.linalg.norm(agents.position[:, None] - np.array(expected)[None], axis=-1)  # (D, T)
        admissible = (distance <= np.array(gates)[None]) & (groups[:, None] == np.array(track_groups)[None])
        if not admissible.any():
            return []
        rows, cols = linear_sum_assignment(np.where(admissible, distance, 1e6))
        return [(int(r), int(c)) for r, c in zip(rows, cols) if admissible[r, c]]
