"""``qcraft-wm evaluate`` on a clip set: the model against copy-last-frame and constant velocity.

Agents are scored with the field's metrics (``agent_metrics.py``): every agent present at t0
within EVAL_RADIUS_M, in scope when visible (rendered visible share ≥ MIN_VISIBILITY where the
data has it, else its box centre in a camera's view), the rest ignored, none capped. Baselines on
the same agents: constant velocity from the ground-truth past with the simulator's instantaneous
velocity and with a finite difference (oracle perception), and constant velocity on the model's
own detections (position and velocity as the model saw them: what a user could run without an
oracle).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcraft_world_model.eval.agent_metrics import WindowAgents, baseline_scores, score_windows
from qcraft_world_model.eval.baselines import constant_velocity, copy_last_frame
from qcraft_world_model.eval.metrics import psnr, ssim
from qcraft_world_model.model.agent_decode import DecodedAgents, MotionPrior, OperatingPoint, decode_agents
from qcraft_world_model.model.detection import CLASS_GROUPS
from qcraft_world_model.model.world_model import WorldModel
from qcraft_world_model.data.clip_tensors import Batch, ClipTensors

#: Agents farther than this at t0 are not scored (the by-range tables go up to it).
EVAL_RADIUS_M = 50.0
#: Agents present just beyond the radius are ignored, not counted as false positives when found.
IGNORE_MARGIN_M = 5.0
#: An agent is in scope when at least this share of it is visible (nuScenes' 40 % bin edge).
MIN_VISIBILITY = 0.4
#: Peaks below this are not decoded at all (AP needs the low-score ones too).
DECODE_THRESHOLD = 0.05


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
    bev: list[dict[str, Any]] = field(default_factory=list)
    cameras: list[tuple] = field(default_factory=list)


@dataclass
class Predictions:
    """What is scored for a batch of clips: predicted frames and the agents reported."""

    frames: torch.Tensor  # (B, C, horizons, 3, H, W) in [0, 1]
    agents: list[DecodedAgents]  # per clip, most likely first
    #: (B, 2) the model's own estimate of the ego's velocity, where the predictor has one.
    ego_velocity_estimate: np.ndarray | None = None


#: Where the decoder takes the ego's velocity from: the clip's odometry (a vehicle's usual case) or the
#: model's own estimate (the node's fallback without an odometry topic).
EGO_MOTION_SOURCES = ("odometry", "estimate")


#: Predictions for clips ``index`` of ``data`` (their ``sample``): the model, or recorded messages.
Predictor = Callable[[ClipTensors, list[int], Batch], Predictions]


def model_predictions(model: WorldModel, sample: Batch, threshold: float = DECODE_THRESHOLD,
                      ego_motion: str = "odometry", prior: MotionPrior = MotionPrior()) -> Predictions:
    """Run the model on a batch and decode its agents with each clip's cameras and, for
    ``ego_motion="odometry"``, the clip's ego velocity (else the model's own estimate); ``prior``: the
    model folder's motion prior (``agent_decode.MotionPrior``)."""
    if ego_motion not in EGO_MOTION_SOURCES:
        raise ValueError(f"ego motion from {ego_motion!r}: one of {', '.join(EGO_MOTION_SOURCES)}")
    output = model(sample.window)
    config = model.config
    steps_s = tuple(s / config.rate_hz for s in config.path_steps)
    odometry = sample.ego_velocity.numpy() if ego_motion == "odometry" else None
    agents = decode_agents(output.agents, sample.cameras, config.detection_stride, steps_s, threshold,
                           ego_velocity=odometry, relative_to_ego=config.agent_motion == "ego_relative",
                           prior=prior)
    return Predictions(frames=output.frames, agents=agents,
                       ego_velocity_estimate=output.agents.ego_velocity.float().numpy())


