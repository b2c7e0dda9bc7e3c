"""``qcraft-wm train``: seeded, resumable training of a preset on a clip dataset.

Writes into the output folder: ``checkpoint.pt`` (everything needed to resume,
replaced atomically every ``checkpoint_every`` steps; tensors and plain values
only, read back with ``weights_only`` so a planted file cannot run code), ``log.csv`` (losses per
logged step), and at the end ``model.safetensors`` + ``config.json`` (what
inference loads) and ``curves.png``. Multi-GPU/multi-process with torchrun:
each rank draws its own batches; rank 0 logs and saves.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qcraft_world_model.model.config import WorldModelConfig
from qcraft_world_model.model.losses import AGENT_LOSSES, LossWeights, total_loss
from qcraft_world_model.model.world_model import WorldModel
from qcraft_world_model.data.clip_tensors import ClipTensors
from qcraft_world_model.runtime.model_folder import save_model
from qcraft_world_model.train.agent_targets import batch_targets
from qcraft_world_model.train.augment import LensZoom, PhotometricJitter
from qcraft_world_model.train.config import TrainConfig

LOG_FIELDS = ("step", "seconds", "lr", "total", "frames", *AGENT_LOSSES)
#: What a checkpoint holds (see ``_save_checkpoint``).
CHECKPOINT_KEYS = ("model", "optimizer", "generator", "step", "elapsed", "train_config")


class CheckpointError(ValueError):
    """A run folder's checkpoint.pt cannot be resumed from: not this tool's, damaged, or another run's."""


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), world


def _same(value: Any) -> Any:
    """Checkpoint values compare equal to the config's whatever JSON/pickle made of tuples."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(config: TrainConfig, progress: bool = True, data: ClipTensors | None = None) -> dict[str, Any]:
    """Train (or resume) and return a summary; the model files are written on completion.

    ``data`` overrides loading ``config.data`` (clips already in memory).
    """
    rank, world = _distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model_config = WorldModelConfig.preset_config(config.preset)
    if model_config.agent_motion != "ego_relative":
        raise ValueError(f"preset {config.preset}: agent_motion {model_config.agent_motion!r} is how older model "
                         "folders are read; training targets are relative to the ego (agent_motion: ego_relative)")
    checkpoint = out / "checkpoint.pt"
    # Read before the data: a checkpoint that cannot be resumed fails at once, not after loading clips.
    state = load_checkpoint(checkpoint, config, device) if checkpoint.is_file() else None
    data = data if data is not None else ClipTensors.load(config.data, model_config, config.max_clips)

    torch.manual_seed(config.seed)
    model = _initial_model(config, model_config, data).to(device)
    for part in config.freeze:
        if not isinstance(getattr(model, part, None), torch.nn.Module):
            raise ValueError(f"--freeze {part}: the model has no part of that name")
        getattr(model, part).requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank)
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, elapsed = state["step"], state["elapsed"]
    trainable = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    log_path = out / "log.csv"
    new_log = not log_path.is_file() or step == 0
    if not new_log and rank == 0:
        _truncate_log(log_path, step)
    log_file = log_path.open("w" if new_log else "a", newline="") if rank == 0 else None
    writer = csv.DictWriter(log_file, LOG_FIELDS) if log_file else None
    if writer and new_log:
        writer.writeheader()
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=config.steps, initial=step, desc=f"train {config.preset}", unit="step", dynamic_ncols=True)

    weights = LossWeights()
    jitter = PhotometricJitter(strength=config.photometric)
    lens = LensZoom(strength=config.zoom)
    run_start = time.perf_counter()
    model.train()
    running: dict[str, float] = {}
    while step < config.steps:
        if config.time_budget_s is not None and time.perf_counter() - run_start > config.time_budget_s:
            break
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.randint(len(data), (config.batch,), generator=generator)
        flip = torch.rand(config.batch, generator=generator) < 0.5
        batch = data.batch(index, flip)
        if config.photometric > 0:
            window, future = jitter(batch.window, batch.future, generator)
            batch = replace(batch, window=window, future=future)
        if config.zoom > 0:
            window, future, cameras = lens(batch.window, batch.future, batch.cameras, generator)
            batch = replace(batch, window=window, future=future, cameras=cameras)
        targets = batch_targets(batch, model_config, data.past - 1).to(device)
        output = trainable(batch.window.to(device))
        loss, parts = total_loss(output.frames, batch.future.to(device), output.agents, targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        for name, value in {"total": float(loss.detach()), **parts}.items():
            running[name] = running.get(name, 0.0) + value
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}", frames=f"{parts['frames']:.4f}")
        if writer and step % config.log_every == 0:
            now = elapsed + time.perf_counter() - run_start
            writer.writerow({"step": step, "seconds": round(now, 1), "lr": lr,
                             **{k: round(v / config.log_every, 5) for k, v in running.items()}})
            log_file.flush()
            running = {}
        if rank == 0 and (step % config.checkpoint_every == 0 or step == config.steps):
            _save_checkpoint(checkpoint, model, optimizer, generator, step,
                             elapsed + time.perf_counter() - run_start, config)
    elapsed += time.perf_counter() - run_start
    if bar:
        bar.close()
    if log_file:
        log_file.close()
    summary = {"step": step, "steps": config.steps, "seconds": elapsed, "finished": step >= config.steps,
               "parameters": model.parameter_count(), "train_clips": len(data), "config": asdict(config)}
    if rank == 0:
        _save_checkpoint(checkpoint, model, optimizer, generator, step, elapsed, config)
        if step >= config.steps:
            save_model(out, model, model_config, summary)
            plot_curves(log_path, out / "curves.png")
    return summary


def _initial_model(config: TrainConfig, model_config: WorldModelConfig, data: ClipTensors) -> WorldModel:
    """Random weights, or ``init_from``'s; with the QAT quantizers inserted and calibrated when asked."""
    model = WorldModel(model_config)
    if config.init_from:
        load_trunk(model, config.init_from)
    if config.qat:
        from qcraft_world_model.quant.modelopt_qat import quantize_transformer

        quantize_transformer(model, data.windows(config.calibration_clips))
    return model


