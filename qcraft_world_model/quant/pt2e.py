"""Static INT8 for the transformer on x86 CPUs: PT2E with the X86 Inductor quantizer.

torch.export captures the transformer, the quantizer inserts observers
(per-channel symmetric weights, per-tensor affine activations), calibration
runs real latents through it, and conversion leaves quantize/dequantize pairs
that Inductor fuses into oneDNN u8 x s8 kernels (AMX or VNNI). On this CPU it
was the only INT8 path faster than FP32 (docs/precision.md).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import torch
from torch import nn


def x86_quantizer(only: str | None = None, keep_float: Sequence[str] = ()):  # noqa: ANN201 - torchao's X86InductorQuantizer
    """The X86 Inductor quantizer with its default config (per-channel symmetric weights, per-tensor
    affine activations) on every linear but those named in ``keep_float`` (left in floating point:
    the layers the per-layer sensitivity table puts first, as TensorRT and ModelOpt users exclude
    layers), or only on the module named ``only``."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86

    quantizer = x86.X86InductorQuantizer()
    config = x86.get_default_x86_inductor_quantization_config()
    if only is None:
        quantizer.set_global(config)
        for name in keep_float:
            quantizer.set_module_name_qconfig(name, None)
    else:
        quantizer.set_module_name_qconfig(only, config)
    return quantizer


def check_keep_float(module: nn.Module, keep_float: Sequence[str]) -> tuple[str, ...]:
    """``keep_float`` as a tuple, each name a linear of ``module``: a misspelt name would otherwise
    leave that layer quantized without a word."""
    linears = {name for name, sub in module.named_modules() if isinstance(sub, nn.Linear)}
    unknown = [name for name in keep_float if name not in linears]
    if unknown:
        raise ValueError(f"not linears of the transformer: {', '.join(unknown)} (its linears: "
                         f"{', '.join(sorted(linears))})")
    return tuple(keep_float)


def quantize_pt2e(module: nn.Module, calibration: Iterable[torch.Tensor], quantizer=None,  # noqa: ANN001
                  keep_float: Sequence[str] = ()) -> torch.fx.GraphModule:
    """A statically INT8-quantized copy of ``module`` calibrated on ``calibration`` inputs (fp32).

    ``quantizer``: from ``x86_quantizer``; default: every linear but those named in ``keep_float``.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    samples = list(calibration)
    if not samples:
        raise ValueError("INT8 calibration needs at least one input")
    if quantizer is None:
        quantizer = x86_quantizer(keep_float=check_keep_float(module, keep_float))
    exported = torch.export.export(module.eval(), (samples[0],)).module()
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for sample in samples:
            prepared(sample)
    return convert_pt2e(prepared)


def transformer_latents(model: nn.Module, windows: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The transformer's inputs (FP32 latents) for input windows (``ClipTensors.windows``): what INT8
    ranges are calibrated on, and what exports are checked with."""
    with torch.no_grad():
        return [model.temporal(model.stem(window)) for window in windows]


def int8_weight_bytes(quantized: torch.fx.GraphModule) -> tuple[int, int]:
    """(bytes of INT8 weights, bytes of floating-point tensors) that the converted graph uses.

    Only tensors the graph reads count: the GraphModule may still hold the
    original fp32 parameters as attributes no node refers to. The attention masks
    are constants, not weights, and are left out.
    """
    int8, floating = 0, 0
    seen: set[int] = set()
    attrs = [functools.reduce(getattr, n.target.split("."), quantized)
             for n in quantized.graph.nodes if n.op == "get_attr" and "mask" not in n.target]
    for tensor in attrs:
        if not isinstance(tensor, torch.Tensor) or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = tensor.numel() * tensor.element_size()
        if tensor.dtype == torch.int8:
            int8 += size
        elif tensor.is_floating_point():
            floating += size
    return int8, floating


def export_qdq_onnx(quantized: torch.fx.GraphModule, example: torch.Tensor, path: str) -> float:
    """Export a PT2E-quantized module to ONNX with explicit QuantizeLinear/DequantizeLinear nodes.

    Returns the relative L2 distance between onnxruntime's output on the file and
    the torch fake-quant module's (its first output). The dynamo exporter turns
    PT2E's quantize/dequantize ops into Q/DQ pairs. Activations use X86's
    asymmetric uint8; TensorRT wants symmetric int8 activations, which is
    ModelOpt's convention.
    """
    import numpy as np
    import onnxruntime as ort

    example = example.detach()
    torch.onnx.export(quantized, (example,), path, dynamo=True, opset_version=18, verbose=False)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    produced = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    with torch.no_grad():
        reference = quantized(example)[0].numpy()
    return float(np.linalg.norm(produced - reference) / max(np.linalg.norm(reference), 1e-12))
