"""Per-agent visibility from rendered pixels: the renderer's id pass, silhouettes, and the clips' arrays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from qcraft_world_model.data.agents import AgentLabel, AgentState, Pose2D
from qcraft_world_model.data.camera_rig import get_rig
from qcraft_world_model.data.clip_dataset import METADATA_KEY, OPTIONAL_ARRAY_FIELDS, ClipDataset
from qcraft_world_model.data.generate import DatasetPlan, generate_dataset
from qcraft_world_model.data.agent_shapes import VEHICLE_SHAPES, agent_parts
from qcraft_world_model.data.renderer import SceneRenderer, SceneStyle, agent_silhouette
from qcraft_world_model.data.scene_geometry import SceneGeometry, StaticBox

EGO = Pose2D(100.0, 50.0, 0.7)  # anywhere in the map, at an angle
EMPTY = SceneGeometry([], (0, 0, 1, 1), 100.0)
SIZES = {AgentLabel.CAR: (4.5, 1.8, 1.5), AgentLabel.BUS: (12.0, 2.5, 3.2), AgentLabel.PEDESTRIAN: (0.5, 0.5, 1.75)}


def place(name: str, label: AgentLabel, forward: float, left: float, heading: float = 0.0,
          size: tuple[float, float, float] | None = None) -> AgentState:
    """An agent ``forward`` m ahead of and ``left`` m beside the ego, ``heading`` relative to it."""
    c, s = np.cos(EGO.heading), np.sin(EGO.heading)
    length, width, height = size or SIZES[label]
    return AgentState(name, label, EGO.x + forward * c - left * s, EGO.y + forward * s + left * c, 0.0,
                      EGO.heading + heading, 0.0, length, width, height)


@pytest.fixture(scope="module")
def renderer() -> SceneRenderer:
    """One front camera, 64 px, over an empty map (ground and sky only)."""
    with SceneRenderer(EMPTY, get_rig("front", 64, 64), SceneStyle()) as instance:
        yield instance


def test_lone_car_ahead_is_fully_visible(renderer: SceneRenderer) -> None:
    agents = [place("car", AgentLabel.CAR, 12.0, 0.5, heading=0.4)]
    _, ids = renderer.render_with_visibility(EGO, agents)
    assert ids["front"].shape == (128, 128) and ids["front"].dtype == np.int32
    assert set(np.unique(ids["front"])) == {-1, 0}
    visible_px, visibility = renderer.agent_visibility(EGO, agents, ids)
    assert visible_px.shape == (1, 1) and visible_px.dtype == np.int32 and visibility.dtype == np.float32
    assert visibility[0, 0] >= 0.95
    # Counted in image pixels: a quarter of the supersampled ones.
    assert visible_px[0, 0] == round(np.count_nonzero(ids["front"] == 0) / 4) > 20


def test_car_behind_a_bus_is_hidden(renderer: SceneRenderer) -> None:
    agents = [place("car", AgentLabel.CAR, 25.0, 0.0), place("bus", AgentLabel.BUS, 14.0, 0.0, heading=0.05)]
    _, ids = renderer.render_with_visibility(EGO, agents)
    visible_px, visibility = renderer.agent_visibility(EGO, agents, ids)
    assert visibility[0, 0] < 0.1 and visibility[1, 0] >= 0.95
    # Alone, the same car is in plain view: it is the bus that hides it.
    _, alone = renderer.render_with_visibility(EGO, agents[:1])
    assert renderer.agent_visibility(EGO, agents[:1], alone)[1][0, 0] >= 0.95


def test_buildings_hide_agents_too() -> None:
    c, s = np.cos(EGO.heading), np.sin(EGO.heading)
    wall = StaticBox(EGO.x + 10 * c, EGO.y + 10 * s, EGO.heading, 1.0, 12.0, 0.0, 8.0, "facade0")
    agents = [place("hidden", AgentLabel.CAR, 20.0, 0.0), place("aside", AgentLabel.PEDESTRIAN, 7.0, 3.0)]
    with SceneRenderer(SceneGeometry([], (0, 0, 1, 1), 100.0, [wall]), get_rig("front", 64, 64)) as renderer:
        _, ids = renderer.render_with_visibility(EGO, agents)
        _, visibility = renderer.agent_visibility(EGO, agents, ids)
    assert visibility[0, 0] < 0.1 and visibility[1, 0] >= 0.95


def test_agent_behind_the_camera_covers_nothing(renderer: SceneRenderer) -> None:
    agents = [place("behind", AgentLabel.CAR, -10.0, 0.0), place("ahead", AgentLabel.CAR, 15.0, -1.0)]
    _, ids = renderer.render_with_visibility(EGO, agents)
    visible_px, visibility = renderer.agent_visibility(EGO, agents, ids, which=[0])
    assert visible_px[0, 0] == 0 and visibility[0, 0] == 0.0
    assert not (ids["front"] == 0).any()
    assert agent_silhouette(renderer.cameras[0], EGO, agents[0], renderer.supersample) is None


@pytest.mark.parametrize("vehicle_shapes", VEHICLE_SHAPES)
def test_silhouette_matches_the_id_pass_pixel_for_pixel(vehicle_shapes: str) -> None:
    """The CPU rasterisation of a lone agent agrees with what the GPU draws, up to a pixel at an edge,
    at the edge of the image and for boxes cut by the near plane (agents right beside the camera), for
    every body the renderer draws (with varied shapes the agent's name picks its body)."""
    cameras = get_rig("front3", 48, 48)
    rng = np.random.default_rng(0)
    compared = 0
    with SceneRenderer(EMPTY, cameras, vehicle_shapes=vehicle_shapes) as renderer:
        for index in range(30):
            label = AgentLabel(int(rng.integers(0, 8)))
            agent = place(f"a{index}", label, rng.uniform(-3, 40), rng.uniform(-15, 15), rng.uniform(-3, 3),
                          tuple(rng.uniform([0.5, 0.5, 1.0], [12.0, 2.6, 3.5])))
            _, ids = renderer.render_with_visibility(EGO, [agent])
            for camera in cameras:
                drawn = ids[camera.name] == 0
                silhouette = np.zeros_like(drawn)
                found = agent_silhouette(camera, EGO, agent, renderer.supersample, vehicle_shapes)
                if found is not None:
                    (row, col), mask = found
                    silhouette[row: row + mask.shape[0], col: col + mask.shape[1]] = mask
                compared += bool(drawn.any())
                assert np.count_nonzero(drawn ^ silhouette) <= 2, (camera.name, agent)
    assert compared >= 20


def test_rgb_of_the_visibility_render_is_that_of_render() -> None:
    c, s = np.cos(EGO.heading), np.sin(EGO.heading)
    boxes = [StaticBox(EGO.x + 18 * c + 6 * s, EGO.y + 18 * s - 6 * c, 0.3, 8.0, 6.0, 0.0, 9.0, "facade2"),
             StaticBox(EGO.x + 9 * c - 5 * s, EGO.y + 9 * s + 5 * c, 0.0, 0.4, 0.4, 0.0, 2.5, "trunk")]
    agents = [place("car", AgentLabel.CAR, 12.0, 1.0), place("bus", AgentLabel.BUS, 30.0, -3.0, 0.2),
              place("walker", AgentLabel.PEDESTRIAN, 8.0, -2.5)]
    style = SceneStyle.random(np.random.default_rng(4))
    with SceneRenderer(SceneGeometry([], (0, 0, 1, 1), 100.0, boxes), get_rig("front3", 64, 64), style) as renderer:
        # A fresh renderer's first frame shades some static boxes differently from every later one
        # (so it was before the id pass existed): compare from the second frame on.
        renderer.render(EGO, agents)
        before = renderer.render(EGO, agents)
        images, ids = renderer.render_with_visibility(EGO, agents)
        after = renderer.render(EGO, agents)
    assert set(images) == set(ids) == {"front", "front_left", "front_right"}
    for name, image in images.items():
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        np.testing.assert_array_equal(image, before[name])
        np.testing.assert_array_equal(after[name], before[name])
    assert {0, 1, 2} <= set(np.unique(np.concatenate([m.ravel() for m in ids.values()])))


def test_clips_carry_visibility_and_older_shards_still_load(tmp_path: Path) -> None:
    plan = DatasetPlan("train", ("braunschweig",), clips=2, clips_per_episode=2, image_size=32, rig="front3")
    report = generate_dataset(tmp_path, plan, workers=1)
    assert (report.clips, report.failed) == (2, [])
    dataset = ClipDataset(tmp_path)
    visible_any = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        agents = sample["agent_size"].shape[0]
        assert sample["agent_visible_px"].shape == (agents, 3) and sample["agent_visible_px"].dtype == np.int32
        assert sample["agent_visibility"].shape == (agents, 3) and sample["agent_visibility"].dtype == np.float32
        visibility, visible_px = sample["agent_visibility"], sample["agent_visible_px"]
        assert ((visibility >= 0) & (visibility <= 1)).all() and (visible_px >= 0).all()
        empty = ~sample["agent_valid"][15]  # slots with no agent at t0
        assert not visibility[empty].any() and not visible_px[empty].any()
        assert (visibility[visible_px > 0] > 0).all()
        visible_any += int((visible_px > 0).any())
    assert visible_any >= 1

    # A shard written before these arrays existed: the same clips without them, and no KeyError.
    shard = tmp_path / dataset.manifest["shards"][0]["file"]
    with safe_open(str(shard), framework="np") as handle:
        arrays = {name: handle.get_tensor(name) for name in handle.keys() if name not in OPTIONAL_ARRAY_FIELDS}
        metadata = {METADATA_KEY: handle.metadata()[METADATA_KEY]}
    assert json.loads(metadata[METADATA_KEY])["format"] == "qcraft-wm-clips/1"
    save_file(arrays, str(tmp_path / "old.safetensors"), metadata=metadata)
    os.replace(tmp_path / "old.safetensors", shard)  # a new file: the open dataset keeps reading the old one
    old = ClipDataset(tmp_path)[0]
    assert not set(OPTIONAL_ARRAY_FIELDS) & set(old)
    for name, value in dataset[0].items():
        if name not in OPTIONAL_ARRAY_FIELDS:
            np.testing.assert_array_equal(old[name], value)


def test_varied_shapes_give_each_vehicle_one_of_several_bodies_for_good(renderer: SceneRenderer) -> None:
    cars = [place(f"car{i}", AgentLabel.CAR, 12.0, 0.0) for i in range(120)]
    bodies = {agent_parts(car, "varied") for car in cars}
    assert len(bodies) == 6 and agent_parts(cars[0], "fixed") in bodies  # the fixed look is one of them
    assert {agent_parts(car, "fixed") for car in cars} == {agent_parts(cars[0], "fixed")}
    assert [agent_parts(car, "varied") for car in cars] == [agent_parts(car, "varied") for car in cars]
    # Every new body stands on wheels: some part reaches the ground.
    assert all(min(part[3] for part in body) == 0.0 for body in bodies - {agent_parts(cars[0], "fixed")})
    with pytest.raises(ValueError, match="vehicle shapes 'boxes'"):
        SceneRenderer(EMPTY, get_rig("front", 32, 32), vehicle_shapes="boxes")
    # The same scene drawn with varied bodies differs from the fixed look, and drawing it does not change
    # how the fixed-look renderer draws (a dataset made before keeps its bytes).
    before = renderer.render(EGO, cars[:6:2])["front"]
    with SceneRenderer(EMPTY, get_rig("front", 64, 64), SceneStyle(), vehicle_shapes="varied") as varied:
        varied.render(EGO, cars[:6:2])
        other = varied.render(EGO, cars[:6:2])["front"]
    assert np.count_nonzero((other != before).any(axis=-1)) > 20
    np.testing.assert_array_equal(renderer.render(EGO, cars[:6:2])["front"], before)


def test_a_dataset_records_its_vehicle_shapes_and_a_rerun_with_others_is_another_plan(tmp_path: Path) -> None:
    from qcraft_world_model.data.generate import DatasetError

    plan = DatasetPlan("train", ("random_grid",), clips=1, clips_per_episode=1, image_size=32,
                       vehicle_shapes="varied")
    assert generate_dataset(tmp_path, plan, workers=1).clips == 1
    sidecar = json.loads(next(tmp_path.glob("*-seed*.json")).read_text())
    assert sidecar["episode"]["vehicle_shapes"] == "varied"
    with pytest.raises(DatasetError):
        generate_dataset(tmp_path, DatasetPlan("train", ("random_grid",), clips=1, clips_per_episode=1,
                                               image_size=32), workers=1)
