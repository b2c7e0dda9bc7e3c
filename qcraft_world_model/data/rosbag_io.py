"""rosbag2 reading and writing with rosbags (no ROS install needed).

Writers stage a bag under ``<name>.partial`` and rename it into place only
after a clean close, so an interrupted run never leaves a bag that looks
complete; they replace only what :mod:`out_folder` counts as a bag of ours, and
give every MCAP chunk its CRC so damage is found later. Readers turn every
storage-level failure into :class:`BagError` naming the file.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
from binascii import crc32
from collections.abc import Iterable, Iterator
from contextlib import closing
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
from qcraft_world_model.data.out_folder import OutFolderError, claim_out_folder
from qcraft_world_model.ingest.image_encode import image_fields

try:  # rosbags reads sqlite3 bags through apsw, whose errors (CorruptError, ...) are not sqlite3's
    from apsw import Error as _ApswError
except ImportError:  # an older rosbags on the stdlib sqlite3 module
    _ApswError = sqlite3.DatabaseError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)

Storage = Literal["mcap", "sqlite3"]
_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag could not be read or written; the message names the file."""


#: What a damaged bag makes the storage readers raise: rosbags' errors, the OS's, SQLite's (through
#: apsw or sqlite3), and the parse errors of record headers whose bytes were overwritten.
_STORAGE_ERRORS = (AnyReaderError, ReaderError, OSError, sqlite3.DatabaseError, _ApswError, struct.error,
                   UnicodeDecodeError)


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
            if not connections:
                return  # rosbags reads an empty connection list as "all of them"
            for connection, log_time, raw in reader.messages(connections=connections):
                try:
                    message, error = reader.deserialize(raw, connection.msgtype), None
                except (AnyReaderError, SerdeError, ValueError, IndexError, struct.error) as err:
                    message, error = None, f"undecodable {connection.msgtype} record: {err}"
                yield BagMessage(connection.topic, connection.msgtype, log_time, message, error)
    except _STORAGE_ERRORS as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


def read_raw(bag: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, memoryview]]:
    """(topic, message type, log time ns, CDR bytes) of a bag's messages in log-time order, not deserialized:
    what a player republishes."""
    path = Path(bag)
    wanted = None if topics is None else set(topics)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if not connections:
                return  # rosbags reads an empty connection list as "all of them"
            for connection, log_time, raw in reader.messages(connections=connections):
                yield connection.topic, connection.msgtype, log_time, raw
    except _STORAGE_ERRORS as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


def bag_time_span(bag: str | Path) -> tuple[int, int, int]:
    """(first log time ns, last log time ns, message count) of a bag, from its index."""
    path = Path(bag)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            return reader.start_time, reader.end_time, reader.message_count
    except _STORAGE_ERRORS as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


def first_log_time(bag: str | Path, topics: Iterable[str]) -> int | None:
    """Log time (ns) of the earliest message on ``topics``, reading no further than it; None when they
    hold none. Unlike :func:`bag_time_span`, messages on other topics do not move it."""
    with closing(read_raw(bag, topics)) as messages:
        for _, _, log_time, _ in messages:
            return log_time
    return None


def require_type(bag: str | Path, topic: str, msgtype: str, expected: Iterable[str]) -> None:
    """Refuse a topic whose messages are not of an ``expected`` type, naming the topic and its type:
    code reading the messages' fields would otherwise fail deep inside on a missing attribute."""
    expected = tuple(expected)
    if msgtype not in expected:
        raise BagError(f"bag {bag}: topic {topic} holds {msgtype}, not {' or '.join(expected)}")


def bag_topics(bag: str | Path) -> dict[str, str]:
    """topic → message type of every connection in the bag."""
    path = Path(bag)
    try:
        with AnyReader([path], default_typestore=make_typestore()) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except _STORAGE_ERRORS as err:
        raise BagError(f"cannot read bag {path}: {err}") from err


# -- MCAP chunk CRCs -------------------------------------------------------------------
# rosbags writes MCAP chunks without the CRC-32 the format provides for them (the field is 0), so a
# chunk whose bytes were overwritten reads back as if nothing happened. The writer fills the field in
# after closing the file; the check below verifies it. Layout (MCAP spec): after the 8-byte magic,
# records of opcode u8, length u64, body; a chunk's body starts with message start/end time u64,
# uncompressed size u64, uncompressed CRC u32, compression (u32 length + name), records (u64 length
# + bytes). The data section ends at the DataEnd (or Footer) record.

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_FOOTER, _OP_CHUNK, _OP_DATA_END = 0x02, 0x06, 0x0F
_CRC_AT = 9 + 24  # a chunk's CRC field, counted from the start of its record


@dataclass(frozen=True)
class McapChunk:
    """One chunk record of an MCAP file: where it lies, its time range, its CRC and its records."""

    #: Byte offsets of the record's first byte and of the byte after it.
    start: int
    end: int
    first_ns: int
    last_ns: int
    #: CRC-32 of the uncompressed records as written; 0: the writer wrote none.
    crc: int
    compression: str
    uncompressed_size: int
    records: bytes

    def uncompressed(self) -> bytes:
        """The chunk's records, decompressed (BagError when they do not decompress to their size)."""
        if not self.compression:
            data = self.records
        else:
            from rosbags.rosbag2.storage_mcap import DECOMPRESSORS  # lz4 / zstd, as rosbags reads them

            if self.compression not in DECOMPRESSORS:
                raise BagError(f"chunk at bytes {self.start}-{self.end}: unknown compression {self.compression!r}")
            try:
                data = DECOMPRESSORS[self.compression](self.records, self.uncompressed_size)
            except Exception as err:  # lz4 and zstd raise their own types on damaged input
                raise BagError(f"chunk at bytes {self.start}-{self.end} does not decompress: {err}") from err
        if len(data) != self.uncompressed_size:
            raise BagError(f"chunk at bytes {self.start}-{self.end} holds {len(data)} bytes, "
                           f"its header says {self.uncompressed_size}")
        return data


