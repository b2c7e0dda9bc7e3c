"""SUMO scenes end to end, on small settings: traffic, clips, shards, bags, and bad input."""

from __future__ import annotations

import errno
import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from qcraft_world_model.data import clip_dataset
from qcraft_world_model.data.clip_dataset import ClipDataset, DatasetError, finished_shard, shard_name
from qcraft_world_model.data.episode import EpisodeConfig
from qcraft_world_model.data.generate import DatasetPlan, generate_dataset, run_job
from qcraft_world_model.data.rosbag_io import bag_topics, read_messages
from qcraft_world_model.data.scene_bag import SceneBagConfig, write_scene_bag
from qcraft_world_model.data.sumo_maps import MapError, prepare_scenario
from qcraft_world_model.data.traffic_sim import SimulationError, TrafficSimulation

# Small and fast: Braunschweig has recorded demand (nothing to generate), 32 px frames.
TINY = EpisodeConfig(map="braunschweig", seed=3, clips=2, image_size=32, clip_stride=10)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def traffic() -> list:
    """Five seconds of snapshots around an ego on the Braunschweig intersection."""
    files = prepare_scenario("braunschweig", 3)
    with TrafficSimulation(files) as sim:
        sim.advance(150)
        rng = np.random.default_rng(0)
        while sim.choose_ego(rng, files.map.min_ego_route_m) is None:
            sim.advance(1.0)
        return [s for s in (sim.step() for _ in range(50)) if s is not None]


def test_agents_move_along_their_heading_at_their_speed(traffic: list) -> None:
    """SUMO's compass angle and front-bumper position are converted right: displacement
    between steps points where the heading says, as far as the speed says."""
    errors = []
    for before, after in zip(traffic, traffic[1:]):
        now = {a.sumo_id: a for a in after.agents}
        for agent in before.agents:
            nxt = now.get(agent.sumo_id)
            if nxt is None or agent.label.name == "PEDESTRIAN" or agent.speed < 3 or nxt.speed < 3:
                continue
            dx, dy = nxt.x - agent.x, nxt.y - agent.y
            assert math.hypot(dx, dy) == pytest.approx(0.1 * (agent.speed + nxt.speed) / 2, abs=0.15)
            direction = math.atan2(dy, dx)
            errors.append(abs(math.atan2(math.sin(direction - agent.heading), math.cos(direction - agent.heading))))
    assert len(errors) >= 10
    # A box centre in a turn slides a little sideways; a wrong angle convention would be off by 90-180 deg.
    assert np.median(errors) < 0.05 and np.percentile(errors, 90) < 0.5


def test_ids_are_stable_and_motion_is_continuous(traffic: list) -> None:
    for before, after in zip(traffic, traffic[1:]):
        now = {a.id: a for a in after.agents}
        for agent in before.agents:
            if agent.id in now:
                assert math.hypot(now[agent.id].x - agent.x, now[agent.id].y - agent.y) < 4.0
                assert now[agent.id].label == agent.label and now[agent.id].length == agent.length
    assert len({a.id for s in traffic for a in s.agents}) >= 5


def test_episode_shard_is_reproducible_and_loadable(tmp_path: Path) -> None:
    first = run_job(TINY, tmp_path / "a")
    second = run_job(TINY, tmp_path / "b")
    assert first["sha256"] == second["sha256"], "the same seed must give the same bytes"
    assert digest(tmp_path / "a" / first["file"]) == first["sha256"]
    clip_dataset.write_manifest(tmp_path / "a", "train", [first], {})
    dataset = ClipDataset(tmp_path / "a")
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample["frames"].shape == (26, 1, 32, 32, 3) and sample["frames"].dtype == np.uint8
    assert sample["agents"].shape == (46, 128, 5)
    t0 = 15
    # The ego sits at the origin of its own t0 frame, facing +x.
    np.testing.assert_allclose(sample["ego"][t0, :3], 0.0, atol=1e-4)
    near = sample["agent_valid"][t0]
    assert near.any() and (np.hypot(*sample["agents"][t0, near, :2].T) <= TINY.agent_radius_m + 1e-3).all()
    assert dataset.provenance(0)["map"] == "braunschweig"


