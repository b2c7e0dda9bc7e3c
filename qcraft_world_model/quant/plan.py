"""The precision plan: which part of the world model runs in which precision.

The seed's design: INT8 weights and activations in the transformer (per-channel
weights, per-tensor activations), the temporal encoder and the decoders in FP16.
CPUs here have no FP16 arithmetic worth using (no AMX-FP16; FP16 convolutions
are slower than FP32), so "FP16" means bfloat16 on CPU. One plan drives every
backend.

A CPU without native bf16 (no AVX-512 BF16 or AMX) emulates it: the bf16 heads
of the INT8 plan took 1.35 s per lite window on such a host (AVX2 EPYC), 35x
their fp32 time. There ``mixed-int8`` keeps the INT8 transformer and runs the
parts around it in fp32, as OpenVINO compiles f32 where bf16 is asked of such a
CPU; the backend's name says so (``mixed-int8+fp32``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: The world model's top-level parts, in data-flow order.
PARTS = ("stem", "temporal", "transformer", "frame_decoder", "agent_head")


@dataclass(frozen=True)
class PrecisionPlan:
    """Precision per part: "fp32", "fp16", "bf16" or "int8"."""

    stem: str = "fp32"
    temporal: str = "fp32"
    transformer: str = "fp32"
    frame_decoder: str = "fp32"
    agent_head: str = "fp32"

    @classmethod
    def named(cls, precision: str, device: str = "cpu", native_bf16: bool | None = None) -> PrecisionPlan:
        """``fp32``, ``bf16``, ``fp16``, or ``mixed-int8`` (INT8 transformer, half precision elsewhere:
        fp16 on CUDA, bf16 on a CPU with native bf16, else fp32). ``native_bf16``: None asks this CPU."""
        native = cpu_has_bf16() if native_bf16 is None and not device.startswith("cuda") else native_bf16
        half = "fp16" if device.startswith("cuda") else ("bf16" if native else "fp32")
        if precision in ("fp32", "bf16", "fp16"):
            return cls(**{part: precision for part in PARTS})
        if precision == "mixed-int8":
            return cls(stem=half, temporal=half, transformer="int8", frame_decoder=half, agent_head=half)
        raise ValueError(f"unknown precision {precision!r}; use fp32, bf16, fp16 or mixed-int8")

    @property
    def suffix(self) -> str:
        """``+fp32`` for an INT8 plan whose other parts run fp32 (a CPU without native bf16), else empty."""
        return "+fp32" if self.transformer == "int8" and self.stem == "fp32" else ""

    def dtype(self, part: str) -> torch.dtype:
        """The floating dtype a part computes in (INT8 parts take and return fp32 around their kernels)."""
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                "int8": torch.float32}[getattr(self, part)]


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX-BF16: where bf16 matmuls are native on this CPU."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next(line for line in handle if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
