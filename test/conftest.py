"""Shared fixtures. Tests that need the colcon build (generated messages, rclpy)
call ``require_ros()``: a skip that names what is missing when run from a
pip-only install, a failure under ``make test`` (QCRAFT_WM_REQUIRE_ROS=1)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require_ros() -> tuple[ModuleType, ModuleType]:
    """Import ``rclpy`` and ``qcraft_world_model.msg`` or skip (fail under make test)."""
    if os.environ.get("QCRAFT_WM_REQUIRE_ROS") == "1":
        try:
            return importlib.import_module("rclpy"), importlib.import_module("qcraft_world_model.msg")
        except ImportError as err:
            pytest.fail(f"the ROS build is required but not importable: {err}")
    reason = "needs the colcon build (source install/setup.bash)"
    return pytest.importorskip("rclpy", reason=reason), pytest.importorskip("qcraft_world_model.msg", reason=reason)


@pytest.fixture
def ros():
    """(rclpy, qcraft_world_model.msg) for tests that need the ROS build."""
    return require_ros()
