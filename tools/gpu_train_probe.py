"""How far does the lite model get with more compute? A short training run on a lent GPU.

The shipped model trains for ~30 minutes on 2 CPU cores. This probe trains the
same preset, same losses, on a GPU for a fixed wall-clock budget at a larger
batch, and evaluates it on held-out clips, to tell "needs more compute" from
"needs a better model". Data travels as JPEG (q92) because a device call
carries at most 64 MiB.

    python tools/gpu_train_probe.py pack --train 700 --eval 100     # here: writes out/gpu_pack/
    python tools/gpu_train_probe.py run --seconds 300 --batch 32    # on the GPU machine: $OUT/gpu_probe.json

A script, not a ``qcraft-wm bench`` command: it trains (``train/``, which the benchmarks do not
import), it is a helper for a lent GPU machine (which gets a copy of this tree, not an install:
hence the path set-up below) rather than a measurement of the package, and ``pack`` exists only
for that machine's transfer limit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PACK = Path(__file__).resolve().parents[1] / "out" / "gpu_pack"
FIELDS = ("agents", "agent_valid", "agent_size", "agent_label", "agent_in_view", "ego_velocity")
PAST = 16  # frames before and at t0 in every clip: the ego's state at t0 is row PAST - 1


def pack(name: str, source: Path, count: int) -> None:
    import cv2

    from qcraft_world_model.data.clip_dataset import ClipDataset

    dataset = ClipDataset(source)
    index = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    blobs, offsets, arrays, cameras = [], [0], {name: [] for name in FIELDS}, []
    shape = None
    for i in index:
        sample = dataset[int(i)]
        shape = sample["frames"].shape
        for frame in sample["frames"].reshape(-1, *shape[-3:]):
            ok, data = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            blobs.append(data.tobytes())
            offsets.append(offsets[-1] + len(blobs[-1]))
        sample["ego_velocity"] = sample["ego"][PAST - 1, 3:5]  # ego rows: x, y, heading, vx, vy
        for field in FIELDS:
            arrays[field].append(sample[field])
        cameras.append([camera.to_dict() for camera in dataset.cameras(int(i))])
    PACK.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(PACK / f"{name}.npz", jpeg=np.frombuffer(b"".join(blobs), np.uint8),
                        offsets=np.array(offsets), frame_shape=np.array(shape), cameras=np.array(json.dumps(cameras)),
                        **{k: np.stack(v) for k, v in arrays.items()})
    print(f"{name}: {len(index)} clips, {(PACK / f'{name}.npz').stat().st_size / 2**20:.1f} MiB")


def unpack(name: str, config, source: str):  # noqa: ANN001, ANN201 - a WorldModelConfig; ClipTensors
    from PIL import Image

    from qcraft_world_model.data.camera_rig import camera_from_dict
    from qcraft_world_model.data.clip_tensors import ClipTensors

    data = np.load(PACK / f"{name}.npz")
    shape, offsets, blob = tuple(data["frame_shape"]), data["offsets"], data["jpeg"].tobytes()
    frames = np.stack([np.asarray(Image.open(io.BytesIO(blob[a:b])).convert("RGB"))
                       for a, b in zip(offsets[:-1], offsets[1:])])
    count = len(frames) // (shape[0] * shape[1])
    cameras = [tuple(camera_from_dict(c) for c in rig) for rig in json.loads(str(data["cameras"]))]
    return ClipTensors({"frames": frames.reshape(count, *shape), **{k: data[k] for k in FIELDS}}, config, source,
                       cameras)


def run(seconds: float, batch: int, steps: int) -> None:
    import torch

    from qcraft_world_model.eval.evaluate import evaluate_clips
    from qcraft_world_model.model.config import WorldModelConfig
    from qcraft_world_model.train.config import TrainConfig
    from qcraft_world_model.train.trainer import train

    out = Path(os.environ.get("OUT", "out/gpu_probe"))
    config = WorldModelConfig.preset_config("lite")
    start = time.perf_counter()
    train_data = unpack("train", config, "gpu_pack/train (JPEG q92)")
    eval_data = unpack("eval", config, "gpu_pack/eval (JPEG q92)")
    unpacked = time.perf_counter() - start
    run_config = TrainConfig(preset="lite", data="gpu_pack/train", out=str(out / "run"), steps=steps, batch=batch,
                             time_budget_s=seconds, checkpoint_every=10**9, log_every=50)
    summary = train(run_config, progress=False, data=train_data)
    # A paused run has no model.safetensors: evaluate the checkpoint's weights directly.
    from qcraft_world_model.model.world_model import WorldModel
    state = torch.load(out / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)  # tensors only
    model = WorldModel(config)
    model.load_state_dict(state["model"])
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    result, _ = evaluate_clips(model.eval(), eval_data, examples=0)
    report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "unpack_seconds": unpacked, "training": summary, "evaluation": result,
              "train_clips": len(train_data), "eval_clips": len(eval_data)}
    (out / "gpu_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "run" / "checkpoint.pt").unlink()  # keep what comes back small
    print(json.dumps({"steps": summary["step"], "seconds": summary["seconds"],
                      "psnr": result["model"]["frames"]["psnr"],
                      "copy_last": result["baselines"]["copy_last_frame"]["frames"]["psnr"],
                      "agents": {k: result["model"]["agents"][k] for k in ("recall_2m", "precision_2m", "minFDE_1",
                                                                           "matched")},
                      "cv_minFDE_1": result["baselines"]["constant_velocity_instantaneous"]["same_agents"]["minFDE_1"]},
                     indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--train", type=int, default=700)
    p.add_argument("--eval", type=int, default=100)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "out" / "data",
                   help="folder holding the train/ and eval/ clip datasets")
    r = sub.add_parser("run")
    r.add_argument("--seconds", type=float, default=300)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    if args.cmd == "pack":
        pack("train", args.data / "train", args.train)
        pack("eval", args.data / "eval", args.eval)
    else:
        run(args.seconds, args.batch, args.steps)


if __name__ == "__main__":
    main()
