"""INT8 quantization-aware training of the transformer with NVIDIA ModelOpt, and its Q/DQ ONNX.

ModelOpt puts fake quantizers on the transformer's linears: per-channel
symmetric int8 weights, per-tensor symmetric int8 activations (max-calibrated),
which is TensorRT's explicit-quantization convention and what Torch-TensorRT
consumes. Training then goes on through the quantizers (straight-through
gradients), so the weights learn to live on the int8 grid. The LayerNorms stay
in floating point: the precision plan makes linears INT8, not normalisation.

A QAT model folder holds ``model.safetensors`` (the fine-tuned weights, which
every backend loads as an ordinary model) and ``quantizers.safetensors`` (the
calibrated ranges, ``*_quantizer._amax``), which restore the fake-quant model
for the Q/DQ export.

ModelOpt is imported lazily: it is an optional part of the environment (see
``requirements/dev.txt`` for why it is installed without its declared deps).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

#: Where a QAT folder keeps the quantizers' calibrated ranges.
QUANTIZERS_FILE = "quantizers.safetensors"


def _mtq():  # noqa: ANN202 - the module
    try:
        import modelopt.torch.quantization as mtq
    except Exception as err:  # noqa: BLE001 - ModelOpt raises more than ImportError when half-installed
        raise RuntimeError(f"NVIDIA ModelOpt is not usable here ({type(err).__name__}: {err}); "
                           "install nvidia-modelopt as requirements/dev.txt does") from err
    return mtq


def int8_config() -> dict:
    """ModelOpt's INT8 default (per-channel weights on axis 0, per-tensor activations), norms left in FP."""
    config = copy.deepcopy(_mtq().INT8_DEFAULT_CFG)
    config["quant_cfg"].append({"quantizer_name": "*norm*", "enable": False})
    return config


def quantize_transformer(model: nn.Module, calibration: Iterable[torch.Tensor] | None) -> nn.Module:
    """Insert fake INT8 quantizers into ``model.transformer`` (in place) and calibrate them.

    ``calibration``: model input windows (B, C, T, 3, H, W); the whole model runs on
    them, so the transformer is calibrated on real latents. None: insert the
    quantizers uncalibrated (ranges are loaded afterwards, see ``load_quantizers``).
    """
    mtq = _mtq()
    windows = None if calibration is None else list(calibration)

    def forward_loop(_: nn.Module) -> None:
        with torch.no_grad():
            for window in windows:
                model(window)

    was_training = model.training
    model.eval()
    model.transformer = mtq.quantize(model.transformer, int8_config(), forward_loop if windows else None)
    model.train(was_training)
    return model


def is_quantizer_key(key: str) -> bool:
    """True for state-dict entries that belong to ModelOpt quantizers, not to the model."""
    return "_quantizer." in key


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(plain model weights, quantizer ranges) of a QAT model's state dict."""
    plain = {k: v for k, v in state.items() if not is_quantizer_key(k)}
    quantizers = {k: v for k, v in state.items() if is_quantizer_key(k)}
    return plain, quantizers


def load_quantizers(model: nn.Module, folder: str | Path) -> nn.Module:
    """Restore the fake-quant transformer of a QAT folder onto ``model`` (its plain weights already loaded)."""
    from safetensors.torch import load_file

    path = Path(folder) / QUANTIZERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a QAT model folder: it has no {QUANTIZERS_FILE} "
                                "(make one with `qcraft-wm train --init-from MODEL --qat`)")
    quantize_transformer(model, None)
    modules = dict(model.named_modules())
    for key, value in load_file(str(path)).items():
        owner = modules.get(key.removesuffix("._amax"))
        if not key.endswith("._amax") or owner is None or not hasattr(owner, "amax"):
            raise ValueError(f"{path} does not match the model's quantizers: {key} has no quantizer")
        owner.amax = value  # ModelOpt's setter registers the range buffer of an uncalibrated quantizer
    unset = [name for name, module in model.transformer.named_modules()
             if name.endswith("_quantizer") and module.is_enabled and module.amax is None]
    if unset:
        raise ValueError(f"{path} has no range for quantizer(s) {', '.join(unset[:3])}")
    return model.eval()


def export_transformer_qdq(model: nn.Module, latent: torch.Tensor, path: str | Path) -> float:
    """The fake-quant transformer as ONNX with symmetric int8 QuantizeLinear/DequantizeLinear pairs.

    That is the form TensorRT builds explicit INT8 engines from. ModelOpt's CPU
    fake quant is not traceable by torch.export, so this uses the TorchScript
    exporter (opset 17). Returns the relative L2 distance between onnxruntime on
    the file and the torch fake-quant module (first output).
    """
    import numpy as np
    import onnxruntime as ort

    transformer = model.transformer.eval()
    latent = latent.detach()
    torch.onnx.export(transformer, (latent,), str(path), dynamo=False, opset_version=17,
                      input_names=["latent"], output_names=["tokens", "anchors"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    produced = session.run(None, {"latent": latent.numpy()})[0]
    with torch.no_grad():
        reference = transformer(latent)[0].numpy()
    return float(np.linalg.norm(produced - reference) / max(np.linalg.norm(reference), 1e-12))
