"""SUMO's units and conventions, converted once: compass angles, front bumpers, ids."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from qcraft_world_model.data.agents import (
    AgentLabel,
    Pose2D,
    center_from_front_bumper,
    heading_from_sumo_angle,
    label_of_vclass,
    stable_id,
)


@pytest.mark.parametrize("compass, heading", [(0, math.pi / 2), (90, 0.0), (180, -math.pi / 2), (270, math.pi),
                                              (45, math.pi / 4), (359, math.radians(91))])
def test_compass_angle_becomes_mathematical_heading(compass: float, heading: float) -> None:
    assert heading_from_sumo_angle(compass) == pytest.approx(heading)


def test_front_bumper_is_shifted_half_a_length_back() -> None:
    # A 4 m car pointing north with its bumper at (10, 20) has its centre at (10, 18).
    assert center_from_front_bumper(10, 20, heading_from_sumo_angle(0), 4.0) == pytest.approx((10, 18))
    # Pointing east: the centre lies to the west of the bumper.
    assert center_from_front_bumper(10, 20, heading_from_sumo_angle(90), 4.0) == pytest.approx((8, 20))


def test_vehicle_classes_map_to_autoware_labels() -> None:
    assert label_of_vclass("passenger") is AgentLabel.CAR
    assert label_of_vclass("truck") is AgentLabel.TRUCK
    assert label_of_vclass("bus") is AgentLabel.BUS
    assert label_of_vclass("bicycle") is AgentLabel.BICYCLE
    assert label_of_vclass("pedestrian") is AgentLabel.PEDESTRIAN
    assert label_of_vclass("rail") is AgentLabel.UNKNOWN


def test_stable_id_is_the_same_in_another_process() -> None:
    code = "from qcraft_world_model.data.agents import stable_id; print(stable_id('veh_mw80'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert int(other.stdout) == stable_id("veh_mw80") and 0 <= stable_id("veh_mw80") < 2**63


def test_pose_to_local_frame() -> None:
    pose = Pose2D(10.0, 5.0, math.pi / 2)  # facing north
    local = pose.to_local(np.array([[10.0, 15.0], [5.0, 5.0]]))
    np.testing.assert_allclose(local, [[10.0, 0.0], [0.0, 5.0]], atol=1e-9)  # ahead; to the left
    assert pose.heading_to_local(math.pi) == pytest.approx(math.pi / 2)
