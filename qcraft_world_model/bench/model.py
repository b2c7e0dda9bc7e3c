"""``qcraft-wm bench model``: latency per part and weight bytes of each precision plan, in one run.

Batch 1, one 16-frame window, the shipped model's weights, torch on this CPU
(CUDA when asked and present). Parts: the stem for one new frame (what every
incoming frame costs), the temporal encoder over the cached window, the
transformer, the heads (frame decoder + agent head), and the whole window
(temporal bottleneck + transformer + heads: what every prediction costs).
``onnxruntime-fp32``, ``openvino-fp32`` and ``openvino-bf16`` time the FP32 ONNX export in those
runtimes (stem and window only: the export is one graph per part). Time one runtime per process:
onnxruntime's threads spin after a call and slow the torch code that runs next (measured); how
OpenVINO's thread pool sits next to torch's has not been measured.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from qcraft_world_model.bench.attention import describe_device
from qcraft_world_model.quant.pt2e import int8_weight_bytes
from qcraft_world_model.runtime.mixed import planned_model
from qcraft_world_model.runtime.model_folder import load_model


def _time(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    for _ in range(5):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))]}


def _interleaved(calls: dict[str, Callable[[], Any]], rounds: int, block: int = 25) -> dict[str, float]:
    """Median ms of each call, timed in alternating blocks of ``block`` calls, so that drifting machine
    load hits all alike. Blocks, not single calls: right after an AMX INT8 call the core runs AVX-512
    FP32 code slower for a while (measured: FP32 eager 45 % slower when every call alternates), which
    would flatter INT8; the first call of each block is discarded."""
    for call in calls.values():
        for _ in range(5):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(max(1, rounds // block)):
        for name, call in calls.items():
            for index in range(block + 1):
                start = time.perf_counter()
                call()
                if index:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def transformer_int8_vs_fp32(transformer: torch.nn.Module, int8: torch.nn.Module, latent: torch.Tensor,
                             rounds: int) -> dict[str, float]:
    """The INT8 transformer against FP32 eager on the same input, in alternating blocks (issue 5's 1.5x
    criterion: both in one run)."""
    with torch.inference_mode():
        medians = _interleaved({"fp32_eager": lambda: transformer(latent), "int8": lambda: int8(latent)}, rounds)
    return {"fp32_eager_median_ms": medians["fp32_eager"], "int8_median_ms": medians["int8"],
            "speedup": medians["fp32_eager"] / medians["int8"], "tokens": latent.shape[1], "dim": latent.shape[2],
            "rounds": rounds}


def _random_weight_transformer_ab(preset: str, rounds: int) -> dict[str, Any]:
    """The same comparison for another preset's transformer with random weights (speed does not depend on
    the values): how the INT8 gain grows with width."""
    from qcraft_world_model.model import WorldModel, WorldModelConfig
    from qcraft_world_model.quant.pt2e import quantize_pt2e

    config = WorldModelConfig.preset_config(preset)
    torch.manual_seed(0)
    transformer = WorldModel(config).transformer.eval()
    latents = [torch.randn(1, config.tokens, config.dim) for _ in range(8)]
    int8 = torch.compile(quantize_pt2e(transformer, latents))
    return {"preset": preset, "weights": "random", **transformer_int8_vs_fp32(transformer, int8, latents[0], rounds)}


def _float_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def bench_model(model_dir: str, calibration: str | None, precisions: tuple[str, ...] = ("fp32", "bf16", "mixed-int8"),
                repeats: int = 50, ab_presets: tuple[str, ...] = ("base",)) -> dict[str, Any]:
    """Each precision plan of the model: part latencies, weight bytes, peak RSS; with mixed-int8 also the
    INT8 transformer against FP32 eager, interleaved, for this model and for ``ab_presets`` (random weights)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # fold INT8 weights into the compiled graph
    reference = load_model(model_dir)
    config = reference.config
    torch.manual_seed(0)
    window = torch.randint(0, 256, (1, config.cameras, config.window, 3, *config.size_hw),
                           dtype=torch.uint8)
    results: list[dict[str, Any]] = []
    ab: list[dict[str, Any]] = []
    for precision in precisions:
        if precision == "onnxruntime-fp32":
            results += _bench_onnxruntime(reference, window, repeats)
            continue
        if precision.startswith("openvino-"):
            results += _bench_openvino(reference, window, repeats, precision.removeprefix("openvino-"))
            continue
        model = reference if precision == "fp32" else planned_model(reference, precision, calibration, folder=model_dir)
        with torch.inference_mode():
            stem_tokens = model.stem(window)
            newest, previous = window[:, :, -1], window[:, :, -2]
            latent = (reference.temporal(reference.stem(window))).to(
                torch.bfloat16 if precision == "bf16" else torch.float32)
            half = model.plan.dtype("temporal") if hasattr(model, "plan") else torch.float32
            tokens, anchors = model.transformer(latent)
            parts = {
                "stem": _time(lambda: model.stem(window[:, :, -1:]), repeats),
                "temporal": _time(lambda: model.temporal(stem_tokens.to(half)), repeats),
                "transformer": _time(lambda: model.transformer(latent), repeats),
                "heads": _time(lambda: model.heads(tokens, anchors, newest, previous), repeats),
                "window": _time(lambda: model.forward_window(stem_tokens, newest, previous), repeats),
                "window_agents": _time(lambda: model.forward_window(stem_tokens, newest, previous, frames=False),
                                       repeats),
            }
        transformer = model.transformer
        if precision == "mixed-int8":
            ab += [{"preset": config.preset, "weights": model_dir,
                   **transformer_int8_vs_fp32(reference.transformer, transformer, latent, 8 * repeats)}]
            ab += [_random_weight_transformer_ab(preset, 2 * repeats) for preset in ab_presets]
            graph = getattr(transformer, "_orig_mod", transformer)
            int8, floating = int8_weight_bytes(graph)
            transformer_bytes = int8 + floating
        else:
            transformer_bytes = _float_bytes(transformer)
        # What ran around the INT8 transformer (fp32 on a CPU without native bf16), beside the plan's name.
        ran = precision + getattr(getattr(model, "plan", None), "suffix", "")
        for part, timing in parts.items():
            results.append({"backend": "torch", "precision": precision, "plan": ran, "part": part, **timing})
        results.append({"backend": "torch", "precision": precision, "part": "weights",
                        "transformer_weight_bytes": transformer_bytes,
                        "transformer_weight_ratio_vs_fp32": transformer_bytes / _float_bytes(reference.transformer),
                        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    by = {(r["precision"], r["part"]): r.get("median_ms") for r in results}
    speedups = {p: {part: by[("fp32", part)] / by[(p, part)] for part in ("stem", "temporal", "transformer", "heads",
                                                                        "window", "window_agents")
                    if by.get((p, part)) and by.get(("fp32", part))}
                for p in precisions if p != "fp32"}
    return {"bench": "model", "model": model_dir, "preset": config.preset, "results": results,
            "speedup_vs_fp32_eager": speedups, "transformer_int8_vs_fp32_interleaved": ab, "device": describe_device("cpu"), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _bench_onnxruntime(model: torch.nn.Module, window: torch.Tensor, repeats: int) -> list[dict[str, Any]]:
    """The FP32 ONNX export in onnxruntime (CPU): stem and window parts."""
    import tempfile
    from pathlib import Path

    from qcraft_world_model.runtime.onnx_export import OnnxWorldModel, export_onnx

    with tempfile.TemporaryDirectory() as folder:
        export_onnx(model, Path(folder))
        runner = OnnxWorldModel(folder, model.config, threads=torch.get_num_threads())
        stem_tokens = runner.stem(window)
        newest, previous = window[:, :, -1], window[:, :, -2]
        parts = {"stem": _time(lambda: runner.stem(window[:, :, -1]), repeats),
                 "window": _time(lambda: runner.forward_window(stem_tokens, newest, previous), repeats),
                 "window_agents": _time(lambda: runner.forward_window(stem_tokens, newest, previous, frames=False),
                                        repeats)}
    return [{"backend": "onnxruntime", "precision": "onnxruntime-fp32", "part": part, **timing}
            for part, timing in parts.items()]


def _bench_openvino(model: torch.nn.Module, window: torch.Tensor, repeats: int, precision: str
                    ) -> list[dict[str, Any]]:
    """The FP32 ONNX export compiled by OpenVINO (CPU) at ``precision`` (fp32, or bf16 through its
    inference-precision hint), compiled afresh into a temporary cache: stem and window parts, the
    compile time, and the precision OpenVINO actually compiled (fp32 where the CPU has no native bf16:
    such rows are not bf16 numbers) with its relative L2 against torch fp32."""
    import json
    import tempfile
    from pathlib import Path

    from qcraft_world_model.runtime.openvino_backend import OpenVinoBackend, check_precision

    check_precision(precision)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        backend = OpenVinoBackend(model, precision, Path(folder), threads=torch.get_num_threads())
        compile_s = time.perf_counter() - start
        errors = json.loads((backend.cache_folder / "key.json").read_text())["relative_l2_vs_torch_fp32"]
        runner = backend.runner
        stem_tokens = runner.stem(window)
        newest, previous = window[:, :, -1], window[:, :, -2]
        parts = {"stem": _time(lambda: runner.stem(window[:, :, -1]), repeats),
                 "window": _time(lambda: runner.forward_window(stem_tokens, newest, previous), repeats),
                 "window_agents": _time(lambda: runner.forward_window(stem_tokens, newest, previous, frames=False),
                                        repeats)}
    label = f"openvino-{precision}"
    common = {"backend": "openvino", "precision": label, "compiled_precision": backend.precision}
    return [*({**common, "part": part, **timing} for part, timing in parts.items()),
            {**common, "part": "compile", "compile_s": compile_s, "relative_l2_vs_torch_fp32": errors}]
