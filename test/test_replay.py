"""Live replay: a scene bag played into the real predictor process, its outputs recorded, and the
recorded predictions scored like offline evaluation of the same model on the same windows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from qcraft_world_model.data.scene_bag import SceneBagConfig, camera_info_topic, camera_topic, write_scene_bag

from predictor_params import ONE_CAMERA_FP32 as PARAMS


def test_replay_records_live_predictions_that_score_like_offline(ros, tmp_path: Path) -> None:
    from qcraft_world_model.eval.recorded import evaluate_recorded
    from qcraft_world_model.ros.process import start_predictor, stop
    from qcraft_world_model.ros.replay import replay_bag
    from qcraft_world_model.runtime.model_folder import default_model, load_model, read_model_config

    scene = tmp_path / "scene"
    config = read_model_config(default_model())  # the node's model: the drive is rendered at its size
    write_scene_bag(scene, SceneBagConfig(map="berlin_adlershof", seed=100_321, seconds=8.0,
                                          image_size=config.width, image_height=config.height))
    domain = 101 + os.getpid() % 100
    # The node places agents with the camera's mount: from the bag's /tf_static where tf2_msgs is
    # installed (a ROS install, or make test's stand-in), else from the parameters, so the bag's mount
    # goes into those too; the intrinsics come from the bag's CameraInfo.
    from qcraft_world_model.data.bag_clips import bag_cameras
    from qcraft_world_model.ros.camera_geometry import camera_parameters_yaml

    (camera,) = bag_cameras(scene, config.width, config.height)
    params = PARAMS.format(topic=camera_topic("front")).replace(
        f"topic: {camera_topic('front')}\n",
        f"topic: {camera_topic('front')}\n" + camera_parameters_yaml(camera, camera_info_topic("front")))
    params += "    ego_motion:\n      odometry_topic: /localization/odometry\n"  # the bag's, as evaluation uses
    (tmp_path / "params.yaml").write_text(params)
    node = start_predictor(tmp_path / "params.yaml", domain, tmp_path)
    try:
        result = replay_bag(scene, tmp_path / "replay", wait_for_subscriber_s=90, domain_id=domain, progress=False)
    finally:
        log = stop(node)
    assert result.published > 80 * 2, "every camera frame and ground-truth message is replayed"
    # How many of the ~65 full windows the node predicts depends on how busy the machine is (it drops
    # stale windows rather than queue them); that it answers, and what, does not.
    assert result.recorded.get("/predictor/predicted_agents", 0) > 0, log
    assert result.recorded.get("/predictor/predicted_frames/front", 0) > 0, log
    assert set(result.not_played) <= {"/tf", "/tf_static"}  # tf2_msgs: a ROS install or the test stand-in

    model = load_model(default_model())
    scored, _, _ = evaluate_recorded(model, tmp_path / "replay", offline=model)
    coverage, live, offline = scored["coverage"], scored["live"]["model"], scored["offline"]["model"]
    assert coverage["windows"] == 4 and coverage["predicted_live"] >= 1
    assert coverage["backends"] == ["torch-cpu/fp32"]
    # Same model, same frames, same windows: only the published 8-bit frames and batch-1 rounding differ.
    for a, b in zip(live["frames"]["psnr"], offline["frames"]["psnr"]):
        assert abs(a - b) < 0.05
    # Live agents are the offline decode's agents (same geometry, same decoder) that the node's tracker
    # kept: every one of them is at an offline agent's position, with that agent's paths.
    from qcraft_world_model.eval.evaluate import model_predictions
    from qcraft_world_model.eval.recorded import RecordedPredictions
    from qcraft_world_model.data.clip_tensors import ClipTensors

    recorded = RecordedPredictions.from_bag(tmp_path / "replay", model.config.size_hw)
    data = ClipTensors.load(tmp_path / "replay", model.config)
    compared = 0
    for index, stamp in enumerate(data.stamps_ns):
        if stamp not in recorded.agents:
            continue
        with torch.inference_mode():
            offline_agents = model_predictions(model, data.batch(torch.tensor([index])), 0.3).agents[0]
        for position, paths in zip(recorded.agents[stamp].position, recorded.agents[stamp].paths):
            gap = np.linalg.norm(offline_agents.position - position, axis=1)
            assert gap.min() < 1e-3
            assert np.abs(offline_agents.paths[gap.argmin()] - paths).max() < 1e-3
            compared += 1
    assert live["agents"]["detections"] <= offline["agents"]["detections"] + compared
    json.dumps(scored)  # the result is what --json writes


def test_replay_without_a_predictor_says_so(ros, tmp_path: Path) -> None:
    from qcraft_world_model.ros.replay import replay_bag

    scene = tmp_path / "scene"
    write_scene_bag(scene, SceneBagConfig(map="braunschweig", seed=4, seconds=1.0))
    with pytest.raises(TimeoutError, match="is the predictor running"):
        replay_bag(scene, tmp_path / "replay", wait_for_subscriber_s=1.0, domain_id=201 + os.getpid() % 20,
                   progress=False)
    assert not (tmp_path / "replay").exists()


def test_replay_command_without_a_predictor_is_one_clear_line(ros, tmp_path: Path) -> None:
    import subprocess
    import sys

    scene = tmp_path / "scene"
    write_scene_bag(scene, SceneBagConfig(map="braunschweig", seed=4, seconds=1.0))
    env = {**os.environ, "ROS_DOMAIN_ID": str(40 + os.getpid() % 20), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    done = subprocess.run([sys.executable, "-m", "qcraft_world_model.cli", "replay", str(scene), "--out",
                           str(tmp_path / "out"), "--wait", "1"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("qcraft-wm replay: error: nobody subscribed to")
    assert "Traceback" not in done.stderr


def test_replay_refuses_an_existing_output_before_playing(ros, tmp_path: Path) -> None:
    from qcraft_world_model.data.rosbag_io import BagError
    from qcraft_world_model.ros.replay import replay_bag

    import shutil

    scene = tmp_path / "scene"
    write_scene_bag(scene, SceneBagConfig(map="braunschweig", seed=4, seconds=1.0))
    shutil.copytree(scene, tmp_path / "out")  # an earlier output bag (an empty folder is free to use)
    with pytest.raises(BagError, match="already exists"):
        replay_bag(scene, tmp_path / "out", wait_for_subscriber_s=60.0, progress=False)  # fails at once
