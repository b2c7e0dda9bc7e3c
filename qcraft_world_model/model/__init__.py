"""The world model in pure PyTorch: config, stem, temporal bottleneck, sparse attention,
transformer, heads, losses. No ROS, no I/O."""

from qcraft_world_model.model.config import ModelConfigError, WorldModelConfig
from qcraft_world_model.model.world_model import WorldModel, WorldModelOutput

__all__ = ["ModelConfigError", "WorldModel", "WorldModelConfig", "WorldModelOutput"]
