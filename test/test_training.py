"""Training and evaluation end to end on a tiny dataset and a tiny model: resumable, reproducible
weights on disk, clear errors for a missing or mismatched dataset, and the evaluate JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qcraft_world_model.data.clip_dataset import DatasetError
from qcraft_world_model.data.generate import DatasetPlan, generate_dataset
from qcraft_world_model.eval.evaluate import evaluate_clips
from qcraft_world_model.eval.report import write_report
from qcraft_world_model.runtime.model_folder import load_model
from qcraft_world_model.train.trainer import TrainConfig, train

from predictor_params import tiny_model

TINY_MODEL = tiny_model("tiny", head_dim=16)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, DatasetPlan("train", ("braunschweig",), clips=4, clips_per_episode=4, image_size=32),
                     workers=1)
    return root


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_MODEL)
    return path


def test_training_resumes_where_it_stopped(tiny_data: Path, tiny_preset: Path, tmp_path: Path) -> None:
    config = TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=4,
                         batch=2, warmup=1, checkpoint_every=2, log_every=1)
    paused = train(TrainConfig(**{**vars(config), "steps": 4, "time_budget_s": 0.0}), progress=False)
    assert paused["step"] == 0 and not paused["finished"]
    first = train(TrainConfig(**{**vars(config), "steps": 2}), progress=False)
    assert first["step"] == 2
    # A run killed after logging step 3 but before its next checkpoint: step 3 is trained again on
    # resume, and logged once.
    log = tmp_path / "run" / "log.csv"
    log.write_text(log.read_text() + "3" + ",0" * (len(log.read_text().splitlines()[0].split(",")) - 1) + "\n")
    # Same run folder, more steps: continues from step 2, does not restart.
    resumed = train(config, progress=False)
    assert resumed["step"] == 4 and resumed["finished"]
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4]
    model = load_model(tmp_path / "run")
    assert model.config.preset == "tiny" and not model.training


def test_same_seed_same_weights(tiny_data: Path, tiny_preset: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / name), steps=2, batch=2,
                          warmup=1), progress=False)
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("augmentation", ["photometric", "zoom"])
def test_an_augmentation_changes_the_weights_is_part_of_the_run_and_of_the_card(
        augmentation: str, tiny_data: Path, tiny_preset: Path, tmp_path: Path) -> None:
    """--photometric and --zoom reach the batches (same seed, other weights than without), a resume with
    another strength is refused, and the card's command reproduces the run."""
    from qcraft_world_model.train.model_card import training_command
    from qcraft_world_model.train.trainer import CheckpointError

    base = TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "plain"), steps=2, batch=2,
                       warmup=1)
    train(base, progress=False)
    augmented = TrainConfig(**{**vars(base), "out": str(tmp_path / "augmented"), augmentation: 1.0})
    train(augmented, progress=False)
    a, b = load_model(tmp_path / "plain"), load_model(tmp_path / "augmented")
    assert any(not torch.equal(pa, pb) for pa, pb in zip(a.state_dict().values(), b.state_dict().values()))
    config = json.loads((tmp_path / "augmented" / "config.json").read_text())["training"]["config"]
    assert training_command(config).endswith(f"--{augmentation} 1")
    assert f"--{augmentation}" not in training_command(
        json.loads((tmp_path / "plain" / "config.json").read_text())["training"]["config"])
    paused = TrainConfig(**{**vars(augmented), "out": str(tmp_path / "paused"), "steps": 4, "time_budget_s": 0.0})
    train(paused, progress=False)
    with pytest.raises(CheckpointError, match=f"{augmentation} 1.0"):
        train(TrainConfig(**{**vars(paused), augmentation: 0.5}), progress=False)


