"""``qcraft-wm bench attention``: sparse (window + anchors) vs dense masked attention.

The dense version computes the same attention with one n x n mask: the
reference the sparse one is tested against, and what it is meant to avoid.
Each case runs in a fresh process on CPU so its peak memory (max RSS above a
baseline process holding the same inputs) is its own; on CUDA the allocator's
peak is used.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from qcraft_world_model.model.attention import SparseAttention


def dense_masked_attention(attn: SparseAttention, x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """The sparse module's attention computed densely over all n + A tokens with an explicit mask."""
    b, n, dim = x.shape
    a = anchors.shape[1]
    h = attn.heads
    q, k, v = attn.qkv(torch.cat([x, anchors], 1)).view(b, n + a, 3, h, dim // h).permute(2, 0, 3, 1, 4)
    i = torch.arange(n + a, device=x.device)
    seq_i, seq_j = i.view(-1, 1) < n, i.view(1, -1) < n
    band = (i.view(-1, 1) - i.view(1, -1)).abs() <= attn.window // 2
    mask = (seq_i & seq_j & band) | (seq_i & ~seq_j) | ~seq_i
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.out(out.transpose(1, 2).reshape(b, n + a, dim))


def run_case(impl: str, n: int, window: int, anchors: int, dim: int, heads: int, repeats: int,
             device: str, dtype: str, measure: bool = True) -> dict[str, Any]:
    """Time one implementation at one size (in this process)."""
    torch.manual_seed(0)
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    attn = SparseAttention(dim, heads, window, anchors, n).to(device=device, dtype=torch_dtype).eval()
    x = torch.randn(1, n, dim, device=device, dtype=torch_dtype)
    g = torch.randn(1, anchors, dim, device=device, dtype=torch_dtype)
    if not measure:
        return {}
    call = (lambda: attn(x, g)) if impl == "sparse" else (lambda: dense_masked_attention(attn, x, g))
    cuda = device.startswith("cuda")
    with torch.inference_mode():
        for _ in range(3):
            call()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    result = {"impl": impl, "n": n, "window": window, "anchors": anchors, "dim": dim, "heads": heads,
              "dtype": dtype, "median_ms": statistics.median(times) * 1e3, "repeats": repeats}
    if cuda:
        result["peak_mem_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return result


def _child(args: list[str]) -> None:
    """Entry for one measured case in a fresh process: prints JSON with max RSS."""
    impl, n, window, anchors, dim, heads, repeats, measure = args[0], *map(int, args[1:7]), args[7] == "1"
    result = run_case(impl, n, window, anchors, dim, heads, repeats, "cpu", "fp32", measure)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def bench_attention(sizes: tuple[int, ...] = (256, 1024, 4096), window: int = 128, anchors: int = 4,
                    dim: int = 256, heads: int = 8, repeats: int = 20, device: str = "cpu",
                    dtype: str = "fp32") -> dict[str, Any]:
    """Sparse vs dense at each size; on CPU each case in its own process for honest peak memory."""
    results = []
    for n in sizes:
        for impl in ("sparse", "dense"):
            if device == "cpu":
                def child(measure: bool) -> dict[str, Any]:
                    out = subprocess.run([sys.executable, "-m", "qcraft_world_model.bench.attention", impl, str(n),
                                          str(window), str(anchors), str(dim), str(heads), str(repeats),
                                          "1" if measure else "0"], capture_output=True, text=True, check=True)
                    return json.loads(out.stdout.strip().splitlines()[-1])
                baseline, measured = child(False), child(True)
                measured["peak_mem_mb"] = max(0.0, measured.pop("max_rss_mb") - baseline["max_rss_mb"])
                results.append(measured)
            else:
                results.append(run_case(impl, n, window, anchors, dim, heads, repeats, device, dtype))
    by = {(r["impl"], r["n"]): r["median_ms"] for r in results}
    growth = {impl: by[(impl, sizes[-1])] / by[(impl, sizes[0])] for impl in ("sparse", "dense")}
    crossover = next((n for n in sizes if by[("sparse", n)] < by[("dense", n)]), None)
    return {"bench": "attention", "results": results, "device": describe_device(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            f"growth_{sizes[-1]}_over_{sizes[0]}": growth, "sparse_faster_from_n": crossover}


def describe_device(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    flags = []
    try:
        with open("/proc/cpuinfo") as handle:
            line = next(line for line in handle if line.startswith("flags"))
            flags = sorted(f for f in line.split(":")[1].split() if f.startswith(("avx512_vnni", "amx", "avx2")))
    except (OSError, StopIteration):
        pass
    return f"cpu {platform.processor() or platform.machine()} ({' '.join(flags)})"


if __name__ == "__main__":
    _child(sys.argv[1:])
