"""``qcraft-wm evaluate`` on a clip set: the model against copy-last-frame and constant velocity.

Agents scored: present at t0, inside a camera's view, within 30 m of the ego.
The constant-velocity baseline extrapolates the ground-truth past (oracle
perception) and is scored on exactly the agents the model matched, so the
path errors compare like with like; it is also reported on all agents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcraft_world_model.eval.baselines import constant_velocity, copy_last_frame
from qcraft_world_model.eval.metrics import AgentSample, AgentScores, psnr, ssim
from qcraft_world_model.model.world_model import WorldModel
from qcraft_world_model.train.batches import Batch, ClipTensors

EVAL_RADIUS_M = 30.0
EXISTENCE_THRESHOLD = 0.5


@dataclass
class FrameScores:
    horizons: int
    psnr: list[list[float]] = field(default_factory=list)
    ssim: list[list[float]] = field(default_factory=list)

    def add(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        """pred/true (B, C, horizons, 3, H, W) in [0, 1]."""
        self.psnr += psnr(pred, true).flatten(0, 1).tolist()
        self.ssim += ssim(pred, true).flatten(0, 1).tolist()

    def summary(self) -> dict[str, list[float]]:
        return {"psnr": np.mean(self.psnr, axis=0).round(3).tolist(),
                "ssim": np.mean(self.ssim, axis=0).round(4).tolist()}


@dataclass
class Examples:
    """A few clips kept for the report's pictures."""

    windows: list[np.ndarray] = field(default_factory=list)
    true_frames: list[np.ndarray] = field(default_factory=list)
    pred_frames: list[np.ndarray] = field(default_factory=list)
    bev: list[dict[str, np.ndarray]] = field(default_factory=list)


@dataclass
class Predictions:
    """What is scored for a batch of clips: predicted frames and the agents reported."""

    frames: torch.Tensor  # (B, C, horizons, 3, H, W) in [0, 1]
    positions: list[np.ndarray]  # per clip: (D, 2) agents above the existence threshold
    paths: list[np.ndarray]  # per clip: (D, K, P, 2), most likely path first


#: Predictions for clips ``index`` of ``data`` (their ``sample``): the model, or recorded messages.
Predictor = Callable[[ClipTensors, list[int], Batch], Predictions]


def model_predictions(model: WorldModel, window: torch.Tensor) -> Predictions:
    """Run the model on a batch of windows; agents above EXISTENCE_THRESHOLD, paths by mode probability."""
    output = model(window)
    pred = output.agents
    exist = pred.existence_logit.sigmoid().numpy()
    order = pred.mode_logits.argsort(dim=-1, descending=True)
    paths = torch.gather(pred.paths, 2, order[..., None, None].expand_as(pred.paths)).numpy()
    detected = [np.flatnonzero(row > EXISTENCE_THRESHOLD) for row in exist]
    return Predictions(frames=output.frames, positions=[pred.position[i, d].numpy() for i, d in enumerate(detected)],
                       paths=[paths[i, d] for i, d in enumerate(detected)])