def test_mismatched_and_missing_datasets_are_clear_errors(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not fit model preset 'lite': frames are 32x32, the model reads 128x128"):
        train(TrainConfig(preset="lite", data=str(tiny_data), out=str(tmp_path / "x"), steps=1), progress=False)
    with pytest.raises(DatasetError, match=r"is not a clip dataset \(no manifest.json\)"):
        train(TrainConfig(preset="lite", data=str(tmp_path / "nothing"), out=str(tmp_path / "y"), steps=1),
              progress=False)


def test_several_dataset_folders_train_as_one_in_the_order_given(tiny_data: Path, tiny_preset: Path,
                                                                  tmp_path: Path) -> None:
    """`--data A,B` holds A's clips then B's, each with its own rig; a folder of another frame size is refused
    by name, and so is a list naming no folder."""
    from qcraft_world_model.data.clip_tensors import ClipTensors
    from qcraft_world_model.model.config import WorldModelConfig

    other = tmp_path / "other"
    generate_dataset(other, DatasetPlan("train", ("random_grid",), clips=3, clips_per_episode=3, image_size=32,
                                        seed_base=7), workers=1)
    config = WorldModelConfig.preset_config(tiny_preset)
    a, b = ClipTensors.load(tiny_data, config), ClipTensors.load(other, config)
    both = ClipTensors.load(f"{tiny_data},{other}", config)
    assert len(both) == len(a) + len(b) == 7
    assert torch.equal(both.frames[: len(a)], a.frames) and torch.equal(both.frames[len(a):], b.frames)
    assert torch.equal(both.agents[len(a):], b.agents)
    assert both.cameras == a.cameras + b.cameras
    assert len(ClipTensors.load(f"{tiny_data},{other}", config, max_clips=5)) == 5
    run = train(TrainConfig(preset=str(tiny_preset), data=f"{tiny_data},{other}", out=str(tmp_path / "run"),
                            steps=1, batch=2, warmup=1), progress=False)
    assert run["finished"]
    wider = tmp_path / "wider"
    generate_dataset(wider, DatasetPlan("train", ("random_grid",), clips=2, clips_per_episode=2, image_size=48,
                                        seed_base=9), workers=1)
    with pytest.raises(DatasetError, match=r"mixes frame shapes .*wider, clip 0"):
        ClipTensors.load(f"{tiny_data},{wider}", config)
    with pytest.raises(DatasetError, match=r"no dataset folder"):
        ClipTensors.load(",", config)
    # A folder made before the renderer's id buffer (no rendered visibility) beside one made after: refused,
    # rather than every clip silently trained on the coarser box raster.
    import shutil

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    old = tmp_path / "before_id_buffer"
    shutil.copytree(other, old)
    for shard in old.glob("*.safetensors"):
        with safe_open(str(shard), framework="np") as handle:
            metadata = handle.metadata()
        arrays = load_file(str(shard))
        assert arrays.pop("agent_visibility") is not None
        save_file(arrays, str(shard), metadata=metadata)
    assert ClipTensors.load(old, config).visibility is None
    with pytest.raises(DatasetError, match=r"some clips carry agent_visibility and some do not"):
        ClipTensors.load(f"{tiny_data},{old}", config)


def test_a_square_model_hands_its_whole_trunk_to_a_wide_one(tiny_data: Path, tiny_preset: Path,
                                                          tmp_path: Path) -> None:
    """Frames with the aspect of real cameras end to end: rendered 64x32, trained from a 32x32 model
    (every weight handed over, the token positions stretched to the wider grid), evaluated."""
    from qcraft_world_model.model.config import ModelConfigError, WorldModelConfig
    from qcraft_world_model.train.trainer import load_trunk
    from qcraft_world_model.model.world_model import WorldModel

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "square"), steps=1, batch=2,
                      warmup=1), progress=False)
    wide_data = tmp_path / "wide_data"
    generate_dataset(wide_data, DatasetPlan("train", ("braunschweig",), clips=2, clips_per_episode=2, image_size=64,
                                            image_height=32), workers=1)
    wide_yaml = tmp_path / "wide.yaml"
    wide_yaml.write_text(TINY_MODEL.replace("image_size: 32", "image_size: 64\nimage_height: 32"))
    wide = WorldModelConfig.preset_config(wide_yaml)
    assert wide.size_hw == (32, 64) and wide.grid_hw == (4, 8) and wide.tokens_per_camera == 32

    square = load_model(tmp_path / "square")
    position = square.temporal.position.detach().reshape(4, 4, -1)
    with torch.no_grad():  # a position embedding that varies down the image only
        square.temporal.position.copy_(position[:, :1].expand(4, 4, -1).reshape(square.temporal.position.shape))
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in square.state_dict().items()},
              str(tmp_path / "square" / "model.safetensors"))
    model = WorldModel(wide)
    assert load_trunk(model, tmp_path / "square") == []
    stretched = model.temporal.position.detach().reshape(4, 8, -1)
    torch.testing.assert_close(stretched, square.temporal.position.detach().reshape(4, 4, -1)[:, :1].expand(4, 8, -1))

    with pytest.raises(DatasetError, match="frames are 64x32, the model reads 32x32"):
        train(TrainConfig(preset=str(tiny_preset), data=str(wide_data), out=str(tmp_path / "x"), steps=1),
              progress=False)
    summary = train(TrainConfig(preset=str(wide_yaml), data=str(wide_data), out=str(tmp_path / "wide"), steps=2,
                                batch=2, warmup=1, init_from=str(tmp_path / "square")), progress=False)
    assert summary["finished"]
    trained = load_model(tmp_path / "wide")
    out = trained(torch.zeros(1, 1, 16, 3, 32, 64, dtype=torch.uint8))
    assert out.frames.shape[-2:] == (32, 64) and out.agents.heatmap.shape[-2:] == (32 // 4, 64 // 4)
    result, _ = evaluate_clips(trained, wide_data)
    assert result["data"]["clips"] == 2
    with pytest.raises(ModelConfigError, match="image side 36 is not a multiple of patch 8"):
        WorldModelConfig.from_dict({**wide.to_dict(), "image_height": 36})


def test_evaluate_writes_the_documented_json_and_report(tiny_data: Path, tiny_preset: Path, tmp_path: Path) -> None:
    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=1, batch=2,
                      warmup=1), progress=False)
    result, examples = evaluate_clips(load_model(tmp_path / "run"), tiny_data, examples=2)
    assert len(result["model"]["frames"]["psnr"]) == 2 and len(result["model"]["frames"]["ssim"]) == 2
    agents = result["model"]["agents"]
    for key in ("recall_2m", "precision_2m", "let_recall", "let_precision", "ate", "ase", "aoe", "ave", "minADE_1",
                "minFDE_1", "minFDE_K", "miss_rate_K", "epa", "matched", "map", "by_range", "by_class", "targets",
                "filter"):
        assert key in agents, key
    assert set(agents["by_class"]) == {"car", "pedestrian", "bicycle"}
    assert set(agents["by_range"]) == {"0-10", "10-20", "20-30", "30-50"}
    for key in ("ap_0.5m", "ap_1m", "ap_2m", "ap_4m", "let_recall", "true_agents", "by_range"):
        assert key in agents["by_class"]["car"], key
    assert set(agents["minFDE_1"]) == {"1s", "2s", "3s"}
    # The clips carry rendered visibility: scope is decided by it, and recall is reported by its bins.
    assert "rendered visible share" in agents["filter"] and set(agents["by_visibility"]) == {
        "0-40%", "40-60%", "60-80%", "80-100%"}
    baselines = result["baselines"]
    for name in ("constant_velocity_instantaneous", "constant_velocity_finite_difference"):
        assert {"same_agents", "all_agents"} <= set(baselines[name]), name
        assert "epa" in baselines[name]["all_agents"]
    assert "epa" in baselines["constant_velocity_own_detections"]["agents"]
    assert "frames" in baselines["copy_last_frame"]
    report = write_report(tmp_path / "report", result, examples)
    assert "PSNR copy-last-frame" in report.read_text() and "EPA" in report.read_text()
    for name in ("frames.png", "bev.png", "camera.png", "metrics.png", "metrics.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["data"]["clips"] == 4


def test_evaluate_card_names_the_training_command_and_the_presets_limits(tiny_data: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """``evaluate --card`` writes MODEL_CARD.md from the folder alone: the command that trained it (a
    fine-tune: --init-from, --freeze) and the known limits of its preset (here a tiny model called lite)."""
    from qcraft_world_model.cli import main
    from qcraft_world_model.train.model_card import KNOWN_LIMITS

    (tmp_path / "lite.yaml").write_text(tiny_model("lite", head_dim=16))
    base = TrainConfig(preset=str(tmp_path / "lite.yaml"), data=str(tiny_data), out=str(tmp_path / "base"), steps=1,
                       batch=2, warmup=1)
    train(base, progress=False)
    train(TrainConfig(**{**vars(base), "out": str(tmp_path / "ft"), "init_from": str(tmp_path / "base"),
                         "freeze": ("stem", "temporal")}), progress=False)
    assert main(["evaluate", "--model", str(tmp_path / "ft"), "--data", str(tiny_data), "--out",
                 str(tmp_path / "report"), "--max-clips", "2", "--card"]) == 0
    card = (tmp_path / "ft" / "MODEL_CARD.md").read_text()
    assert f"model card: {tmp_path / 'ft' / 'MODEL_CARD.md'}" in capsys.readouterr().out
    assert card.startswith("# Model card: `lite`")
    assert (f"- command: `qcraft-wm train --preset {tmp_path / 'lite.yaml'} --data {tiny_data} --out {tmp_path / 'ft'} "
            f"--steps 1 --batch 2 --lr 0.001 --warmup 1 --seed 0 --init-from {tmp_path / 'base'} "
            "--freeze stem,temporal`") in card
    assert "kept at the --init-from weights: stem, temporal" in card
    assert f"held-out map: {tiny_data}, 2 clips" in card
    clips = json.loads((tiny_data / "manifest.json").read_text())["clips"]
    assert f"- vehicles drawn: fixed bodies {clips} clips (docs/data.md)" in card  # the default look
    limits = card.split("## Known limits\n\n")[1]
    assert limits == "".join(f"- {line}\n" for line in KNOWN_LIMITS["lite"]) and len(KNOWN_LIMITS["lite"]) > 3


def test_evaluate_scores_a_scene_bag_like_a_clip_set(tiny_preset: Path, tiny_data: Path, tmp_path: Path) -> None:
    from qcraft_world_model.data.scene_bag import SceneBagConfig, write_scene_bag

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=1, batch=2,
                      warmup=1), progress=False)
    write_scene_bag(tmp_path / "bag", SceneBagConfig(map="braunschweig", seed=3, seconds=6.0, image_size=32))
    result, _ = evaluate_clips(load_model(tmp_path / "run"), tmp_path / "bag", examples=0)
    assert result["data"]["clips"] == 2  # windows at t0 = 1.5 s and 2.5 s of a 6 s bag (stride 1 s)
    assert result["data"]["split"] is None
    assert len(result["model"]["frames"]["psnr"]) == 2
    # Constant velocity on the model's own tracks: the model on every frame (15 windows of 46 frames
    # in 60), scored on the same two windows and the same detections as the model.
    from qcraft_world_model.eval.tracked import tracked_baseline

    tracked = tracked_baseline(load_model(tmp_path / "run"), tmp_path / "bag")
    assert tracked["windows_tracked"] == 15 and 0.0 <= tracked["tracked_share"] <= 1.0
    own = result["baselines"]["constant_velocity_own_detections"]["agents"]
    assert tracked["agents"]["matched"] == own["matched"] and tracked["agents"]["detections"] == own["detections"]


