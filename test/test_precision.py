"""Precision plans: INT8 transformer weights are a quarter of FP32, and planned models stay close to FP32."""

from __future__ import annotations

import pytest
import torch

from qcraft_world_model.model import WorldModel, WorldModelConfig
from qcraft_world_model.quant.plan import PrecisionPlan
from qcraft_world_model.quant.pt2e import int8_weight_bytes, quantize_pt2e
from qcraft_world_model.runtime.mixed import PlannedWorldModel

SMALL = WorldModelConfig(image_size=64, patch=8, dim=64, heads=2, depth=2, stem_dim=16, anchors=4,
                         attention_window=16, decoder_dim=16)


@pytest.fixture(scope="module")
def model() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(SMALL).eval()


def windows(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (1, 1, 16, 3, 64, 64), dtype=torch.uint8, generator=generator)
            for _ in range(count)]


def test_named_plans() -> None:
    mixed = PrecisionPlan.named("mixed-int8", "cpu", native_bf16=True)
    assert (mixed.transformer, mixed.temporal, mixed.frame_decoder) == ("int8", "bf16", "bf16")
    assert mixed.suffix == ""
    # A CPU that would emulate bf16 keeps the INT8 transformer and runs the rest in fp32, and says so.
    emulated = PrecisionPlan.named("mixed-int8", "cpu", native_bf16=False)
    assert (emulated.transformer, emulated.stem, emulated.temporal, emulated.agent_head) == (
        "int8", "fp32", "fp32", "fp32")
    assert emulated.suffix == "+fp32"
    assert PrecisionPlan.named("bf16", "cpu", native_bf16=False).temporal == "bf16"  # asked for by name: kept
    assert PrecisionPlan.named("mixed-int8", "cuda").temporal == "fp16"
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        PrecisionPlan.named("int4")


def test_int8_transformer_weights_are_under_30_percent_of_fp32(model: WorldModel) -> None:
    latents = [model.temporal(model.stem(w)) for w in windows(2)]
    quantized = quantize_pt2e(model.transformer, latents)
    int8, floating = int8_weight_bytes(quantized)
    fp32 = sum(p.numel() * 4 for p in model.transformer.parameters())
    assert int8 > 0 and (int8 + floating) / fp32 <= 0.30


def test_quantized_transformer_tracks_fp32(model: WorldModel) -> None:
    latents = [model.temporal(model.stem(w)) for w in windows(8)]
    quantized = quantize_pt2e(model.transformer, latents[:6])
    with torch.no_grad():
        ref_tokens, _ = model.transformer(latents[7])
        int8_tokens, _ = quantized(latents[7])
    assert ((int8_tokens - ref_tokens).norm() / ref_tokens.norm()).item() < 0.05


@pytest.mark.parametrize("precision", ["bf16", "mixed-int8"])
def test_planned_model_predicts_like_fp32(model: WorldModel, precision: str) -> None:
    plan = PrecisionPlan.named(precision, "cpu")
    planned = PlannedWorldModel(model, plan, windows(4), compile_int8=False)
    window = windows(1, seed=9)[0]
    with torch.no_grad():
        ref, out = model(window), planned(window)
    assert out.frames.dtype == torch.float32 and out.frames.shape == ref.frames.shape
    assert (out.frames - ref.frames).abs().mean().item() < 0.01
    assert out.agents.paths.shape == ref.agents.paths.shape


def test_int8_plan_without_calibration_is_refused(model: WorldModel) -> None:
    with pytest.raises(ValueError, match="needs calibration windows"):
        PlannedWorldModel(model, PrecisionPlan.named("mixed-int8"), [])


def test_onnx_export_matches_torch_in_onnxruntime(model: WorldModel, tmp_path) -> None:  # noqa: ANN001
    from qcraft_world_model.runtime.onnx_export import OnnxWorldModel, export_onnx

    manifest = export_onnx(model, tmp_path)
    assert max(manifest["relative_l2_vs_torch"].values()) < 1e-4
    runner = OnnxWorldModel(tmp_path)  # config from export.json
    window = windows(1, seed=3)[0]
    with torch.no_grad():
        ref, out = model(window), runner(window)
    assert torch.allclose(out.frames, ref.frames, atol=1e-4)
    assert torch.allclose(out.agents.paths, ref.agents.paths, atol=1e-3)


