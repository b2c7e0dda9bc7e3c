"""The benchmarks behind ``qcraft-wm bench``: their set-up and arithmetic (timings are never asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


def test_bench_node_parameters_are_what_the_node_reads(tmp_path: Path) -> None:
    from qcraft_world_model.bench.node import camera_names, camera_topic, predictor_params
    from qcraft_world_model.ingest.config import IngestConfig, load_parameters
    from qcraft_world_model.ros.parameters import node_values

    from qcraft_world_model.runtime.model_folder import default_model, read_model_config

    names = camera_names(3)
    model = tmp_path / "a model: folder"
    shutil.copytree(default_model(), model)
    (tmp_path / "params.yaml").write_text(predictor_params(names, model, "torch", False))
    values = load_parameters(tmp_path / "params.yaml")
    config = IngestConfig.from_parameters(values)
    assert [(c.name, c.topic, c.transport) for c in config.cameras] == [(n, camera_topic(n), "raw") for n in names]
    shipped = read_model_config(model)
    assert (config.image.width, config.image.height) == (shipped.width, shipped.height)  # what configure checks
    node = node_values(values)
    assert node["model.path"] == str(model) and node["model.backend"] == "torch"
    assert node["output.publish_frames"] is False
    assert node["model.threads"] == 0 and node["output.frames_max_rate_hz"] == 10.0  # the node's defaults
    (tmp_path / "tuned.yaml").write_text(predictor_params(names, model, "onnxruntime", True, threads=1,
                                                          frames_rate_hz=2.5))
    tuned = node_values(load_parameters(tmp_path / "tuned.yaml"))
    assert tuned["model.threads"] == 1 and tuned["output.frames_max_rate_hz"] == 2.5
    (tmp_path / "jpeg.yaml").write_text(predictor_params(names, model, "torch", False, "jpeg"))
    jpeg = IngestConfig.from_parameters(load_parameters(tmp_path / "jpeg.yaml"))
    assert {c.transport for c in jpeg.cameras} == {"compressed"}
    with pytest.raises(ValueError, match="rgb8, bgr8, jpeg"):
        predictor_params(names, model, "torch", False, "png")
    with pytest.raises(ValueError, match="1 to 3 cameras"):
        camera_names(4)


def test_bench_node_counts_drops_from_the_first_full_window() -> None:
    from qcraft_world_model.bench.node import percentiles, summary

    result = summary(1, 10.0, 3.0, 30, 16, [float(v) for v in range(1, 13)], [5.0], (400.0, 410.0), "torch", {},
                     "shipped lite", Path("node.log"))
    assert result["published"] == 12 and result["dropped"] == 30 - 15 - 12  # frames 16..30 each complete a window
    assert result["e2e_latency_ms"]["p50"] == pytest.approx(6.5) and result["node_latency_ms"]["p99"] == 5.0
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_bench_node_runs_the_model_given_the_shipped_one_or_a_random_weight_one(tmp_path: Path) -> None:
    """More cameras than the shipped model has: its preset with that many, seeded random weights, a folder
    the node loads like a trained one (written through runtime/model_folder.py)."""
    from qcraft_world_model.bench.node import node_model
    from qcraft_world_model.runtime.model_folder import DEFAULT_PRESET, default_model, load_model

    assert node_model(tmp_path / "mine", 3, tmp_path) == (tmp_path / "mine", str(tmp_path / "mine"))
    assert node_model(None, 1, tmp_path) == (default_model(), "the shipped default model")
    assert not (tmp_path / "model").exists()
    folder, note = node_model(None, 2, tmp_path / "a")
    assert folder == tmp_path / "a" / "model" and note == f"{DEFAULT_PRESET}, 2 cameras, random weights"
    model = load_model(folder)
    assert model.config.cameras == 2 and model.config.preset == DEFAULT_PRESET
    assert (folder / "model.safetensors").read_bytes() == (node_model(None, 2, tmp_path / "b")[0]
                                                           / "model.safetensors").read_bytes()  # seeded


def test_bench_gpu_measures_each_preset_and_precision_on_the_device_given() -> None:
    """The GPU benchmark's model part, run on the CPU with one preset and one precision."""
    from qcraft_world_model.bench.gpu import bench_gpu

    seen: list[tuple[int, int]] = []
    result = bench_gpu("cpu", sizes=(), presets=("lite",), precisions=("fp32",), repeats=1,
                       progress=lambda done, total: seen.append((done, total)))
    (row,) = result["models"]
    assert (row["preset"], row["precision"], row["backend"]) == ("lite", "fp32", "torch-cpu")
    assert row["window"]["median_ms"] > 0 and row["stem_per_frame"]["median_ms"] > 0 and row["parameters"] > 0
    assert "attention_fp32" not in result and seen == [(0, 1), (1, 1)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_gpu_without_a_gpu_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "bench", "gpu"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.startswith("qcraft-wm bench: error: no CUDA device here") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["lite", "base", "lite-wide"])
