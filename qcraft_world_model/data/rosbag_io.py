"""rosbag2 reading and writing with rosbags (no ROS install needed).

Writers stage a bag under ``<name>.partial`` and rename it into place only
after a clean close, so an interrupted run never leaves a bag that looks
complete. Readers turn every storage-level failure into :class:`BagError`
naming the file.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys.store import Typestore

from qcraft_world_model.data.message_types import make_typestore
from qcraft_world_model.ingest.image_encode import image_fields

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)

Storage = Literal["mcap", "sqlite3"]
_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag could not be read or written; the message names the file."""


@dataclass(frozen=True)
class BagMessage:
    """One deserialized message with where and when it was recorded."""

    topic: str
    msgtype: str
    #: Time the recorder received the message (bag timestamp), ns.
    log_time_ns: int
    #: The deserialized message, or None when its bytes could not be decoded.
    message: Any
    #: Why ``message`` is None (a corrupt record inside a readable bag).
    error: str | None = None

    @property
    def stamp_ns(self) -> int:
        """``header.stamp`` in ns when the message has a header, else the log time."""
        header = getattr(self.message, "header", None) if self.message is not None else None
        if header is None:
            return self.log_time_ns
        return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def read_messages(bag: str | Path, topics: Iterable[str] | None = None,
                  typestore: Typestore | None = None) -> Iterator[BagMessage]:
    """Yield a bag's messages in log-time order, deserialized.

    Types come from the bag itself where it carries them (MCAP), falling back
    to ``typestore`` (default: ROS 2 Jazzy plus this package's messages). A
    record that does not deserialize is yielded with ``message=None`` and the
    reason, so one bad record costs one message, not the bag.
    """
    path = Path(bag)
    wanted = None if topics is None else set(topics)
    try:
        with AnyReader([path], default_typestore=typestore or make_typestore()) as reader:
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            for connection, log_time, raw in reader.messages(connections=connections):
                try:
                    message, error = reader.deserialize(raw, connection.msgtype), None
                except (AnyReaderError, SerdeError, ValueError, IndexError, struct.error) as err:
                    message, error = None, f"undecodable {connection.msgtype} record: {err}"
                yield BagMessage(connection.topic, connection.msgtype, log_time, message, error)
    except (AnyReaderError, ReaderError, OSError, sqlite3.DatabaseError) as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


def read_raw(bag: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, memoryview]]:
    """(topic, message type, log time ns, CDR bytes) of a bag's messages in log-time order, not deserialized:
    what a player republishes."""
    path = Path(bag)
    wanted = None if topics is None else set(topics)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            for connection, log_time, raw in reader.messages(connections=connections):
                yield connection.topic, connection.msgtype, log_time, raw
    except (AnyReaderError, ReaderError, OSError, sqlite3.DatabaseError) as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


def bag_time_span(bag: str | Path) -> tuple[int, int, int]:
    """(first log time ns, last log time ns, message count) of a bag, from its index."""
    path = Path(bag)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            return reader.start_time, reader.end_time, reader.message_count
    except (AnyReaderError, ReaderError, OSError, sqlite3.DatabaseError) as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


def bag_topics(bag: str | Path) -> dict[str, str]:
    """topic → message type of every connection in the bag."""
    path = Path(bag)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except (AnyReaderError, ReaderError, OSError, sqlite3.DatabaseError) as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


class BagWriter:
    """Write a rosbag2 atomically: staged under ``.<name>.partial/``, moved into place on success.

    The staging folder holds a bag of the final name, because rosbag2 names the
    storage file after its folder and records that name in the metadata.

    Use as a context manager; an exception inside the block removes the
    partial bag instead of publishing it.
    """

    def __init__(self, path: str | Path, storage: Storage = "mcap",
                 typestore: Typestore | None = None, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.typestore = typestore or make_typestore()
        self._staging = self.path.with_name(f".{self.path.name}.partial")
        self._partial = self._staging / self.path.name
        if self.path.exists() and not overwrite:
            raise BagError(f"bag {self.path} already exists (pass overwrite to replace it)")
        if storage not in _PLUGINS:
            raise BagError(f"unknown storage {storage!r}; use one of {', '.join(_PLUGINS)}")
        self._storage = _PLUGINS[storage]
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        try:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging.mkdir(parents=True)
            self._writer = Writer(self._partial, version=9, storage_plugin=self._storage)
            self._writer.open()
        except (OSError, WriterError) as err:
            raise BagError(f"cannot write bag {self.path}: {err}") from err
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._writer is not None
        try:
            self._writer.close()
        except (OSError, WriterError) as err:
            shutil.rmtree(self._staging, ignore_errors=True)
            if exc is None:
                raise BagError(f"cannot finish bag {self.path}: {err}") from err
            return
        if exc is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self._partial.rename(self.path)
        self._staging.rmdir()

    def write(self, topic: str, msgtype: str, message: Any, log_time_ns: int) -> None:
        """Serialize and append one message (topics are registered on first use)."""
        self.write_raw(topic, msgtype, self.typestore.serialize_cdr(message, msgtype), log_time_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, log_time_ns: int) -> None:
        """Append one already serialized (CDR) message, e.g. as received from DDS."""
        assert self._writer is not None, "use BagWriter as a context manager"
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagError(f"topic {topic} already holds {connection.msgtype}, not {msgtype}")
        try:
            self._writer.write(connection, log_time_ns, data)
        except (OSError, WriterError) as err:
            raise BagError(f"cannot write to bag {self.path}: {err}") from err

    # -- message builders for the common types ---------------------------------

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        types = self.typestore.types
        return types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000,
                                                       nanosec=stamp_ns % 1_000_000_000),
            frame_id=frame_id)

    def write_camera_frame(self, topic: str, rgb: np.ndarray, stamp_ns: int, frame_id: str,
                           compressed: bool = False, log_time_ns: int | None = None) -> None:
        """Write an (H, W, 3) uint8 RGB frame as ``Image`` (rgb8) or JPEG ``CompressedImage``."""
        header = self.header(stamp_ns, frame_id)
        types = self.typestore.types
        if compressed:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise BagError(f"JPEG encoding failed for a frame of shape {rgb.shape}")
            message = types[COMPRESSED_IMAGE](header=header, format="jpeg", data=jpeg.reshape(-1))
            msgtype = COMPRESSED_IMAGE
        else:
            message = types[IMAGE](header=header, **image_fields(rgb, "rgb8"))
            msgtype = IMAGE
        self.write(topic, msgtype, message, stamp_ns if log_time_ns is None else log_time_ns)
