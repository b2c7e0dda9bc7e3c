"""Start the installed predictor as its own process, as ``ros2 run qcraft_world_model predictor`` does.

For the demo and the tests, which need the real node (its own process, DDS in
between) without a ROS CLI installed. By default the node's DDS stays on this
machine: the Fast DDS profile ``config/fastdds_loopback.xml`` binds its sockets
to 127.0.0.1 only and carries images over shared memory (docs/security.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: The Fast DDS profile (installed under share/qcraft_world_model/config/) that keeps DDS on loopback.
LOOPBACK_PROFILE = "fastdds_loopback.xml"
#: Environment variables naming a default Fast DDS XML profile (Fast DDS 2.x reads the first, 3.x the second).
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
#: Variables ``loopback_dds_env`` removes: each one would bring back sockets beyond 127.0.0.1.
LOOPBACK_UNSET = ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS")


def loopback_profile() -> Path:
    """``config/fastdds_loopback.xml``: the installed copy (ament index), else the source tree's.

    Raises FileNotFoundError when neither exists (a pip install of the library without the
    colcon build, which installs config/ into share/qcraft_world_model/).
    """
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        pass
    else:
        try:
            candidates.append(Path(get_package_share_directory("qcraft_world_model")) / "config" / LOOPBACK_PROFILE)
        except PackageNotFoundError:
            pass
    # The source checkout (resolved: --symlink-install points installed modules back into it).
    candidates.append(Path(__file__).resolve().parents[2] / "config" / LOOPBACK_PROFILE)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"the Fast DDS profile {LOOPBACK_PROFILE} is in none of: "
                            + ", ".join(str(p) for p in candidates))


def loopback_dds_env(base: Mapping[str, str] | None = None, profile: str | Path | None = None) -> dict[str, str]:
    """The environment for loopback-only DDS: ``base`` (default ``os.environ``) with the profile set.

    A complete environment, to pass as ``env=`` to a child process (for rclpy in the calling
    process use ``apply_loopback_dds_env``). It

    - sets FASTRTPS_DEFAULT_PROFILES_FILE and FASTDDS_DEFAULT_PROFILES_FILE to ``profile``
      (default ``loopback_profile()``);
    - sets ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT: the profile itself limits discovery to
      127.0.0.1. With LOCALHOST, rmw_fastrtps (Jazzy) appends its own shared-memory and UDPv4
      transports to the profile's, and that UDPv4 transport has no interface allowlist: it binds
      0.0.0.0 and eth0 again;
    - removes FASTDDS_BUILTIN_TRANSPORTS (LARGE_DATA would add a TCP listener on 0.0.0.0),
      ROS_LOCALHOST_ONLY (deprecated; it forces LOCALHOST) and ROS_STATIC_PEERS (other hosts).

    Only Fast DDS (rmw_fastrtps_cpp, the default RMW) reads the profile.
    """
    path = str(Path(profile).resolve() if profile is not None else loopback_profile())
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in LOOPBACK_UNSET}
    env.update({name: path for name in PROFILE_VARIABLES})
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
    return env


def apply_loopback_dds_env(profile: str | Path | None = None) -> dict[str, str]:
    """Make this process's own DDS loopback-only (``os.environ`` becomes ``loopback_dds_env()``).

    Must run before this process's first ``rclpy.init``: Fast DDS reads its XML profile once per
    process, when the first participant is created; later changes of the variables are ignored.
    Returns the environment it set.
    """
    env = loopback_dds_env(profile=profile)
    for name in LOOPBACK_UNSET:
        os.environ.pop(name, None)
    os.environ.update(env)
    return env


def predictor_executable() -> Path:
    """The installed ``predictor`` (``lib/qcraft_world_model/predictor`` of the sourced workspace)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix("qcraft_world_model"))
    except PackageNotFoundError as err:
        raise FileNotFoundError("the qcraft_world_model package is not built or not sourced "
                                "(make build; source install/setup.bash)") from err
    return prefix / "lib" / "qcraft_world_model" / "predictor"


def start_predictor(params_file: str | Path, domain_id: int, cwd: str | Path, log: Path | None = None, *,
                    loopback: bool = True) -> subprocess.Popen:
    """The predictor with ``params_file`` on ``domain_id``, discovery limited to this machine.

    Its output goes to ``log`` (default: a file in ``cwd``), never to a pipe
    nobody reads while it runs (a full pipe would block the node); ``stop``
    returns it. With ``loopback`` (the default) the node uses the Fast DDS
    profile of ``loopback_dds_env``: every DDS socket on 127.0.0.1, camera images
    over shared memory with room for full-HD frames. Without it the node runs as
    the launch file starts it: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
    FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA. LOCALHOST limits discovery, not
    sockets: rmw_fastrtps then installs its own shared-memory and UDPv4
    transports (LARGE_DATA is not used) and the UDP sockets listen on 0.0.0.0
    and eth0 (docs/security.md). Clients of a loopback node need not use the
    profile: discovery and shared memory work between the two set-ups.
    """
    if loopback:
        env = loopback_dds_env()
    else:
        env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
        env.update({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"})
    env["ROS_DOMAIN_ID"] = str(domain_id)
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
