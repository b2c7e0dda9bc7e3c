"""The world model's configuration: one dataclass, presets as YAML files in config/models/."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

def preset_dirs() -> list[Path]:
    """Where presets live: the source tree, then installed share/ folders (pip, colcon)."""
    import os
    import sys

    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    return [Path(__file__).resolve().parents[2] / "config" / "models",
            *(Path(p) / "share" / "qcraft_world_model" / "config" / "models" for p in prefixes)]


class ModelConfigError(ValueError):
    """A preset is missing, has unknown keys, or values that do not fit together."""


AGENT_MOTIONS = ("ego_relative", "absolute")

#: Allowed ranges of the numeric fields (inclusive). They bound memory as much as sense: a config.json
#: saying ``window: 20000`` got the node OOM-killed after 9 minutes, ``attention_window: 8000`` took
#: 4.5 GB, ``rate_hz: 0`` divided by zero per window — all before this check existed.
FIELD_RANGES: dict[str, tuple[float, float]] = {
    "image_size": (16, 2048), "cameras": (1, 16), "window": (2, 64), "patch": (2, 64), "stem_dim": (1, 1024),
    "dim": (8, 2048), "depth": (1, 48), "heads": (1, 64), "mlp_ratio": (0.25, 16.0), "attention_window": (2, 4096),
    "anchors": (0, 256), "modes": (1, 16), "classes": (8, 8), "decoder_dim": (1, 1024), "detection_stride": (1, 32),
    "head_dim": (2, 1024), "rate_hz": (0.1, 1000.0),
}
#: Ranges of the entries of the step lists, and their most entries.
STEP_RANGES: dict[str, tuple[int, int, int]] = {"future_frames": (1, 64, 16), "path_steps": (1, 200, 32)}


@dataclass(frozen=True)
class WorldModelConfig:
    preset: str = "lite"
    #: Frame width, px; also the height unless ``image_height`` is set (frames wider than tall keep the
    #: lens and give more pixels per metre where agents are: docs/model.md, "What the camera allows").
    image_size: int = 128
    image_height: int | None = None
    cameras: int = 1
    window: int = 16
    patch: int = 8
    stem_dim: int = 64
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    attention_window: int = 128
    anchors: int = 16
    future_frames: tuple[int, ...] = (2, 4, 6, 8, 10)
    modes: int = 3
    path_steps: tuple[int, ...] = (5, 10, 15, 20, 25, 30)
    classes: int = 8
    decoder_dim: int = 64
    #: The agent head's output grid is 1/detection_stride of the image (detection.py).
    detection_stride: int = 4
    #: Channels of the agent head.
    head_dim: int = 96
    #: Frame rate the steps above count in, Hz.
    rate_hz: float = 10.0
    #: How the agent head predicts motion: "ego_relative" (relative to the ego carrying on at its
    #: velocity, plus an ego-velocity estimate; detection.py) or "absolute" (models made before the
    #: ego-velocity head, which predicted ground motion directly; their folders lack this key).
    agent_motion: str = "absolute"

    def __post_init__(self) -> None:
        for name, (low, high) in FIELD_RANGES.items():
            value = getattr(self, name)
            kind = float if isinstance(low, float) else int
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise ModelConfigError(f"{name} must be {'a number' if kind is float else 'an integer'}, "
                                       f"got {value!r}")
            if not low <= value <= high:
                raise ModelConfigError(f"{name} {value!r} is outside {low:g}..{high:g}")
        for name, (low, high, most) in STEP_RANGES.items():
            steps = getattr(self, name)
            if not steps or len(steps) > most or any(isinstance(v, bool) or not isinstance(v, int)
                                                     or not low <= v <= high for v in steps):
                raise ModelConfigError(f"{name} must be 1..{most} integers in {low}..{high}, got {list(steps)!r}")
        if self.image_height is not None and (isinstance(self.image_height, bool)
                                              or not isinstance(self.image_height, int)
                                              or not FIELD_RANGES["image_size"][0] <= self.image_height
                                              <= FIELD_RANGES["image_size"][1]):
            raise ModelConfigError(f"image_height must be an integer in 16..2048 or absent, got {self.image_height!r}")
        if not isinstance(self.preset, str) or not self.preset:
            raise ModelConfigError(f"preset must be a name, got {self.preset!r}")
        if self.head_dim % 2:
            raise ModelConfigError(f"head_dim must be even (two halves: image and tokens), got {self.head_dim}")
        if self.attention_window > self.tokens:
            raise ModelConfigError(f"attention_window {self.attention_window} exceeds the {self.tokens} latent "
                                   "tokens it slides over")
        if self.agent_motion not in AGENT_MOTIONS:
            raise ModelConfigError(f"agent_motion {self.agent_motion!r}: one of {', '.join(AGENT_MOTIONS)}")
        for side in {self.width, self.height}:
            if side % self.patch:
                raise ModelConfigError(f"image side {side} is not a multiple of patch {self.patch}")
        if self.dim % self.heads:
            raise ModelConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.attention_window < 2 or self.attention_window % 2:
            raise ModelConfigError(f"attention_window must be an even number >= 2, got {self.attention_window}")
        for side, cells in zip((self.height, self.width), self.grid_hw):
            if cells % 2:
                raise ModelConfigError("the latent grid's sides must be even for the frame decoder")
            if side % self.detection_stride or (side // self.detection_stride) % cells:
                raise ModelConfigError(f"image side / detection_stride ({side} / {self.detection_stride}) "
                                       f"must be a multiple of the latent grid side {cells}")

    @property
    def width(self) -> int:
        """Frame width, px."""
        return self.image_size

    @property
    def height(self) -> int:
        """Frame height, px."""
        return self.image_height or self.image_size

    @property
    def size_hw(self) -> tuple[int, int]:
        """Frame (height, width), px: the shape a frame tensor has."""
        return self.height, self.width

    @property
    def grid_hw(self) -> tuple[int, int]:
        """Latent tokens per column and per row: one per stem patch, in raster order."""
        return self.height // self.patch, self.width // self.patch

    @property
    def tokens_per_camera(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def tokens(self) -> int:
        return self.cameras * self.tokens_per_camera

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["future_frames"], data["path_steps"] = list(self.future_frames), list(self.path_steps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        """From a config's ``model`` mapping; every field type- and range-checked (ModelConfigError)."""
        if not isinstance(data, dict):
            raise ModelConfigError(f"a model config must be a mapping of fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelConfigError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("future_frames", "path_steps"):
            if key in values:
                if not isinstance(values[key], (list, tuple)):
                    raise ModelConfigError(f"{key} must be a list of integers, got {values[key]!r}")
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def preset_config(cls, name_or_path: str | Path) -> WorldModelConfig:
        """A preset by name (``lite``, ``base``) or a YAML file path."""
        path = Path(name_or_path)
        if not path.suffix:
            found = [d / f"{name_or_path}.yaml" for d in preset_dirs() if (d / f"{name_or_path}.yaml").is_file()]
            path = found[0] if found else path
        if not path.is_file():
            available = sorted({p.stem for d in preset_dirs() for p in d.glob("*.yaml")})
            raise ModelConfigError(f"no model preset {name_or_path!r}; presets: {', '.join(available)}")
        import yaml  # only here: the model itself needs no YAML (GPU boxes may lack PyYAML)

        return cls.from_dict(yaml.safe_load(path.read_text()))
