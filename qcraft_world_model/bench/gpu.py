"""``qcraft-wm bench gpu``: the checks this project runs when a session is lent a GPU (H100/H200), in one run.

- sparse vs dense attention on CUDA, fp32 and fp16, n = 256 ... 16384 (time, peak memory);
- one 16-frame window through the lite and base models (random weights: latency does not depend
  on them) in fp32, fp16 and bf16 at batch 1, per part (stem per frame; window = temporal
  bottleneck + transformer + heads).

The GPU machine gets a copy of the source tree, not an install, and may lack PyYAML: from the
repository root, ``python -m qcraft_world_model.cli bench gpu --json $OUT/gpu.json`` needs only torch.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from qcraft_world_model.bench.attention import bench_attention
from qcraft_world_model.model.config import WorldModelConfig, preset_dirs
from qcraft_world_model.model.world_model import WorldModel

ATTENTION_SIZES = (256, 1024, 4096, 16384)
PRESETS = ("lite", "base")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class GpuMissing(RuntimeError):
    """No CUDA device in this process: nothing to measure."""


def preset(name: str) -> WorldModelConfig:
    """A model preset; without PyYAML read as the flat ``key: value`` file it is."""
    try:
        return WorldModelConfig.preset_config(name)
    except ImportError:
        path = next(d / f"{name}.yaml" for d in preset_dirs() if (d / f"{name}.yaml").is_file())
        values = {}
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                key, value = (part.strip() for part in line.split(":", 1))
                values[key] = json.loads(value) if value[0] in "[0123456789" else value
        return WorldModelConfig.from_dict(values)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(call: Callable[[], Any], device: str, repeats: int = 30) -> dict[str, float]:
    """Median and p99 ms of ``call`` after 5 warm-up calls, each timed to the end of its kernels."""
    for _ in range(5):
        call()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))]}


def bench_models(device: str = "cuda", presets: tuple[str, ...] = PRESETS, precisions: tuple[str, ...] = tuple(DTYPES),
                 repeats: int = 30, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Per preset and precision: one window (bottleneck + transformer + heads) and the stem of one frame."""
    results = []
    cuda = device.startswith("cuda")
    for name in presets:
        config = preset(name)
        for label in precisions:
            dtype = DTYPES[label]
            torch.manual_seed(0)
            model = WorldModel(config).to(device=device, dtype=dtype).eval()
            window = torch.randint(0, 256, (1, config.cameras, config.window, 3, *config.size_hw), dtype=torch.uint8,
                                   device=device)
            with torch.inference_mode():
                stem = model.stem(window).to(dtype)
                newest, previous = window[:, :, -1], window[:, :, -2]
                frame = window[:, :, -1]
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                part_window = time_call(lambda: model.forward_window(stem, newest, previous), device, repeats)
                peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
                part_stem = time_call(lambda: model.stem(frame), device, repeats)
            results.append({"preset": name, "backend": f"torch-{device.split(':')[0]}", "precision": label,
                            "window": part_window, "stem_per_frame": part_stem, "peak_mem_mb": peak,
                            "parameters": model.parameter_count(), "cameras": config.cameras})
            if progress is not None:
                progress(len(results), len(presets) * len(precisions))
    return results


def bench_gpu(device: str = "cuda", sizes: tuple[int, ...] = ATTENTION_SIZES, presets: tuple[str, ...] = PRESETS,
              precisions: tuple[str, ...] = tuple(DTYPES), repeats: int = 30,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Attention (fp32, fp16; skipped for no ``sizes``) and the models on ``device``; GpuMissing without CUDA
    when ``device`` is CUDA. ``progress(done, total)`` after each attention run and each model case."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GpuMissing(f"no CUDA device here (torch {torch.__version__}, torch.cuda.is_available() is False)")
    total = (2 if sizes else 0) + len(presets) * len(precisions)
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
                              "torch": torch.__version__}
    if progress is not None:
        progress(0, total)
    if sizes:
        for done, dtype in enumerate(("fp32", "fp16"), start=1):
            report[f"attention_{dtype}"] = bench_attention(sizes=sizes, device=device, dtype=dtype)
            if progress is not None:
                progress(done, total)
    offset = 2 if sizes else 0
    report["models"] = bench_models(device, presets, precisions, repeats,
                                    None if progress is None else lambda done, _: progress(offset + done, total))
    return report