def evaluate_clips(model: WorldModel, data_root: str | Path | ClipTensors, max_clips: int | None = None,
                   batch: int = 8, examples: int = 4, predict: Predictor | None = None,
                   clips: Sequence[int] | None = None) -> tuple[dict[str, Any], Examples]:
    """Score ``model`` on a clip dataset or scene bag (or clips in memory); returns the DESIGN.md
    ``evaluate`` JSON and picture material.

    ``predict`` replaces running the model (e.g. predictions recorded live, see
    ``recorded.py``); ``model`` then only gives the configuration. ``clips``
    scores a subset (default: all).
    """
    config = model.config
    data = data_root if isinstance(data_root, ClipTensors) else ClipTensors.load(data_root, config, max_clips)
    if predict is None:
        def predict(_: ClipTensors, __: list[int], sample: Batch) -> Predictions:
            return model_predictions(model, sample.window)
    chosen = list(range(len(data))) if clips is None else list(clips)
    steps_s = np.array(config.path_steps) / config.rate_hz
    t0 = data.past - 1
    model_frames, copy_frames = FrameScores(len(config.future_frames)), FrameScores(len(config.future_frames))
    model_agents = AgentScores(tuple(steps_s.tolist()))
    cv_same = AgentScores(tuple(steps_s.tolist()))
    cv_all = AgentScores(tuple(steps_s.tolist()))
    kept = Examples()
    start = time.perf_counter()
    pick = ({chosen[i] for i in np.linspace(0, len(chosen) - 1, examples).round().astype(int).tolist()}
            if examples and chosen else set())
    with torch.inference_mode():
        for first in range(0, len(chosen), batch):
            index = torch.tensor(chosen[first:first + batch])
            sample = data.batch(index)
            prediction = predict(data, index.tolist(), sample)
            model_frames.add(prediction.frames, sample.future)
            copy_frames.add(copy_last_frame(sample.window, len(config.future_frames)), sample.future)
            for row, clip in enumerate(index.tolist()):
                agents = data.agents[clip].numpy()
                valid = data.valid[clip].numpy()
                visible = data.target_mask(torch.tensor([clip]))[0].numpy()
                near = visible & (np.linalg.norm(agents[t0, :, :2], axis=-1) <= EVAL_RADIUS_M)
                future_steps = [t0 + int(s) for s in config.path_steps]
                truth = np.flatnonzero(near)
                pairs = model_agents.add(AgentSample(
                    true_position=agents[t0, truth, :2], true_future=agents[future_steps][:, truth, :2].transpose(1, 0, 2),
                    true_valid=valid[future_steps][:, truth].T, pred_position=prediction.positions[row],
                    pred_paths=prediction.paths[row]))
                matched_truth = {truth[t] for _, t in pairs}
                for slot in truth:
                    cv = constant_velocity(agents[: t0 + 1, slot, :2], valid[: t0 + 1, slot], steps_s)
                    if cv is None:
                        continue
                    future, fvalid = agents[future_steps, slot, :2], valid[future_steps, slot]
                    cv_all.true_agents += 1
                    cv_all.add_paths(cv[None], future, fvalid)
                    if slot in matched_truth:
                        cv_same.add_paths(cv[None], future, fvalid)
                if clip in pick:
                    kept.windows.append(sample.window[row].numpy())
                    kept.true_frames.append(sample.future[row].numpy())
                    kept.pred_frames.append(prediction.frames[row].numpy())
                    kept.bev.append({"agents": agents, "valid": valid, "size": data.size[clip].numpy(),
                                     "label": data.label[clip].numpy(), "truth": truth,
                                     "pred_position": prediction.positions[row], "pred_paths": prediction.paths[row]})
    seconds = time.perf_counter() - start
    cv_same_summary = cv_same.summary()
    cv_all_summary = cv_all.summary()
    result = {
        "data": {"root": str(getattr(data_root, "source", data_root)), "clips": len(chosen),
                 "split": None if isinstance(data_root, ClipTensors) else data_split(data_root),
                 "agents": f"visible at t0 within {EVAL_RADIUS_M:g} m", "path_steps_s": steps_s.tolist(),
                 "future_frames_s": (np.array(config.future_frames) / config.rate_hz).tolist()},
        "model": {"preset": config.preset, "frames": model_frames.summary(), "agents": model_agents.summary()},
        "baselines": {
            "copy_last_frame": {"frames": copy_frames.summary()},
            "constant_velocity": {"agents": {**cv_same_summary, "note": "on the agents the model matched"}},
            "constant_velocity_all_agents": {"agents": {**cv_all_summary, "note": "on every visible agent"}},
        },
        "seconds": seconds,
    }
    return result, kept


def data_split(root: str | Path) -> str | None:
    import json

    manifest = Path(root) / "manifest.json"
    return json.loads(manifest.read_text()).get("split") if manifest.is_file() else None
