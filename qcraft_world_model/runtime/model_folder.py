"""The one model-folder loader: ``model.safetensors`` + ``config.json`` → a WorldModel, and where the
shipped models live. The node, evaluation, export and benchmarks all load models through here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from qcraft_world_model.model.config import WorldModelConfig
from qcraft_world_model.model.world_model import WorldModel


def model_dirs() -> list[Path]:
    """Where shipped models live: the source tree, then installed share/ folders (pip, colcon)."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    return [Path(__file__).resolve().parents[2] / "models",
            *(Path(p) / "share" / "qcraft_world_model" / "models" for p in prefixes)]


def default_model(preset: str = "lite") -> Path:
    """The folder of the shipped model of a preset."""
    for folder in model_dirs():
        if (folder / preset / "model.safetensors").is_file():
            return folder / preset
    raise FileNotFoundError(f"no shipped {preset!r} model found in: {', '.join(map(str, model_dirs()))}")


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> WorldModel:
    """A trained model from ``model.safetensors`` + ``config.json``, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in ("model.safetensors", "config.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"model folder {folder} has no {name}")
    config = WorldModelConfig.from_dict(json.loads((folder / "config.json").read_text())["model"])
    model = WorldModel(config)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise ValueError(f"{folder / 'model.safetensors'} does not load into a {config.preset} model: "
                         f"{type(err).__name__}: {err}") from err
    return model.to(device).eval()