def mcap_chunks(path: Path) -> Iterator[McapChunk]:
    """The chunks of an MCAP file's data section in file order; BagError naming the byte where the
    record structure itself is damaged."""
    with path.open("rb") as handle:
        size = path.stat().st_size
        if handle.read(len(_MCAP_MAGIC)) != _MCAP_MAGIC:
            raise BagError(f"{path} is not an MCAP file (its first bytes are not the MCAP magic)")
        offset = len(_MCAP_MAGIC)
        while offset < size:
            head = handle.read(9)
            if len(head) < 9:
                raise BagError(f"{path} is damaged at byte {offset}: the file ends inside a record header")
            opcode, length = struct.unpack("<BQ", head)
            end = offset + 9 + length
            if end > size:
                raise BagError(f"{path} is damaged at byte {offset}: a record of {length} bytes runs past "
                               f"the end of the file ({size} bytes)")
            if opcode in (_OP_DATA_END, _OP_FOOTER):
                return
            if opcode != _OP_CHUNK:
                handle.seek(end)
                offset = end
                continue
            body = handle.read(length)
            try:
                first, last, uncompressed_size, crc, name_length = struct.unpack_from("<QQQII", body)
                compression = body[32:32 + name_length].decode()
                (records_length,) = struct.unpack_from("<Q", body, 32 + name_length)
            except (struct.error, UnicodeDecodeError) as err:
                raise BagError(f"{path} is damaged at byte {offset}: the chunk header does not parse") from err
            records_start = 40 + name_length
            if records_start + records_length != length:
                raise BagError(f"{path} is damaged at byte {offset}: the chunk's records ({records_length} bytes) "
                               f"do not fill its record ({length} bytes)")
            yield McapChunk(offset, end, first, last, crc, compression, uncompressed_size, body[records_start:])
            offset = end


def add_mcap_crcs(path: Path) -> int:
    """Write the CRC-32 of every chunk of ``path`` that has none; returns how many were written."""
    missing = [(chunk.start + _CRC_AT, crc32(chunk.uncompressed())) for chunk in mcap_chunks(path) if chunk.crc == 0]
    with path.open("r+b") as handle:
        for offset, crc in missing:
            handle.seek(offset)
            handle.write(struct.pack("<I", crc))
    return len(missing)


def check_mcap_crcs(bag: str | Path) -> tuple[int, int]:
    """Verify the chunk CRCs of a bag's MCAP files: (chunks verified, chunks written without a CRC).

    Raises BagError naming the damaged chunks' byte and log-time ranges. A chunk
    without a CRC (an older writer) cannot be verified: damage inside it only
    shows where it breaks a message.
    """
    path = Path(bag)
    files = [path] if path.is_file() else sorted(path.glob("*.mcap"))
    verified = unverified = 0
    for file in files:
        damaged = []
        try:
            for chunk in mcap_chunks(file):
                if chunk.crc == 0:
                    unverified += 1
                    continue
                try:
                    intact = crc32(chunk.uncompressed()) == chunk.crc
                except BagError:
                    intact = False
                if not intact:
                    damaged.append(f"bytes {chunk.start}-{chunk.end} (log time {chunk.first_ns / 1e9:.3f}-"
                                   f"{chunk.last_ns / 1e9:.3f} s)")
                verified += 1
        except OSError as err:
            raise BagError(f"cannot read bag {path}: {err}") from err
        if damaged:
            raise BagError(f"bag {path}: {file.name} is damaged: {len(damaged)} of its chunks fail their CRC: "
                           + "; ".join(damaged))
    return verified, unverified


class BagWriter:
    """Write a rosbag2 atomically: staged under ``.<name>.partial/``, moved into place on success.

    The staging folder holds a bag of the final name, because rosbag2 names the
    storage file after its folder and records that name in the metadata.

    Use as a context manager; an exception inside the block removes the
    partial bag instead of publishing it.
    """

    def __init__(self, path: str | Path, storage: Storage = "mcap",
                 typestore: Typestore | None = None, overwrite: bool = False,
                 inputs: Iterable[str | Path] = ()) -> None:
        """``overwrite``: replace an existing bag at ``path`` (only a bag: see :mod:`out_folder`);
        ``inputs``: paths being read for this bag (a replayed bag), which it must not replace."""
        self.path = Path(path)
        self.typestore = typestore or make_typestore()
        self._staging = self.path.with_name(f".{self.path.name}.partial")
        self._partial = self._staging / self.path.name
        self._overwrite = overwrite
        try:  # refused here, before the caller spends minutes simulating or replaying
            claim_out_folder(self.path, "bag", overwrite, tuple(Path(p) for p in inputs))
        except OutFolderError as err:
            raise BagError(f"bag {err}") from err
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
        try:
            if self._storage == StoragePlugin.MCAP:
                for storage_file in self._partial.glob("*.mcap"):
                    add_mcap_crcs(storage_file)
            # Asked again: the folder may have changed during a long recording.
            if claim_out_folder(self.path, "bag", self._overwrite):
                shutil.rmtree(self.path)
            elif self.path.is_dir():
                self.path.rmdir()  # an empty folder
        except (OutFolderError, BagError, OSError) as err:
            # The recording is complete: left where it is rather than thrown away.
            raise BagError(f"cannot finish bag {self.path}: {err} (the new bag is in {self._partial})") from err
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
