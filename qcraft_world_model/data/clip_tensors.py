"""A clip dataset (or scene bag) held in memory as tensors, cut into model inputs and ground truth.

The training targets of the agent head are built from a batch's ground truth in
``train/agent_targets.py``; evaluation scores the ground truth itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.data.clip_dataset import ClipDataset, DatasetError
from qcraft_world_model.model.config import WorldModelConfig
from qcraft_world_model.model.geometry import CameraGeometry


@dataclass
class Batch:
    window: torch.Tensor  # (B, C, T, 3, H, W) uint8
    future: torch.Tensor  # (B, C, horizons, 3, H, W) float in [0, 1]
    #: Ground truth as the frames show it (mirrored where flipped): (B, S, A, 5) x, y, heading, vx, vy per
    #: step, (B, S, A) valid, (B, A, 3) size, (B, A) Autoware label.
    agents: torch.Tensor
    valid: torch.Tensor
    size: torch.Tensor
    label: torch.Tensor
    #: Per clip, per camera: the camera the frames were seen with (mirrored where the clip is flipped).
    cameras: list[list[CameraGeometry]]
    #: (B, 2) the ego's velocity at t0 (x forward, y left), m/s: what odometry reports on a vehicle.
    ego_velocity: torch.Tensor
    #: (B, A, C) rendered visible share of each agent at t0 per camera (occlusion only; a mirror does not
    #: change it), where the data has it; None for data without an id buffer (a recorded bag).
    visibility: torch.Tensor | None = None


class ClipTensors:
    """All clips of a dataset (or cut from a scene bag) as tensors (1000 clips ~ 1.3 GB)."""

    def __init__(self, arrays: dict[str, np.ndarray], config: WorldModelConfig, source: str,
                 cameras: list[tuple[PinholeCamera, ...]], maps: list[str | None] | None = None,
                 episodes: list[str] | None = None) -> None:
        """``arrays``: clip fields stacked over clips, frames (N, T, C, H, W, 3) as NumPy, or already as the
        (N, C, T, 3, H, W) tensor this class keeps; ``cameras``: per clip, its rig; ``maps``: per clip, the
        map it was simulated on, where known; ``episodes``: per clip, the episode it was cut from (default:
        all one, the source)."""
        self.past = 16  # frames before and at t0 in every clip (EpisodeConfig.past_frames)
        frames = arrays["frames"]
        if isinstance(frames, torch.Tensor):
            count, camera_count, t, _, height, width = frames.shape
        else:
            count, t, camera_count, height, width, _ = frames.shape
        steps = arrays["agents"].shape[1]
        problems = []
        if count == 0:
            problems.append("it holds no clips")
        if (height, width) != config.size_hw:
            problems.append(f"frames are {width}x{height}, the model reads {config.width}x{config.height}")
        if camera_count != config.cameras:
            problems.append(f"clips have {camera_count} camera(s), the model expects {config.cameras}")
        if config.window > self.past:
            problems.append(f"the model's window of {config.window} frames exceeds the {self.past} past frames")
        if max(config.future_frames) > t - self.past:
            problems.append(f"the model predicts frame +{max(config.future_frames)}, clips hold {t - self.past}")
        if max(config.path_steps) > steps - self.past:
            problems.append(f"paths reach step +{max(config.path_steps)}, clips hold {steps - self.past} future steps")
        if len(cameras) != count or any(len(rig) != config.cameras for rig in cameras):
            problems.append("the clips' camera descriptions do not match their frames")
        if problems:
            raise DatasetError(f"dataset {source} does not fit model preset {config.preset!r}: " + "; ".join(problems))
        self.config = config
        self.source = source
        # (N, C, T, 3, H, W): channels first once, here, not per batch.
        self.frames = (frames if isinstance(frames, torch.Tensor)
                       else torch.from_numpy(frames).permute(0, 2, 1, 5, 3, 4).contiguous())
        self.agents = torch.from_numpy(arrays["agents"])  # (N, S, A, 5)
        self.valid = torch.from_numpy(arrays["agent_valid"])
        self.size = torch.from_numpy(arrays["agent_size"])
        self.label = torch.from_numpy(arrays["agent_label"].astype(np.int64))
        self.in_view = torch.from_numpy(arrays["agent_in_view"])
        self.ego_velocity = torch.from_numpy(np.asarray(arrays["ego_velocity"], np.float32))  # (N, 2)
        #: (N, A, C) rendered visible share of each agent at t0, where the data has it (else None).
        self.visibility = arrays["agent_visibility"] if "agent_visibility" in arrays else None
        #: (N,) capture time of each clip's t0 frame, ns, where the clips were cut from a bag (else None):
        #: how live predictions recorded from that bag are found again.
        self.stamps_ns = arrays["stamps_ns"].tolist() if "stamps_ns" in arrays else None
        #: Per clip, the cameras (PinholeCamera, model order) its frames were rendered or recorded with.
        self.cameras = cameras
        #: Per clip, the map it was simulated on (None where unknown, e.g. a recorded bag).
        self.maps = list(maps) if maps is not None else [None] * count
        #: Per clip, the episode it was cut from: clips of one episode share traffic and are not independent
        #: samples (a bootstrap resamples episodes).
        self.episodes = list(episodes) if episodes is not None else [str(source)] * count
        self.geometry = [[camera.geometry() for camera in rig] for rig in cameras]

    @classmethod
    def load(cls, source: str | Path, config: WorldModelConfig, max_clips: int | None = None,
             every: int = 1) -> ClipTensors:
        """From a clip dataset folder, several of them (comma-separated, read in that order), or a scene
        bag (a folder with rosbag2 metadata.yaml). ``every``: only every so-many-th clip of the folders
        (a dataset is stored map by map, so its first clips are one map's), before ``max_clips``."""
        if every < 1:
            raise DatasetError(f"every must be at least 1, got {every}")
        fields = ("frames", "agents", "agent_valid", "agent_size", "agent_label", "agent_in_view")
        if (Path(source) / "metadata.yaml").is_file():
            from qcraft_world_model.data.bag_clips import clips_from_bag

            clips = clips_from_bag(Path(source), config.width, image_height=config.height)
            arrays = {name: getattr(clips, name)[::every][:max_clips]
                      for name in (*fields, "stamps_ns", "ego_velocity")}
            return cls(arrays, config, str(source), [clips.cameras] * len(arrays["frames"]))
        folders = [Path(part) for part in str(source).split(",") if part.strip()]
        if not folders:
            raise DatasetError(f"no dataset folder in {str(source)!r}")
        index = [(dataset, i) for dataset in map(ClipDataset, folders) for i in range(len(dataset))]
        index = index[::every][:max_clips]
        if not index:
            raise DatasetError(f"dataset {source} holds no clips")
        # Frames are most of the memory (4400 clips of 256x128 are 11 GB): one tensor in the layout kept
        # (N, C, T, 3, H, W) is made for all of them and filled clip by clip, so loading never holds a
        # second copy (a stacked array permuted afterwards would need two: 22 GB of a 23 GB machine).
        frames, shape, samples, cameras, maps, episodes = None, None, [], [], [], []
        for row, (dataset, i) in enumerate(index):
            sample = dataset[i]
            clip_frames = sample.pop("frames")  # (T, C, H, W, 3)
            if frames is None:
                shape = clip_frames.shape
                t, c, h, w, _ = shape
                frames = torch.empty((len(index), c, t, 3, h, w), dtype=torch.from_numpy(clip_frames).dtype)
            if clip_frames.shape != shape or torch.from_numpy(clip_frames).dtype != frames.dtype:
                raise DatasetError(f"dataset {source} mixes frame shapes {shape} and {clip_frames.shape} "
                                   f"(or types: {frames.dtype}, {clip_frames.dtype}; {dataset.root}, clip {i})")
            frames[row] = torch.from_numpy(clip_frames).permute(1, 0, 4, 2, 3)
            # Some clips with rendered visibility and some without would switch every clip to the coarser
            # box raster without a word: refuse the mix, as soon as it shows (before 11 GB are read).
            if samples and ("agent_visibility" in sample) != ("agent_visibility" in samples[0]):
                raise DatasetError(f"dataset {source}: some clips carry agent_visibility and some do not (clips "
                                   f"rendered before and after the id buffer; {dataset.root}, clip {i}); train on "
                                   "folders made the same way")
            samples.append(sample)
            cameras.append(dataset.cameras(i))
            maps.append(dataset.provenance(i).get("map"))
            episodes.append(dataset.episode(i))
        optional = [name for name in ("agent_visibility",) if name in samples[0]]
        arrays = {"frames": frames, **{name: np.stack([sample[name] for sample in samples])
                                       for name in (*fields, *optional) if name != "frames"}}
        past = 16  # EpisodeConfig.past_frames: the ego's state at t0 is row past - 1 (x, y, heading, vx, vy)
        arrays["ego_velocity"] = np.stack([sample["ego"][past - 1, 3:5] for sample in samples])
        return cls(arrays, config, str(source), cameras, maps, episodes)

    def __len__(self) -> int:
        return self.frames.shape[0]

    def batch(self, index: torch.Tensor, flip: torch.Tensor | None = None) -> Batch:
        """Clips ``index`` as a batch; ``flip`` (B,) bool mirrors left/right (single camera only)."""
        cfg, t0 = self.config, self.past - 1
        frames = self.frames[index]  # (B, C, T, 3, H, W)
        window = frames[:, :, self.past - cfg.window: self.past]
        future = frames[:, :, [t0 + k for k in cfg.future_frames]].float() / 255.0
        agents = self.agents[index].clone()
        ego_velocity = self.ego_velocity[index].clone()
        if flip is not None and cfg.cameras == 1 and flip.any():
            window = torch.where(flip.view(-1, 1, 1, 1, 1, 1), window.flip(-1), window)
            future = torch.where(flip.view(-1, 1, 1, 1, 1, 1), future.flip(-1), future)
            sign = torch.where(flip, -1.0, 1.0).view(-1, 1, 1)
            agents[..., 1] *= sign  # y
            agents[..., 2] *= sign  # heading
            agents[..., 4] *= sign  # vy
            ego_velocity[:, 1] *= sign[:, 0, 0]
        cameras = [list(self.geometry[i]) for i in index.tolist()]
        if flip is not None and cfg.cameras == 1:
            cameras = [[c.mirrored() for c in rig] if f else rig for rig, f in zip(cameras, flip.tolist())]
        visibility = (torch.from_numpy(np.asarray(self.visibility[index.numpy()], np.float32))
                      if self.visibility is not None else None)
        return Batch(window=window, future=future, agents=agents, valid=self.valid[index], size=self.size[index],
                     label=self.label[index], cameras=cameras, ego_velocity=ego_velocity, visibility=visibility)

    def windows(self, count: int | None = None) -> list[torch.Tensor]:
        """The first ``count`` clips' input windows, one (1, C, T, 3, H, W) each: the one calibration
        loop (INT8 ranges, QAT start, export checks all read these)."""
        count = len(self) if count is None else min(count, len(self))
        return [self.batch(torch.tensor([i])).window for i in range(count)]


def calibration_windows(source: str | Path, config: WorldModelConfig, count: int = 32) -> list[torch.Tensor]:
    """The first ``count`` windows of a clip dataset or scene bag (see ``ClipTensors.windows``)."""
    return ClipTensors.load(source, config, max_clips=count).windows()