def test_qat_fine_tunes_through_int8_quantizers_and_exports_symmetric_qdq(
        tiny_data: Path, tiny_preset: Path, tmp_path: Path) -> None:
    pytest.importorskip("modelopt.torch.quantization", reason="NVIDIA ModelOpt is installed by make test")
    import onnx
    from onnx import numpy_helper

    from qcraft_world_model.quant.modelopt_qat import QUANTIZERS_FILE, export_transformer_qdq, load_quantizers

    base = TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "fp32"), steps=2, batch=2,
                       warmup=1)
    train(base, progress=False)
    qat = TrainConfig(**{**vars(base), "out": str(tmp_path / "qat"), "init_from": str(tmp_path / "fp32"),
                         "qat": True, "calibration_clips": 2, "lr": 1e-4})
    train(qat, progress=False)
    folder = tmp_path / "qat"
    assert (folder / QUANTIZERS_FILE).is_file()
    plain = load_model(folder)  # model.safetensors stays an ordinary model every backend can load
    fake_quant = load_quantizers(load_model(folder), folder)
    quantized = {name for name, module in fake_quant.transformer.named_modules()
                 if getattr(module, "weight_quantizer", None) is not None and module.weight_quantizer.is_enabled}
    assert quantized and all(name.split(".")[-1] in ("qkv", "out", "fc1", "fc2") for name in quantized)
    assert not any(getattr(m, "input_quantizer", None) is not None and m.input_quantizer.is_enabled
                   for n, m in fake_quant.transformer.named_modules() if "norm" in n)

    latent = torch.randn(1, plain.config.tokens, plain.config.dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact, quant = plain.transformer(latent)[0], fake_quant.transformer(latent)[0]
    assert 0 < float((quant - exact).norm() / exact.norm()) < 0.1  # quantized, and still the same function
    error = export_transformer_qdq(fake_quant, latent, tmp_path / "transformer_qdq.onnx")
    assert error < 2e-2
    graph = onnx.load(tmp_path / "transformer_qdq.onnx").graph
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) >= 2 * len(quantized)  # weights and activations of every quantized linear
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR})
    zero_points = [constants[n.input[2]] for n in quantize if len(n.input) > 2 and n.input[2] in constants]
    assert zero_points and all(z.dtype.name == "int8" and not z.any() for z in zero_points)  # TensorRT's symmetric int8


