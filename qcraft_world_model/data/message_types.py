"""The package's message definitions, registered with rosbags for offline tools.

Bags written and read without ROS (scene generation, evaluation) must agree
byte for byte with the colcon-built messages, so both come from the same
``msg/*.msg`` files: the ROS build generates from them, and this module
registers them in a rosbags typestore.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "qcraft_world_model"

#: ROS distribution whose standard message definitions bags are written with.
DEFAULT_STORE = Stores.ROS2_JAZZY


class MessageDefinitionsNotFound(FileNotFoundError):
    """No ``msg/`` directory with the package's definitions could be found."""


def find_msg_dir() -> Path:
    """Locate the package's ``.msg`` files.

    Looked up, in order: ``$QCRAFT_WM_MSG_DIR``; the source tree next to this
    package (a checkout or editable install); ``<prefix>/share/qcraft_world_model/msg``
    of this interpreter (pip install) and of every ``AMENT_PREFIX_PATH`` entry
    (colcon or apt install).
    """
    candidates = []
    if os.environ.get("QCRAFT_WM_MSG_DIR"):
        candidates.append(Path(os.environ["QCRAFT_WM_MSG_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    candidates += [Path(prefix) / "share" / PACKAGE / "msg" for prefix in prefixes]
    for candidate in candidates:
        if (candidate / "AgentTrajectory.msg").is_file():
            return candidate
    raise MessageDefinitionsNotFound(
        f"no {PACKAGE} msg/ directory found; looked in: {', '.join(map(str, candidates))}. "
        "Set QCRAFT_WM_MSG_DIR to the package's msg/ folder.")


def package_message_types(msg_dir: Path | None = None) -> dict[str, tuple]:
    """Parsed definitions of every message in ``msg_dir``, keyed ``qcraft_world_model/msg/Name``."""
    msg_dir = msg_dir or find_msg_dir()
    types: dict[str, tuple] = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    return types


@lru_cache(maxsize=4)
def make_typestore(store: Stores = DEFAULT_STORE) -> Typestore:
    """A rosbags typestore with ``store``'s standard messages plus this package's."""
    typestore = get_typestore(store)
    typestore.register(package_message_types())
    return typestore


def msgtype(name: str) -> str:
    """Full type name of one of the package's messages: ``AgentPath`` → ``qcraft_world_model/msg/AgentPath``."""
    return f"{PACKAGE}/msg/{name}"
