"""Constant velocity on the model's own *tracks*: the non-oracle baseline a user would run.

The head's velocity comes from one window. A user without an oracle would rather track the
model's detections over time and extrapolate the tracks. This runs the model on every frame of a
scene bag (10 Hz, as the node does), associates each prediction's confident detections with the
node's tracker (``runtime/tracker.py``) in the *map* frame — odometry takes out the ego's motion,
so a track's velocity is its ground velocity — and hands evaluation the model's detections with
their velocity replaced by their track's. ``evaluate`` then scores constant velocity from those
(its ``constant_velocity_own_detections`` block) on exactly the windows and detections the model
is scored on.

Bags only: a clip set's clips are independent 2.6-second pieces with no before or after.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcraft_world_model.data.bag_clips import clips_from_bag
from qcraft_world_model.data.clip_tensors import Batch, ClipTensors
from qcraft_world_model.eval.evaluate import Predictions, evaluate_clips, model_predictions
from qcraft_world_model.model.agent_decode import DecodedAgents, OperatingPoint
from qcraft_world_model.model.world_model import WorldModel
from qcraft_world_model.runtime.tracker import AgentTracker

#: Clips for evaluation are cut every this many frames (bag_clips' default): 1 s at 10 Hz.
SCORED_STRIDE = 10


def _rotation(heading: float) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    return np.array([[c, -s], [s, c]])


def tracked_velocity(tracker: AgentTracker, agents: DecodedAgents, pose: np.ndarray, stamp_ns: int,
                     operating: OperatingPoint = OperatingPoint()) -> tuple[np.ndarray, int, int]:
    """One prediction through ``tracker`` in the map frame (``pose``: the ego's x, y, heading there).

    Returns the agents' velocities with each confident one's (reported at ``operating``)
    replaced by its track's ground velocity, in the ego frame; and how many confident agents there
    were and how many of them continued a track (the others' velocity is zero: seen once).
    """
    x, y, heading = (float(v) for v in pose)
    to_map = _rotation(heading)
    keep = np.flatnonzero(operating.reported(agents.score, agents.label, agents.position))
    in_map = replace(agents.take(keep), position=agents.position[keep] @ to_map.T + [x, y])
    ids, _ = tracker.update(in_map, stamp_ns)
    tracks = {t.track_id: t for t in tracker.tracks}
    velocity, continued = agents.velocity.copy(), 0
    for d, track_id in zip(keep, ids.tolist()):
        track = tracks[track_id]
        velocity[d] = track.apparent_velocity @ to_map  # back into the ego frame, as the head reports it
        continued += track.hits > 1
    return velocity, len(keep), continued


class TrackedPredictor:
    """The model's predictions for a bag's windows, each confident detection's velocity replaced by the
    ground velocity of its track (zero for a track seen once). Callable as evaluate's ``Predictor``."""

    def __init__(self, model: WorldModel, bag: str | Path, ego_motion: str = "odometry", batch: int = 8,
                 operating: OperatingPoint = OperatingPoint()) -> None:
        config = model.config
        clips = clips_from_bag(bag, config.width, image_height=config.height, stride=1)
        fields = ("frames", "agents", "agent_valid", "agent_size", "agent_label", "agent_in_view", "stamps_ns",
                  "ego_velocity")
        data = ClipTensors({name: getattr(clips, name) for name in fields}, config, str(bag),
                           [clips.cameras] * len(clips.frames))
        self.by_stamp: dict[int, tuple[torch.Tensor, DecodedAgents, np.ndarray]] = {}
        tracker = AgentTracker()
        tracked, confident = 0, 0
        order = np.argsort(clips.stamps_ns)
        with torch.inference_mode():
            for first in range(0, len(order), batch):
                index = torch.tensor(order[first:first + batch].tolist())
                prediction = model_predictions(model, data.batch(index), ego_motion=ego_motion)
                for row, clip in enumerate(index.tolist()):
                    agents, stamp = prediction.agents[row], int(clips.stamps_ns[clip])
                    velocity, seen, continued = tracked_velocity(tracker, agents, clips.ego_pose[clip], stamp,
                                                                       operating)
                    confident, tracked = confident + seen, tracked + continued
                    self.by_stamp[stamp] = (prediction.frames[row], replace(agents, velocity=velocity),
                                            prediction.ego_velocity_estimate[row])
        #: Share of confident detections whose track had been seen before (else its velocity is zero).
        self.tracked_share = tracked / confident if confident else 0.0
        self.windows = len(order)

    def __call__(self, data: ClipTensors, index: list[int], sample: Batch) -> Predictions:
        rows = [self.by_stamp[int(data.stamps_ns[i])] for i in index]
        return Predictions(frames=torch.stack([r[0] for r in rows]), agents=[r[1] for r in rows],
                           ego_velocity_estimate=np.stack([r[2] for r in rows]))


def tracked_baseline(model: WorldModel, bag: str | Path, ego_motion: str = "odometry",
                     operating: OperatingPoint = OperatingPoint()) -> dict[str, Any]:
    """The ``constant_velocity_own_tracks`` block of the evaluate JSON for a scene bag (agents reported at
    ``operating``, the model folder's operating point)."""
    predictor = TrackedPredictor(model, bag, ego_motion, operating=operating)
    result, _ = evaluate_clips(model, bag, predict=predictor, examples=0, ego_motion=ego_motion, operating=operating)
    own = result["baselines"]["constant_velocity_own_detections"]
    return {"agents": own["agents"], "tracked_share": round(predictor.tracked_share, 3),
            "windows_tracked": predictor.windows,
            "note": "the model's own detections, paths at constant velocity from their position and the ground "
                    "velocity of their track (the node's tracker on every frame, in the map frame through "
                    "odometry; zero for a track seen once)"}