def test_load_quantizers_refuses_a_folder_without_them(tiny_data: Path, tiny_preset: Path, tmp_path: Path) -> None:
    pytest.importorskip("modelopt.torch.quantization", reason="NVIDIA ModelOpt is installed by make test")
    from qcraft_world_model.quant.modelopt_qat import load_quantizers

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "fp32"), steps=1, batch=2,
                      warmup=1), progress=False)
    with pytest.raises(FileNotFoundError, match="not a QAT model folder"):
        load_quantizers(load_model(tmp_path / "fp32"), tmp_path / "fp32")


def test_int8_runs_from_the_model_folder_alone_after_calibrate(tiny_data: Path, tiny_preset: Path,
                                                                 tmp_path: Path) -> None:
    """qcraft-wm calibrate stores what INT8 calibrates on; the torch backend then runs mixed-int8 with no
    dataset (the node's case), exactly as when calibrated on the dataset, and refuses other weights."""
    import subprocess
    import sys

    import torch

    from qcraft_world_model.runtime.backends import TorchBackend
    from qcraft_world_model.runtime.model_folder import INT8_CALIBRATION_FILE, ModelFolderError

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=2, batch=2,
                      warmup=1), progress=False)
    folder = tmp_path / "run"
    model = load_model(folder)
    with pytest.raises(ModelFolderError, match="qcraft-wm calibrate"):
        TorchBackend(model, "mixed-int8", folder=folder)
    done = subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "calibrate", "--model", str(folder),
                           "--data", str(tiny_data), "--windows", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (folder / INT8_CALIBRATION_FILE).is_file()
    window = torch.randint(0, 256, (1, 1, 16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    from_folder = TorchBackend(model, "mixed-int8", folder=folder)
    from_data = TorchBackend(model, "mixed-int8", calibration=str(tiny_data))  # its first 32 = all 4 clips
    with torch.inference_mode():
        a, b = from_folder.runner(window), from_data.runner(window)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.agents.heatmap, b.agents.heatmap)
    other = load_model(folder)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ModelFolderError, match="other weights"):
        TorchBackend(other, "mixed-int8", folder=folder)


