"""The launch file's argument rules: a parameter file's settings hold unless an argument is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcraft_world_model.ingest.config import ConfigError, load_parameters
from qcraft_world_model.ros.launch_arguments import parameter_overrides

FILE = """/**:
  ros__parameters:
    cameras: {names: [front, left], front: {topic: /a}, left: {topic: /b}}
    model: {backend: torch, precision: fp32}
"""
NONE_GIVEN = {"model_path": "", "backend": "", "precision": "", "camera_names": "", "camera_topics": ""}


def test_arguments_not_given_leave_the_parameter_file_alone(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(FILE)
    # What the old launch file did: backend auto and precision "" after the file, every time.
    assert parameter_overrides(NONE_GIVEN, tmp_path / "p.yaml") == {}
    assert load_parameters(tmp_path / "p.yaml")["model.backend"] == "torch"


def test_given_arguments_override_and_camera_topics_pair_with_the_files_names(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(FILE)
    got = parameter_overrides({**NONE_GIVEN, "backend": "onnxruntime", "camera_topics": "/x, /y"}, tmp_path / "p.yaml")
    assert got == {"model.backend": "onnxruntime", "cameras.front.topic": "/x", "cameras.left.topic": "/y"}
    got = parameter_overrides({**NONE_GIVEN, "camera_names": "rear", "camera_topics": "/r"}, tmp_path / "p.yaml")
    assert got == {"cameras.names": ["rear"], "cameras.rear.topic": "/r"}
    with pytest.raises(ConfigError, match="1 topic\\(s\\) for 2 camera\\(s\\)"):
        parameter_overrides({**NONE_GIVEN, "camera_topics": "/only"}, tmp_path / "p.yaml")


def test_the_dds_environment_is_the_profile_or_the_large_data_defaults() -> None:
    from qcraft_world_model.ros.launch_arguments import dds_environment

    with_profile = dds_environment("/share/fastdds_loopback.xml", "LOCALHOST")
    assert with_profile["FASTRTPS_DEFAULT_PROFILES_FILE"] == with_profile["FASTDDS_DEFAULT_PROFILES_FILE"]
    # LOCALHOST would make rmw_fastrtps add a UDP transport on every interface next to the profile's.
    assert with_profile["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in with_profile
    assert dds_environment("", "SUBNET") == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA",
                                             "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
