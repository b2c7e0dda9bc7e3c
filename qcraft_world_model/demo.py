"""``qcraft-wm demo``: the main job on a fresh machine.

1. Camera ingest: a three-camera bag with the faults fleet bags have (corrupt
   JPEG, truncated image, duplicate stamp, dropped frames, a camera that dies)
   goes through the node's decoder, ring windows and aligner; the table of what
   happened is printed and a contact sheet of the decoded frames is saved.
2. The world model: a drive on Berlin Adlershof (a map it never trained on) is
   simulated into a bag, the shipped model predicts from it, and its scores are
   printed next to copy-last-frame and constant velocity, with pictures.
3. The node live: the predictor runs as its own process, the drive is replayed
   into it through DDS at its recorded rate (``qcraft-wm replay``), its outputs
   are recorded and scored next to the same model offline on the same windows;
   pictures of the live predictions (camera frame with predicted paths,
   predicted vs real future frames).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from qcraft_world_model.data.pattern_bag import write_test_pattern_bag
from qcraft_world_model.eval.ingest_check import check_bag, format_report

TILE = (160, 120)  # width, height of one camera tile in the contact sheet
DRIVE_SECONDS = 20.0  # the simulated held-out drive: 16 evaluation windows
# A seed whose drive has traffic in view (16 agents over its windows; many seeds have 0-3), so the
# agent metrics of the live-vs-offline comparison are defined, not dashes.
DRIVE_SEED = 100_121
PREDICTOR_PARAMS = """/**:
  ros__parameters:
    cameras:
      names: [front]
      front:
        topic: /sensing/camera/front/image_raw
    model:
      path: "{model}"
      backend: auto
      precision: ""
    image:
      width: {width}
      height: {height}
    ego_motion:
      odometry_topic: /localization/odometry
"""


def contact_sheet(frames: dict[str, dict[int, np.ndarray]], cameras: list[str], rows: int = 4) -> np.ndarray:
    """A grid of decoded frames: one column per camera, ``rows`` instants spread over the bag.

    A camera with no frame near an instant gets a dark tile marked "missing".
    """
    stamps = sorted({stamp for per_cam in frames.values() for stamp in per_cam})
    picks = [stamps[round(i * (len(stamps) - 1) / max(1, rows - 1))] for i in range(rows)] if stamps else []
    width, height = TILE
    sheet = np.full((28 + rows * (height + 18), len(cameras) * width, 3), 24, np.uint8)
    for col, cam in enumerate(cameras):
        cv2.putText(sheet, cam, (col * width + 4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1)
    for row, stamp in enumerate(picks):
        y0 = 28 + row * (height + 18)
        for col, cam in enumerate(cameras):
            near = [s for s in frames.get(cam, {}) if abs(s - stamp) <= 50_000_000]
            x0 = col * width
            if near:
                tile = cv2.resize(frames[cam][min(near, key=lambda s: abs(s - stamp))], TILE)
                sheet[y0:y0 + height, x0:x0 + width] = tile
            else:
                cv2.putText(sheet, "missing", (x0 + 40, y0 + height // 2), cv2.FONT_HERSHEY_SIMPLEX,
                            0.5, (90, 90, 255), 1)
        cv2.putText(sheet, f"t = {(stamp - picks[0]) / 1e9:.1f} s", (4, y0 + height + 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1)
    return sheet


def run_demo(out: Path, json_path: Path | None = None) -> int:
    """Write the faulty three-camera bag, check it, print the table, save the picture."""
    out.mkdir(parents=True, exist_ok=True)
    bag = write_test_pattern_bag(out / "faulty_rig.mcap", overwrite=True)
    frames: dict[str, dict[int, np.ndarray]] = {}

    def keep(camera: str, stamp: int, rgb: np.ndarray) -> None:
        frames.setdefault(camera, {})[stamp] = rgb

    report = check_bag(bag, on_frame=keep)
    print(format_report(report))
    picture = out / "ingest_contact_sheet.png"
    cameras = [cam.name for cam in report.cameras]
    cv2.imwrite(str(picture), cv2.cvtColor(contact_sheet(frames, cameras), cv2.COLOR_RGB2BGR))
    print(f"contact sheet of the decoded frames: {picture}")
    results = {"ingest": report.to_dict(), "model": _model_part(out)}
    results["live"] = _live_part(out)
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _model_part(out: Path) -> dict | None:
    """Predict on a freshly simulated held-out drive with the shipped model; print the scores."""
    from qcraft_world_model.data.scene_bag import SceneBagConfig, write_scene_bag
    from qcraft_world_model.eval.evaluate import evaluate_clips
    from qcraft_world_model.eval.report import write_report
    from qcraft_world_model.model.agent_decode import OperatingPoint
    from qcraft_world_model.runtime.model_folder import (default_model, load_model, load_motion_prior,
                                                         load_operating_point)

    try:
        folder = default_model()
    except FileNotFoundError as err:
        print(f"world model part skipped: {err}")
        return None
    bag = out / "berlin_drive"
    print(f"\nsimulating a {DRIVE_SECONDS:g} s drive on Berlin Adlershof (held out from training) into {bag} ...")
    model = load_model(folder)
    # The drive is rendered at the model's frame size: the camera, not a resize, decides what it sees.
    write_scene_bag(bag, SceneBagConfig(map="berlin_adlershof", seed=DRIVE_SEED, seconds=DRIVE_SECONDS,
                                        image_size=model.config.width, image_height=model.config.height),
                    overwrite=True)
    result, examples = evaluate_clips(model, bag, examples=3, prior=load_motion_prior(folder, model),
                                      operating=load_operating_point(folder, model) or OperatingPoint())
    report = write_report(out / "model", result, examples)
    frames, copy = result["model"]["frames"]["psnr"], result["baselines"]["copy_last_frame"]["frames"]["psnr"]
    seconds = result["data"]["future_frames_s"]
    agents = result["model"]["agents"]
    cv = result["baselines"]["constant_velocity_instantaneous"]["same_agents"]
    print(f"model {folder} on {result['data']['clips']} windows of the drive:")
    print("  future frames PSNR (dB), model vs copy-last-frame: "
          + ", ".join(f"+{t:g}s {m:.1f}/{c:.1f}" for t, m, c in zip(seconds, frames, copy)))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    cars = agents["targets"]["car_30m"]
    print(f"  agents in view within 50 m: {agents['true_agents']}; cars within 30 m: LET recall "
          f"{fmt(cars['let_recall'])} at precision {fmt(cars['let_precision'])}, AP@2m {fmt(cars['ap_2m'])}; "
          f"minFDE@3s model {fmt(agents['minFDE_1']['3s'])} m vs constant velocity (true past) "
          f"{fmt(cv['minFDE_1']['3s'])} m on the same {agents['matched']} agents")
    print(f"  report with pictures: {report} (camera.png, bev.png, frames.png, metrics.png)")
    return result


def _live_part(out: Path) -> dict | None:
    """The predictor as a process, the drive replayed into it, its recorded outputs scored vs offline."""
    import os

    from qcraft_world_model.eval.recorded import evaluate_recorded
    from qcraft_world_model.eval.report import camera_paths_picture, frames_picture, live_offline_table
    from qcraft_world_model.model.agent_decode import OperatingPoint
    from qcraft_world_model.runtime.model_folder import (default_model, load_model, load_motion_prior,
                                                         load_operating_point, read_model_config)

    bag = out / "berlin_drive"
    try:
        from qcraft_world_model.ros.process import apply_loopback_dds_env, exit_reason, start_predictor, stop
        from qcraft_world_model.ros.replay import replay_bag

        apply_loopback_dds_env()  # the player, like the node, keeps DDS on 127.0.0.1 (docs/security.md)

        folder = default_model()
    except (ImportError, FileNotFoundError) as err:
        print(f"\nlive node part skipped: {err} (make demo builds and sources the ROS workspace)")
        return None
    if not bag.is_dir():
        return None
    params = out / "predictor.yaml"
    # The drive's camera mount (the node cannot read /tf_static without tf2_msgs) and its CameraInfo.
    from qcraft_world_model.data.bag_clips import bag_cameras
    from qcraft_world_model.ros.camera_geometry import camera_parameters_yaml

    config = read_model_config(folder)
    (camera,) = bag_cameras(bag, config.width, config.height)
    params.write_text(PREDICTOR_PARAMS.format(model=folder.resolve(), width=config.width, height=config.height).replace(
        "topic: /sensing/camera/front/image_raw\n", "topic: /sensing/camera/front/image_raw\n"
        + camera_parameters_yaml(camera, "/sensing/camera/front/camera_info")))
    domain = 150 + os.getpid() % 80  # a domain of its own: nothing else on this machine hears the demo
    log = out / "predictor.log"
    print(f"\nstarting the predictor node (log: {log}) and replaying the drive into it at its recorded rate ...")
    node = start_predictor(params, domain, out, log=log)
    try:
        replay = replay_bag(bag, out / "berlin_drive_live", overwrite=True, domain_id=domain,
                            predictor_failed=lambda: exit_reason(node, log))
    finally:
        stop(node)
    print(f"  replayed {replay.published} messages in {replay.seconds:.1f} s; recorded "
          + ", ".join(f"{topic} x{count}" for topic, count in sorted(replay.recorded.items())))
    model = load_model(folder)
    # Offline decodes with the motion prior the node used (the folder's), so the two differ by the live path alone.
    result, examples, data = evaluate_recorded(model, out / "berlin_drive_live", offline=model, examples=3,
                                               prior=load_motion_prior(folder, model),
                                               operating=load_operating_point(folder, model) or OperatingPoint())
    table = live_offline_table(result)
    print("live predictions (recorded from the node) vs the same model offline, same windows:\n" + table)
    live_dir = out / "live"
    live_dir.mkdir(exist_ok=True)
    (live_dir / "live_vs_offline.md").write_text(table)
    seconds = result["live"]["data"]["future_frames_s"]
    cv2.imwrite(str(live_dir / "frames.png"), cv2.cvtColor(frames_picture(examples, seconds, scale=2),
                                                           cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(live_dir / "paths.png"), cv2.cvtColor(camera_paths_picture(examples),
                                                          cv2.COLOR_RGB2BGR))
    print(f"  pictures of the live predictions: {live_dir / 'paths.png'} (camera frame with predicted paths), "
          f"{live_dir / 'frames.png'} (predicted vs real future frames)")
    return {"replay": {k: v for k, v in vars(replay).items()}, **result}