def window_agents(data: ClipTensors, clip: int, agents: DecodedAgents, steps: list[int], steps_s: np.ndarray,
                  camera_xy: np.ndarray) -> WindowAgents:
    """Ground truth of one clip (every agent it holds) next to the agents predicted for it."""
    t0 = data.past - 1
    state, valid = data.agents[clip].numpy().astype(np.float64), data.valid[clip].numpy()
    present = valid[t0]
    distance = np.linalg.norm(state[t0, :, :2], axis=1)
    visibility = data.visibility[clip].max(-1) if data.visibility is not None else np.full(len(present), np.nan)
    seen = visibility >= MIN_VISIBILITY if data.visibility is not None else data.in_view[clip].numpy().any(-1)
    in_scope = present & (distance <= EVAL_RADIUS_M) & seen
    ignore = present & ~in_scope & (distance <= EVAL_RADIUS_M + IGNORE_MARGIN_M)
    instantaneous = state[t0, :, None, :2] + state[t0, :, None, 3:5] * steps_s[None, :, None]
    finite = np.full_like(instantaneous, np.nan)
    for g in np.flatnonzero(present):
        path = constant_velocity(state[: t0 + 1, g, :2], valid[: t0 + 1, g], steps_s)
        if path is not None:
            finite[g] = path
    return WindowAgents(
        true_position=state[t0, :, :2], true_heading=state[t0, :, 2], true_size=data.size[clip].numpy(),
        true_velocity=state[t0, :, 3:5], true_label=data.label[clip].numpy(),
        true_future=state[steps][:, :, :2].transpose(1, 0, 2), true_future_valid=valid[steps].T,
        true_visibility=visibility, in_scope=in_scope, ignore=ignore,
        score=agents.score, label=agents.label, position=agents.position, heading=agents.heading, size=agents.size,
        velocity=agents.velocity, paths=agents.paths, sensor_xy=camera_xy,
        baselines={"constant_velocity_instantaneous": instantaneous[:, None],
                   "constant_velocity_finite_difference": finite[:, None]},
        true_in_view=data.in_view[clip].numpy().any(-1))


def predicted_windows(model: WorldModel, data: ClipTensors, clips: Sequence[int], batch: int = 8,
                      ego_motion: str = "odometry", prior: MotionPrior = MotionPrior()
                      ) -> Iterator[tuple[int, WindowAgents]]:
    """Each of ``clips`` of ``data`` as scored: the clip and its ground truth beside the model's agents
    (every peak above DECODE_THRESHOLD), for the fits that need the windows themselves."""
    config = model.config
    steps_s = np.array(config.path_steps) / config.rate_hz
    steps = [data.past - 1 + int(s) for s in config.path_steps]
    chosen = list(clips)
    with torch.inference_mode():
        for first in range(0, len(chosen), batch):
            index = torch.tensor(chosen[first:first + batch])
            sample = data.batch(index)
            prediction = model_predictions(model, sample, ego_motion=ego_motion, prior=prior)
            for row, clip in enumerate(index.tolist()):
                yield clip, window_agents(data, clip, prediction.agents[row], steps, steps_s,
                                          sample.cameras[row][0].translation[:2])


def own_constant_velocity(window: WindowAgents, steps_s: np.ndarray) -> WindowAgents:
    """The same detections with their paths replaced by constant velocity from the model's own position
    and velocity estimate (the non-oracle baseline)."""
    paths = window.position[:, None, None] + window.velocity[:, None, None] * steps_s[None, None, :, None]
    return WindowAgents(**{**vars(window), "paths": paths})


