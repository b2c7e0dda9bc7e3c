"""ONNX export of the streaming parts (stem per frame, window per prediction) and an
onnxruntime model with the same calls as the torch one.

The window is exported twice: with the frame decoder (``window.onnx``, what evaluation
runs) and without it (``window_agents.onnx``), which also returns the transformer's
tokens so that ``frames.onnx`` can decode the frames afterwards. The node runs the
agents-only window for every prediction, publishes the agents, and only then decodes
frames for the windows that publish them (at most ``output.frames_max_rate_hz``, none
with ``output.publish_frames: false``): the decoder is a third of a window's time, and
planners should not wait for pictures.

FP32 ONNX is both a CPU backend (onnxruntime) and what TensorRT builds engines
from. The legacy TorchScript exporter is used (``dynamo=False``, opset 17): it
handles the GRU, the blocked attention's SDPA and grid_sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qcraft_world_model.model.detection import AgentPrediction
from qcraft_world_model.model.world_model import WorldModel, WorldModelOutput

AGENT_OUTPUTS = tuple(f.name for f in fields(AgentPrediction))


#: The exported window graphs: with frames, and agents only plus the tokens the frames are decoded
#: from (file stem → outputs).
WINDOW_GRAPHS = {"window": ("frames", *AGENT_OUTPUTS), "window_agents": (*AGENT_OUTPUTS, "tokens")}
#: The frame decoder on its own: (tokens, newest, previous) → frames.
FRAMES_GRAPH = "frames"


class WindowAsTuple(nn.Module):
    """forward_window with tuple outputs (ONNX graphs and TensorRT engines return tensors, not dataclasses);
    ``frames=False``: the agents-only window, its per-camera tokens last."""

    def __init__(self, model: WorldModel, frames: bool = True) -> None:
        super().__init__()
        self.model, self.frames = model, frames

    def forward(self, stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> tuple:
        output = self.model.forward_window(stem_tokens, newest, previous, frames=self.frames)
        agents = tuple(getattr(output.agents, name) for name in AGENT_OUTPUTS)
        return (output.frames, *agents) if self.frames else (*agents, output.tokens)


class _Frames(nn.Module):
    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return self.model.decode_frames(tokens, newest, previous)


def per_camera(frames: torch.Tensor, stem_one: Any) -> torch.Tensor:
    """(1, C, 3, H, W) → (1, C, N, stem_dim) by ``stem_one`` on each camera's (1, 1, 3, H, W) frame."""
    if frames.shape[1] == 1:
        return stem_one(frames)
    return torch.cat([stem_one(frames[:, c:c + 1]) for c in range(frames.shape[1])], dim=1)


class _Stem(nn.Module):
    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.stem(frames)


