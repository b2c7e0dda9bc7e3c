"""Live replay: a scene bag played into the real predictor process, its outputs recorded, and the
recorded predictions scored like offline evaluation of the same model on the same windows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qcraft_world_model.data.scene_bag import SceneBagConfig, camera_topic, write_scene_bag

from predictor_params import ONE_CAMERA_FP32 as PARAMS


def test_replay_records_live_predictions_that_score_like_offline(ros, tmp_path: Path) -> None:
    from qcraft_world_model.eval.recorded import evaluate_recorded
    from qcraft_world_model.ros.process import start_predictor, stop
    from qcraft_world_model.ros.replay import replay_bag
    from qcraft_world_model.train.model_card import default_model
    from qcraft_world_model.train.trainer import load_model

    scene = tmp_path / "scene"
    write_scene_bag(scene, SceneBagConfig(map="berlin_adlershof", seed=100_321, seconds=8.0))
    domain = 101 + os.getpid() % 100
    (tmp_path / "params.yaml").write_text(PARAMS.format(topic=camera_topic("front")))
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
    assert set(result.not_played) <= {"/tf", "/tf_static"}  # tf2_msgs has no PyPI wheel; a ROS install has it

    model = load_model(default_model("lite"))
    scored, _, _ = evaluate_recorded(model, tmp_path / "replay", offline=model)
    coverage, live, offline = scored["coverage"], scored["live"]["model"], scored["offline"]["model"]
    assert coverage["windows"] == 4 and coverage["predicted_live"] >= 1
    assert coverage["backends"] == ["torch-cpu/fp32"]
    # Same model, same frames, same windows: only the published 8-bit frames and batch-1 rounding differ.
    for a, b in zip(live["frames"]["psnr"], offline["frames"]["psnr"]):
        assert abs(a - b) < 0.05
    assert live["agents"]["detections"] == offline["agents"]["detections"]
    assert live["agents"]["matched"] == offline["agents"]["matched"]
    for key in ("minFDE_1", "minFDE_3"):
        if offline["agents"][key]["3s"] is not None:
            assert abs(live["agents"][key]["3s"] - offline["agents"][key]["3s"]) < 1e-3
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

    scene = tmp_path / "scene"
    write_scene_bag(scene, SceneBagConfig(map="braunschweig", seed=4, seconds=1.0))
    (tmp_path / "out").mkdir()
    with pytest.raises(BagError, match="already exists"):
        replay_bag(scene, tmp_path / "out", wait_for_subscriber_s=60.0, progress=False)  # fails at once