def test_export_check_passes_a_faithful_export_and_fails_one_beyond_its_tolerance(model: WorldModel,
                                                                                   tmp_path) -> None:  # noqa: ANN001
    """``qcraft-wm export`` exits 1 when a graph disagrees with torch: the tolerances of eval/export_check.py."""
    from qcraft_world_model.eval.export_check import FP32_TOLERANCE, QDQ_TOLERANCE, export_checked, export_passes
    from qcraft_world_model.runtime.model_folder import save_model

    (tmp_path / "model").mkdir()
    save_model(tmp_path / "model", model, SMALL, {})
    said: list[str] = []
    manifest, ok = export_checked(tmp_path / "model", tmp_path / "onnx", say=said.append)
    assert ok and (tmp_path / "onnx" / "window.onnx").is_file()
    assert len(said) == 1 and said[0].endswith(f"worst relative L2 {max(manifest['relative_l2_vs_torch'].values()):.1e}")
    off = {**manifest, "relative_l2_vs_torch": {**manifest["relative_l2_vs_torch"], "window": FP32_TOLERANCE * 2}}
    assert not export_passes(off)
    assert export_passes({**manifest, "transformer_int8_qdq_relative_l2_vs_fake_quant": QDQ_TOLERANCE / 2})
    assert not export_passes({**manifest, "transformer_qat_int8_qdq_relative_l2_vs_fake_quant": QDQ_TOLERANCE * 2})


def test_missing_export_is_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    from qcraft_world_model.runtime.onnx_export import OnnxWorldModel

    with pytest.raises(FileNotFoundError, match="has no stem.onnx; run qcraft-wm export first"):
        OnnxWorldModel(tmp_path)


def test_int8_transformer_exports_to_qdq_onnx_that_onnxruntime_agrees_with(model: WorldModel, tmp_path) -> None:  # noqa: ANN001
    import onnx

    from qcraft_world_model.quant.pt2e import export_qdq_onnx

    latents = [model.temporal(model.stem(w)) for w in windows(4)]
    quantized = quantize_pt2e(model.transformer, latents)
    error = export_qdq_onnx(quantized, latents[0], str(tmp_path / "t.onnx"))
    ops = {node.op_type for node in onnx.load(str(tmp_path / "t.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert error < 2e-2


def test_per_layer_sensitivity_quantizes_one_linear_per_row(model: WorldModel) -> None:
    from qcraft_world_model.eval.sensitivity import EvalWindow, layer_sensitivity, linear_names, sensitivity_markdown

    with torch.no_grad():
        calibration = [model.temporal(model.stem(w)) for w in windows(4)]
        held_out = [EvalWindow(model.stem(w), w[:, :, -1], w[:, :, -2], torch.rand(1, 1, 5, 3, 64, 64))
                    for w in windows(3, seed=1)]
    layers = linear_names(model.transformer)
    rows = layer_sensitivity(model, calibration, held_out)
    assert [r["layer"] for r in rows] == [*layers, "all"]
    single = {r["layer"]: r["transformer_rel_l2"] for r in rows[:-1]}
    assert all(0 < error < 0.1 for error in single.values())  # each row really quantized its layer, and only mildly
    assert rows[-1]["transformer_rel_l2"] > max(single.values())  # quantizing all of them costs more than any one
    table = sensitivity_markdown(rows, [0.2, 0.4, 0.6, 0.8, 1.0])
    assert table.count("\n") == len(rows) + 2 and table.strip().splitlines()[-1].startswith("| all |")


def test_precision_gate_flags_metrics_outside_the_tolerance() -> None:
    from qcraft_world_model.eval.precision_gate import gate_markdown, precision_gate

    def result(psnr: list[float], fde: float, recall: float = 0.5) -> dict:
        cars = {"let_recall": recall, "let_precision": 0.6, "ap_2m": None}
        agents = {"matched": 10, "minFDE_1": {"3s": fde}, "minFDE_K": {"3s": None}, "targets": {"car_30m": cars},
                  "map": 0.3, "epa": 0.2}
        return {"data": {"future_frames_s": [0.2, 0.4]}, "model": {"frames": {"psnr": psnr}, "agents": agents}}

    passed = precision_gate(result([30.0, 25.0], 4.0), result([29.9, 25.0], 4.01))
    assert passed["passed"]
    assert [r["within"] for r in passed["rows"]] == [True, True, True, True, None, True, True, True, None]
    recall_moved = precision_gate(result([30.0, 25.0], 4.0), result([30.0, 25.0], 4.0, recall=0.49))
    assert not recall_moved["passed"]
    failed = precision_gate(result([30.0, 25.0], 4.0), result([29.0, 25.0], 4.0))
    assert not failed["passed"] and failed["rows"][0]["within"] is False
    assert "**no**" in gate_markdown(failed, "mixed-int8")