def test_calibrate_keeps_the_named_linears_in_floating_point(tiny_data: Path, tiny_preset: Path,
                                                               tmp_path: Path) -> None:
    """``calibrate --keep-float`` stores which transformer linears the INT8 plan leaves in floating point:
    the plan built from the folder then quantizes every linear but those (fewer quantize ops, the named
    layer still a float linear), the Q/DQ export follows the same choice, and a name the transformer
    does not have is refused in one line, before the calibration file is touched."""
    import subprocess
    import sys

    from qcraft_world_model.runtime.backends import TorchBackend
    from qcraft_world_model.runtime.model_folder import INT8_CALIBRATION_FILE, stored_keep_float

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=1, batch=2,
                      warmup=1), progress=False)
    folder = tmp_path / "run"
    model = load_model(folder)

    def calibrate(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "calibrate", "--model", str(folder),
                               "--data", str(tiny_data), "--windows", "2", *extra], capture_output=True, text=True)

    assert calibrate().returncode == 0
    plain = TorchBackend(model, "mixed-int8", folder=folder).runner
    assert plain.keep_float == () and stored_keep_float(folder, model) == ()
    done = calibrate("--keep-float", "blocks.0.attn.out")
    assert done.returncode == 0, done.stderr
    assert "keeping blocks.0.attn.out in floating point" in done.stdout
    assert stored_keep_float(folder, model) == ("blocks.0.attn.out",)
    kept_backend = TorchBackend(model, "mixed-int8", folder=folder)
    kept = kept_backend.runner
    assert kept.keep_float == ("blocks.0.attn.out",)
    assert "fp32: blocks.0.attn.out" in kept_backend.name  # what the node logs and reports in diagnostics

    def quantize_ops(runner) -> int:  # noqa: ANN001 - a PlannedWorldModel
        graph = getattr(runner.transformer, "_orig_mod", runner.transformer).graph
        return sum("quantize_per_tensor" in str(node.target) for node in graph.nodes)

    assert 0 < quantize_ops(kept) < quantize_ops(plain)
    before = (folder / INT8_CALIBRATION_FILE).read_bytes()
    refused = calibrate("--keep-float", "blocks.0.attn.outt")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "blocks.0.attn.outt" in refused.stderr
    assert (folder / INT8_CALIBRATION_FILE).read_bytes() == before


def test_evaluate_scores_another_backend_and_gates_it_against_torch_fp32(tiny_data: Path, tiny_preset: Path,
                                                                          tmp_path: Path) -> None:
    """``evaluate --backend onnxruntime`` (the real CLI) runs the node's backend at batch 1 on the same clips
    and writes the gate against torch fp32; the export matches torch, so the gate passes, with the same
    agents matched. A precision the backend cannot run is a one-line refusal."""
    import subprocess
    import sys

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=1, batch=2,
                      warmup=1), progress=False)
    env = {**__import__("os").environ, "HOME": str(tmp_path)}  # the export cache lands in this test's folder
    done = subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "evaluate", "--model", str(tmp_path / "run"),
                           "--data", str(tiny_data), "--out", str(tmp_path / "ort"), "--backend", "onnxruntime",
                           "--json", str(tmp_path / "ort.json")], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "ort.json").read_text())
    assert result["model"]["precision"] == "onnxruntime-fp32"
    assert result["model"]["backend"] == "onnxruntime-cpu/fp32"
    gate = result["gate"]
    assert gate["passed"], gate["rows"]
    assert gate["matched_agents"]["fp32"] == gate["matched_agents"]["planned"]
    assert "onnxruntime-fp32 vs fp32" in (tmp_path / "ort" / "precision_gate.md").read_text()
    refused = subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "evaluate", "--model",
                              str(tmp_path / "run"), "--data", str(tiny_data), "--out", str(tmp_path / "bf16"),
                              "--backend", "onnxruntime", "--precision", "bf16"],
                             capture_output=True, text=True, timeout=600, env=env)
    assert refused.returncode == 2 and "onnxruntime runs the FP32 export" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def _matched_agents(rng, shares: dict[str | None, float], count: int, noise: float = 0.05):  # noqa: ANN001, ANN202
    """A motion-prior fit's matched agents (``motion_prior._Matches``): ``count`` per map, each of which
    went ``share`` of the way its (3 identical) paths said, with ``noise`` metres of error at the end."""
    import numpy as np

    from qcraft_world_model.eval.motion_prior import _Matches

    matches = _Matches()
    for name, share in shares.items():
        for _ in range(count):
            position, velocity = rng.normal(0, 10, 2), rng.normal(0, 3, 2)
            motion = np.stack([velocity * t for t in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)])[None].repeat(3, 0)
            matches.position.append(position)
            matches.motion.append(motion)
            matches.velocity.append(velocity)
            matches.true_final.append(position + share * motion[0, -1] + rng.normal(0, noise, 2))
            matches.true_velocity.append(share * velocity)
            matches.map.append(name)
    return matches


