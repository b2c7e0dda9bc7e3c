"""Inference backends behind one interface, and ``auto`` choosing among them.

Every backend answers the streaming calls of the world model: ``stem(frames)``
once per incoming frame and ``forward_window(stem_tokens, newest, previous)``
once per prediction, with torch tensors in and out. ``warm_up`` runs a dummy
window so compilation and engine loading happen at configure time, never on
the first camera frame.

- ``torch``: eager PyTorch on CPU or CUDA in fp32/bf16/fp16, or the mixed plan
  (PT2E INT8 transformer, CPU).
- ``onnxruntime``: the FP32 ONNX export on the CPU.
- ``openvino``: the same export compiled by OpenVINO's CPU plugin in fp32 or bf16, cached on disk
  (``runtime/openvino_backend.py``, imported only when asked for).
- ``tensorrt``: Torch-TensorRT (dynamo) engines, cached on disk. TensorRT cannot
  be installed on the project's machines; this backend follows the documented
  Torch-TensorRT API, fails with a clear message where it is missing, and its
  cache and build-only logic is tested without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qcraft_world_model.model.world_model import WorldModel, WorldModelOutput
from qcraft_world_model.quant.plan import cpu_has_bf16
from qcraft_world_model.runtime.backend import Backend, BackendError, onnx_export_folder
from qcraft_world_model.runtime.onnx_export import WindowAsTuple, export_key

__all__ = ["Backend", "BackendError", "create_backend", "choose_backend", "onnx_export_folder"]

LOG = logging.getLogger(__name__)


class TorchBackend(Backend):
    def __init__(self, model: WorldModel, precision: str = "fp32", device: str = "cpu",
                 calibration: str | None = None, folder: str | Path | None = None) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device} requested but CUDA is not available here")
        if precision == "fp32":
            runner = model.to(device)
        elif precision == "mixed-int8" and device.startswith("cuda"):
            raise BackendError("the INT8 plan on CUDA runs through TensorRT (--backend tensorrt), not eager torch")
        else:
            from qcraft_world_model.runtime.mixed import planned_model

            runner = planned_model(model, precision, calibration, device=device, folder=folder).to(device)
            precision += runner.plan.suffix
            if runner.keep_float:  # in the name, so the node's configure log and diagnostics say which plan runs
                precision += f" (fp32: {', '.join(runner.keep_float)})"
        super().__init__(runner, model.config, f"torch-{device.split(':')[0]}/{precision}")
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device


class OnnxRuntimeBackend(Backend):
    def __init__(self, model: WorldModel, cache_dir: Path, threads: int | None = None) -> None:
        from qcraft_world_model.runtime.onnx_export import OnnxWorldModel

        folder = onnx_export_folder(model, cache_dir)
        super().__init__(OnnxWorldModel(folder, model.config, threads), model.config, "onnxruntime-cpu/fp32")


@dataclass(frozen=True)
class EngineKey:
    """What a TensorRT engine is only valid for: it is rebuilt for nothing else."""

    weights: str
    precision: str
    tensorrt: str
    torch_tensorrt: str
    gpu: str
    part: str
    shapes: tuple[tuple[int, ...], ...]

    def digest(self) -> str:
        text = json.dumps([self.weights, self.precision, self.tensorrt, self.torch_tensorrt, self.gpu, self.part,
                           self.shapes])
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def filename(self) -> str:
        return f"{self.part}-{self.precision}-{self.digest()}.ep"


def import_torch_tensorrt() -> Any:
    """torch_tensorrt, or a BackendError saying why not (it raises a bare Exception without libnvinfer)."""
    try:
        import torch_tensorrt
    except Exception as err:  # noqa: BLE001 - ImportError, or its bare Exception when TensorRT is absent
        raise BackendError(
            "TensorRT backend unavailable: torch_tensorrt could not be imported "
            f"({type(err).__name__}: {err}). Install the torch-tensorrt release matching this torch minor "
            f"({torch.__version__}) with TensorRT on an NVIDIA machine, or use --backend torch/onnxruntime."
        ) from err
    return torch_tensorrt


class TensorRTBackend(Backend):
    """Torch-TensorRT engines for the stem and the window, loaded from (or built into) a cache.

    ``allow_build=False`` (the node's default) never builds: a missing engine is an
    error naming the command that builds it, so a car never stalls on a silent
    multi-minute build. ``build_only`` builds and saves without running.
    """

    def __init__(self, model: WorldModel, precision: str, cache_dir: Path, allow_build: bool = False,
                 build_only: bool = False, folder: str | Path | None = None) -> None:
        trt = import_torch_tensorrt()
        if not torch.cuda.is_available():
            raise BackendError("TensorRT needs a CUDA GPU; none is visible here")
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"TensorRT precision {precision!r}: fp32 and fp16 are built here; INT8 needs the "
                               "explicit Q/DQ graph from ModelOpt QAT, which this package does not ship yet")
        model = model.eval().cuda()
        dtype = torch.float16 if precision == "fp16" else torch.float32
        c = model.config
        stem_shape = (1, 1, 3, *c.size_hw)  # one camera's frame: the node stems cameras one by one
        frame_shape = (1, c.cameras, 3, *c.size_hw)
        token_shape = (1, c.cameras, c.window, c.tokens_per_camera, c.stem_dim)
        keys = {part: engine_key(model, precision, part, shapes, trt)
                for part, shapes in (("stem", (stem_shape,)), ("window", (token_shape, frame_shape, frame_shape)))}
        cache_dir.mkdir(parents=True, exist_ok=True)
        modules = {}
        for part, key in keys.items():
            path = cache_dir / key.filename()
            if path.is_file() and not build_only:
                modules[part] = torch.export.load(str(path)).module()
                continue
            if not (allow_build or build_only):
                raise BackendError(f"no TensorRT engine for {part} at {path} (weights {key.weights}, TensorRT "
                                   f"{key.tensorrt}, GPU {key.gpu}); build it first: qcraft-wm build-engine "
                                   f"--model {folder or 'MODEL_FOLDER'} --precision {precision} --cache {cache_dir}")
            example = _example_inputs(c, part, dtype)
            source = model.stem if part == "stem" else WindowAsTuple(model)
            compiled = trt.compile(source.to(dtype) if part == "stem" else source, ir="dynamo", inputs=example,
                                   enabled_precisions={dtype}, truncate_double=True)
            trt.save(compiled, str(path), inputs=example)
            modules[part] = compiled
            LOG.info("built TensorRT engine %s", path)
        super().__init__(_EngineRunner(modules), c, f"tensorrt/{precision}")

    @property
    def device(self) -> torch.device:
        return torch.device("cuda")


def engine_key(model: WorldModel, precision: str, part: str, shapes: tuple[tuple[int, ...], ...],
               trt_module: Any = None) -> EngineKey:
    """The cache key of one engine (TensorRT versions read from the module when given)."""
    tensorrt_version = "unknown"
    torch_tensorrt_version = getattr(trt_module, "__version__", "unknown")
    try:
        import tensorrt

        tensorrt_version = tensorrt.__version__
    except Exception:  # noqa: BLE001 - not installed: the key says so
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-gpu"
    return EngineKey(export_key(model), precision, tensorrt_version, torch_tensorrt_version, gpu, part,
                     tuple(tuple(s) for s in shapes))


def _example_inputs(config: Any, part: str, dtype: torch.dtype) -> list[torch.Tensor]:
    frame = torch.zeros((1, config.cameras, 3, *config.size_hw), dtype=torch.uint8,
                        device="cuda")
    if part == "stem":
        return [frame[:, :1]]
    tokens = torch.zeros((1, config.cameras, config.window, config.tokens_per_camera, config.stem_dim),
                         dtype=dtype, device="cuda")
    return [tokens, frame, frame]


class _EngineRunner:
    def __init__(self, modules: dict[str, Any]) -> None:
        self.modules = modules

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        from qcraft_world_model.runtime.onnx_export import per_camera

        return per_camera(frames, self.modules["stem"])

    def forward_window(self, stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
                       frames: bool = True) -> WorldModelOutput:
        """One engine holds the whole window: agents-only calls run it too and drop the frames."""
        from qcraft_world_model.model.detection import AgentPrediction
        from qcraft_world_model.runtime.onnx_export import AGENT_OUTPUTS

        predicted, *agents = self.modules["window"](stem_tokens, newest, previous)
        return WorldModelOutput(frames=predicted if frames else None,
                                agents=AgentPrediction(**dict(zip(AGENT_OUTPUTS, agents))))


def choose_backend(kind: str = "auto") -> tuple[str, str, str, str]:
    """(backend, precision, device, reason) for ``kind``; ``auto`` picks the fastest available.

    ``auto`` does not pick openvino: it passed the accuracy gate on lite-wide (``qcraft-wm evaluate
    --backend openvino``: every metric equal to torch fp32), but on the AVX2 host it was measured on,
    its fp32 window was no faster than onnxruntime's (81-82 vs 74-84 ms, agents-only 52-66 vs 51-54
    ms; docs/precision.md), and its bf16, the one that would be worth picking, has not run on a CPU
    with native bf16 in this project.
    """
    if kind != "auto":
        return kind, "", "", "requested"
    if torch.cuda.is_available():
        try:
            import_torch_tensorrt()
            return "tensorrt", "fp16", "cuda", "CUDA and Torch-TensorRT available: compiled fp16 engines"
        except BackendError as err:
            return "torch", "fp16", "cuda", f"CUDA available, TensorRT not ({err.__cause__}): eager fp16"
    if cpu_has_bf16():
        return "torch", "bf16", "cpu", ("CPU with native bf16 (AVX-512 BF16/AMX): torch bf16 runs the window 2.0x "
                                        "faster than fp32 here, needs no calibration (docs/precision.md)")
    try:
        import onnxruntime  # noqa: F401

        return "onnxruntime", "fp32", "cpu", ("CPU without native bf16: onnxruntime fp32 (its lite-wide window "
                                              "1.05-1.2x torch fp32's on an AVX2 host, as fast as OpenVINO fp32)")
    except ImportError:
        return "torch", "fp32", "cpu", "CPU without native bf16 or onnxruntime: torch fp32"


def create_backend(model: WorldModel, kind: str = "auto", precision: str = "", device: str = "",
                   cache_dir: str | Path = Path.home() / ".cache" / "qcraft_world_model" / "engines",
                   calibration: str | None = None, allow_build: bool = False, folder: str | Path | None = None,
                   threads: int = 0) -> Backend:
    """The backend for ``kind`` (``auto``, ``torch``, ``onnxruntime``, ``openvino``, ``tensorrt``), logging the
    choice.

    INT8 calibrates on ``calibration`` (a dataset) or on what the model ``folder`` stores. ``threads``:
    the CPU threads of a prediction (0: the runtime's default, one per core). On a small machine the
    node's other threads (each camera's decode and stem, the executor) share the cores with it: a
    runtime that splits every operator across all cores waits for its slowest thread whenever one of
    them is busy elsewhere. For torch this is the process's pool (``torch.set_num_threads``)."""
    chosen, auto_precision, auto_device, reason = choose_backend(kind)
    precision = precision or auto_precision or "fp32"
    device = device or auto_device or ("cuda" if chosen == "tensorrt" else "cpu")
    LOG.info("backend %s/%s on %s: %s", chosen, precision, device, reason)
    cache = Path(cache_dir)
    if threads < 0:
        raise BackendError(f"threads {threads}: 0 (the runtime's default) or more")
    if chosen == "torch":
        if threads:
            torch.set_num_threads(threads)
        return TorchBackend(model, precision, device, calibration, folder)
    if chosen == "onnxruntime":
        if precision != "fp32":
            raise BackendError(f"onnxruntime runs the FP32 export; precision {precision!r} is not available there")
        return OnnxRuntimeBackend(model, cache, threads or None)
    if chosen == "openvino":
        if device != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU; device {device!r} is not available there")
        from qcraft_world_model.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(model, precision, cache, threads or None)
    if chosen == "tensorrt":
        return TensorRTBackend(model, precision, cache, allow_build=allow_build, folder=folder)
    raise BackendError(f"unknown backend {kind!r}; use auto, torch, onnxruntime, openvino or tensorrt")
