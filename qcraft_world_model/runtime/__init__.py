"""Inference backends behind one interface (``WorldModelRunner``): torch on CPU/CUDA in fp32, bf16,
fp16, and mixed INT8 (PT2E transformer + half-precision encoder/decoders)."""
