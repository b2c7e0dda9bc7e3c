"""Predictions recorded live (``qcraft-wm replay``), scored like offline ones.

A replay bag holds the scene (cameras, ground truth, odometry) and the
predictor's ``PredictedAgents`` / ``PredictedFrames``, each stamped with the
capture time of the newest frame it read. A clip cut from the bag at t0 is
scored with the messages stamped t0. Clips without both (windows the node
dropped; frames thinned by ``output.frames_max_rate_hz`` or withheld for a
stale camera) are counted by reason, not scored, and offline evaluation runs on
exactly the clips that were, so the two compare like with like. Replay with
``frames_max_rate_hz: 0`` when the cameras run faster than it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcraft_world_model.data.rosbag_io import BagError, read_messages
from qcraft_world_model.eval.evaluate import Examples, Predictions, evaluate_clips
from qcraft_world_model.model.agent_decode import DecodedAgents, MotionPrior, OperatingPoint
from qcraft_world_model.ingest.image_decode import TargetSize, decode_any
from qcraft_world_model.model.world_model import WorldModel
from qcraft_world_model.data.clip_tensors import Batch, ClipTensors

AGENTS_TOPIC = "/predictor/predicted_agents"
FRAMES_PREFIX = "/predictor/predicted_frames/"


@dataclass
class RecordedPredictions:
    """PredictedAgents and PredictedFrames of a bag, by header stamp."""

    #: stamp → the agents of that PredictedAgents message.
    agents: dict[int, DecodedAgents] = field(default_factory=dict)
    #: stamp → camera name → the PredictedFrames images, decoded only for the windows scored.
    frames: dict[int, dict[str, list]] = field(default_factory=lambda: defaultdict(dict))
    #: (height, width) the node published its frames at.
    size_hw: tuple[int, int] = (0, 0)
    #: Values of PredictedAgents.backend / model_id seen (what produced them).
    backends: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)

    @classmethod
    def from_bag(cls, bag: str | Path, size_hw: tuple[int, int]) -> RecordedPredictions:
        recorded = cls(size_hw=tuple(size_hw))
        for record in read_messages(bag):
            message = record.message
            if message is None:
                continue
            if record.topic == AGENTS_TOPIC:
                recorded.agents[record.stamp_ns] = _agents(message)
                recorded.backends.add(message.backend)
                recorded.models.add(message.model_id)
            elif record.topic.startswith(FRAMES_PREFIX):
                recorded.frames[record.stamp_ns][message.camera_name] = message.frames
        if not recorded.agents:
            raise BagError(f"bag {bag} holds no {AGENTS_TOPIC}: record one with `qcraft-wm replay`")
        return recorded

    def missing(self, stamp_ns: int, cameras: list[str]) -> str | None:
        """Why this instant cannot be scored (None: agents and every camera's frames were recorded)."""
        if stamp_ns not in self.agents:
            return "no PredictedAgents"
        if any(name not in self.frames.get(stamp_ns, {}) for name in cameras):
            return "no PredictedFrames for every camera"
        return None

    def predict(self, data: ClipTensors, index: list[int], sample: Batch) -> Predictions:
        """The recorded messages of clips ``index`` in the shape evaluation scores (cameras in the
        clips' order, matched by name)."""
        stamps = [data.stamps_ns[i] for i in index]
        names = [camera.name for camera in data.cameras[0]]
        size = TargetSize(self.size_hw[1], self.size_hw[0])
        frames = [np.stack([np.stack([decode_any(image, size) for image in self.frames[stamp][name]])
                            for name in names]) for stamp in stamps]
        frames_t = torch.from_numpy(np.stack(frames)).permute(0, 1, 2, 5, 3, 4).float() / 255.0
        return Predictions(frames=frames_t, agents=[self.agents[s] for s in stamps])


def _agents(message: Any) -> DecodedAgents:
    """The agents of a PredictedAgents message (existence as the score; paths arrive most likely first)."""
    agents = message.agents
    if not agents:
        return DecodedAgents.empty(1, 1)

    def array(values: list, shape: tuple) -> np.ndarray:
        return np.array(values, np.float64).reshape(len(agents), *shape)

    return DecodedAgents(
        score=array([a.existence_probability for a in agents], ()),
        label=np.array([a.label for a in agents], np.int64), label_prob=array([a.label_probability for a in agents], ()),
        position=array([[a.pose.position.x, a.pose.position.y] for a in agents], (2,)),
        heading=array([2 * np.arctan2(a.pose.orientation.z, a.pose.orientation.w) for a in agents], ()),
        size=array([[a.dimensions.x, a.dimensions.y, a.dimensions.z] for a in agents], (3,)),
        velocity=array([[a.twist.linear.x, a.twist.linear.y] for a in agents], (2,)),
        paths=np.array([[[[p.position.x, p.position.y] for p in path.poses] for path in a.paths] for a in agents]),
        mode_prob=np.array([[path.confidence for path in a.paths] for a in agents]),
        position_cov=array([np.reshape(a.pose_covariance, (6, 6))[:2, :2] for a in agents], (2, 2)),
        velocity_cov=array([np.reshape(a.twist_covariance, (6, 6))[:2, :2] for a in agents], (2, 2)),
        camera=np.zeros(len(agents), np.int64), pixel=np.full((len(agents), 2), np.nan))


def evaluate_recorded(model: WorldModel, bag: str | Path, offline: WorldModel | None = None, examples: int = 0,
                      prior: MotionPrior = MotionPrior(), operating: OperatingPoint = OperatingPoint()
                      ) -> tuple[dict[str, Any], Examples, ClipTensors]:
    """Score the live predictions recorded in ``bag`` and, with ``offline``, that model on the same clips.

    ``model`` gives the configuration (image size, horizons, path steps) the node ran; ``prior`` is the
    motion prior the offline run decodes with (the node's: its model folder's); ``operating`` the operating
    point both are scored at (the node's: its model folder's, where it uses it).
    Returns the result, ``examples`` live examples for pictures, and the clips (with their cameras).
    """
    config = model.config
    data = ClipTensors.load(bag, config)
    recorded = RecordedPredictions.from_bag(bag, config.size_hw)
    names = [camera.name for camera in data.cameras[0]]
    published = {name for per_camera in recorded.frames.values() for name in per_camera}
    if published and not published <= set(names):
        raise BagError(f"bag {bag}: PredictedFrames name camera(s) {', '.join(sorted(published - set(names)))}, "
                       f"the bag's cameras are {', '.join(names)}: give the node's cameras the bag's names")
    reasons = {i: recorded.missing(stamp, names) for i, stamp in enumerate(data.stamps_ns)}
    covered = [i for i, reason in reasons.items() if reason is None]
    skipped = Counter(reason for reason in reasons.values() if reason is not None)
    coverage = {"windows": len(data), "predicted_live": len(covered), "not_scored": dict(skipped),
                "backends": sorted(recorded.backends), "models": sorted(recorded.models)}
    if not covered:
        raise BagError(f"bag {bag}: none of its {len(data)} evaluation windows has a recorded prediction "
                       f"(stamps of {AGENTS_TOPIC} must equal camera frame stamps)")
    live, kept = evaluate_clips(model, data, predict=recorded.predict, clips=covered, examples=examples,
                               operating=operating)
    result = {"coverage": coverage, "live": live}
    if offline is not None:
        result["offline"], _ = evaluate_clips(offline, data, clips=covered, examples=0, prior=prior,
                                           operating=operating)
    return result, kept, data