def test_bench_gpu_reads_the_presets_without_pyyaml(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU machine runs the source tree and may lack PyYAML: the flat preset files are read without it."""
    from qcraft_world_model.bench.gpu import preset
    from qcraft_world_model.model.config import WorldModelConfig

    expected = WorldModelConfig.preset_config(name)
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    with pytest.raises(ImportError):
        WorldModelConfig.preset_config(name)
    assert preset(name) == expected


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "jpeg"])
def test_bench_node_sends_real_camera_sizes_the_node_decodes(tmp_path: Path, encoding: str) -> None:
    """1280x720 frames in each encoding are what the node's decoder reads back to the same picture: the
    bench's cameras look like a real camera's on the wire."""
    from rosbags.typesys import Stores  # noqa: F401 - the real serializer the bag tools use

    from qcraft_world_model.bench.node import camera_frames
    from qcraft_world_model.data.message_types import make_typestore
    from qcraft_world_model.ingest import TargetSize, decode_any

    import cv2

    from qcraft_world_model.bench.node import drive_frames

    frames, kind = camera_frames(tmp_path / "drive", (1280, 720), encoding)
    assert kind == ("sensor_msgs/msg/CompressedImage" if encoding == "jpeg" else "sensor_msgs/msg/Image")
    typestore = make_typestore()
    first = typestore.deserialize_cdr(frames[0], kind)
    # The reference is built apart from camera_frames: the drive's own first frame, scaled up by OpenCV.
    rendered = decode_any(typestore.deserialize_cdr(drive_frames(tmp_path / "ref")[0], "sensor_msgs/msg/Image"))
    expected = cv2.resize(rendered, (1280, 720), interpolation=cv2.INTER_LINEAR)
    full = decode_any(first)
    assert full.shape == (720, 1280, 3)
    difference = np.abs(full.astype(int) - expected.astype(int))
    if encoding == "jpeg":
        assert difference.mean() < 3.0 and len(frames[0]) < 1280 * 720 * 3 // 4
    else:  # raw: the very pixels, in either channel order on the wire
        assert difference.max() == 0
        assert first.encoding == encoding
    assert decode_any(first, TargetSize(256, 128)).shape == (128, 256, 3)
    assert len(frames) == 50


def test_bench_node_runs_the_node_on_jpeg_frames_of_a_real_camera_size(ros, tmp_path: Path) -> None:
    """The real command, the node as its own process over DDS: 3 s of 640x360 JPEG frames on the
    compressed transport come back as predictions, and the result says how the frames were sent."""
    import json

    done = subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "bench", "node", "--seconds", "3",
                           "--width", "640", "--height", "360", "--encoding", "jpeg", "--no-frames",
                           "--json", str(tmp_path / "node.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)  # the installed package
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "node.json").read_text())
    assert result["camera"]["encoding"] == "jpeg" and (result["camera"]["width"], result["camera"]["height"]) == (
        640, 360)
    assert 0 < result["camera"]["bytes_per_frame"] < 640 * 360 * 3 // 4
    assert result["frames_in"] == 30 and result["published"] >= 1, result
    refused = subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "bench", "node", "--width", "640"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--width and --height" in refused.stderr
