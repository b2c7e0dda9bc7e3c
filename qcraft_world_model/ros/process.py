"""Start the installed predictor as its own process, as ``ros2 run qcraft_world_model predictor`` does.

For the demo and the tests, which need the real node (its own process, DDS in
between) without a ROS CLI installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def predictor_executable() -> Path:
    """The installed ``predictor`` (``lib/qcraft_world_model/predictor`` of the sourced workspace)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix("qcraft_world_model"))
    except PackageNotFoundError as err:
        raise FileNotFoundError("the qcraft_world_model package is not built or not sourced "
                                "(make build; source install/setup.bash)") from err
    return prefix / "lib" / "qcraft_world_model" / "predictor"


def start_predictor(params_file: str | Path, domain_id: int, cwd: str | Path, log: Path | None = None
                    ) -> subprocess.Popen:
    """The predictor with ``params_file`` on ``domain_id``, discovery limited to this machine.

    Its output goes to ``log`` (default: a file in ``cwd``), never to a pipe
    nobody reads while it runs (a full pipe would block the node); ``stop``
    returns it. Fast DDS's LARGE_DATA builtin transport carries camera images
    over shared memory/TCP instead of fragmenting them over UDP, as the launch
    file sets up too.
    """
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    log = Path(log) if log is not None else Path(cwd) / "predictor.log"
    with log.open("w") as output:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, str(predictor_executable()), "--ros-args", "--params-file",
                                    str(Path(params_file).resolve())], env=env, cwd=cwd, stdout=output,
                                   stderr=subprocess.STDOUT, text=True)
    process.log_path = log  # type: ignore[attr-defined]
    return process


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> str:
    """Terminate (SIGTERM, then SIGKILL) and return what it printed."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log = getattr(process, "log_path", None)
    return log.read_text(errors="replace") if log is not None and log.is_file() else ""


def exit_reason(process: subprocess.Popen, log: Path | None = None) -> str | None:
    """None while ``process`` runs; else its exit code and the end of its log (for ``replay_bag``)."""
    if process.poll() is None:
        return None
    tail = log.read_text()[-2000:] if log is not None and log.is_file() else ""
    return f"exit code {process.returncode}{': ' + tail if tail else ''}"