def test_the_motion_gain_fitted_is_the_one_that_explains_the_truth() -> None:
    """Agents that went 0.4 of the way the head said (with noise) give a gain of 0.4; agents that went
    exactly where it said keep 1; a group with too few agents keeps the head's motion."""
    import numpy as np

    from qcraft_world_model.eval.motion_prior import MIN_AGENTS, _Matches, best_gain

    rng = np.random.default_rng(0)
    for share, noise in ((0.4, 0.05), (1.0, 0.0)):
        group = _matched_agents(rng, {None: share}, 60, noise)
        assert best_gain(group) == pytest.approx(share)
        fde_1, _, velocity_error = group.errors(share)
        assert fde_1 < 0.2 and velocity_error < 1e-9
    few = _Matches()
    assert len(few) < MIN_AGENTS  # and fit_motion_prior keeps 1 for such a group (the CLI test below)


def test_a_motion_gain_is_kept_only_where_it_carries_to_maps_it_was_not_fitted_on() -> None:
    """Leave-one-map-out: where every map's agents went 0.4 of the way, the gain fitted on all (0.4) is
    kept; where one map's went 0.4 and the other's all the way, the pooled fit (between) is worse than the
    head's motion on each map left out, so the head's motion (1) is kept, and the record says why."""
    import numpy as np

    from qcraft_world_model.eval.motion_prior import _Matches, choose_gain

    rng = np.random.default_rng(1)

    def group(shares: dict[str, float]) -> _Matches:
        return _matched_agents(rng, shares, 40)

    gain, record = choose_gain(group({"a": 0.4, "b": 0.4}))
    assert gain == pytest.approx(0.4) and "note" not in record
    assert set(record["out_of_map"]["maps"]) == {"a", "b"}
    assert all(m["gain"] == pytest.approx(0.4) for m in record["out_of_map"]["maps"].values())
    gain, record = choose_gain(group({"a": 0.4, "b": 1.0}))
    assert 0.4 < record["fitted_gain"] < 1.0 and gain == 1.0
    assert "did not lower FDE_1 on the maps left out" in record["note"]
    head, fitted = record["out_of_map"]["fde_1_last_step_m"]
    assert fitted > head
    gain, record = choose_gain(group({"a": 0.4}))  # one map: nothing to leave out, the pooled fit stands
    assert gain == pytest.approx(0.4) and "out_of_map" not in record and "not checked" in record["note"]


def test_a_motion_gain_within_its_noise_on_the_maps_left_out_is_not_kept() -> None:
    """Agents that went 0.97 of the way with 4 m of error at the end: the pooled fit says 0.9, and the
    out-of-map gains lower FDE_1 on the maps left out by 0.1 m, but the bootstrap interval of that
    improvement over the agents reaches below zero, so the head's motion is kept (the session-11 bicycle
    gain, 0.03 m out of map, would not have been stored); a clear shrinkage stays confirmed."""
    import numpy as np

    from qcraft_world_model.eval.motion_prior import choose_gain

    gain, record = choose_gain(_matched_agents(np.random.default_rng(3), {"a": 0.97, "b": 0.97}, 40, 4.0))
    head, fitted = record["out_of_map"]["fde_1_last_step_m"]
    low, high = record["out_of_map"]["improvement_m_ci95"]
    assert record["fitted_gain"] < 1.0 and fitted < head and low < 0 < high
    assert gain == 1.0 and record["map_check"] == "not confirmed" and "within the noise" in record["note"]
    gain, record = choose_gain(_matched_agents(np.random.default_rng(3), {"a": 0.4, "b": 0.4}, 40, 1.0))
    assert gain == pytest.approx(0.4) and record["map_check"] == "confirmed"
    assert record["out_of_map"]["improvement_m_ci95"][0] > 0


def test_evaluation_decodes_with_the_prior_it_is_given(tiny_data: Path, tiny_preset: Path) -> None:
    """model_predictions applies the prior: with every cell a car peak (the heat map's bias raised), the
    cars' velocities and path displacements are the gain times the head's, positions the same. (A flat
    heat map still has few local peaks: its cells differ in the fifth digit.)"""
    import numpy as np

    from qcraft_world_model.data.clip_tensors import ClipTensors
    from qcraft_world_model.eval.evaluate import model_predictions
    from qcraft_world_model.model.agent_decode import MotionPrior
    from qcraft_world_model.model.config import WorldModelConfig
    from qcraft_world_model.model.world_model import WorldModel

    config = WorldModelConfig.preset_config(tiny_preset)
    torch.manual_seed(0)
    model = WorldModel(config).eval()
    with torch.no_grad():
        model.agent_head.out.bias[0] = 10.0  # the car group's heat map: lit everywhere
    sample = ClipTensors.load(tiny_data, config).batch(torch.tensor([0, 1]))
    with torch.inference_mode():
        plain = model_predictions(model, sample)
        shrunk = model_predictions(model, sample, prior=MotionPrior((0.5, 1.0, 1.0)))
    for a, b in zip(plain.agents, shrunk.agents):
        assert len(a) >= 3 and (a.label != 7).all()
        np.testing.assert_allclose(b.position, a.position)
        np.testing.assert_allclose(b.velocity, 0.5 * a.velocity, atol=1e-9)
        np.testing.assert_allclose(b.paths - b.position[:, None, None], 0.5 * (a.paths - a.position[:, None, None]),
                                   atol=1e-9)
        assert np.abs(a.velocity).max() > 0.1  # there is motion to scale