def evaluate_clips(model: WorldModel, data_root: str | Path | ClipTensors, max_clips: int | None = None,
                   batch: int = 8, examples: int = 4, predict: Predictor | None = None,
                   clips: Sequence[int] | None = None, ego_motion: str = "odometry",
                   prior: MotionPrior = MotionPrior(), every: int = 1,
                   operating: OperatingPoint = OperatingPoint()) -> tuple[dict[str, Any], Examples]:
    """Score ``model`` on a clip dataset or scene bag (or clips in memory); returns the
    ``evaluate`` JSON (its fields: docs/model.md) and picture material.

    ``predict`` replaces running the model (e.g. predictions recorded live, see
    ``recorded.py``); ``model`` then only gives the configuration. ``clips``
    scores a subset (default: all). ``ego_motion``: see EGO_MOTION_SOURCES. ``prior``: the motion prior
    the model's agents are decoded with (the model folder's; the default: the head's motion as it is).
    ``every``: score only every so-many-th clip of the folder (a spread over its maps), before ``max_clips``.
    ``operating``: which agents are reported (the model folder's operating point; the default: every group
    from ``agent_decode.DEFAULT_EXISTENCE_THRESHOLD``). AP and the threshold sweep do not depend on it.
    """
    config = model.config
    data = (data_root if isinstance(data_root, ClipTensors)
            else ClipTensors.load(data_root, config, max_clips, every=every))
    predict_given = predict
    if predict is None:
        def predict(_: ClipTensors, __: list[int], sample: Batch) -> Predictions:
            return model_predictions(model, sample, ego_motion=ego_motion, prior=prior)
    chosen = list(range(len(data))) if clips is None else list(clips)
    steps_s = np.array(config.path_steps) / config.rate_hz
    t0 = data.past - 1
    steps = [t0 + int(s) for s in config.path_steps]
    model_frames, copy_frames = FrameScores(len(config.future_frames)), FrameScores(len(config.future_frames))
    windows: list[WindowAgents] = []
    ego_true, ego_estimate, ego_by_window = [], [], []
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
            if prediction.ego_velocity_estimate is not None:
                ego_true.append(sample.ego_velocity.numpy())
                ego_estimate.append(prediction.ego_velocity_estimate)
            copy_frames.add(copy_last_frame(sample.window, len(config.future_frames)), sample.future)
            ego_by_window += sample.ego_velocity.numpy().astype(np.float64).tolist()
            for row, clip in enumerate(index.tolist()):
                camera_xy = sample.cameras[row][0].translation[:2]
                windows.append(window_agents(data, clip, prediction.agents[row], steps, steps_s, camera_xy))
                if clip in pick:
                    w = windows[-1]
                    kept.windows.append(sample.window[row].numpy())
                    kept.true_frames.append(sample.future[row].numpy())
                    kept.pred_frames.append(prediction.frames[row].numpy())
                    kept.cameras.append(data.cameras[clip])
                    kept.bev.append({"agents": data.agents[clip].numpy(), "valid": data.valid[clip].numpy(),
                                     "size": data.size[clip].numpy(), "label": data.label[clip].numpy(),
                                     "truth": np.flatnonzero(w.in_scope),
                                     "pred": prediction.agents[row].take(operating.reported(
                                         w.score, w.label, w.position))})
    seconds = time.perf_counter() - start
    modes = config.modes
    own_cv = [own_constant_velocity(w, steps_s) for w in windows]
    visibility_note = (f"rendered visible share >= {MIN_VISIBILITY:g}" if data.visibility is not None
                       else "box centre in a camera's view (this data has no rendered visibility)")
    result = {
        "data": {"root": str(getattr(data_root, "source", data_root)), "clips": len(chosen),
                 **({} if isinstance(data_root, ClipTensors) else {"every": every}),
                 "split": None if isinstance(data_root, ClipTensors) else data_split(data_root),
                 "agents": f"present at t0 within {EVAL_RADIUS_M:g} m and {visibility_note}",
                 "path_steps_s": steps_s.tolist(),
                 "future_frames_s": (np.array(config.future_frames) / config.rate_hz).tolist()},
        "model": {"preset": config.preset, "frames": model_frames.summary(),
                  "agents": {**score_windows(windows, operating, steps_s, modes),
                             "filter": f"in scope: {visibility_note}, within {EVAL_RADIUS_M:g} m; other agents "
                                       f"present within {EVAL_RADIUS_M + IGNORE_MARGIN_M:g} m are ignored; "
                                       "operating point: existence >= "
                                       + operating.describe(),
                             "ego_motion": ego_motion,
                             # A given predictor (recorded live, tracked) decoded its agents itself.
                             "motion_gain": (dict(zip(CLASS_GROUPS, prior.gain)) if predict_given is None
                                             else "decoded by the predictor")},
                  **({"ego_velocity": ego_velocity_scores(np.concatenate(ego_true), np.concatenate(ego_estimate))}
                     if ego_true else {}),
                  "velocity_by_ego_speed": velocity_by_ego_speed(windows, np.array(ego_by_window), operating)},
        "baselines": {
            "copy_last_frame": {"frames": copy_frames.summary()},
            **baseline_scores(windows, operating, steps_s),
            "constant_velocity_own_detections": {
                "agents": {k: v for k, v in score_windows(own_cv, operating, steps_s, 1).items()
                           if k not in ("by_visibility",)},
                "note": "the model's own detections, paths from its position and velocity at constant velocity "
                        "(the velocity as decoded: with the motion prior where one is used)"},
        },
        "seconds": seconds,
    }
    return result, kept


