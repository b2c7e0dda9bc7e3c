"""The checks this project runs when a session is lent a GPU (H100/H200): one short script.

- sparse vs dense attention on CUDA, fp32 and fp16, n = 256 ... 16384 (time, peak memory);
- one 16-frame window through the lite and base models (random weights: latency does
  not depend on them) in fp32, fp16 and bf16 at batch 1, per part (stem per frame,
  window = temporal bottleneck + transformer + heads).
Prints JSON (and writes it to $OUT/gpu.json when OUT is set). Needs only torch (+ PyYAML if present).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from qcraft_world_model.bench.attention import bench_attention  # noqa: E402
from qcraft_world_model.model.config import WorldModelConfig  # noqa: E402
from qcraft_world_model.model.world_model import WorldModel  # noqa: E402


def preset(name: str) -> WorldModelConfig:
    try:
        return WorldModelConfig.preset_config(name)
    except ImportError:  # no PyYAML on the machine: the presets are flat key: value files
        values = {}
        for line in (Path(__file__).resolve().parents[1] / "config" / "models" / f"{name}.yaml").read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                key, value = (part.strip() for part in line.split(":", 1))
                values[key] = json.loads(value) if value[0] in "[0123456789" else value
        return WorldModelConfig.from_dict(values)


def time_call(call, repeats: int = 30) -> dict[str, float]:  # noqa: ANN001
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))]}


def bench_models() -> list[dict]:
    results = []
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    for name in ("lite", "base"):
        config = preset(name)
        for label, dtype in dtypes.items():
            torch.manual_seed(0)
            model = WorldModel(config).cuda().to(dtype).eval()
            window = torch.randint(0, 256, (1, config.cameras, config.window, 3, config.image_size,
                                            config.image_size), dtype=torch.uint8, device="cuda")
            with torch.inference_mode():
                stem = model.stem(window).to(dtype)
                newest, previous = window[:, :, -1], window[:, :, -2]
                frame = window[:, :, -1]

                def run_window() -> None:
                    model.forward_window(stem, newest, previous)

                def run_stem() -> None:
                    model.stem(frame)

                torch.cuda.reset_peak_memory_stats()
                part_window = time_call(run_window)
                peak = torch.cuda.max_memory_allocated() / 2**20
                part_stem = time_call(run_stem)
            results.append({"preset": name, "backend": "torch-cuda", "precision": label,
                            "window": part_window, "stem_per_frame": part_stem, "peak_mem_mb": peak,
                            "parameters": model.parameter_count(), "cameras": config.cameras})
    return results


def main() -> None:
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "attention_fp32": bench_attention(sizes=(256, 1024, 4096, 16384), device="cuda", dtype="fp32"),
              "attention_fp16": bench_attention(sizes=(256, 1024, 4096, 16384), device="cuda", dtype="fp16"),
              "models": bench_models()}
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