def test_fit_motion_stores_a_prior_that_evaluate_and_the_folder_use_and_refuses_to_replace_it(
        tiny_data: Path, tiny_preset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """qcraft-wm fit-motion (a subprocess) writes motion_prior.json tied to the weights; evaluate decodes
    with it (and says so) unless --no-motion-prior; a second fit without --overwrite is one line and exit
    2; a prior of other weights, or a damaged one, is refused by name."""
    import subprocess
    import sys

    from qcraft_world_model.model.agent_decode import MotionPrior
    from qcraft_world_model.runtime.model_folder import (MOTION_PRIOR_FILE, ModelFolderError, load_motion_prior,
                                                         save_motion_prior)

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=2, batch=2,
                      warmup=1), progress=False)
    folder = tmp_path / "run"
    model = load_model(folder)
    assert load_motion_prior(folder, model) == MotionPrior()  # none stored: the head's motion as it is

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", *args], capture_output=True,
                              text=True, timeout=600)

    done = cli("fit-motion", "--model", str(folder), "--data", str(tiny_data), "--every", "1",
               "--json", str(tmp_path / "fit.json"))
    assert done.returncode == 0, done.stderr
    document = json.loads((folder / MOTION_PRIOR_FILE).read_text())
    assert set(document["gain"]) == {"car", "pedestrian", "bicycle"}
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["clips"] == 4
    # Two steps of training find no agent: every group has too few to fit and keeps the head's motion.
    assert all(group["gain"] == 1.0 and "fewer than" in group["note"] for group in record["groups"].values())
    bad = cli("fit-motion", "--model", str(folder), "--data", str(tiny_data), "--every", "0")
    assert bad.returncode == 2 and "--every" in bad.stderr
    from qcraft_world_model.eval.motion_prior import fit_folder

    held_out = tmp_path / "held_out"
    held_out.mkdir()
    (held_out / "manifest.json").write_text(json.dumps({"split": "eval"}))
    with pytest.raises(DatasetError, match="split 'train,eval': fit the motion prior on training clips only"):
        fit_folder(model, f"{tiny_data},{held_out}")
    with pytest.raises(DatasetError, match="nowhere is not a clip dataset"):  # a mistyped path says so
        fit_folder(model, f"{tiny_data},{tmp_path / 'nowhere'}")
    again = cli("fit-motion", "--model", str(folder), "--data", str(tiny_data))
    assert again.returncode == 2 and "pass --overwrite" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    # A prior the decoder visibly uses: stored by hand, read back, named in evaluate's JSON.
    save_motion_prior(folder, model, MotionPrior((0.5, 0.25, 1.0)), {"note": "test"})
    assert load_motion_prior(folder, model).gain == (0.5, 0.25, 1.0)
    done = cli("evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval"),
               "--json", str(tmp_path / "eval.json"), "--no-motion-prior")
    assert done.returncode == 0, done.stderr
    gains = json.loads((tmp_path / "eval.json").read_text())["model"]["agents"]["motion_gain"]
    assert gains == {"car": 1.0, "pedestrian": 1.0, "bicycle": 1.0}
    # Without the flag evaluate decodes with the folder's prior, and says which.
    from qcraft_world_model.cli import main

    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval2"),
                 "--json", str(tmp_path / "eval2.json")]) == 0
    gains = json.loads((tmp_path / "eval2.json").read_text())["model"]["agents"]["motion_gain"]
    assert gains == {"car": 0.5, "pedestrian": 0.25, "bicycle": 1.0}
    other = load_model(folder)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ModelFolderError, match="fitted to other weights or another config.json: fit it again .*--overwrite"):
        load_motion_prior(folder, other)
    (folder / MOTION_PRIOR_FILE).write_text(json.dumps({**document, "gain": {"car": 1.0}}))
    with pytest.raises(ModelFolderError, match="must map each of car, pedestrian, bicycle"):
        load_motion_prior(folder, model)
    (folder / MOTION_PRIOR_FILE).write_text("{not json")
    with pytest.raises(ModelFolderError, match="is not valid JSON"):
        load_motion_prior(folder, model)
    # A damaged prior is refused before the report folder is claimed: --overwrite keeps the earlier report.
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval2"),
                 "--overwrite"]) == 2
    assert (tmp_path / "eval2" / "metrics.json").is_file()
    capsys.readouterr()
    # A card scored without the prior the node would use, and --every on a bag's windows: one line, exit 2.
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval3"),
                 "--card", "--no-motion-prior"]) == 2
    assert "leave --no-motion-prior out" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval3"),
                 "--every", "2", "--tracks"]) == 2
    error = capsys.readouterr().err
    assert "leave --every out" in error and len(error.strip().splitlines()) == 1
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval3"),
                 "--recorded", "--no-motion-prior"]) == 2
    assert "leave --no-motion-prior out" in capsys.readouterr().err
    assert not (tmp_path / "eval3").exists()


