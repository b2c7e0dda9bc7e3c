"""``qcraft-wm preview``: a picture of dataset clips, each what the cameras saw at t0 with ground-truth
boxes beside a bird's-eye view, over the clip's frames past and future."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.data.clip_dataset import ClipDataset
from qcraft_world_model.data.drawing import draw_bev, draw_boxes, label_strip
from qcraft_world_model.model.geometry import box_corners


def cameras_from_provenance(provenance: dict) -> tuple[PinholeCamera, ...]:
    """The (per-episode jittered) cameras recorded in a shard's provenance."""
    keys = PinholeCamera.__dataclass_fields__
    return tuple(PinholeCamera(**{k: v for k, v in c.items() if k in keys}) for c in provenance["cameras"])


def clip_preview(sample: dict[str, np.ndarray], cameras: tuple[PinholeCamera, ...], past_frames: int = 16,
                 scale: int = 3) -> np.ndarray:
    """Camera frames at t0 (upscaled, GT boxes of agents drawn) beside the bird's-eye view."""
    t0 = past_frames - 1
    agents, valid = sample["agents"], sample["agent_valid"]
    boxes = [(box_corners(agents[t0, a, :2], agents[t0, a, 2], sample["agent_size"][a])[0], sample["agent_label"][a])
             for a in range(agents.shape[1]) if valid[t0, a]]
    tiles = []
    for c, camera in enumerate(cameras):
        image = draw_boxes(sample["frames"][t0, c], camera, boxes, scale=scale)
        tiles.append(np.vstack([label_strip(f"{camera.name} t0", image.shape[1]), image]))
    height = tiles[0].shape[0]
    bev = draw_bev(agents, valid, sample["agent_size"], sample["agent_label"], t0, ego=sample["ego"],
                   cameras=cameras, pixels=height - 18)
    tiles.append(np.vstack([label_strip("ground truth, ego frame", bev.shape[1]), bev]))
    return np.hstack(tiles)


def frame_strip(sample: dict[str, np.ndarray], camera: int = 0, every: int = 3) -> np.ndarray:
    """Every ``every``-th frame of one camera across the clip, past and future, side by side."""
    frames = sample["frames"][::every, camera]
    return np.hstack(list(frames))


def dataset_preview(dataset: str | Path, clips: Sequence[int]) -> np.ndarray:
    """The preview (RGB) of clips ``clips`` of a clip dataset, one captioned row per clip, top to bottom:
    ``clip_preview`` over ``frame_strip`` scaled to its width."""
    data = ClipDataset(dataset)
    rows = []
    for index in clips:
        if not 0 <= index < len(data):
            raise FileNotFoundError(f"clip {index} is out of range: {dataset} has {len(data)} clips")
        sample, provenance = data[index], data.provenance(index)
        preview = clip_preview(sample, cameras_from_provenance(provenance))
        strip = frame_strip(sample)
        strip = cv2.resize(strip, (preview.shape[1], round(strip.shape[0] * preview.shape[1] / strip.shape[1])))
        caption = f"clip {index}: {provenance['map']} seed {provenance['seed']} - frames every 0.3 s, " \
                  "the last 4 are the future"
        rows.append(np.vstack([label_strip(caption, preview.shape[1]), preview, strip]))
    return np.vstack(rows)
