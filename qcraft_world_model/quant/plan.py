"""The precision plan: which part of the world model runs in which precision.

The seed's design: INT8 weights and activations in the transformer (per-channel
weights, per-tensor activations), the temporal encoder and the decoders in FP16.
CPUs here have no FP16 arithmetic worth using (no AMX-FP16; FP16 convolutions
are slower than FP32), so "FP16" means bfloat16 on CPU. One plan drives every
backend.
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
    def named(cls, precision: str, device: str = "cpu") -> PrecisionPlan:
        """``fp32``, ``bf16``, ``fp16``, or ``mixed-int8`` (INT8 transformer, half precision elsewhere)."""
        half = "fp16" if device.startswith("cuda") else "bf16"
        if precision in ("fp32", "bf16", "fp16"):
            return cls(**{part: precision for part in PARTS})
        if precision == "mixed-int8":
            return cls(stem=half, temporal=half, transformer="int8", frame_decoder=half, agent_head=half)
        raise ValueError(f"unknown precision {precision!r}; use fp32, bf16, fp16 or mixed-int8")

    def dtype(self, part: str) -> torch.dtype:
        """The floating dtype a part computes in (INT8 parts take and return fp32 around their kernels)."""
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                "int8": torch.float32}[getattr(self, part)]
