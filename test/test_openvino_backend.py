"""The OpenVINO backend: same outputs as torch fp32 on the shipped model, compiled once per key and
reused, honest about the precision it compiled, clear errors where it cannot run."""

from __future__ import annotations

import threading
import types
from pathlib import Path

import pytest
import torch

from qcraft_world_model.model import WorldModel, WorldModelConfig
from qcraft_world_model.runtime.backends import BackendError, create_backend
from qcraft_world_model.runtime.model_folder import default_model, load_model
from qcraft_world_model.runtime.onnx_export import AGENT_OUTPUTS

openvino = pytest.importorskip("openvino", reason="OpenVINO is installed by make test (requirements/dev.txt)")

from qcraft_world_model.runtime import openvino_backend  # noqa: E402 - needs openvino only when run
from qcraft_world_model.runtime.openvino_backend import OpenVinoBackend, compile_key  # noqa: E402

SMALL = WorldModelConfig(image_size=64, patch=8, dim=64, heads=2, depth=1, stem_dim=16, anchors=4,
                         attention_window=16, decoder_dim=16)
#: fp32 OpenVINO vs torch fp32 on lite, every output: measured ≤ 3e-6 relative L2 (AVX2 host).
FP32_RELATIVE_L2 = 1e-4


def small_model(seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(SMALL).eval()


def window(config: WorldModelConfig, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (1, config.cameras, config.window, 3, *config.size_hw), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def streamed(backend, frames: torch.Tensor):  # noqa: ANN001, ANN202 - the node's way: one stem per frame
    tokens = torch.stack([backend.stem(frames[:, :, t]) for t in range(frames.shape[2])], dim=2)
    return backend.forward_window(tokens, frames[:, :, -1], frames[:, :, -2])


def outputs(output) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return {"frames": output.frames, **{name: getattr(output.agents, name) for name in AGENT_OUTPUTS}}


def relative_l2(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected.float()).norm() / expected.float().norm().clamp_min(1e-12))


def cpu_has_native_bf16() -> bool:
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def lite() -> WorldModel:
    return load_model(default_model("lite"))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_matches_torch_fp32_on_the_shipped_model(lite: WorldModel, precision: str, tmp_path: Path) -> None:
    backend = create_backend(lite, "openvino", precision, cache_dir=tmp_path)
    backend.warm_up()
    compiled = "bf16" if precision == "bf16" and cpu_has_native_bf16() else "fp32"
    assert backend.name == f"openvino-cpu/{compiled}", "the name must say what OpenVINO compiled"
    frames = window(lite.config)
    with torch.no_grad():
        expected = outputs(lite(frames))
    got = outputs(streamed(backend, frames))
    assert got.keys() == expected.keys()
    for name, value in got.items():
        assert value.shape == expected[name].shape and value.dtype == torch.float32, name
        assert torch.isfinite(value).all(), name
    if compiled == "fp32":
        errors = {name: relative_l2(got[name], expected[name]) for name in got if expected[name].norm() > 0}
        assert max(errors.values()) < FP32_RELATIVE_L2, errors
    else:  # bf16 arithmetic: the same bound the torch bf16 plan's test uses on frames
        assert (got["frames"] - expected["frames"]).abs().mean() < 0.01
        assert relative_l2(got["frames"], expected["frames"]) < 3e-2
    manifest = (backend.cache_folder / "key.json").read_text()
    assert '"relative_l2_vs_torch_fp32"' in manifest and f'"precision": "{precision}"' in manifest


def test_compiled_once_then_imported_and_recompiled_for_other_weights(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    first = OpenVinoBackend(small_model(), "fp32", tmp_path)
    assert first.compiled_now
    (folder,) = tmp_path.glob("openvino-*")
    stamps = {blob.name: blob.stat().st_mtime_ns for blob in folder.glob("*.blob")}
    assert set(stamps) == {"stem.blob", "window.blob", "window_agents.blob", "frames.blob"}

    def no_compile(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("compiled although a cached blob exists")

    with monkeypatch.context() as patch:
        patch.setattr(openvino_backend, "_compile", no_compile)
        second = OpenVinoBackend(small_model(), "fp32", tmp_path)  # same weights: imported
    assert not second.compiled_now
    assert {blob.name: blob.stat().st_mtime_ns for blob in folder.glob("*.blob")} == stamps
    frames = window(SMALL)
    a, b = outputs(streamed(first, frames)), outputs(streamed(second, frames))
    assert all(torch.equal(a[name], b[name]) for name in a)

    other = OpenVinoBackend(small_model(seed=1), "fp32", tmp_path)  # other weights: compiled anew
    assert other.compiled_now and len(list(tmp_path.glob("openvino-*"))) == 2
    c = outputs(streamed(other, frames))
    with torch.no_grad():
        expected = outputs(small_model(seed=1)(frames))
    assert all(torch.allclose(c[name], expected[name], atol=1e-4) for name in c), "the other weights' graph"
    assert not all(torch.equal(c[name], a[name]) for name in c)
    OpenVinoBackend(small_model(), "bf16", tmp_path)  # other precision: its own blobs
    assert len(list(tmp_path.glob("openvino-*"))) == 3


def test_a_blob_that_no_longer_imports_is_compiled_again(tmp_path: Path) -> None:
    OpenVinoBackend(small_model(), "fp32", tmp_path)
    (blob,) = tmp_path.glob("openvino-*/window.blob")
    blob.write_bytes(b"not a compiled model")
    again = OpenVinoBackend(small_model(), "fp32", tmp_path)
    assert again.compiled_now and blob.stat().st_size > 1000
    assert torch.isfinite(again.warm_up(repeats=1).frames).all()


def test_the_compile_key_covers_weights_precision_version_and_cpu() -> None:
    def fake(version: str = "2026.4.1", cpu: str = "cpu A", capabilities: tuple = ("FP32",)):  # noqa: ANN202
        core = types.SimpleNamespace(get_property=lambda device, name: cpu if name == "FULL_DEVICE_NAME"
                                     else list(capabilities))
        return core, types.SimpleNamespace(get_version=lambda: version)

    base = compile_key(small_model(), "fp32", *fake()).digest()
    assert compile_key(small_model(), "fp32", *fake()).digest() == base
    assert compile_key(small_model(seed=1), "fp32", *fake()).digest() != base
    assert compile_key(small_model(), "bf16", *fake()).digest() != base
    assert compile_key(small_model(), "fp32", *fake(version="2026.5.0")).digest() != base
    assert compile_key(small_model(), "fp32", *fake(cpu="cpu B")).digest() != base
    assert compile_key(small_model(), "fp32", *fake(capabilities=("FP32", "BF16"))).digest() != base


def test_stems_from_several_threads_at_once_match_one_thread(tmp_path: Path) -> None:
    """The node stems each camera on its own lane thread while the worker runs windows."""
    backend = OpenVinoBackend(small_model(), "fp32", tmp_path)
    frames = [window(SMALL, seed=s)[:, :, 0] for s in range(4)]
    expected = [backend.stem(f) for f in frames]
    got: dict[int, list[torch.Tensor]] = {}

    def lane(index: int) -> None:
        got[index] = [backend.stem(frames[index]) for _ in range(20)]

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(tokens, expected[i]) for i in range(4) for tokens in got[i])


def test_bench_model_times_openvino_and_says_what_it_compiled(monkeypatch) -> None:  # noqa: ANN001
    import torch._inductor.config as inductor_config

    from qcraft_world_model.bench.model import bench_model

    # bench_model sets freezing; restored by assignment: pytest's monkeypatch undo deleted the attribute from
    # torch's config module, and every later torch.compile failed ("freezing does not exist").
    freezing = inductor_config.freezing
    try:
        result = bench_model(str(default_model("lite")), None, ("openvino-fp32", "openvino-bf16"), repeats=2,
                             ab_presets=())
    finally:
        inductor_config.freezing = freezing
    rows = {(r["precision"], r["part"]): r for r in result["results"]}
    timed = ("stem", "window", "window_agents")
    assert set(rows) == {(p, part) for p in ("openvino-fp32", "openvino-bf16") for part in (*timed, "compile")}
    assert all(rows[(p, part)]["median_ms"] > 0 for p in ("openvino-fp32", "openvino-bf16") for part in timed)
    assert rows[("openvino-fp32", "compile")]["compiled_precision"] == "fp32"
    assert rows[("openvino-bf16", "window")]["compiled_precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert max(rows[("openvino-fp32", "compile")]["relative_l2_vs_torch_fp32"].values()) < FP32_RELATIVE_L2
    with pytest.raises(BackendError, match="the openvino backend runs fp32 and bf16"):
        bench_model(str(default_model("lite")), None, ("openvino-int8",), repeats=2, ab_presets=())


def test_the_agents_only_window_is_compiled_and_matches_the_full_one(tmp_path: Path) -> None:
    """The third and fourth compiled parts: the window without the frame decoder gives the full window's
    agents, the frames decoded afterwards from its tokens are the full window's, and their errors
    against torch are recorded with the others."""
    import json

    backend = OpenVinoBackend(small_model(), "fp32", tmp_path)
    assert (backend.cache_folder / "window_agents.blob").is_file() and (backend.cache_folder / "frames.blob").is_file()
    errors = json.loads((backend.cache_folder / "key.json").read_text())["relative_l2_vs_torch_fp32"]
    assert max(v for k, v in errors.items() if k.startswith("window_agents.")) < FP32_RELATIVE_L2
    assert errors["frames.frames"] < FP32_RELATIVE_L2
    frames = window(SMALL)
    tokens = torch.stack([backend.stem(frames[:, :, t]) for t in range(frames.shape[2])], dim=2)
    full = backend.forward_window(tokens, frames[:, :, -1], frames[:, :, -2])
    agents_only = backend.forward_window(tokens, frames[:, :, -1], frames[:, :, -2], frames=False)
    assert agents_only.frames is None
    for name in AGENT_OUTPUTS:
        assert relative_l2(getattr(agents_only.agents, name), getattr(full.agents, name)) < 1e-5, name
    assert backend.decodes_frames_later
    later = backend.decode_frames(agents_only, frames[:, :, -1], frames[:, :, -2])
    assert relative_l2(later, full.frames) < 1e-5
