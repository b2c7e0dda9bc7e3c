"""Parameter files the node tests start the predictor with (imported by the test modules)."""

#: One camera on ``{topic}``, the shipped model in fp32 on torch (deterministic, no calibration);
#: tests append YAML under ``model:`` (6 spaces) or new top-level sections (4 spaces).
ONE_CAMERA_FP32 = """/**:
  ros__parameters:
    cameras:
      names: [front]
      front:
        topic: {topic}
    model:
      backend: torch
      precision: fp32
"""


def tiny_model(preset: str, cameras: int = 1, head_dim: int | None = None) -> str:
    """A tiny model preset (32 px, one transformer block) for tests that need a model fast, not a good one."""
    return f"""
preset: {preset}
agent_motion: ego_relative
image_size: 32
cameras: {cameras}
window: 16
patch: 8
stem_dim: 16
dim: 32
depth: 1
heads: 2
mlp_ratio: 2.0
attention_window: 8
anchors: 4
future_frames: [2, 4]
modes: 2
path_steps: [5, 10, 15, 20, 25, 30]
classes: 8
decoder_dim: 16
""" + (f"head_dim: {head_dim}\n" if head_dim is not None else "")
