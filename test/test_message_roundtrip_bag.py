"""Every package message through rosbag2 files (mcap, sqlite3) with rosbags, and
agreement between the rosbags types (from msg/) and the colcon-built ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from message_samples import TYPESTORE, as_plain, cdr, samples


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_every_message_round_trips_through_a_bag(tmp_path: Path, storage: StoragePlugin) -> None:
    bag = tmp_path / f"bag_{storage.name.lower()}"
    originals = samples()
    with Writer(bag, version=9, storage_plugin=storage) as writer:
        for n, (typename, message) in enumerate(originals.items()):
            topic = "/test/" + typename.rsplit("/", 1)[-1]
            connection = writer.add_connection(topic, typename, typestore=TYPESTORE)
            writer.write(connection, 1_000 + n, cdr(typename, message))

    seen = {}
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            decoded = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            assert bytes(raw) == cdr(connection.msgtype, originals[connection.msgtype])
            seen[connection.msgtype] = decoded
    assert set(seen) == set(originals)
    frames = seen["qcraft_world_model/msg/PredictedFrames"].frames
    np.testing.assert_array_equal(frames[2].data, originals["qcraft_world_model/msg/PredictedFrames"].frames[2].data)
    agents = "qcraft_world_model/msg/PredictedAgents"
    assert seen[agents].agents[3].paths[2].poses[5] == originals[agents].agents[3].paths[2].poses[5]


def test_bag_is_readable_by_a_tool_that_only_has_the_bag(tmp_path: Path) -> None:
    """An MCAP bag carries its schemas: a reader without our msg/ files decodes it."""
    bag = tmp_path / "bag"
    typename = "qcraft_world_model/msg/PredictedAgents"
    original = samples()[typename]
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/predicted_agents", typename, typestore=TYPESTORE)
        writer.write(connection, 42, cdr(typename, original))
    bare = get_typestore(Stores.ROS2_JAZZY)  # knows nothing of qcraft_world_model
    with AnyReader([bag], default_typestore=bare) as reader:
        (connection, _, raw), = list(reader.messages())
        decoded = reader.deserialize(raw, connection.msgtype)
    assert decoded.model_id == original.model_id
    assert len(decoded.agents) == len(original.agents)


def test_rosbags_types_have_the_type_hashes_of_the_ros_build(ros) -> None:
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("qcraft_world_model")) / "msg"
    for typename in samples():
        name = typename.rsplit("/", 1)[-1]
        hashes = json.loads((share / f"{name}.json").read_text())["type_hashes"]
        built = next(h["hash_string"] for h in hashes if h["type_name"] == typename)
        assert TYPESTORE.hash_rihs01(typename) == built, typename


def test_rclpy_and_rosbags_decode_each_others_bytes_to_the_same_content(ros) -> None:
    from rclpy.serialization import deserialize_message, serialize_message

    _, msgs = ros
    for typename, message in samples().items():
        cls = getattr(msgs, typename.rsplit("/", 1)[-1])
        via_rclpy = serialize_message(deserialize_message(cdr(typename, message), cls))
        assert as_plain(TYPESTORE.deserialize_cdr(via_rclpy, typename)) == as_plain(message), typename