def test_the_braunschweig_centre_map_gives_urban_traffic_of_every_group(tmp_path: Path) -> None:
    """The training map added in session 10: its random demand puts cars and people around the ego."""
    info = run_job(replace(TINY, map="braunschweig_center", seed=41, clips=3), tmp_path)
    clip_dataset.write_manifest(tmp_path, "train", [info], {})
    dataset = ClipDataset(tmp_path)
    labels = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        present = sample["agent_valid"][15]
        labels |= set(sample["agent_label"][present].tolist())
        assert np.hypot(*sample["ego"][-1, :2]) > 0.0, "the ego drives"
    assert {1, 7} <= labels, f"cars and pedestrians near the ego, got Autoware labels {sorted(labels)}"
    assert dataset.provenance(0)["map"] == "braunschweig_center"


def test_another_seed_gives_another_scene(tmp_path: Path) -> None:
    a = run_job(TINY, tmp_path)
    b = run_job(replace(TINY, seed=4), tmp_path)
    assert a["sha256"] != b["sha256"]


def test_generation_resumes_and_regenerates_only_unfinished_shards(tmp_path: Path) -> None:
    plan = DatasetPlan("train", ("braunschweig",), clips=2, clips_per_episode=1, image_size=32)
    first = generate_dataset(tmp_path, plan, workers=2)
    assert (first.clips, first.shards, first.reused_shards, first.failed) == (2, 2, 0, [])
    # An interrupted shard: the data is there, the sidecar that marks it finished is not.
    unfinished = tmp_path / shard_name("braunschweig", 2)
    unfinished.with_suffix(".json").unlink()
    assert finished_shard(unfinished) is None
    again = generate_dataset(tmp_path, plan, workers=1)
    assert (again.clips, again.reused_shards) == (2, 1)
    assert len(ClipDataset(tmp_path)) == 2


def _dies_on_seed_2_once(episode: EpisodeConfig, out: Path) -> dict:
    """A worker job whose process dies (as a segfault would kill it) the first time it gets seed 2."""
    import os

    marker = Path(os.environ["QCRAFT_TEST_MARKERS"]) / f"died-{episode.seed}"
    if episode.seed == 2 and not marker.exists():
        marker.write_text("died\n")
        os._exit(139)
    return run_job(episode, out)


def _always_dies(episode: EpisodeConfig, out: Path) -> dict:
    import os

    os._exit(139)


