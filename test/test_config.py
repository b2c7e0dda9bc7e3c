"""The ingest parameters: the shipped YAML, the schema, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qcraft_world_model.ingest import ConfigError, IngestConfig, load_parameters
from qcraft_world_model.ingest.config import CAMERA_PARAMETERS, PARAMETERS

CONFIG = Path(__file__).resolve().parents[1] / "config" / "predict.yaml"


def test_shipped_parameter_file_loads_and_matches_the_schema_defaults() -> None:
    params = load_parameters(CONFIG)
    config = IngestConfig.from_parameters(params)
    assert [c.name for c in config.cameras] == ["front"]
    for spec in PARAMETERS:
        assert params[spec.name] == spec.default, spec.name
    for spec in CAMERA_PARAMETERS:
        assert f"cameras.front.{spec.name}" in params, spec.name


def test_every_parameter_in_the_file_has_a_comment_above_it() -> None:
    lines = CONFIG.read_text().splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue  # blank, comment, or a section header
        key = stripped.split(":")[0]
        assert lines[index - 1].strip().startswith("#"), f"parameter {key!r} has no comment above it"


def test_node_section_overrides_wildcard(tmp_path: Path) -> None:
    document = yaml.safe_load(CONFIG.read_text())
    document["/vehicle/predictor"] = {"ros__parameters": {"window": {"size": 8}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document))
    assert IngestConfig.from_parameters(load_parameters(path)).window_size == 8
    assert IngestConfig.from_parameters(load_parameters(path, node_name="other")).window_size == 16


def three_cameras() -> dict:
    params = {"cameras.names": ["front", "left", "right"]}
    for name in ("front", "left", "right"):
        params[f"cameras.{name}.topic"] = f"/cam/{name}/image"
    params["cameras.left.transport"] = "compressed"
    return params


def test_three_camera_rig() -> None:
    config = IngestConfig.from_parameters(three_cameras())
    assert [c.transport for c in config.cameras] == ["raw", "compressed", "raw"]
    assert config.period_ns == 100_000_000


@pytest.mark.parametrize("change, message", [
    ({"window.size": 0}, r"window.size = 0 is below its minimum 1 frames"),
    ({"window.rate_hz": "fast"}, r"window.rate_hz must be float, got 'fast'"),
    ({"image.resize_mode": "zoom"}, r"image.resize_mode = 'zoom' must be one of stretch, center_crop"),
    ({"cameras.left.transport": "theora"}, r"cameras.left.transport = 'theora' must be one of raw"),
    ({"cameras.right.topic": ""}, r"cameras.right.topic is required"),
    ({"cameras.right.topic": "/cam/front/image"}, r"two cameras share one topic"),
    ({"cameras.names": []}, r"cameras.names must be a non-empty list"),
    ({"window.size": True}, r"window.size must be int, got True"),
])
def test_invalid_parameters_raise_errors_that_name_them(change: dict, message: str) -> None:
    params = {**three_cameras(), **change}
    with pytest.raises(ConfigError, match=message):
        IngestConfig.from_parameters(params)


def test_missing_and_broken_parameter_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read parameter file .*nope.yaml"):
        load_parameters(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**: {ros__parameters: [unclosed")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_parameters(broken)


def readme_table(marker: str) -> str:
    readme = (CONFIG.parents[1] / "README.md").read_text()
    start = readme.index(f"<!-- {marker}:start -->\n") + len(f"<!-- {marker}:start -->\n")
    return readme[start:readme.index(f"<!-- {marker}:end -->")].strip()


def test_readme_parameter_table_is_generated_from_the_schema() -> None:
    from qcraft_world_model.ingest.config import parameter_table_markdown
    from qcraft_world_model.ros.parameters import node_parameter_table_markdown

    assert readme_table("parameter-table") == parameter_table_markdown(), \
        "README table is stale: paste parameter_table_markdown()"
    assert readme_table("node-parameter-table") == node_parameter_table_markdown(), \
        "README node table is stale: paste node_parameter_table_markdown()"


def test_parameter_file_sets_every_node_parameter_to_its_default() -> None:
    from qcraft_world_model.ros.parameters import NODE_PARAMETERS, node_values

    values = load_parameters(CONFIG)
    assert node_values(values) == {spec.name: spec.default for spec in NODE_PARAMETERS}
    assert all(spec.name in values for spec in NODE_PARAMETERS), "config/predict.yaml lacks a node parameter"
    with pytest.raises(ConfigError, match=r"model.backend = 'cuda' must be one of auto"):
        node_values({**values, "model.backend": "cuda"})
    with pytest.raises(ConfigError, match=r"output.existence_threshold = 1.5 is above its maximum 1.0"):
        node_values({**values, "output.existence_threshold": 1.5})
