"""A training run's settings: a torch-free dataclass, so the CLI takes its defaults from here
without importing the trainer (and torch) for every command."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "lite"
    data: str = "out/data/train"
    out: str = "out/train/lite"
    steps: int = 3000
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    seed: int = 0
    log_every: int = 20
    checkpoint_every: int = 200
    max_clips: int | None = None
    #: Stop (resumably) after this many seconds of this run; None: run to ``steps``.
    time_budget_s: float | None = None
    #: Start from this trained model folder instead of random weights (fine-tuning, QAT). A model of
    #: another head layout gives its trunk (stem, temporal bottleneck, transformer, frame decoder).
    init_from: str | None = None
    #: Quantization-aware training: fake INT8 quantizers in the transformer (ModelOpt), calibrated on
    #: the first ``calibration_clips`` clips, trained through; writes quantizers.safetensors too.
    qat: bool = False
    calibration_clips: int = 32
    #: Parts (WorldModel attribute names, e.g. "stem", "temporal") kept at their ``init_from`` weights:
    #: fine-tuning a new head on a trained trunk without paying for the trunk's backward pass.
    freeze: tuple[str, ...] = ()
    #: Strength of the per-clip photometric jitter (exposure, white balance, gamma, contrast, sensor
    #: noise; ``augment.PhotometricJitter``); 0: the frames as rendered.
    photometric: float = 0.0
    #: Strength of the per-clip lens zoom (``augment.LensZoom``: magnified by 1 to 1.15 in x and y
    #: independently, cropped back, the cameras' intrinsics with it); 0: the lens as rendered.
    zoom: float = 0.0
