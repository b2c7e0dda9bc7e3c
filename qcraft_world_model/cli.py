"""The ``qcraft-wm`` command: one entry point, one subcommand per job.

Every subcommand that measures something can write its result with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qcraft_world_model import __version__
from qcraft_world_model.data.agent_shapes import VEHICLE_SHAPES
from qcraft_world_model.train.config import TrainConfig


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def _cmd_check_bag(args: argparse.Namespace) -> int:
    from qcraft_world_model.eval.ingest_check import check_bag, format_report
    from qcraft_world_model.ingest import IngestConfig, load_parameters

    config = None
    if args.params_file is not None:
        config = IngestConfig.from_parameters(load_parameters(args.params_file, args.node_name))
    report = check_bag(args.bag, config)
    print(format_report(report))
    _write_json(args.json, report.to_dict())
    return 0


def _progress_bar(description: str, unit: str):  # noqa: ANN202 - a progress callback
    """A tqdm bar driven by (done, total) callbacks; plain lines where tqdm is missing (a bare GPU machine)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda done, total: print(f"{description}: {done}/{total} {unit}", file=sys.stderr, flush=True)

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _cmd_generate_clips(args: argparse.Namespace) -> int:
    from qcraft_world_model.data.generate import DatasetPlan, describe, generate_dataset

    overrides = {"clips_per_episode": args.clips_per_episode, "rig": args.rig, "image_size": args.image_size,
                 "image_height": args.image_height, "mount": args.mount, "vehicle_shapes": args.vehicle_shapes}
    if args.seed is not None:
        overrides["seed_base"] = args.seed
    plan = DatasetPlan.for_split(args.split, args.clips, **overrides)
    if args.maps:
        plan = DatasetPlan(args.split, tuple(args.maps.split(",")), args.clips, **overrides)
    report = generate_dataset(args.out, plan, workers=args.workers,
                              progress=_progress_bar(f"{args.split} clips", "clip"), overwrite=args.overwrite)
    print(describe(report))
    result = report.to_dict()
    result["frames_per_second"] = report.frames_rendered / max(report.seconds, 1e-9)
    _write_json(args.json, result)
    return 1 if report.failed else 0


def _cmd_generate_bag(args: argparse.Namespace) -> int:
    import time

    from qcraft_world_model.data.scene_bag import SceneBagConfig, write_scene_bag

    config = SceneBagConfig(map=args.map, seed=args.seed, seconds=args.seconds, rig=args.rig,
                            image_size=args.image_size, image_height=args.image_height,
                            vehicle_shapes=args.vehicle_shapes)
    start = time.perf_counter()
    summary = write_scene_bag(args.out, config, storage=args.storage, overwrite=args.overwrite,
                              progress=_progress_bar("bag frames", "frame"))
    summary["wall_seconds"] = time.perf_counter() - start
    print(f"{args.out}: {summary['frames']} frames ({summary['seconds']:.1f} s) on {args.map} seed {args.seed}, "
          f"ego {summary['ego']}, in {summary['wall_seconds']:.0f} s")
    _write_json(args.json, summary)
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    import cv2

    from qcraft_world_model.data.preview import dataset_preview

    picture = dataset_preview(args.dataset, args.clips)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from qcraft_world_model.train.trainer import TrainConfig, train

    config = TrainConfig(preset=args.preset, data=str(args.data), out=str(args.out), steps=args.steps,
                         batch=args.batch, lr=args.lr, warmup=args.warmup, seed=args.seed,
                         max_clips=args.max_clips, time_budget_s=args.time_budget,
                         init_from=None if args.init_from is None else str(args.init_from), qat=args.qat,
                         freeze=tuple(p for p in (args.freeze or "").split(",") if p),
                         photometric=args.photometric, zoom=args.zoom)
    summary = train(config)
    state = "finished" if summary["finished"] else "paused (rerun the same command to resume)"
    print(f"{args.out}: step {summary['step']}/{summary['steps']} {state}, {summary['seconds']:.0f} s of training")
    _write_json(args.json, summary)
    return 0


