"""The interface every inference backend answers (``backends.py`` holds them and ``auto``).

Kept apart from the backends so that a backend living in its own module (OpenVINO,
imported only when asked for) builds on the interface without importing the module
that chooses among backends, and that module can import it lazily: imports run one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from qcraft_world_model.model.world_model import WorldModel, WorldModelOutput
from qcraft_world_model.runtime.onnx_export import export_key


class BackendError(RuntimeError):
    """A backend cannot run here (missing library, device, engine); the message says what to do."""


class Backend:
    """Streaming inference of one world model."""

    name = "backend"

    def __init__(self, runner: Any, config: Any, name: str) -> None:
        self.runner, self.config, self.name = runner, config, name

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.runner.stem(frames)

    def forward_window(self, stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
                       frames: bool = True) -> WorldModelOutput:
        """One prediction; ``frames=False``: agents only (``output.frames`` None), the frame decoder skipped."""
        with torch.inference_mode():
            return self.runner.forward_window(stem_tokens, newest, previous, frames=frames)

    @property
    def decodes_frames_later(self) -> bool:
        """Whether an agents-only window's frames can be decoded afterwards (``decode_frames``); where not
        (a TensorRT engine holds the whole window) frames come with the agents, ``forward_window(frames=True)``."""
        return bool(getattr(self.runner, "decodes_frames_later", hasattr(self.runner, "decode_frames")))

    def decode_frames(self, output: WorldModelOutput, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """(B, C, horizons, 3, H, W) frames of an agents-only window ``output`` (its tokens), newest/previous
        the window's two newest frames: the frames the full window would have given."""
        if output.tokens is None:
            raise BackendError(f"{self.name}: this output has no tokens to decode frames from "
                               "(ask forward_window for frames instead)")
        with torch.inference_mode():
            return self.runner.decode_frames(output.tokens, newest, previous)

    def __call__(self, window: torch.Tensor) -> WorldModelOutput:
        """Whole windows (B, C, T, 3, H, W) uint8, as ``WorldModel`` takes them: each window stemmed frame
        by frame and predicted at batch 1 (the node's batch, the one every export is built for), so an
        evaluation scores exactly what the node would publish on this backend."""
        from qcraft_world_model.model.detection import AgentPrediction

        outputs = []
        for row in window.split(1):
            row = row.to(self.device)
            tokens = torch.stack([self.stem(row[:, :, t]) for t in range(row.shape[2])], dim=2)
            outputs.append(self.forward_window(tokens, row[:, :, -1], row[:, :, -2]))
        agents = {name: torch.cat([getattr(o.agents, name).float().cpu() for o in outputs])
                  for name in vars(outputs[0].agents)}
        return WorldModelOutput(frames=torch.cat([o.frames.float().cpu() for o in outputs]),
                                agents=AgentPrediction(**agents))

    def warm_up(self, repeats: int = 2) -> WorldModelOutput:
        """Run dummy windows so compilation happens now, not on the first real frame; returns the
        last output (callers check it before trusting the backend)."""
        c = self.config
        frames = torch.zeros((1, c.cameras, c.window, 3, *c.size_hw), dtype=torch.uint8)
        frames = frames.to(self.device)
        for _ in range(repeats):
            tokens = torch.stack([self.stem(frames[:, :, t]) for t in range(c.window)], dim=2)
            agents_only = self.forward_window(tokens, frames[:, :, -1], frames[:, :, -2], frames=False)
            if self.decodes_frames_later:  # the frames graph too: the node decodes frames after the agents
                self.decode_frames(agents_only, frames[:, :, -1], frames[:, :, -2])
            output = self.forward_window(tokens, frames[:, :, -1], frames[:, :, -2])
        return output

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


def onnx_export_folder(model: WorldModel, cache_dir: Path) -> Path:
    """``<cache>/onnx-<export key>``, holding the FP32 export of ``model`` (exported if absent)."""
    from qcraft_world_model.runtime.onnx_export import export_onnx

    folder = Path(cache_dir) / f"onnx-{export_key(model)}"
    if not all((folder / name).is_file() for name in ("stem.onnx", "window.onnx", "window_agents.onnx", "frames.onnx")):
        export_onnx(model, folder)  # cheap (a second) and checked against torch on export
    return folder
