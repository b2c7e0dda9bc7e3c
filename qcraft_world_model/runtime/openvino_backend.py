"""OpenVINO backend: the project's own FP32 ONNX export compiled by OpenVINO's CPU plugin, in f32 or
bf16 (OpenVINO's ``INFERENCE_PRECISION_HINT``).

Imported lazily by ``create_backend``: a machine without ``openvino`` still imports the package, and
asking for this backend there is a BackendError saying what to install.

Compiled once and cached on disk: ``<cache>/openvino-<digest>/{stem,window,window_agents,frames}.blob`` (OpenVINO's
``export_model``), where the digest covers the ONNX export key (weights, model config, graph
outputs), the precision, the OpenVINO version and the CPU (name and optimization capabilities: a
blob compiled for AMX bf16 is not one for an AVX2-only host). A later create imports the blobs and
compiles nothing; a blob that no longer imports is compiled again. The first compile runs one
window through torch fp32 and the compiled graph and writes their relative L2 per output to
``key.json``; a non-finite output refuses the backend.

The bf16 hint is only a hint: on a CPU without native bf16 (no AVX-512 BF16/AMX) OpenVINO compiles
f32 instead. The backend reads back what was compiled and names it (``openvino-cpu/fp32``), with a
warning, so nothing downstream reports bf16 that did not run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcraft_world_model.model.detection import AgentPrediction
from qcraft_world_model.model.world_model import WorldModel, WorldModelOutput
from qcraft_world_model.runtime.backend import Backend, BackendError, onnx_export_folder
from qcraft_world_model.runtime.onnx_export import (AGENT_OUTPUTS, FRAMES_GRAPH, WINDOW_GRAPHS, WindowAsTuple, export_key,
                                                    per_camera)

LOG = logging.getLogger(__name__)

#: Precisions this backend compiles, and OpenVINO's inference-precision hint for each.
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
PARTS = ("stem", *WINDOW_GRAPHS, FRAMES_GRAPH)
WINDOW_OUTPUTS = WINDOW_GRAPHS["window"]


def import_openvino() -> Any:
    """``openvino``, or a BackendError naming what to install."""
    try:
        import openvino
    except ImportError as err:
        raise BackendError(
            f"OpenVINO backend unavailable: openvino could not be imported ({err}). Install it with "
            "`pip install openvino==2026.4.1 openvino-telemetry==2025.2.0` (pinned in requirements/dev.txt), "
            "or use model.backend torch or onnxruntime.") from err
    return openvino


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise BackendError(
            f"OpenVINO precision {precision!r} is not available: the openvino backend runs "
            f"{' and '.join(PRECISIONS)} (the FP32 ONNX export with OpenVINO's inference-precision hint). "
            "The INT8 plan (mixed-int8) runs on model.backend torch.")


@dataclass(frozen=True)
class CompileKey:
    """What a compiled OpenVINO blob is only valid for."""

    export: str
    precision: str
    openvino: str
    cpu: str
    capabilities: tuple[str, ...]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


def compile_key(model: WorldModel, precision: str, core: Any, openvino: Any) -> CompileKey:
    """The cache key of ``model`` compiled at ``precision`` by this OpenVINO on this CPU."""
    return CompileKey(export=export_key(model), precision=precision, openvino=openvino.get_version(),
                      cpu=str(core.get_property("CPU", "FULL_DEVICE_NAME")),
                      capabilities=tuple(sorted(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))))


class OpenVinoWorldModel:
    """Compiled stem and window with WorldModel's streaming calls (torch tensors in and out).

    One infer request per part and per calling thread: the node stems each camera's frames on that
    camera's own lane thread while the worker runs windows, and an InferRequest is not thread-safe."""

    def __init__(self, compiled: dict[str, Any]) -> None:
        for graph, outputs in WINDOW_GRAPHS.items():
            # A tensor can carry several names (the tokens are also the reshape's "/Reshape_output_0").
            names = [output.get_names() for output in compiled[graph].outputs]
            if len(names) != len(outputs) or any(name not in given for name, given in zip(outputs, names)):
                produced = "; ".join("/".join(sorted(given)) for given in names)
                raise BackendError(f"the compiled {graph} produces {produced}; this code reads {', '.join(outputs)}")
        self.compiled = compiled
        self._local = threading.local()

    def _request(self, part: str) -> Any:
        requests = self._local.__dict__.setdefault("requests", {})
        if part not in requests:
            requests[part] = self.compiled[part].create_infer_request()
        return requests[part]

    def _run(self, part: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request(part).infer(feed)  # share_outputs=False: the arrays are copies
        return [result[output] for output in self.compiled[part].outputs]

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (1, C, 3, H, W), or a window (1, C, T, 3, H, W) stemmed frame by frame."""
        if frames.dim() == 6:
            return torch.stack([self.stem(frames[:, :, t]) for t in range(frames.shape[2])], dim=2)
        return per_camera(frames, lambda one: torch.from_numpy(
            self._run("stem", {"frames": np.ascontiguousarray(one.numpy())})[0]))

    def forward_window(self, stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
                       frames: bool = True) -> WorldModelOutput:
        feed = {"stem_tokens": np.ascontiguousarray(stem_tokens.detach().float().numpy()),
                "newest": np.ascontiguousarray(newest.numpy()), "previous": np.ascontiguousarray(previous.numpy())}
        tokens = None
        if frames:
            predicted, *agents = self._run("window", feed)
        else:
            predicted, (*agents, tokens) = None, self._run("window_agents", feed)
        return WorldModelOutput(frames=None if predicted is None else torch.from_numpy(predicted),
                                tokens=None if tokens is None else torch.from_numpy(tokens), agents=AgentPrediction(
            **{name: torch.from_numpy(array) for name, array in zip(AGENT_OUTPUTS, agents)}))

    def decode_frames(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Frames from an agents-only window's tokens (WorldModel.decode_frames)."""
        return torch.from_numpy(self._run(FRAMES_GRAPH, {
            "tokens": np.ascontiguousarray(tokens.detach().float().numpy()),
            "newest": np.ascontiguousarray(newest.numpy()), "previous": np.ascontiguousarray(previous.numpy())})[0])


class OpenVinoBackend(Backend):
    """The FP32 ONNX export compiled by OpenVINO (CPU) in fp32 or bf16, cached by :class:`CompileKey`.

    ``compiled_now`` says whether this create compiled (True) or imported cached blobs (False);
    ``precision`` is what OpenVINO compiled, which is fp32 where bf16 was asked of a CPU without it."""

    def __init__(self, model: WorldModel, precision: str, cache_dir: Path, threads: int | None = None) -> None:
        check_precision(precision)
        openvino = import_openvino()
        core = openvino.Core()
        key = compile_key(model, precision, core, openvino)
        folder = Path(cache_dir) / f"openvino-{key.digest()}"
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        compiled = _import_cached(core, folder, config)
        self.compiled_now = compiled is None
        if compiled is None:
            compiled = _compile(model, core, Path(cache_dir), config)
            runner = OpenVinoWorldModel(compiled)
            errors = _check_against_torch(model, runner)
            _save(folder, compiled, {**asdict(key), "relative_l2_vs_torch_fp32": errors})
            LOG.info("compiled OpenVINO %s into %s (relative L2 vs torch fp32: %s)", precision, folder, errors)
        else:
            runner = OpenVinoWorldModel(compiled)
        compiled_type = compiled["window"].get_property("INFERENCE_PRECISION_HINT")
        self.precision = "bf16" if compiled_type == openvino.Type.bf16 else "fp32"
        if self.precision != precision:
            LOG.warning("OpenVINO compiled %s, not %s: this CPU (%s) has no native %s (capabilities %s)",
                        self.precision, precision, key.cpu, precision, ", ".join(key.capabilities))
        self.cache_folder = folder
        super().__init__(runner, model.config, f"openvino-cpu/{self.precision}")


def _import_cached(core: Any, folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The cached compiled parts, or None when any is missing or no longer imports."""
    paths = {part: folder / f"{part}.blob" for part in PARTS}
    if not all(path.is_file() for path in paths.values()):
        return None
    try:
        return {part: core.import_model(path.read_bytes(), "CPU", config) for part, path in paths.items()}
    except Exception as err:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
        LOG.warning("cached OpenVINO blobs in %s do not import (%s); compiling again", folder, err)
        return None


def _compile(model: WorldModel, core: Any, cache_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    onnx = onnx_export_folder(model, cache_dir)
    return {part: core.compile_model(core.read_model(str(onnx / f"{part}.onnx")), "CPU", config) for part in PARTS}


def _save(folder: Path, compiled: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Blobs and manifest, each written to a temporary name and renamed: a reader never sees half a blob."""
    folder.mkdir(parents=True, exist_ok=True)
    for part, module in compiled.items():
        blob = module.export_model()
        data = blob.getvalue() if hasattr(blob, "getvalue") else bytes(blob)
        temporary = folder / f".{part}.blob.{os.getpid()}"
        temporary.write_bytes(data)
        os.replace(temporary, folder / f"{part}.blob")
    (folder / "key.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _check_against_torch(model: WorldModel, runner: OpenVinoWorldModel) -> dict[str, float]:
    """Relative L2 of every output against torch fp32 on one random window; non-finite is refused."""
    c = model.config
    frames = torch.randint(0, 256, (1, c.cameras, c.window, 3, *c.size_hw), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        tokens = model.stem(frames)
        reference = WindowAsTuple(model.eval())(tokens, frames[:, :, -1], frames[:, :, -2])
    tokens = runner.stem(frames)
    checked = []  # (graph, key in the manifest, value, torch's value)
    for graph in WINDOW_GRAPHS:
        output = runner.forward_window(tokens, frames[:, :, -1], frames[:, :, -2], frames=graph == "window")
        got = (*([output.frames] if graph == "window" else []), *(getattr(output.agents, n) for n in AGENT_OUTPUTS))
        expected = reference if graph == "window" else reference[1:]
        names = WINDOW_GRAPHS["window"] if graph == "window" else AGENT_OUTPUTS
        prefix = "" if graph == "window" else f"{graph}."
        checked += [(graph, prefix + name, value, ref) for name, value, ref in zip(names, got, expected)]
        if graph == "window_agents":  # the frames decoded afterwards from its tokens, named as the ONNX check names them
            later = runner.decode_frames(output.tokens, frames[:, :, -1], frames[:, :, -2])
            checked.append((FRAMES_GRAPH, f"{FRAMES_GRAPH}.frames", later, reference[0]))
    errors = {}
    for graph, key, value, ref in checked:
        if not torch.isfinite(value).all():
            raise BackendError(f"OpenVINO's compiled {graph} gives non-finite {key} on a test window: refusing it")
        errors[key] = float((value - ref.float()).norm() / ref.float().norm().clamp_min(1e-12))
    return errors