def _claim_report_folder(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` that evaluation would overwrite without ``--overwrite`` (or that holds what it did
    not write, or an input); with it, clear evaluate's own earlier files so none is left stale."""
    from qcraft_world_model.data.out_folder import REPORT_FILES, claim_out_folder

    # --data may name several folders (comma-separated): each is an input the report must not land in.
    inputs = [Path(part) for part in str(args.data).split(",")] + [args.model]
    inputs += [args.reference] if args.reference else []
    if claim_out_folder(args.out, "report", args.overwrite, inputs):
        for name in REPORT_FILES:
            (args.out / name).unlink(missing_ok=True)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from qcraft_world_model.data.clip_dataset import DatasetError
    from qcraft_world_model.eval.evaluate import evaluate_clips
    from qcraft_world_model.eval.report import evaluate_summary, write_report
    from qcraft_world_model.model.agent_decode import MotionPrior
    from qcraft_world_model.model.agent_decode import OperatingPoint
    from qcraft_world_model.runtime.model_folder import (MOTION_PRIOR_FILE, OPERATING_POINT_FILE, load_model,
                                                         load_motion_prior, load_operating_point)

    if args.every != 1 and (args.tracks or args.recorded):
        raise DatasetError("--every scores a spread of a clip set; --tracks and --recorded score every window of "
                           "their bag: leave --every out")
    if args.recorded and args.no_motion_prior:
        raise DatasetError("--recorded compares the node's agents, decoded with the folder's motion prior, with "
                           "the same windows offline: leave --no-motion-prior out")
    if args.card and args.no_motion_prior and (args.model / MOTION_PRIOR_FILE).is_file():
        raise DatasetError(f"--card describes the model as the node runs it, with {args.model / MOTION_PRIOR_FILE}: "
                           "leave --no-motion-prior out")
    if args.card and args.existence_threshold is not None and (args.model / OPERATING_POINT_FILE).is_file():
        raise DatasetError(f"--card describes the model as the node runs it, with {args.model / OPERATING_POINT_FILE}: "
                           "leave --existence-threshold out")
    if args.tracks and not (args.data / "metadata.yaml").is_file():
        raise DatasetError(f"--tracks needs a scene bag (a rosbag2 folder): {args.data} is a clip set, whose "
                           "clips have no before or after to track through")
    # The model and its prior are checked before the report folder is claimed: with --overwrite the claim
    # clears the earlier report, and a stale motion_prior.json must not cost it.
    model = load_model(args.model)
    prior = MotionPrior() if args.no_motion_prior else load_motion_prior(args.model, model)
    operating = (OperatingPoint.uniform(args.existence_threshold) if args.existence_threshold is not None
                 else load_operating_point(args.model, model) or OperatingPoint())
    _claim_report_folder(args)  # before anything is computed: a refusal costs nothing
    if args.recorded:
        return _evaluate_recorded(args, model, prior, operating)
    runner = _planned(args, model)
    plan = args.precision if args.backend == "torch" else f"{args.backend}-{args.precision}"
    # Planned (INT8) graphs and the other backends' exports run at batch 1, the deployment batch.
    result, examples = evaluate_clips(runner, args.data, max_clips=args.max_clips,
                                      batch=8 if plan == "fp32" else 1, ego_motion=args.ego_motion, prior=prior,
                                      every=args.every, operating=operating)
    result["model"]["folder"] = str(args.model)
    # What ran: mixed-int8 on a CPU without native bf16 runs fp32 around the INT8 transformer (+fp32).
    label = plan + getattr(getattr(runner, "plan", None), "suffix", "")
    result["model"]["precision"] = label
    if getattr(runner, "keep_float", ()):  # an INT8 plan with layers left in floating point says which
        result["model"]["int8_keep_float"] = list(runner.keep_float)
    if args.backend != "torch":
        result["model"]["backend"] = runner.name
    if args.tracks:
        from qcraft_world_model.eval.tracked import tracked_baseline

        result["baselines"]["constant_velocity_own_tracks"] = tracked_baseline(runner, args.data, args.ego_motion,
                                                                                   operating)
    report = write_report(args.out, result, examples)
    if args.card:
        from qcraft_world_model.train.model_card import write_model_card

        print(f"model card: {write_model_card(args.model, result)}")
    print(f"report: {report}")
    print(evaluate_summary(result))
    if plan != "fp32":
        from qcraft_world_model.eval.precision_gate import gate_against_fp32

        result["gate"], table = gate_against_fp32(
            model, result, args.data, plan, args.model, reference=args.reference, max_clips=args.max_clips,
            calibration=args.calibration, sensitivity=args.sensitivity, sensitivity_windows=args.sensitivity_windows,
            prior=prior, every=args.every, operating=operating)
        (args.out / "precision_gate.md").write_text(f"# {label} vs fp32\n\n{table}")
    _write_json(args.json, result)
    return 0


def _planned(args: argparse.Namespace, model):  # noqa: ANN001, ANN202 - a WorldModel, its planned form or a Backend
    """``model`` under ``--precision`` on ``--backend`` (itself for torch fp32); INT8 calibrated on
    ``--calibration`` or the folder's. Another backend is created and warmed up as the node does it."""
    if args.backend != "torch":
        from qcraft_world_model.runtime.backends import create_backend

        backend = create_backend(model, args.backend, args.precision, "cpu", folder=args.model)
        backend.warm_up()
        return backend
    if args.precision == "fp32":
        return model
    from qcraft_world_model.runtime.mixed import planned_model

    return planned_model(model, args.precision, args.calibration, folder=args.model)


def _evaluate_recorded(args: argparse.Namespace, model, prior, operating) -> int:  # noqa: ANN001
    """Score the predictions a replay recorded, next to the model run offline on the same windows, decoded
    with ``prior`` and reported at ``operating`` (the folder's, as the node used them)."""
    from qcraft_world_model.eval.recorded import evaluate_recorded
    from qcraft_world_model.eval.report import live_offline_table

    result, _, _ = evaluate_recorded(model, args.data, offline=_planned(args, model), prior=prior,
                                     operating=operating)
    table = live_offline_table(result)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "live_vs_offline.md").write_text(f"# Live replay vs offline: {args.data}\n\n{table}")
    _write_json(args.json, result)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from qcraft_world_model.ros.process import apply_loopback_dds_env
    from qcraft_world_model.ros.replay import replay_bag

    if not args.network:
        apply_loopback_dds_env()  # before rclpy starts: the player's sockets on 127.0.0.1 too (docs/security.md)
    try:
        result = replay_bag(args.bag, args.out, rate=args.rate, wait_for_subscriber_s=args.wait,
                            settle_s=args.settle, overwrite=args.overwrite)
    except (TimeoutError, LookupError, ValueError) as err:  # no predictor, no bindings, a bad --rate
        print(f"qcraft-wm replay: error: {err}", file=sys.stderr)
        return 2
    recorded = ", ".join(f"{topic} {count}" for topic, count in sorted(result.recorded.items())) or "nothing"
    print(f"replayed {result.published} messages of {args.bag} in {result.seconds:.1f} s (rate {args.rate:g}); "
          f"recorded {recorded} into {args.out}")
    for line in result.dropped:  # topics the output bag lacks: never silently
        print(f"qcraft-wm replay: warning: {line}", file=sys.stderr)
    _write_json(args.json, vars(result))
    return 0 if result.recorded.get("/predictor/predicted_agents") else 1


def _cmd_bench_attention(args: argparse.Namespace) -> int:
    from qcraft_world_model.bench.attention import bench_attention

    result = bench_attention(sizes=tuple(args.sizes), window=args.window, anchors=args.anchors, dim=args.dim,
                             heads=args.heads, repeats=args.repeats, device=args.device, dtype=args.dtype)
    print(json.dumps(result, indent=2))
    _write_json(args.json, result)
    return 0


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from qcraft_world_model.bench.model import bench_model
    from qcraft_world_model.runtime.model_folder import default_model

    model_dir = str(args.model or default_model())
    calibration = str(args.calibration) if args.calibration else None
    result = bench_model(model_dir, calibration, tuple(args.precisions.split(",")), args.repeats,
                         ab_presets=tuple(p for p in args.ab_presets.split(",") if p))
    print(json.dumps(result, indent=2))
    _write_json(args.json, result)
    return 0


def _cmd_bench_node(args: argparse.Namespace) -> int:
    import tempfile

    from qcraft_world_model.bench.node import node_model
    from qcraft_world_model.ros.process import apply_loopback_dds_env

    if (args.width is None) != (args.height is None) or min(args.width or 1, args.height or 1) < 1:
        print("qcraft-wm bench node: error: give the camera size as both --width and --height, positive",
              file=sys.stderr)
        return 2
    if not 0 <= args.threads <= 256 or (args.frames_rate is not None and not 0 <= args.frames_rate <= 1000):
        print("qcraft-wm bench node: error: --threads is 0 to 256, --frames-rate 0 to 1000 Hz", file=sys.stderr)
        return 2
    apply_loopback_dds_env()  # before rclpy starts: the bench's own sockets on 127.0.0.1 too (docs/security.md)
    from qcraft_world_model.ros.node_bench import bench_node

    work = Path(tempfile.mkdtemp(prefix="bench_node_"))
    model, note = node_model(args.model, args.cameras, work)
    try:
        result = bench_node(model, note, args.cameras, args.rate, args.seconds, args.backend, not args.no_frames,
                            args.depth, args.stagger_ms, work, progress=_progress_bar("bench node", "frame"),
                            size=None if args.width is None else (args.width, args.height), encoding=args.encoding,
                            threads=args.threads, frames_rate_hz=args.frames_rate)
    except TimeoutError as err:  # the node did not come up: its log says why
        print(f"qcraft-wm bench node: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    _write_json(args.json, result)
    return 0


def _cmd_bench_render(args: argparse.Namespace) -> int:
    from qcraft_world_model.bench.render import MAPS, bench_render

    result = bench_render(tuple(args.maps.split(",")) if args.maps else MAPS, args.frames, args.size, args.rig,
                          progress=_progress_bar("bench render", "map"))
    print(json.dumps(result, indent=2))
    _write_json(args.json, result)
    return 0


def _cmd_bench_gpu(args: argparse.Namespace) -> int:
    from qcraft_world_model.bench.gpu import bench_gpu

    result = bench_gpu(progress=_progress_bar("bench gpu", "case"))
    print(json.dumps(result, indent=2))
    _write_json(args.json, result)
    return 0


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from qcraft_world_model.runtime.backends import BackendError, TensorRTBackend
    from qcraft_world_model.runtime.model_folder import default_model, load_model

    folder = args.model or default_model()
    try:
        TensorRTBackend(load_model(folder), args.precision, args.cache, build_only=True, folder=folder)
    except BackendError as err:  # no TensorRT or no GPU here: say so in one line
        print(f"qcraft-wm build-engine: error: {err}", file=sys.stderr)
        return 2
    print(f"built TensorRT engines for {folder} ({args.precision}) in {args.cache}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from qcraft_world_model.data.clip_tensors import calibration_windows
    from qcraft_world_model.runtime.mixed import calibration_latents
    from qcraft_world_model.runtime.model_folder import load_model, save_int8_calibration

    model = load_model(args.model)
    windows = calibration_windows(args.data, model.config, args.windows)
    latents = calibration_latents(model, args.precision, windows)
    keep_float = tuple(name for name in args.keep_float.split(",") if name)
    path = save_int8_calibration(args.model, model, args.precision, latents, f"{args.data} ({len(latents)} windows)",
                                 keep_float)
    kept = f", keeping {', '.join(keep_float)} in floating point" if keep_float else ""
    print(f"wrote {path}: {len(latents)} calibration windows of {args.data} for {args.precision}{kept}")
    return 0


def _cmd_fit_motion(args: argparse.Namespace) -> int:
    from qcraft_world_model.eval.motion_prior import fit_folder
    from qcraft_world_model.runtime.model_folder import (MOTION_PRIOR_FILE, ModelFolderError, load_model,
                                                         save_motion_prior)

    if (args.model / MOTION_PRIOR_FILE).exists() and not args.overwrite:
        raise ModelFolderError(f"{args.model / MOTION_PRIOR_FILE} exists: pass --overwrite to fit it again")
    model = load_model(args.model)
    prior, record = fit_folder(model, args.data, args.every)
    path = save_motion_prior(args.model, model, prior, record)
    _write_json(args.json, record)
    # A fitted gain the leave-one-map-out check did not confirm is named (it was reset to 1, or never checked).
    fitted = ", ".join(f"{name} {group['gain']:g} ({group['agents']} agents"
                       + (f"; {group['fitted_gain']:g} {group['map_check']} on maps left out"
                          if group.get("fitted_gain", 1.0) != 1.0 and group.get("map_check") != "confirmed" else "")
                       + ")" for name, group in record["groups"].items())
    print(f"wrote {path}: {fitted}; fitted on {record['clips']} clips of {args.data}")
    return 0


def _cmd_fit_operating_point(args: argparse.Namespace) -> int:
    from qcraft_world_model.eval.operating_point import fit_folder
    from qcraft_world_model.runtime.model_folder import (OPERATING_POINT_FILE, ModelFolderError, load_model,
                                                         save_operating_point)

    if (args.model / OPERATING_POINT_FILE).exists() and not args.overwrite:
        raise ModelFolderError(f"{args.model / OPERATING_POINT_FILE} exists: pass --overwrite to choose it again")
    model = load_model(args.model)
    operating, record = fit_folder(model, args.model, args.data, args.every, args.groups)
    path = save_operating_point(args.model, model, operating, record)
    _write_json(args.json, record)
    # A band that kept the default for want of agents or precision is named.
    kept = "; ".join(f"{name} {side}: {band['note']}" for name, group in record["groups"].items()
                     for side, band in group.items() if "note" in band)
    print(f"wrote {path}: {operating.describe()}; chosen on {record['clips']} clips ({record['episodes']} episodes) "
          f"of {args.data}" + (f" ({kept})" if kept else ""))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from qcraft_world_model.eval.export_check import export_checked
    from qcraft_world_model.runtime.model_folder import default_model

    manifest, ok = export_checked(args.model or default_model(), args.out, args.int8_transformer,
                                  args.calibration)
    _write_json(args.json, manifest)
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from qcraft_world_model.demo import run_demo

    return run_demo(args.out, json_path=args.json)


def _probability(text: str) -> float:
    """An argparse type: a number in 0..1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in 0..1")
    return value


def _class_groups(text: str) -> list[str]:
    """An argparse type: comma-separated class groups (model/detection.CLASS_GROUPS)."""
    from qcraft_world_model.model.detection import CLASS_GROUPS

    groups = [g.strip() for g in text.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(CLASS_GROUPS))
    if unknown or not groups:
        raise argparse.ArgumentTypeError(f"no class group {', '.join(unknown) or repr(text)}; the groups are "
                                         f"{', '.join(CLASS_GROUPS)}")
    return groups


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse names the flag when it refuses one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qcraft-wm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check-bag", help="run a bag's camera frames through the node's ingest and report problems",
        description="Decode every camera frame of a rosbag2 (mcap or sqlite3) with the node's "
                    "decoder, ring window and multi-camera aligner, and count what would go wrong.")
    check.add_argument("bag", type=Path, help="rosbag2 directory")
    check.add_argument("--params-file", type=Path,
                       help="node parameter YAML selecting cameras and settings "
                            "(default: every camera topic in the bag, default settings)")
    check.add_argument("--node-name", default="predictor", help="node section to read from the YAML")
    check.add_argument("--json", type=Path, help="also write the report as JSON here")
    check.set_defaults(func=_cmd_check_bag)

    generate = sub.add_parser("generate", help="driving scenes from SUMO on real road maps: clips or a bag")
    gen_sub = generate.add_subparsers(dest="what", required=True, metavar="WHAT")
    clips = gen_sub.add_parser("clips", help="a clip dataset (safetensors shards + manifest), resumable",
                               description="Simulate episodes on the split's maps in parallel processes and "
                                           "write clips of past/future frames with ground truth. Rerunning "
                                           "the same command resumes: finished shards are kept.")
    clips.add_argument("--split", choices=("train", "eval"), default="train",
                       help="train: motorway, Ingolstadt, Braunschweig, generated towns; eval: Berlin Adlershof")
    clips.add_argument("--clips", type=int, default=1000, help="clips to make")
    clips.add_argument("--out", type=Path, required=True, help="dataset folder")
    clips.add_argument("--maps", help="comma-separated maps instead of the split's (see data/sumo_maps.py)")
    clips.add_argument("--seed", type=int, help="first episode seed (default: 1 for train, 100000 for eval)")
    clips.add_argument("--clips-per-episode", type=int, default=25)
    clips.add_argument("--rig", default="front", help="camera rig: front or front3")
    clips.add_argument("--image-size", type=int, default=128, help="frame width, px")
    clips.add_argument("--image-height", type=int, help="frame height, px (default: square)")
    clips.add_argument("--mount", choices=("standard", "wide", "moved"),
                       help="camera mount variation (default: wide for train, standard for eval); "
                            "moved: 0.7 m further forward, 5 deg more pitch, 100 deg lens")
    clips.add_argument("--vehicle-shapes", choices=VEHICLE_SHAPES, default="fixed",
                       help="fixed: one box shape per class (every dataset before session 12); varied: several "
                            "bodies per class (sedan, hatchback, SUV, van, pick-up; trucks, buses) with wheels "
                            "and lights, and three pedestrian outfits")
    clips.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    clips.add_argument("--overwrite", action="store_true",
                       help="delete the shards in --out that this plan would not keep (another plan's) "
                            "instead of refusing")
    clips.add_argument("--json", type=Path, help="also write the generation report as JSON here")
    clips.set_defaults(func=_cmd_generate_clips)

    bag = gen_sub.add_parser("bag", help="one drive recorded as a rosbag2 (cameras, ground truth, odometry, tf)")
    bag.add_argument("--map", default="berlin_adlershof")
    bag.add_argument("--seed", type=int, default=100_000)
    bag.add_argument("--seconds", type=float, default=60.0)
    bag.add_argument("--rig", default="front")
    bag.add_argument("--image-size", type=int, default=128, help="frame width, px")
    bag.add_argument("--image-height", type=int, help="frame height, px (default: square)")
    bag.add_argument("--vehicle-shapes", choices=VEHICLE_SHAPES, default="fixed",
                     help="fixed: one box shape per class; varied: several bodies per class (as generate clips)")
    bag.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    bag.add_argument("--out", type=Path, required=True, help="bag folder to create")
    bag.add_argument("--overwrite", action="store_true",
                     help="replace an existing bag (only a folder holding just a rosbag2)")
    bag.add_argument("--json", type=Path, help="also write a summary as JSON here")
    bag.set_defaults(func=_cmd_generate_bag)

    train = sub.add_parser("train", help="train a model preset on a clip dataset (resumable)",
                           description="Seeded, resumable training. Rerunning the same command resumes from "
                                       "OUT/checkpoint.pt. Under torchrun, one process per GPU/core group.")
    defaults = TrainConfig()  # one set of defaults: the run's own
    train.add_argument("--preset", default=defaults.preset, help="lite, base, or a model YAML file")
    train.add_argument("--data", type=Path, default=Path(defaults.data),
                       help="clip dataset folder, or several comma-separated (their clips in that order)")
    train.add_argument("--out", type=Path, default=Path(defaults.out), help="run folder")
    train.add_argument("--steps", type=int, default=defaults.steps)
    train.add_argument("--batch", type=int, default=defaults.batch)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--warmup", type=int, default=defaults.warmup, help="linear warm-up steps before the cosine decay")
    train.add_argument("--init-from", type=Path, help="start from this trained model folder (fine-tuning, QAT)")
    train.add_argument("--qat", action="store_true",
                       help="quantization-aware training: INT8 fake quantizers in the transformer (NVIDIA ModelOpt); "
                            "use with --init-from and a small --lr")
    train.add_argument("--freeze", help="comma-separated parts kept at their --init-from weights, e.g. stem,temporal")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--photometric", type=float, default=defaults.photometric,
                       help="strength of the per-clip exposure/white-balance/gamma/contrast/noise jitter "
                            "(1: the documented ranges; 0: off)")
    train.add_argument("--zoom", type=float, default=defaults.zoom,
                       help="strength of the per-clip lens zoom (magnified 1-1.15x in x and y independently, "
                            "intrinsics with it; 1: that range; 0: off)")
    train.add_argument("--max-clips", type=int, help="use only the first N clips")
    train.add_argument("--time-budget", type=float, help="pause (resumably) after this many seconds")
    train.add_argument("--json", type=Path, help="also write the run summary as JSON here")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="score a model and the baselines on a clip set: JSON + report")
    evaluate.add_argument("--model", type=Path, required=True, help="model folder (model.safetensors, config.json)")
    evaluate.add_argument("--data", type=Path, default=Path("out/data/eval"), help="clip dataset folder")
    evaluate.add_argument("--out", type=Path, default=Path("out/eval"), help="report folder")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace an earlier report in --out (only a folder holding evaluate's own files)")
    evaluate.add_argument("--max-clips", type=int)
    evaluate.add_argument("--every", type=_positive_int, default=1,
                          help="score every N-th clip only (a dataset is stored map by map: a spread over its maps)")
    evaluate.add_argument("--ego-motion", choices=("odometry", "estimate"), default="odometry",
                          help="the ego's velocity for decoding agents' motion: the data's odometry, or the "
                               "model's own estimate (what the node uses without an odometry topic)")
    evaluate.add_argument("--no-motion-prior", action="store_true",
                          help="decode the head's motion as it is, ignoring the folder's motion_prior.json")
    evaluate.add_argument("--existence-threshold", type=_probability,
                          help="report every class group's agents from this score, instead of the folder's "
                               "operating_point.json (without one: 0.5)")
    evaluate.add_argument("--tracks", action="store_true",
                          help="also score constant velocity on the model's own tracks (scene bags only: the "
                               "model runs on every frame and the node's tracker follows its detections)")
    evaluate.add_argument("--card", action="store_true", help="also write MODEL_CARD.md into the model folder")
    evaluate.add_argument("--precision", choices=("fp32", "bf16", "mixed-int8"), default="fp32",
                          help="run the model in this precision plan (INT8: PT2E transformer, CPU)")
    evaluate.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default="torch",
                          help="run the model on this inference backend (batch 1, as the node does) and, other "
                               "than torch fp32, gate it against torch fp32 on the same clips")
    evaluate.add_argument("--calibration", type=Path,
                          help="clip dataset whose first windows calibrate INT8 (default: the model folder's "
                               "stored calibration, as the node uses it)")
    evaluate.add_argument("--recorded", action="store_true",
                          help="--data is a bag from `qcraft-wm replay`: score the live predictions it recorded, "
                               "next to --model run offline on the same windows")
    evaluate.add_argument("--reference", type=Path,
                          help="with a precision other than fp32: the FP32 model folder to compare with "
                               "(default: --model itself; for a QAT model, the model it was fine-tuned from)")
    evaluate.add_argument("--sensitivity", action="store_true",
                          help="with an INT8 precision: the per-layer sensitivity table even when the gate passes")
    evaluate.add_argument("--sensitivity-windows", type=int, default=64, help="held-out windows it runs on")
    evaluate.add_argument("--json", type=Path, help="also write the metrics JSON here")
    evaluate.set_defaults(func=_cmd_evaluate)

    replay = sub.add_parser("replay", help="play a bag into a running predictor at its recorded rate (with /clock) "
                                           "and record the predictions into a new bag",
                            description="Play a bag into a running predictor and record its outputs.")
    replay.add_argument("bag", type=Path, help="rosbag2 folder to play (e.g. a scene bag)")
    replay.add_argument("--out", type=Path, required=True, help="bag folder to write: the input plus the outputs")
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    replay.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the predictor to subscribe")
    replay.add_argument("--settle", type=float, default=2.0, help="seconds to keep recording after the last message")
    replay.add_argument("--overwrite", action="store_true",
                        help="replace an existing output bag (only a folder holding just a rosbag2, not the input)")
    replay.add_argument("--network", action="store_true",
                        help="use this shell's DDS settings instead of the loopback-only Fast DDS profile "
                             "(to reach a predictor on another host)")
    replay.add_argument("--json", type=Path, help="also write a summary as JSON here")
    replay.set_defaults(func=_cmd_replay)

    engine = sub.add_parser("build-engine", help="build and cache the TensorRT engines of a model (NVIDIA GPU): "
                                                 "the node never builds them at start-up")
    engine.add_argument("--model", type=Path, help="model folder (default: the shipped default model, models/lite-wide)")
    engine.add_argument("--precision", choices=("fp32", "fp16"), default="fp16")
    engine.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "qcraft_world_model" / "engines",
                        help="engine cache folder (the node's default)")
    engine.set_defaults(func=_cmd_build_engine)

    calibrate = sub.add_parser("calibrate", help="store what the INT8 plan calibrates on in the model folder "
                                                 "(then mixed-int8 needs no dataset: node, bench, evaluate)")
    calibrate.add_argument("--model", type=Path, required=True, help="model folder")
    calibrate.add_argument("--data", type=Path, default=Path("out/data/train"),
                           help="clip dataset or scene bag whose first windows calibrate (the training split)")
    calibrate.add_argument("--windows", type=int, default=32)
    calibrate.add_argument("--precision", choices=("mixed-int8",), default="mixed-int8")
    calibrate.add_argument("--keep-float", default="",
                           help="comma-separated transformer linears the INT8 plan leaves in floating point (the "
                                "first rows of the per-layer sensitivity table `evaluate --precision mixed-int8` "
                                "prints when its gate misses), e.g. blocks.0.attn.out,blocks.3.mlp.fc1")
    calibrate.set_defaults(func=_cmd_calibrate)

    fit = sub.add_parser("fit-motion", help="fit how far the decoder trusts the head's motion per class group "
                                            "(motion_prior.json in the model folder)",
                         description="Each class group's ground motion (velocity and paths) is scaled by the gain "
                                     "that fits the model's matched agents on training clips best (the error of "
                                     "the most likely path at its last step): shrinkage towards standing still "
                                     "where the head's motion is mostly noise. Fit on training clips only.")
    fit.add_argument("--model", type=Path, required=True, help="model folder")
    fit.add_argument("--data", type=Path, required=True,
                     help="training clip dataset folder, or several comma-separated")
    fit.add_argument("--every", type=_positive_int, default=10, help="use every N-th clip (datasets are stored map by map)")
    fit.add_argument("--overwrite", action="store_true", help="replace the folder's motion_prior.json")
    fit.add_argument("--json", type=Path, help="also write the fit's record here")
    fit.set_defaults(func=_cmd_fit_motion)

    point = sub.add_parser("fit-operating-point",
                           help="choose the score each class group is reported from (operating_point.json in the "
                                "model folder)",
                           description="Per class group, the lowest score threshold from which on the model's "
                                       "precision on validation clips reaches 0.7 with 95 %% confidence (a bootstrap "
                                       "over episodes). Validation clips: the training maps on seeds the model "
                                       "never trained on (qcraft-wm generate clips --split train --seed ...).")
    point.add_argument("--model", type=Path, required=True, help="model folder")
    point.add_argument("--data", type=Path, required=True,
                       help="validation clip dataset folder (split train, not trained on), or several comma-separated")
    point.add_argument("--every", type=_positive_int, default=1, help="use every N-th clip")
    point.add_argument("--groups", type=_class_groups, default="car,pedestrian,bicycle",
                       help="class groups to choose for (comma-separated); the others keep 0.5 in both bands")
    point.add_argument("--overwrite", action="store_true", help="replace the folder's operating_point.json")
    point.add_argument("--json", type=Path, help="also write the choice's record here")
    point.set_defaults(func=_cmd_fit_operating_point)

    export = sub.add_parser("export", help="ONNX of the stem and the window part, checked in onnxruntime")
    export.add_argument("--model", type=Path, help="model folder (default: the shipped default model, models/lite-wide)")
    export.add_argument("--out", type=Path, default=Path("out/export/lite"))
    export.add_argument("--int8-transformer", action="store_true",
                        help="also export the PT2E INT8 transformer as Q/DQ ONNX (calibrated on --calibration)")
    export.add_argument("--calibration", type=Path, default=Path("out/data/train"))
    export.add_argument("--json", type=Path, help="also write the export manifest here")
    export.set_defaults(func=_cmd_export)

    bench = sub.add_parser("bench", help="benchmarks (JSON): attention, model, node, render, gpu")
    bench_sub = bench.add_subparsers(dest="what", required=True, metavar="WHAT")
    attention = bench_sub.add_parser("attention", help="sparse vs dense attention: time and peak memory vs n")
    attention.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")], default=[256, 1024, 4096])
    attention.add_argument("--window", type=int, default=128)
    attention.add_argument("--anchors", type=int, default=4)
    attention.add_argument("--dim", type=int, default=256)
    attention.add_argument("--heads", type=int, default=8)
    attention.add_argument("--repeats", type=int, default=20)
    attention.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    attention.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    attention.add_argument("--json", type=Path, help="also write the result here")
    attention.set_defaults(func=_cmd_bench_attention)

    model_bench = bench_sub.add_parser("model", help="latency per part and weight bytes per precision plan")
    model_bench.add_argument("--model", type=Path, help="model folder (default: the shipped default model, models/lite-wide)")
    model_bench.add_argument("--precisions", default="fp32,bf16,mixed-int8,onnxruntime-fp32",
                             help="torch plans (fp32, bf16, mixed-int8), onnxruntime-fp32, openvino-fp32, openvino-bf16 "
                                  "(the ONNX export, compiled on the fly)")
    model_bench.add_argument("--calibration", type=Path,
                             help="clip dataset calibrating INT8 (default: the model folder's stored calibration)")
    model_bench.add_argument("--repeats", type=int, default=50)
    model_bench.add_argument("--ab-presets", default="base",
                             help="also time INT8 vs FP32 eager on these presets' transformers (random weights); "
                                  "empty: none")
    model_bench.add_argument("--json", type=Path, help="also write the result here")
    model_bench.set_defaults(func=_cmd_bench_model)

    node_bench = bench_sub.add_parser("node", help="the predictor through DDS, as its own process: end-to-end and "
                                                   "node latency, drops, memory (needs the colcon build)")
    node_bench.add_argument("--cameras", type=int, choices=(1, 2, 3), default=1,
                            help="cameras (more than 1: lite with that many cameras, random weights)")
    node_bench.add_argument("--model", type=Path,
                            help="model folder with --cameras cameras (default: the shipped lite, or random weights)")
    node_bench.add_argument("--rate", type=float, default=10.0, help="camera frame rate, Hz")
    node_bench.add_argument("--seconds", type=float, default=30.0, help="seconds of frames to publish")
    node_bench.add_argument("--backend", default="auto", help="the node's model.backend")
    node_bench.add_argument("--no-frames", action="store_true", help="do not publish PredictedFrames")
    node_bench.add_argument("--frames-rate", type=float,
                            help="the node's output.frames_max_rate_hz (default: the node's own)")
    node_bench.add_argument("--threads", type=int, default=0, help="the node's model.threads (0: the backend's default)")
    node_bench.add_argument("--depth", type=int, default=10,
                            help="history depth of the camera publishers (1 lost frames in this process: see "
                                 "docs/node.md)")
    node_bench.add_argument("--stagger-ms", type=float, default=0.0, help="pause between the cameras' publishes")
    node_bench.add_argument("--width", type=int, help="camera image width, px (with --height; default: the model's)")
    node_bench.add_argument("--height", type=int, help="camera image height, px")
    node_bench.add_argument("--encoding", choices=("rgb8", "bgr8", "jpeg"), default="rgb8",
                            help="raw sensor_msgs/Image in this channel order, or JPEG CompressedImage")
    node_bench.add_argument("--json", type=Path, help="also write the result here")
    node_bench.set_defaults(func=_cmd_bench_node)

    render_bench = bench_sub.add_parser("render", help="scene rendering speed: frames/s for one camera on one core")
    render_bench.add_argument("--maps", help="comma-separated maps (default: Berlin Adlershof, the A10 motorway, "
                                             "Braunschweig, a generated grid town)")
    render_bench.add_argument("--frames", type=int, default=300, help="frames rendered per map")
    render_bench.add_argument("--size", type=int, default=128, help="frame side, px")
    render_bench.add_argument("--rig", default="front", help="camera rig: front or front3")
    render_bench.add_argument("--json", type=Path, help="also write the result here")
    render_bench.set_defaults(func=_cmd_bench_render)

    gpu_bench = bench_sub.add_parser("gpu", help="on a lent GPU: attention to n = 16384 and the lite and base "
                                                 "models in fp32/fp16/bf16 on CUDA")
    gpu_bench.add_argument("--json", type=Path, help="also write the result here")
    gpu_bench.set_defaults(func=_cmd_bench_gpu)

    preview = sub.add_parser("preview", help="picture of dataset clips: frames, ground-truth boxes, top-down view")
    preview.add_argument("dataset", type=Path, help="clip dataset folder (with manifest.json)")
    preview.add_argument("--clips", type=lambda text: [int(i) for i in text.split(",")], default=[0],
                         help="comma-separated clip indices")
    preview.add_argument("--out", type=Path, required=True, help="PNG to write")
    preview.set_defaults(func=_cmd_preview)

    demo = sub.add_parser("demo", help="the main job on a fresh machine (see README)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    demo.add_argument("--json", type=Path, help="also write the results as JSON here")
    demo.set_defaults(func=_cmd_demo)
    return parser


#: (module, class) of the errors a user can fix: refused with one line and exit 2, not a traceback.
USER_ERRORS = (
    ("qcraft_world_model.bench.gpu", "GpuMissing"),
    ("qcraft_world_model.data.clip_dataset", "DatasetError"),
    ("qcraft_world_model.data.out_folder", "OutFolderError"),
    ("qcraft_world_model.data.rosbag_io", "BagError"),
    ("qcraft_world_model.data.sumo_maps", "MapError"),
    ("qcraft_world_model.data.traffic_sim", "SimulationError"),
    ("qcraft_world_model.ingest.config", "ConfigError"),
    ("qcraft_world_model.model.config", "ModelConfigError"),
    ("qcraft_world_model.runtime.backend", "BackendError"),
    ("qcraft_world_model.runtime.model_folder", "ModelFolderError"),
    ("qcraft_world_model.train.trainer", "CheckpointError"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The USER_ERRORS types of the modules this run imported, and FileNotFoundError.

    An error of a module that was never imported cannot have been raised; importing
    every module to name its error would load torch for ``check-bag`` too.
    """
    found: list[type[BaseException]] = [FileNotFoundError]
    for module_name, class_name in USER_ERRORS:
        error = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``qcraft-wm``; errors a user can fix exit 2 with one clear line."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        # One line even where a message quotes a multi-line cause.
        print(f"qcraft-wm {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
