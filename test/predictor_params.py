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
