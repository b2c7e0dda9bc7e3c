"""One backend interface: torch and onnxruntime run here; TensorRT and a missing OpenVINO fail clearly;
TensorRT's cache keys are exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qcraft_world_model.model import WorldModel, WorldModelConfig
from qcraft_world_model.runtime.backends import (
    BackendError,
    OnnxRuntimeBackend,
    TorchBackend,
    choose_backend,
    create_backend,
    engine_key,
)

SMALL = WorldModelConfig(image_size=64, patch=8, dim=64, heads=2, depth=1, stem_dim=16, anchors=4,
                         attention_window=16, decoder_dim=16)


def model(seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(SMALL).eval()


def window() -> torch.Tensor:
    return torch.randint(0, 256, (1, 1, 16, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def streamed(backend, frames: torch.Tensor):  # noqa: ANN001, ANN202 - the node's way: one stem per frame
    tokens = torch.stack([backend.stem(frames[:, :, t]) for t in range(16)], dim=2)
    return backend.forward_window(tokens, frames[:, :, -1], frames[:, :, -2])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_torch_backend_streams_like_the_model(precision: str) -> None:
    reference = model()
    backend = TorchBackend(reference, precision)
    backend.warm_up()
    frames = window()
    with torch.no_grad():
        expected = reference(frames)
    got = streamed(backend, frames)
    assert backend.name == f"torch-cpu/{precision}"
    assert (got.frames.float() - expected.frames).abs().mean() < (1e-6 if precision == "fp32" else 0.01)


def test_onnxruntime_backend_exports_once_per_weights(tmp_path: Path) -> None:
    first = OnnxRuntimeBackend(model(), tmp_path)
    exported = next(tmp_path.glob("onnx-*/window.onnx"))
    stamp = exported.stat().st_mtime_ns
    second = OnnxRuntimeBackend(model(), tmp_path)  # same weights: reuses the export
    assert exported.stat().st_mtime_ns == stamp and len(list(tmp_path.glob("onnx-*"))) == 1
    OnnxRuntimeBackend(model(seed=1), tmp_path)  # other weights: another export
    assert len(list(tmp_path.glob("onnx-*"))) == 2
    frames = window()
    a, b = streamed(first, frames), streamed(second, frames)
    assert torch.allclose(a.frames, b.frames)
    with torch.no_grad():
        assert torch.allclose(a.frames, model()(frames).frames, atol=1e-4)


def test_tensorrt_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"TensorRT backend unavailable: torch_tensorrt could not be imported"):
        create_backend(model(), "tensorrt", "fp16", cache_dir=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the error path needs one without")
def test_cuda_missing_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="CUDA is not available"):
        TorchBackend(model(), "fp16", "cuda")


def test_engine_key_changes_with_everything_an_engine_depends_on() -> None:
    shapes = ((1, 1, 3, 64, 64),)
    base = engine_key(model(), "fp16", "stem", shapes)
    assert engine_key(model(), "fp16", "stem", shapes) == base
    assert engine_key(model(seed=1), "fp16", "stem", shapes).digest() != base.digest()  # weights
    assert engine_key(model(), "fp32", "stem", shapes).digest() != base.digest()  # precision
    assert engine_key(model(), "fp16", "stem", ((1, 3, 3, 64, 64),)).digest() != base.digest()  # shapes
    assert base.filename().startswith("stem-fp16-") and base.filename().endswith(".ep")


def test_auto_choice_names_its_reason() -> None:
    backend, precision, device, reason = choose_backend("auto")
    assert (backend, device) in {("tensorrt", "cuda"), ("torch", "cuda"), ("torch", "cpu"), ("onnxruntime", "cpu")}
    assert precision and len(reason) > 20
    assert choose_backend("onnxruntime")[:1] == ("onnxruntime",)


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="unknown backend 'tvm'; use auto, torch, onnxruntime, openvino or tensorrt"):
        create_backend(model(), "tvm", "fp32", cache_dir=tmp_path)


# OpenVINO where it cannot run: these need no openvino (test_openvino_backend.py runs it).
@pytest.mark.parametrize("precision", ["mixed-int8", "fp16"])
def test_an_unsupported_precision_says_which_openvino_runs(precision: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"the openvino backend runs fp32 and bf16"):
        create_backend(model(), "openvino", precision, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is exported or compiled for a precision it refuses"


def test_cuda_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="runs on the CPU"):
        create_backend(model(), "openvino", "fp32", device="cuda", cache_dir=tmp_path)


def test_missing_openvino_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with pytest.raises(BackendError, match=r"OpenVINO backend unavailable: .*pip install openvino=="):
        create_backend(model(), "openvino", "fp32", cache_dir=tmp_path)


def test_the_package_imports_without_openvino() -> None:
    code = ("import sys; sys.modules['openvino'] = None\n"
            "import qcraft_world_model.runtime.backends, qcraft_world_model.ros.parameters\n"
            "from qcraft_world_model.ros.parameters import node_values\n"
            "assert node_values({'model.backend': 'openvino'})['model.backend'] == 'openvino'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_export_of_the_same_weights_with_other_outputs_is_not_reused(tmp_path: Path) -> None:
    """The ONNX cache was named by the weights alone: after the head gained an output, a cached export
    of the same weights was loaded and configure failed. The key now covers config and outputs, and a
    folder whose graph has other outputs is refused by name."""
    import dataclasses

    from qcraft_world_model.runtime.onnx_export import OnnxWorldModel, export_key, export_onnx

    absolute = WorldModel(dataclasses.replace(SMALL, agent_motion="absolute"))
    relative = WorldModel(dataclasses.replace(SMALL, agent_motion="ego_relative"))
    assert export_key(absolute) != export_key(relative)
    export_onnx(model(), tmp_path / "ok")
    OnnxWorldModel(tmp_path / "ok", SMALL)  # loads
    import onnx

    graph = onnx.load(str(tmp_path / "ok" / "window.onnx"))
    graph.graph.output.pop()  # the export of an older head, one output short
    onnx.save(graph, str(tmp_path / "ok" / "window.onnx"))
    with pytest.raises(ValueError, match="export the model again"):
        OnnxWorldModel(tmp_path / "ok", SMALL)


def test_a_missing_engine_names_the_command_that_builds_it_and_that_command_builds(tmp_path: Path,
                                                                                     monkeypatch) -> None:  # noqa: ANN001
    """With a stand-in torch_tensorrt (TensorRT cannot be installed here) and CUDA faked away: the node's
    path (allow_build=False) refuses with `qcraft-wm build-engine ...`, a command the CLI has; the
    build path (build_only, what that command runs) compiles and saves one engine per part."""
    import types

    import qcraft_world_model.runtime.backends as backends
    from qcraft_world_model.cli import build_parser

    saved = []
    fake = types.SimpleNamespace(__version__="0.0-stand-in",
                                 compile=lambda module, **kwargs: module,
                                 save=lambda module, path, inputs: (saved.append(path), Path(path).write_bytes(b"x")))
    monkeypatch.setattr(backends, "import_torch_tensorrt", lambda: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "stand-in GPU")
    monkeypatch.setattr(torch.nn.Module, "cuda", lambda self, device=None: self)
    monkeypatch.setattr(backends, "_example_inputs", lambda config, part, dtype: ())
    with pytest.raises(BackendError, match=r"build it first: qcraft-wm build-engine --model /m --precision fp16") as err:
        backends.TensorRTBackend(model(), "fp16", tmp_path, folder="/m")
    command = str(err.value).split("build it first: ")[1].split()
    args = build_parser().parse_args(command[1:])
    assert args.func.__name__ == "_cmd_build_engine" and args.precision == "fp16"
    backends.TensorRTBackend(model(), "fp16", tmp_path, build_only=True, folder="/m")
    assert len(saved) == 2 and all(Path(p).parent == tmp_path and Path(p).is_file() for p in saved)


def test_an_agents_only_window_gives_the_same_agents_without_the_frame_decoder(tmp_path: Path) -> None:
    """frames=False skips the frame decoder and nothing else, on torch (eager and the INT8 plan) and on
    the onnxruntime export, and its frames decoded afterwards from its tokens are the full window's
    (the node publishes agents first); an export folder from before window_agents.onnx existed still
    answers agents-only calls, without the later decode."""
    import shutil

    from qcraft_world_model.quant.plan import PrecisionPlan
    from qcraft_world_model.runtime.backend import Backend
    from qcraft_world_model.runtime.mixed import PlannedWorldModel
    from qcraft_world_model.runtime.onnx_export import AGENT_OUTPUTS, OnnxWorldModel

    reference = model()
    frames = window()
    for backend in (create_backend(reference, "torch", "fp32"),
                    Backend(PlannedWorldModel(reference, PrecisionPlan.named("mixed-int8", "cpu"), [frames],
                                              compile_int8=False), reference.config, "torch-cpu/mixed-int8"),
                    create_backend(reference, "onnxruntime", cache_dir=tmp_path)):
        tokens = torch.stack([backend.stem(frames[:, :, t]) for t in range(16)], dim=2)
        full = backend.forward_window(tokens, frames[:, :, -1], frames[:, :, -2])
        agents_only = backend.forward_window(tokens, frames[:, :, -1], frames[:, :, -2], frames=False)
        assert full.frames is not None and agents_only.frames is None, backend.name
        for name in AGENT_OUTPUTS:
            assert torch.allclose(getattr(agents_only.agents, name), getattr(full.agents, name), atol=1e-5), name
        assert backend.decodes_frames_later, backend.name
        later = backend.decode_frames(agents_only, frames[:, :, -1], frames[:, :, -2])
        assert later.shape == full.frames.shape and torch.allclose(later, full.frames, atol=1e-5), backend.name
        with pytest.raises(BackendError, match="no tokens"):
            backend.decode_frames(full, frames[:, :, -1], frames[:, :, -2])
    (export,) = tmp_path.glob("onnx-*")
    assert (export / "window_agents.onnx").is_file()
    old = tmp_path / "old-export"
    shutil.copytree(export, old)
    (old / "window_agents.onnx").unlink()
    runner = OnnxWorldModel(old, reference.config)
    tokens = runner.stem(frames)
    agents_only = runner.forward_window(tokens, frames[:, :, -1], frames[:, :, -2], frames=False)
    assert agents_only.frames is None and agents_only.tokens is None and not runner.decodes_frames_later
    assert torch.allclose(agents_only.agents.heatmap, full.agents.heatmap, atol=1e-5)


def test_a_multi_camera_model_streams_one_camera_at_a_time_on_every_cpu_backend(tmp_path: Path) -> None:
    """The node stems each camera's frame as it arrives, (1, 1, 3, H, W): the exported stem must take
    one camera (it took the whole rig, and every multi-camera model failed on onnxruntime)."""
    import dataclasses

    torch.manual_seed(0)
    two = WorldModel(dataclasses.replace(SMALL, cameras=2)).eval()
    frames = torch.randint(0, 256, (1, 2, 16, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = two(frames)
    kinds = ["onnxruntime"]
    try:
        import openvino  # noqa: F401

        kinds.append("openvino")
    except ImportError:
        pass
    for kind in kinds:
        backend = create_backend(two, kind, "fp32" if kind == "openvino" else "", "cpu", cache_dir=tmp_path)
        per_frame = [torch.cat([backend.stem(frames[:, c:c + 1, t]) for c in range(2)], dim=1) for t in range(16)]
        tokens = torch.stack(per_frame, dim=2)
        assert torch.allclose(tokens, backend.stem(frames[:, :, 0:16].contiguous()), atol=1e-5), kind
        got = backend.forward_window(tokens, frames[:, :, -1], frames[:, :, -2])
        assert torch.allclose(got.frames, expected.frames, atol=1e-4), kind
        assert torch.allclose(got.agents.heatmap, expected.agents.heatmap, atol=1e-3), kind