def test_fit_operating_point_chooses_on_unseen_clips_and_evaluate_and_the_folder_use_it(
        tiny_data: Path, tiny_preset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """qcraft-wm fit-operating-point (a subprocess) refuses the clips the model trained on and an evaluation
    split, writes operating_point.json tied to the weights from other training-map clips, and evaluate
    reports at it unless --existence-threshold; a point of other weights, or a damaged one, is refused."""
    import subprocess
    import sys

    from qcraft_world_model.cli import main
    from qcraft_world_model.model.agent_decode import OperatingPoint
    from qcraft_world_model.runtime.model_folder import (OPERATING_POINT_FILE, ModelFolderError, load_operating_point,
                                                         save_operating_point)

    train(TrainConfig(preset=str(tiny_preset), data=str(tiny_data), out=str(tmp_path / "run"), steps=2, batch=2,
                      warmup=1), progress=False)
    folder = tmp_path / "run"
    model = load_model(folder)
    assert load_operating_point(folder, model) is None  # none stored: evaluate and the node use 0.5
    unseen = tmp_path / "unseen"
    generate_dataset(unseen, DatasetPlan("train", ("braunschweig",), clips=4, clips_per_episode=2, seed_base=7,
                                         image_size=32), workers=1)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", *args], capture_output=True,
                              text=True, timeout=600)

    seen = cli("fit-operating-point", "--model", str(folder), "--data", str(tiny_data))
    assert seen.returncode == 2 and "was trained on" in seen.stderr and len(seen.stderr.strip().splitlines()) == 1
    done = cli("fit-operating-point", "--model", str(folder), "--data", str(unseen), "--json", str(tmp_path / "op.json"))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "op.json").read_text())
    assert record["clips"] == 4 and record["episodes"] == 2
    # Two steps of training find nothing: every group keeps the default and says why.
    assert all(band["threshold"] == 0.5 and "note" in band for group in record["groups"].values()
               for band in group.values())
    assert load_operating_point(folder, model) == OperatingPoint()
    again = cli("fit-operating-point", "--model", str(folder), "--data", str(unseen))
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    (held_out / "manifest.json").write_text(json.dumps({"split": "eval"}))
    from qcraft_world_model.eval.operating_point import fit_folder

    with pytest.raises(DatasetError, match="never on an evaluation split"):
        fit_folder(model, folder, held_out)
    # A point stored by hand is what evaluate reports at, and says so; the flag overrides it.
    save_operating_point(folder, model, OperatingPoint((0.3, 0.6, 0.5), (0.5, 0.7, 0.5)), {"note": "test"})
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval"),
                 "--json", str(tmp_path / "eval.json")]) == 0
    agents = json.loads((tmp_path / "eval.json").read_text())["model"]["agents"]
    assert OperatingPoint.from_dict(agents["threshold"]) == OperatingPoint((0.3, 0.6, 0.5), (0.5, 0.7, 0.5))
    assert "car 0.3 within 30 m, 0.5 beyond, pedestrian 0.6 within 20 m, 0.7 beyond" in agents["filter"]
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval2"),
                 "--json", str(tmp_path / "eval2.json"), "--existence-threshold", "0.4"]) == 0
    assert OperatingPoint.from_dict(json.loads((tmp_path / "eval2.json").read_text())["model"]["agents"]["threshold"]
                                    ) == OperatingPoint.uniform(0.4)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data), "--out", str(tmp_path / "eval3"),
                 "--card", "--existence-threshold", "0.4"]) == 2
    assert "leave --existence-threshold out" in capsys.readouterr().err
    other = load_model(folder)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ModelFolderError, match="fitted to other weights .*fit-operating-point"):
        load_operating_point(folder, other)
    save_operating_point(folder, model, OperatingPoint(), {"note": "test"})
    document = json.loads((folder / OPERATING_POINT_FILE).read_text())
    del document["threshold"]["car"]["beyond"]
    (folder / OPERATING_POINT_FILE).write_text(json.dumps(document))
    with pytest.raises(ModelFolderError, match="each group needs \"within_m\", \"threshold\" and \"beyond\""):
        load_operating_point(folder, model)
    (folder / OPERATING_POINT_FILE).write_text(json.dumps({"format": "qcraft-wm-motion-prior/1"}))
    with pytest.raises(ModelFolderError, match="is not an operating point"):
        load_operating_point(folder, model)