def weights_hash(model: nn.Module) -> str:
    """A digest of the model's weights, for naming exported artefacts and engine caches."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_key(model: WorldModel) -> str:
    """What an exported graph or engine is valid for: the weights, the model config and the graph's
    outputs. Weights alone were not enough: when the head gained an output (ego_velocity) a cached
    export of the same weights was reused and the backend failed at configure."""
    digest = hashlib.sha256(weights_hash(model).encode())
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(",".join(("frames", *AGENT_OUTPUTS)).encode())
    digest.update(b"stem: one camera")  # session 6: earlier exports stemmed the whole rig at once
    digest.update(b"temporal: written-out GRU")  # session 7: earlier exports held onnxruntime's slower GRU op
    # Session 9: the agents-only window returns the tokens and frames.onnx decodes them. An older cache
    # folder's window_agents.onnx (or OpenVINO blob) lacks that output, so the key changes with it.
    digest.update(f"{','.join(WINDOW_GRAPHS['window_agents'])}; {FRAMES_GRAPH}".encode())
    return digest.hexdigest()[:16]


def export_onnx(model: WorldModel, out: Path, opset: int = 17) -> dict[str, Any]:
    """Write ``stem.onnx``, ``window.onnx``, ``window_agents.onnx`` and ``frames.onnx`` (batch 1) and
    check them against torch in onnxruntime."""
    model = model.eval()
    config = model.config
    out.mkdir(parents=True, exist_ok=True)
    frames = torch.randint(0, 256, (1, config.cameras, config.window, 3, *config.size_hw),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stem_tokens = model.stem(frames)
        window_args = (stem_tokens, frames[:, :, -1], frames[:, :, -2])
        # The stem is exported for one camera's frame: the node stems each camera's frames as they
        # arrive, one camera at a time (a rig-wide input broke every multi-camera model here).
        torch.onnx.export(_Stem(model), (frames[:, :1, -1],), str(out / "stem.onnx"), opset_version=opset,
                          dynamo=False, input_names=["frames"], output_names=["stem_tokens"])
        for graph, outputs in WINDOW_GRAPHS.items():
            torch.onnx.export(WindowAsTuple(model, frames=graph == "window"), window_args, str(out / f"{graph}.onnx"),
                              opset_version=opset, dynamo=False, input_names=["stem_tokens", "newest", "previous"],
                              output_names=list(outputs))
        tokens = WindowAsTuple(model, frames=False)(*window_args)[-1]
        frames_args = (tokens, frames[:, :, -1], frames[:, :, -2])
        torch.onnx.export(_Frames(model), frames_args, str(out / f"{FRAMES_GRAPH}.onnx"), opset_version=opset,
                          dynamo=False, input_names=["tokens", "newest", "previous"], output_names=["frames"])
        reference = WindowAsTuple(model)(*window_args)
    runner = OnnxWorldModel(out, config)
    errors = {}
    for graph, outputs in WINDOW_GRAPHS.items():
        produced = runner.session(graph).run(None, runner.feed(*window_args))
        expected = reference if graph == "window" else (*reference[1:], tokens)
        prefix = "" if graph == "window" else f"{graph}."
        errors.update({prefix + name: float(np.linalg.norm(got - ref.numpy()) / max(np.linalg.norm(ref.numpy()), 1e-12))
                       for name, got, ref in zip(outputs, produced, expected)})
    # The frames decoded later, from the agents-only graph's own tokens (its last output, the loop's last
    # graph), against torch's frames.
    later = runner.decode_frames(torch.from_numpy(produced[-1]), frames[:, :, -1], frames[:, :, -2]).numpy()
    errors[f"{FRAMES_GRAPH}.frames"] = float(np.linalg.norm(later - reference[0].numpy())
                                             / max(np.linalg.norm(reference[0].numpy()), 1e-12))
    manifest = {"weights": weights_hash(model), "opset": opset, "config": config.to_dict(),
                "batch": 1, "relative_l2_vs_torch": errors}
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


class OnnxWorldModel:
    """The exported model in onnxruntime, with WorldModel's calls (torch tensors in and out)."""

    def __init__(self, folder: str | Path, config: Any = None, threads: int | None = None) -> None:
        """``threads``: the window's intra-op threads (None: onnxruntime's default, one per core). Idle
        pool threads do not spin unless QCRAFT_WM_ORT_SPIN=1 (onnxruntime's default, kept for A/B runs:
        docs/node.md)."""
        import os

        import onnxruntime as ort

        spin = os.environ.get("QCRAFT_WM_ORT_SPIN", "0") == "1"

        self.folder = Path(folder)
        for name in ("stem.onnx", "window.onnx"):
            if not (self.folder / name).is_file():
                raise FileNotFoundError(f"{self.folder} has no {name}; run qcraft-wm export first")
        if config is None:
            from qcraft_world_model.model.config import WorldModelConfig

            config = WorldModelConfig.from_dict(json.loads((self.folder / "export.json").read_text())["config"])
        self.config = config

        def options(intra_op: int | None) -> Any:
            opts = ort.SessionOptions()
            if intra_op:
                opts.intra_op_num_threads = intra_op
            # onnxruntime's pool threads spin after each run by default, burning the cores that the
            # node's other threads (each camera's decode + stem, the executor) need next.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
            return opts

        # An export from before window_agents.onnx existed still runs: agents-only calls use the full window
        # (and decode_frames is unavailable; the node then decodes frames with the agents, as it used to).
        names = ["stem", *(graph for graph in (*WINDOW_GRAPHS, FRAMES_GRAPH) if (self.folder / f"{graph}.onnx").is_file())]
        # The stem (one frame, ~0.5 ms) runs on a camera's lane thread beside the window: one thread. So do
        # the frames decoded afterwards: with one thread onnxruntime computes on the calling thread, which
        # the node runs at a lower priority (its frames lane); pool threads would compete with the agents.
        self._sessions = {name: ort.InferenceSession(str(self.folder / f"{name}.onnx"),
                                                     options(1 if name in ("stem", FRAMES_GRAPH) else threads),
                                                     providers=["CPUExecutionProvider"])
                          for name in names}
        for graph, outputs in WINDOW_GRAPHS.items():
            produced = [output.name for output in self._sessions[graph].get_outputs()] if graph in self._sessions \
                else list(outputs)
            if produced != list(outputs):
                raise ValueError(f"{self.folder / (graph + '.onnx')} produces {', '.join(produced)}; this code reads "
                                 f"{', '.join(outputs)}: export the model again (qcraft-wm export)")

    def session(self, name: str) -> Any:
        return self._sessions[name]

    @staticmethod
    def feed(stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> dict[str, np.ndarray]:
        return {"stem_tokens": stem_tokens.detach().float().numpy(), "newest": newest.numpy(),
                "previous": previous.numpy()}

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (1, C, 3, H, W) or a window (1, C, T, 3, H, W): stems each frame of each camera (the
        graph takes one camera's frame)."""
        if frames.dim() == 6:
            return torch.stack([self.stem(frames[:, :, t]) for t in range(frames.shape[2])], dim=2)
        return per_camera(frames, lambda one: torch.from_numpy(
            self._sessions["stem"].run(None, {"frames": np.ascontiguousarray(one.numpy())})[0]))

    def forward_window(self, stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
                       frames: bool = True) -> WorldModelOutput:
        feed = self.feed(stem_tokens, newest, previous)
        tokens = None
        if not frames and "window_agents" in self._sessions:
            *agents, tokens = self._sessions["window_agents"].run(None, feed)
            predicted, tokens = None, torch.from_numpy(tokens)
        else:
            predicted, *agents = self._sessions["window"].run(None, feed)
            predicted = torch.from_numpy(predicted) if frames else None
        return WorldModelOutput(frames=predicted, tokens=tokens,
                                agents=AgentPrediction(**{n: torch.from_numpy(a) for n, a in zip(AGENT_OUTPUTS, agents)}))

    @property
    def decodes_frames_later(self) -> bool:
        """Whether ``decode_frames`` can run: an export with the agents-only graph and frames.onnx."""
        return {"window_agents", FRAMES_GRAPH} <= self._sessions.keys()

    def decode_frames(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Frames from an agents-only window's tokens (WorldModel.decode_frames)."""
        return torch.from_numpy(self._sessions[FRAMES_GRAPH].run(None, {
            "tokens": tokens.detach().float().numpy(), "newest": newest.numpy(), "previous": previous.numpy()})[0])

    def __call__(self, window: torch.Tensor) -> WorldModelOutput:
        return self.forward_window(self.stem(window), window[:, :, -1], window[:, :, -2])