def test_a_worker_that_dies_costs_its_episode_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead worker breaks its process pool and fails every episode in flight with it; those run again in a
    fresh pool (so a one-off crash loses nothing), and an episode that kills every pool is reported failed
    by map and seed instead of hanging or failing the rest."""
    monkeypatch.setenv("QCRAFT_TEST_MARKERS", str(tmp_path))
    plan = DatasetPlan("train", ("random_grid",), clips=3, clips_per_episode=1, image_size=32)
    report = generate_dataset(tmp_path / "data", plan, workers=1, job=_dies_on_seed_2_once)
    assert (tmp_path / "died-2").exists()
    assert (report.clips, report.shards, report.failed) == (3, 3, [])
    report = generate_dataset(tmp_path / "dead", DatasetPlan("train", ("random_grid",), clips=1, image_size=32),
                              workers=1, job=_always_dies)
    assert report.clips == 0 and len(report.failed) == 1
    assert report.failed[0].startswith("random_grid seed 1: a worker process died in each of 3 pools")


def test_unknown_map_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MapError, match=r"unknown map 'atlantis'; known maps: berlin_adlershof"):
        generate_dataset(tmp_path, DatasetPlan("train", ("atlantis",), clips=1))


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(DatasetError, match=r"cannot create output folder .*file/data"):
        generate_dataset(tmp_path / "file" / "data", DatasetPlan("train", ("braunschweig",), clips=1))


def test_disk_full_leaves_no_shard_that_looks_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(arrays, path, metadata=None):  # noqa: ANN001, ANN202
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(clip_dataset, "save_file", full_disk)
    with pytest.raises(DatasetError, match=r"cannot write .*: the disk is full"):
        run_job(TINY, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sumo_dying_mid_run_names_map_and_seed() -> None:
    import libsumo

    with TrafficSimulation(prepare_scenario("braunschweig", 3)) as sim:
        sim.advance(1.0)
        libsumo.close()  # the simulation dies under us
        with pytest.raises(SimulationError, match=r"SUMO failed on map 'braunschweig' seed 3"):
            sim.advance(1.0)


def test_scene_bag_round_trip(tmp_path: Path) -> None:
    config = SceneBagConfig(map="braunschweig", seed=3, seconds=2.0, image_size=32, rig="front3")
    summary = write_scene_bag(tmp_path / "bag", config)
    assert summary["frames"] == 20
    topics = bag_topics(tmp_path / "bag")
    for camera in ("front", "front_left", "front_right"):
        assert topics[f"/sensing/camera/{camera}/image_raw"] == "sensor_msgs/msg/Image"
        assert topics[f"/sensing/camera/{camera}/camera_info"] == "sensor_msgs/msg/CameraInfo"
    assert topics["/ground_truth/agents"] == "qcraft_world_model/msg/GroundTruthAgents"
    assert topics["/localization/odometry"] == "nav_msgs/msg/Odometry"
    stamps: dict[str, list[int]] = {}
    for record in read_messages(tmp_path / "bag"):
        if record.topic != "/tf_static":
            stamps.setdefault(record.topic, []).append(record.stamp_ns if record.topic != "/tf"
                                                       else record.log_time_ns)
        if record.topic == "/ground_truth/agents":
            assert record.message.header.frame_id == "base_link"
            assert all(a.existence_probability == 1.0 and not a.paths for a in record.message.agents)
        if record.topic == "/sensing/camera/front/camera_info":
            assert record.message.k[0] == pytest.approx(summary["cameras"][0]["fx"])
    series = list(stamps.values())
    assert all(len(s) == 20 for s in series) and all(s == series[0] for s in series), "one clock for all topics"
    assert np.all(np.diff(series[0]) == 100_000_000)


def test_scene_bag_is_reproducible(tmp_path: Path) -> None:
    config = SceneBagConfig(map="braunschweig", seed=5, seconds=1.0, image_size=32)
    write_scene_bag(tmp_path / "a" / "bag", config)
    write_scene_bag(tmp_path / "b" / "bag", config)
    for name in ("bag.mcap", "metadata.yaml"):
        assert digest(tmp_path / "a" / "bag" / name) == digest(tmp_path / "b" / "bag" / name), name


def test_bag_cut_into_clips_matches_its_ground_truth(tmp_path: Path) -> None:
    from qcraft_world_model.data.bag_clips import clips_from_bag

    config = SceneBagConfig(map="braunschweig", seed=3, seconds=6.0, image_size=32)
    summary = write_scene_bag(tmp_path / "bag", config)
    clips = clips_from_bag(tmp_path / "bag", image_size=32, stride=5)
    assert clips.frames.shape[1:] == (26, 1, 32, 32, 3) and len(clips.frames) == 3  # t0 windows at 0, 5, 10
    camera = clips.cameras[0]
    assert (camera.z, camera.pitch_down_deg) == pytest.approx((summary["cameras"][0]["z"],
                                                               summary["cameras"][0]["pitch_down_deg"]), abs=1e-6)
    truth = {r.stamp_ns: r.message for r in read_messages(tmp_path / "bag", topics=["/ground_truth/agents"])}
    at_t0 = truth[int(clips.stamps_ns[0])]
    nearest = min(at_t0.agents, key=lambda a: math.hypot(a.pose.position.x, a.pose.position.y))
    np.testing.assert_allclose(clips.agents[0, 15, 0, :2], [nearest.pose.position.x, nearest.pose.position.y],
                               atol=1e-4)
    # Moved into the t0 frame through odometry, agents travel smoothly even as the ego moves.
    valid = clips.agent_valid[0]
    steps = np.linalg.norm(np.diff(clips.agents[0, :, :, :2], axis=0), axis=-1)[valid[1:] & valid[:-1]]
    assert steps.max() < 3.0


def test_bag_cameras_follow_the_resize_of_their_images(tmp_path: Path) -> None:
    """A bag whose camera has another aspect than the model: its images are stretched to the model's
    size, and the clip's camera must project the world where the stretched image shows it."""
    from qcraft_world_model.data.bag_clips import bag_cameras
    from qcraft_world_model.data.camera_rig import camera_from_dict

    summary = write_scene_bag(tmp_path / "bag", SceneBagConfig(map="braunschweig", seed=3, seconds=2.5,
                                                               image_size=64, image_height=32))
    native = camera_from_dict(summary["cameras"][0])
    assert (native.width, native.height) == (64, 32)
    (read,) = bag_cameras(tmp_path / "bag", 32)  # read square, like a 128x128 model reads a wide camera
    points = np.array([[12.0, 2.0, 0.0], [25.0, -4.0, 1.0], [6.0, 1.5, 0.5]])
    native_px, native_depth = native.project(points)
    read_px, read_depth = read.project(points)
    np.testing.assert_allclose(read_px, native_px * [32 / 64, 32 / 32], atol=1e-6)
    np.testing.assert_allclose(read_depth, native_depth, atol=1e-6)
    # Round trip through a manifest keeps the measured intrinsics.
    assert camera_from_dict(read.to_dict()) == read
