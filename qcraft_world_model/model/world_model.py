"""The world model: per-frame stem → temporal bottleneck → sparse transformer → heads.

Split for streaming: ``stem`` runs once per incoming frame (the node caches its
output in the ring window); ``forward_window`` runs per prediction on the cached
stem tokens of the last 16 frames of every camera and the two newest frames
themselves (the frame decoder's skip inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qcraft_world_model.model.config import WorldModelConfig
from qcraft_world_model.model.detection import AgentPrediction, DenseAgentHead
from qcraft_world_model.model.heads import FrameDecoder
from qcraft_world_model.model.stem import PatchStem
from qcraft_world_model.model.temporal import TemporalBottleneck
from qcraft_world_model.model.transformer import SparseTransformer


@dataclass
class WorldModelOutput:
    #: (B, C, horizons, 3, H, W) predicted future frames in [0, 1]; None where they were not asked for
    #: (an agents-only window: planners need no frames, and the decoder is a third of the window's time).
    frames: torch.Tensor | None
    agents: AgentPrediction
    #: (B*C, N, dim) the transformer's tokens per camera, where the frames were not decoded with the
    #: agents: ``decode_frames`` makes them later (the node publishes agents first, frames after).
    tokens: torch.Tensor | None = None


class WorldModel(nn.Module):
    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = PatchStem(config.patch, config.stem_dim)
        self.temporal = TemporalBottleneck(config.stem_dim, config.dim, config.tokens_per_camera, config.cameras)
        self.transformer = SparseTransformer(config.dim, config.depth, config.heads, config.mlp_ratio,
                                             config.attention_window, config.anchors, config.tokens)
        self.frame_decoder = FrameDecoder(config.dim, config.grid_hw, config.size_hw, len(config.future_frames),
                                          config.decoder_dim)
        self.agent_head = DenseAgentHead(config.dim, config.grid_hw, config.size_hw, config.detection_stride,
                                         config.head_dim, config.classes, config.modes, len(config.path_steps),
                                         ego_relative=config.agent_motion == "ego_relative")

    def forward_window(self, stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
                       frames: bool = True) -> WorldModelOutput:
        """stem_tokens (B, C, T, N, stem_dim) of the window; the newest and the previous frames
        (B, C, 3, H, W) uint8. ``frames=False`` skips the frame decoder (output frames None)."""
        latent = self.temporal(stem_tokens)  # (B, C*N, dim)
        tokens, anchors = self.transformer(latent)
        return self.heads(tokens, anchors, newest, previous, frames)

    def heads(self, tokens: torch.Tensor, anchors: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
              frames: bool = True) -> WorldModelOutput:
        """The frame decoder (unless ``frames`` is False) and the agent head on the transformer's output;
        newest/previous (B, C, 3, H, W).

        The anchors are the transformer's global tokens: every latent token has attended
        to them, so their context reaches both heads through the tokens. Without frames the
        output keeps the per-camera tokens, for ``decode_frames``.
        """
        b, c = newest.shape[:2]
        per_camera = tokens.reshape(b * c, self.config.tokens_per_camera, -1)
        agents = self.agent_head(per_camera, newest.reshape(b * c, *newest.shape[2:]),
                                 previous.reshape(b * c, *previous.shape[2:]), c)
        if not frames:
            return WorldModelOutput(frames=None, agents=agents, tokens=per_camera)
        return WorldModelOutput(frames=self.decode_frames(per_camera, newest, previous), agents=agents)

    def decode_frames(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """(B, C, horizons, 3, H, W) future frames from an agents-only window's ``tokens`` (B*C, N, dim)
        and its newest/previous frames (B, C, 3, H, W): the same frames ``heads(frames=True)`` gives."""
        b, c = newest.shape[:2]
        predicted = self.frame_decoder(tokens, newest.reshape(b * c, *newest.shape[2:]),
                                       previous.reshape(b * c, *previous.shape[2:]))
        return predicted.view(b, c, *predicted.shape[1:])

    def forward(self, window: torch.Tensor) -> WorldModelOutput:
        """window (B, C, T, 3, H, W) uint8 frames, oldest first: stem + window in one call (training)."""
        return self.forward_window(self.stem(window), window[:, :, -1], window[:, :, -2])

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