#: The parts of the model a differently-headed model can hand over.
TRUNK = ("stem.", "temporal.", "transformer.", "frame_decoder.")


def load_trunk(model: WorldModel, folder: str | Path) -> list[str]:
    """Load ``folder``'s weights into ``model``: all of them when the layouts agree, else every trunk
    weight (which must all fit); returns the names left at their initial values."""
    from safetensors.torch import load_file

    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"--init-from {folder}: no model.safetensors there")
    source = load_file(str(path))
    own = model.state_dict()
    if "temporal.position" in source and (Path(folder) / "config.json").is_file():
        from qcraft_world_model.runtime.model_folder import read_model_config

        source["temporal.position"] = _resampled_positions(source["temporal.position"],
                                                           read_model_config(folder).grid_hw, model.config.grid_hw)
    fits = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    trunk = [k for k in own if k.startswith(TRUNK)]
    missing = [k for k in trunk if k not in fits]
    if missing:
        raise ValueError(f"--init-from {folder}: its trunk does not fit preset {model.config.preset!r} "
                         f"({len(missing)} weights differ, e.g. {missing[0]})")
    model.load_state_dict(fits, strict=False)
    return [k for k in own if k not in fits]


def _resampled_positions(position: torch.Tensor, grid_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    """The temporal bottleneck's position embedding (1, C, gh*gw, dim) resampled onto another token grid.

    Every other trunk weight is a convolution, a GRU or a transformer layer that does not
    depend on the grid, so a model trained at one frame size hands over its whole trunk to
    another (a 128x128 model to a 256x128 one) once its positions are stretched bilinearly.
    """
    if tuple(grid_hw) == tuple(to_hw) or position.shape[2] != grid_hw[0] * grid_hw[1]:
        return position
    _, cameras, _, dim = position.shape
    grid = position[0].reshape(cameras, *grid_hw, dim).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=tuple(to_hw), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, cameras, to_hw[0] * to_hw[1], dim).contiguous()


def load_checkpoint(path: Path, config: TrainConfig, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The resumable state in ``path``, checked to be a checkpoint of this run.

    Read with ``weights_only``: unpickling a file in a run folder must not run
    code, whoever put it there. Raises CheckpointError (one line) for a file
    that is not this tool's checkpoint, a damaged one, or another run's.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:  # torch's message goes on to explain how to load it unsafely
        raise CheckpointError(f"{path} holds objects other than tensors and plain values, which are not loaded "
                              "(unpickling them could run code): not a checkpoint of qcraft-wm train; move it "
                              "away or use another --out") from err
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError) as err:  # damaged or not torch's
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path} is not a checkpoint qcraft-wm train can resume from ({first_line}); move it "
                              "away or use another --out") from err
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS) \
            or not isinstance(state["train_config"], dict):
        raise CheckpointError(f"{path} is not a checkpoint of qcraft-wm train (it lacks "
                              f"{', '.join(CHECKPOINT_KEYS)}); move it away or use another --out")
    previous = state["train_config"]
    defaults = TrainConfig()  # checkpoints from before a field existed hold its default
    keys = ("preset", "data", "init_from", "qat", "freeze", "photometric", "zoom")
    if any(_same(previous.get(key, getattr(defaults, key))) != _same(getattr(config, key)) for key in keys):
        described = ", ".join(f"{key} {previous.get(key, getattr(defaults, key))!r}" for key in keys)
        raise CheckpointError(f"{path} belongs to another run ({described}); use another --out")
    return state


def _truncate_log(log_path: Path, step: int) -> None:
    """Keep the log's rows up to the checkpoint's ``step``: a run stopped between checkpoints (killed,
    out of time) logged steps it will train again, and the curves would show them twice."""
    lines = log_path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if line.split(",", 1)[0].isdigit()
                        and int(line.split(",", 1)[0]) <= step]
    if len(kept) != len(lines):
        tmp = log_path.with_name(log_path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, log_path)


def _save_checkpoint(path: Path, model: WorldModel, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                     step: int, elapsed: float, config: TrainConfig) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # The config as JSON values: whatever field is added later, the checkpoint stays loadable with
    # weights_only (a field JSON cannot hold fails here, at saving, not at resuming).
    plain_config = json.loads(json.dumps(asdict(config)))
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "step": step, "elapsed": elapsed, "train_config": plain_config}, tmp)
    os.replace(tmp, path)


def plot_curves(log_path: Path, png: Path) -> None:
    """Loss curves from log.csv (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    steps = np.array([float(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, names, title in ((axes[0], ("total",), "total loss"), (axes[1], ("frames",), "frame MSE"),
                             (axes[2], ("heatmap", "offset", "depth", "velocity", "paths"), "agent losses")):
        for name in names:
            ax.plot(steps, [float(r[name]) for r in rows], label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
