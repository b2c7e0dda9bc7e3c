"""``qcraft-wm export``: a model folder's ONNX graphs, each run in onnxruntime next to the torch model it
came from, and whether they agree closely enough to ship.

- ``stem.onnx``, ``window.onnx``, ``window_agents.onnx``, ``frames.onnx`` (FP32): within
  ``FP32_TOLERANCE`` relative L2 of torch;
- ``transformer_int8_qdq.onnx`` (PT2E INT8, on request): within ``QDQ_TOLERANCE`` of the torch
  fake-quant model it was exported from;
- ``transformer_qat_int8_qdq.onnx`` (a QAT folder, always): its ModelOpt quantizers' symmetric INT8
  Q/DQ graph, the form TensorRT builds engines from, within ``QDQ_TOLERANCE`` likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qcraft_world_model.data.clip_tensors import calibration_windows
from qcraft_world_model.quant.modelopt_qat import QUANTIZERS_FILE, export_transformer_qdq, load_quantizers
from qcraft_world_model.quant.pt2e import export_qdq_onnx, quantize_pt2e, transformer_latents
from qcraft_world_model.runtime.model_folder import load_model, stored_keep_float
from qcraft_world_model.runtime.onnx_export import export_onnx

#: Largest relative L2 between onnxruntime and torch for the FP32 graphs.
FP32_TOLERANCE = 1e-3
#: ... and between an INT8 Q/DQ graph in onnxruntime and the torch fake-quant model it came from.
QDQ_TOLERANCE = 2e-2
#: The manifest's entries for the INT8 Q/DQ graphs (present when the graph was exported).
QDQ_ERRORS = ("transformer_int8_qdq_relative_l2_vs_fake_quant", "transformer_qat_int8_qdq_relative_l2_vs_fake_quant")


def export_passes(manifest: dict[str, Any]) -> bool:
    """Whether every graph in an export manifest agrees with its torch model within its tolerance."""
    return (max(manifest["relative_l2_vs_torch"].values()) < FP32_TOLERANCE
            and all(manifest[key] < QDQ_TOLERANCE for key in QDQ_ERRORS if key in manifest))


def export_checked(folder: str | Path, out: Path, int8_transformer: bool = False,
                   calibration: Path = Path("out/data/train"),
                   say: Callable[[str], None] = print) -> tuple[dict[str, Any], bool]:
    """Export ``folder``'s model into ``out``; returns the manifest and whether every graph is within its
    tolerance. ``calibration``: the clip dataset (or bag) whose windows calibrate the INT8 graphs.
    ``say`` gets one line per graph as it is checked."""
    model = load_model(folder)
    manifest = export_onnx(model, out)
    worst = max(manifest["relative_l2_vs_torch"].values())
    say(f"{out}: stem.onnx, window.onnx, window_agents.onnx, frames.onnx (opset {manifest['opset']}, weights {manifest['weights']}); "
        f"onnxruntime vs torch: worst relative L2 {worst:.1e}")
    if int8_transformer:
        latents = transformer_latents(model, calibration_windows(calibration, model.config))
        quantized = quantize_pt2e(model.transformer, latents, keep_float=stored_keep_float(folder, model))
        error = export_qdq_onnx(quantized, latents[0], str(out / "transformer_int8_qdq.onnx"))
        manifest["transformer_int8_qdq_relative_l2_vs_fake_quant"] = error
        say(f"{out / 'transformer_int8_qdq.onnx'}: explicit Q/DQ; onnxruntime vs torch fake-quant: "
            f"relative L2 {error:.1e}")
    if (Path(folder) / QUANTIZERS_FILE).is_file():
        fake_quant = load_quantizers(load_model(folder), folder)
        # A real window: the quantizers' ranges were set on such.
        latent = transformer_latents(model, calibration_windows(calibration, model.config, 1))[0]
        path = out / "transformer_qat_int8_qdq.onnx"
        error = export_transformer_qdq(fake_quant, latent, path)
        manifest["transformer_qat_int8_qdq_relative_l2_vs_fake_quant"] = error
        say(f"{path}: ModelOpt QAT ranges, symmetric int8 Q/DQ (TensorRT's form); onnxruntime vs torch "
            f"fake-quant: relative L2 {error:.1e}")
    return manifest, export_passes(manifest)
