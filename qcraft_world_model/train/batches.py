"""A clip dataset held in memory as tensors, cut into model inputs and targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qcraft_world_model.data.clip_dataset import ClipDataset, DatasetError
from qcraft_world_model.model.config import WorldModelConfig
from qcraft_world_model.model.losses import AgentTargets

#: Agents the model is asked to find: visible in a camera at t0 and this close.
TARGET_RADIUS_M = 50.0


@dataclass
class Batch:
    window: torch.Tensor  # (B, C, T, 3, H, W) uint8
    future: torch.Tensor  # (B, C, horizons, 3, H, W) float in [0, 1]
    targets: AgentTargets


class ClipTensors:
    """All clips of a dataset (or cut from a scene bag) as tensors (1000 clips ~ 1.3 GB)."""

    def __init__(self, arrays: dict[str, np.ndarray], config: WorldModelConfig, source: str) -> None:
        """``arrays``: clip fields stacked over clips, frames (N, T, C, H, W, 3)."""
        self.past = 16  # frames before and at t0 in every clip (EpisodeConfig.past_frames)
        count, t, cameras, height, width, _ = arrays["frames"].shape
        steps = arrays["agents"].shape[1]
        problems = []
        if count == 0:
            problems.append("it holds no clips")
        if (height, width) != (config.image_size, config.image_size):
            problems.append(f"frames are {width}x{height}, the model reads {config.image_size}x{config.image_size}")
        if cameras != config.cameras:
            problems.append(f"clips have {cameras} camera(s), the model expects {config.cameras}")
        if config.window > self.past:
            problems.append(f"the model's window of {config.window} frames exceeds the {self.past} past frames")
        if max(config.future_frames) > t - self.past:
            problems.append(f"the model predicts frame +{max(config.future_frames)}, clips hold {t - self.past}")
        if max(config.path_steps) > steps - self.past:
            problems.append(f"paths reach step +{max(config.path_steps)}, clips hold {steps - self.past} future steps")
        if problems:
            raise DatasetError(f"dataset {source} does not fit model preset {config.preset!r}: " + "; ".join(problems))
        self.config = config
        self.source = source
        # (N, C, T, 3, H, W): channels first once, here, not per batch.
        self.frames = torch.from_numpy(arrays["frames"]).permute(0, 2, 1, 5, 3, 4).contiguous()
        self.agents = torch.from_numpy(arrays["agents"])  # (N, S, A, 5)
        self.valid = torch.from_numpy(arrays["agent_valid"])
        self.size = torch.from_numpy(arrays["agent_size"])
        self.label = torch.from_numpy(arrays["agent_label"].astype(np.int64))
        self.in_view = torch.from_numpy(arrays["agent_in_view"])
        #: (N,) capture time of each clip's t0 frame, ns, where the clips were cut from a bag (else None):
        #: how live predictions recorded from that bag are found again.
        self.stamps_ns = arrays["stamps_ns"].tolist() if "stamps_ns" in arrays else None
        #: The cameras (PinholeCamera, model order) where the clips were cut from a bag: for drawing.
        self.cameras: tuple = ()

    @classmethod
    def load(cls, source: str | Path, config: WorldModelConfig, max_clips: int | None = None) -> ClipTensors:
        """From a clip dataset folder, or from a scene bag (a folder with rosbag2 metadata.yaml)."""
        source = Path(source)
        fields = ("frames", "agents", "agent_valid", "agent_size", "agent_label", "agent_in_view")
        if (source / "metadata.yaml").is_file():
            from qcraft_world_model.data.bag_clips import clips_from_bag

            clips = clips_from_bag(source, config.image_size)
            arrays = {name: getattr(clips, name)[:max_clips] for name in (*fields, "stamps_ns")}
            loaded = cls(arrays, config, str(source))
            loaded.cameras = clips.cameras
            return loaded
        else:
            dataset = ClipDataset(source)
            count = len(dataset) if max_clips is None else min(max_clips, len(dataset))
            samples = [dataset[i] for i in range(count)]
            if not samples:
                raise DatasetError(f"dataset {source} holds no clips")
            arrays = {name: np.stack([sample[name] for sample in samples]) for name in fields}
        return cls(arrays, config, str(source))

    def __len__(self) -> int:
        return self.frames.shape[0]

    def target_mask(self, index: torch.Tensor) -> torch.Tensor:
        """(B, A) agents to find: valid and in view at t0, within TARGET_RADIUS_M."""
        t0 = self.past - 1
        position = self.agents[index, t0, :, :2]
        return self.valid[index, t0] & self.in_view[index].any(-1) & (position.norm(dim=-1) <= TARGET_RADIUS_M)

    def batch(self, index: torch.Tensor, flip: torch.Tensor | None = None) -> Batch:
        """Clips ``index`` as a batch; ``flip`` (B,) bool mirrors left/right (single camera only)."""
        cfg, t0 = self.config, self.past - 1
        frames = self.frames[index]  # (B, C, T, 3, H, W)
        window = frames[:, :, self.past - cfg.window: self.past]
        future = frames[:, :, [t0 + k for k in cfg.future_frames]].float() / 255.0
        agents = self.agents[index].clone()
        mask = self.target_mask(index)
        if flip is not None and cfg.cameras == 1 and flip.any():
            window = torch.where(flip.view(-1, 1, 1, 1, 1, 1), window.flip(-1), window)
            future = torch.where(flip.view(-1, 1, 1, 1, 1, 1), future.flip(-1), future)
            sign = torch.where(flip, -1.0, 1.0).view(-1, 1, 1)
            agents[..., 1] *= sign  # y
            agents[..., 2] *= sign  # heading
            agents[..., 4] *= sign  # vy
        steps = [t0 + s for s in cfg.path_steps]
        targets = AgentTargets(
            mask=mask, label=self.label[index], position=agents[:, t0, :, :2], heading=agents[:, t0, :, 2],
            size=self.size[index], future=agents[:, steps, :, :2].permute(0, 2, 1, 3),
            future_valid=self.valid[index][:, steps].permute(0, 2, 1))
        return Batch(window=window, future=future, targets=targets)
