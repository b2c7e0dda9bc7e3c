"""The world model in pure PyTorch: config, stem, temporal bottleneck, sparse attention,
transformer, heads, losses; camera geometry (NumPy) for decoding agents. No ROS, no I/O.

Names are imported lazily, so that ``model.geometry`` (used by scene generation) does
not pull in torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelConfigError", "WorldModel", "WorldModelConfig", "WorldModelOutput"]


def __getattr__(name: str) -> Any:
    if name in ("ModelConfigError", "WorldModelConfig"):
        from qcraft_world_model.model import config

        return getattr(config, name)
    if name in ("WorldModel", "WorldModelOutput"):
        from qcraft_world_model.model import world_model

        return getattr(world_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