def velocity_by_ego_speed(windows: Sequence[WindowAgents], ego_velocity: np.ndarray,
                          operating: OperatingPoint = OperatingPoint()) -> dict[str, Any]:
    """Median velocity error of reported agents (at ``operating``) matched to the nearest
    in-scope agent within 2 m, by the ego's speed; beside it the error two trivial guesses make on the
    same matches: "parked" (velocity 0) and "moves with the ego" (the ego's velocity). A model whose
    error is above both has not learned to see motion."""
    rows = []
    for window, ego in zip(windows, ego_velocity):
        keep = operating.reported(window.score, window.label, window.position)
        for position, velocity in zip(window.position[keep], window.velocity[keep]):
            gap = np.where(window.in_scope, np.linalg.norm(window.true_position - position, axis=1), np.inf)
            g = int(np.argmin(gap))
            if gap[g] <= 2.0:
                truth = window.true_velocity[g]
                rows.append((np.linalg.norm(ego), np.linalg.norm(velocity - truth), np.linalg.norm(truth),
                             np.linalg.norm(truth - ego)))
    table = np.array(rows).reshape(-1, 4)

    def medians(mask: np.ndarray) -> dict[str, Any]:
        part = table[mask]
        return {"matched": int(mask.sum()), **({
            "model_mps": round(float(np.median(part[:, 1])), 2),
            "parked_guess_mps": round(float(np.median(part[:, 2])), 2),
            "moves_with_ego_guess_mps": round(float(np.median(part[:, 3])), 2)} if mask.any() else {})}

    bands = {"0-3 m/s": (0, 3), "3-8 m/s": (3, 8), ">8 m/s": (8, np.inf)}
    return {"all": medians(np.ones(len(table), bool)),
            **{name: medians((table[:, 0] >= lo) & (table[:, 0] < hi)) for name, (lo, hi) in bands.items()}}


def ego_velocity_scores(true: np.ndarray, estimate: np.ndarray) -> dict[str, Any]:
    """How well the model's own ego-velocity estimate (the no-odometry fallback) matches odometry:
    the error's norm (m/s), median and by the ego's speed."""
    error = np.linalg.norm(estimate - true, axis=1)
    speed = np.linalg.norm(true, axis=1)
    bands = {"0-3 m/s": (0, 3), "3-8 m/s": (3, 8), ">8 m/s": (8, np.inf)}
    return {"mean_error_mps": round(float(error.mean()), 3), "median_error_mps": round(float(np.median(error)), 3),
            "by_speed": {name: {"windows": int(((speed >= lo) & (speed < hi)).sum()),
                                "median_error_mps": round(float(np.median(error[(speed >= lo) & (speed < hi)])), 3)
                                if ((speed >= lo) & (speed < hi)).any() else None}
                         for name, (lo, hi) in bands.items()}}


def require_training_clips(data_root: str | Path, use: str) -> None:
    """Refuse ``data_root`` unless it is clip dataset folders (comma-separated) of split train: what a part of
    a model fitted after its weights (``use``, e.g. "fit the motion prior") may be chosen on."""
    from qcraft_world_model.data.clip_dataset import DatasetError

    for folder in str(data_root).split(","):
        if not (Path(folder) / "manifest.json").is_file():
            raise DatasetError(f"{folder} is not a clip dataset (no manifest.json): {use} on clips of the training "
                               "maps (qcraft-wm generate clips --split train)")
    split = data_split(data_root)
    if split != "train":
        raise DatasetError(f"{data_root} is split {split!r}: {use} on training clips only, never on an evaluation "
                           "split (it becomes part of the model, like its weights)")


def data_split(root: str | Path) -> str | None:
    """The split of a clip dataset folder, or of several (comma-separated: their splits joined by commas,
    each once); None for a bag or a folder without a manifest."""
    import json

    splits = []
    for folder in str(root).split(","):
        manifest = Path(folder) / "manifest.json"
        split = json.loads(manifest.read_text()).get("split") if manifest.is_file() else None
        if split is None:
            return None
        if split not in splits:
            splits.append(split)
    return ",".join(splits) if splits else None
